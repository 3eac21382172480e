"""Entry point of the `computility` command.

Every failure a user can cause ends as one line on stderr and exit code 2; anything else is one
line and exit code 1. Nobody is shown a traceback unless COMPUTILITY_DEBUG is set.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

import typer
from typer.exceptions import TyperException

from computility.cli.account import login_command, sites_command, usage_command
from computility.cli.agent import agent_command
from computility.cli.demo import demo_command
from computility.cli.keys import keys_app
from computility.cli.network import network_app
from computility.cli.run import run_command
from computility.cli.sim import sim_command
from computility.cli.tasks import (
    cancel_command,
    download_command,
    explain_command,
    logs_command,
    quote_command,
    status_command,
    submit_command,
)
from computility.cli.up import db_app, up_command
from computility.domain.errors import BadInput, ComputilityError

app = typer.Typer(
    name="computility",
    help="Computility: compute as a utility across many sites.",
    add_completion=True,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
app.command("demo")(demo_command)
app.command("run", context_settings={"allow_interspersed_args": False})(run_command)
app.command("submit")(submit_command)
app.command("status")(status_command)
app.command("logs")(logs_command)
app.command("cancel")(cancel_command)
app.command("download")(download_command)
app.command("explain")(explain_command)
app.command("quote")(quote_command)
app.command("sites")(sites_command)
app.command("usage")(usage_command)
app.command("login")(login_command)
app.command("up")(up_command)
app.command("agent")(agent_command)
app.command("sim")(sim_command)
app.add_typer(network_app, name="network")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


@app.callback()
def _root() -> None:
    """Computility: compute as a utility across many sites."""


_TYPE_N = re.compile(r"^[^-\s][^\s]*:\d+$")


def expand_repeated(argv: Sequence[str]) -> list[str]:
    """Let ``--gpus A:1 B:2`` mean ``--gpus A:1 --gpus B:2``, as the contract writes it.

    The token right after ``--gpus`` is always its value (so a malformed one reaches the
    validator); further ``TYPE:N`` tokens are more values. Only `sim` takes repeated values,
    and nothing after ``--`` is touched (it is a command's own arguments).
    """
    if not argv or argv[0] != "sim":
        return list(argv)
    out: list[str] = []
    expecting = False  # the previous token was --gpus
    extending = False  # inside a run of --gpus values
    for i, arg in enumerate(argv):
        if arg == "--" and not expecting:
            return out + list(argv[i:])
        if expecting:
            out.append(arg)
            expecting, extending = False, True
        elif extending and _TYPE_N.match(arg):
            out += ["--gpus", arg]
        else:
            extending = False
            expecting = arg == "--gpus"
            out.append(arg)
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> None:
    args = expand_repeated(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="computility", standalone_mode=False)
    except BadInput as e:
        print(_one_line(str(e)), file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("computility: interrupted", file=sys.stderr)
        sys.exit(130)
    except TyperException as e:
        format_message = getattr(e, "format_message", None)
        message = _one_line(format_message() if callable(format_message) else str(e))
        message = message.replace("Value error, ", "")
        if message:  # empty when the error only means "help was shown"
            print(f"computility: {message}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        sys.exit(1)
    except ComputilityError as e:  # a failure that is not the user's input: one line, exit 1
        print(f"computility: {_one_line(str(e))}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # the last line of defence: one line, not a traceback
        if os.environ.get("COMPUTILITY_DEBUG"):
            raise
        print(f"computility: internal error: {type(e).__name__}: {_one_line(str(e))}",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
