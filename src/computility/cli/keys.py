"""``keys list``, ``keys revoke`` and ``keys rotate``: the API keys this key may manage.

A rotated key's secret is printed once, alone on stdout (so ``NEW=$(computility keys rotate
ID)`` captures it), and never again; rotating the key this machine's profile holds offers to
write the new key into the profile.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from computility.cli.session import JsonFlag, connect, note, print_json, stdout, when
from computility.domain.errors import UsageError
from computility.sdk.profile import DEFAULT_PROFILE, Profile, load_profile, save_profile
from computility.wire.api import MAX_GRACE_S, KeyInfo
from computility.wire.spec import parse_duration_s

keys_app = typer.Typer(help="List, revoke and rotate API keys.", no_args_is_help=True)
KeyIdArg = Annotated[str, typer.Argument(help="The key's id (the part after 'cu_', before the "
                                         "next '_'; `computility keys list` shows it).",
                                         show_default=False)]
KEY_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
GRACE_HELP = ("How long the old key keeps working beside the new one: 90s, 15m, 1h, 2d or a "
              "number of seconds (at most 7d; default 0, it stops at once).")


def _key_id(value: str) -> str:
    if value.startswith("cu_"):  # a whole key was given: its id, never sent as it is
        value = value.split("_")[1] if value.count("_") >= 2 else ""
    if not KEY_ID.match(value):
        raise UsageError(f"KEY_ID: expected a key id of letters and digits, got '{value}'")
    return value


def grace_seconds(value: str) -> float:
    """The ``--grace`` value in seconds (a bare number is seconds)."""
    text = value.strip()
    try:
        seconds = float(text) if re.fullmatch(r"\d+(\.\d*)?", text) else parse_duration_s(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_GRACE_S:
        raise UsageError(f"--grace: expected 90s, 15m, 1h, 2d or seconds, at most 7d; got "
                         f"'{value}'")
    return seconds


def _state(key: KeyInfo, now: float) -> str:
    if key.revoked_at is None:
        return "[green]live[/green]"
    if key.revoked_at > now:
        return f"[yellow]until {when(key.revoked_at)}[/yellow]"
    return f"[red]revoked {when(key.revoked_at)}[/red]"


@keys_app.command("list")
def list_command(
    tenant: Annotated[str | None, typer.Option(help="One tenant's keys (operators).")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Also the keys that no longer "
                                          "work.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Your keys: a provider's with its sites' agent keys, an operator's everyone's.

    Never a secret: a key's secret is shown once, when the key is made."""
    with connect() as client:
        found = client.keys(tenant, revoked)
    if as_json:
        print_json(found)
        return
    if not found.keys:
        note("no keys to show")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "tenant", "user", "role", "site", "created", "state"):
        table.add_column(column)
    now = time.time()
    for k in found.keys:
        table.add_row(k.id, k.tenant, k.user or "—", k.role, k.site or "—", when(k.created_at),
                      _state(k, now))
    stdout.print(table)
    if found.truncated:
        note("more keys than shown: narrow with --tenant")


@keys_app.command("revoke")
def revoke_command(key_id: KeyIdArg, as_json: JsonFlag = False) -> None:
    """Revoke a key now; it stops working at once. Revoking it again changes nothing."""
    with connect() as client:
        key = client.revoke_key(_key_id(key_id))
    if as_json:
        print_json(key)
        return
    note(f"key {key.id} ({key.role} of tenant {key.tenant}) revoked at {when(key.revoked_at)}")


@keys_app.command("rotate")
def rotate_command(
    key_id: KeyIdArg,
    grace: Annotated[str, typer.Option(help=GRACE_HELP)] = "0",
    update_profile: Annotated[bool | None, typer.Option(
        "--update-profile/--no-update-profile",
        help="Whether to write the new key into this machine's profile when it held the old "
             "one (default: ask on a terminal, else leave it).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A new key in place of KEY_ID, shown this once; the old one stops at once or after --grace.

    The new key has the old one's user, tenant and role (and site, for an agent's key)."""
    grace_s = grace_seconds(grace)
    target = _key_id(key_id)
    in_use = load_profile()
    with connect() as client:
        rotated = client.rotate_key(target, grace_s)
    if as_json:
        print_json(rotated)
    else:
        sys.stdout.write(rotated.key + "\n")
        sys.stdout.flush()
    stop = "at once" if grace_s == 0 else f"at {when(rotated.replaces.revoked_at)}"
    note(f"key {rotated.id} replaces {target}, which stops working {stop}. This is the only "
         f"time the new key is shown: store it now.")
    if rotated.role == "agent":
        note(f"site {rotated.site}'s agent keeps its old key until it restarts (it then "
             f"registers again and gets a key of its own): restart it before the old key ends")
    if in_use.api_key.startswith(f"cu_{target}_"):
        _offer_profile(in_use, rotated.key, update_profile)


def _offer_profile(in_use: Profile, new_key: str, update: bool | None) -> None:
    """Write `new_key` into the profile that held the rotated key, if asked to."""
    if os.environ.get("COMPUTILITY_API_KEY"):
        note("the rotated key came from COMPUTILITY_API_KEY: set it to the new key")
        return
    name = os.environ.get("COMPUTILITY_PROFILE") or DEFAULT_PROFILE
    if update is None:
        update = sys.stdin.isatty() and sys.stderr.isatty() and typer.confirm(
            f"Write the new key into profile '{name}'?", default=True, err=True)
    if update:
        path = save_profile(Profile(in_use.server, new_key), name)
        note(f"profile '{name}' in {path} now holds the new key")
    else:
        note(f"profile '{name}' still holds the old key: run `computility login --profile "
             f"{name}` with the new one")
