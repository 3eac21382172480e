"""Entry point of the `computility` command.

Every failure a user can cause ends as one line on stderr and exit code 2; anything else is one
line and exit code 1. Nobody is shown a traceback unless COMPUTILITY_DEBUG is set.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

import click
import typer

from computility.cli.sim import sim_command
from computility.domain.errors import BadInput

app = typer.Typer(
    name="computility",
    help="Computility: compute as a utility across many sites.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
app.command("sim")(sim_command)


@app.callback()
def _root() -> None:
    """Computility: compute as a utility across many sites."""


_TYPE_N = re.compile(r"^[^-\s][^\s]*:\d+$")


def expand_repeated(argv: Sequence[str]) -> list[str]:
    """Let ``--gpus A:1 B:2`` mean ``--gpus A:1 --gpus B:2``, as the contract writes it."""
    out: list[str] = []
    in_gpus = False
    for arg in argv:
        if in_gpus and _TYPE_N.match(arg):
            out += ["--gpus", arg]
            continue
        in_gpus = arg == "--gpus"
        if in_gpus:
            continue
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
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        print(f"computility: {_one_line(e.format_message())}", file=sys.stderr)
        sys.exit(2)
    except (click.Abort, KeyboardInterrupt):
        print("computility: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as e:  # the last line of defence: one line, not a traceback
        if os.environ.get("COMPUTILITY_DEBUG"):
            raise
        print(f"computility: internal error: {type(e).__name__}: {_one_line(str(e))}",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
