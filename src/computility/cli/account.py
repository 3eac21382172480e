"""``sites``, ``usage`` and ``login``: what the network offers, what it cost, and which service
this machine talks to."""

from __future__ import annotations

import getpass
import re
import sys
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from computility.cli.session import JsonFlag, ago, connect, money, note, print_json, stdout
from computility.domain.errors import ComputilityError, UsageError
from computility.sdk.client import Client
from computility.sdk.errors import Unauthorized
from computility.sdk.profile import DEFAULT_PROFILE, PROFILE_NAME, Profile, save_profile

PERIODS = "month (this month, the default), day (today), week (the last 7 days), all, " \
          "YYYY-MM or YYYY-MM-DD"


def period_window(period: str, now: datetime | None = None) -> tuple[float | None, float | None]:
    """The [since, until) UNIX window of a ``--period`` value, in this machine's time zone."""
    now = now or datetime.now().astimezone()
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return start_of_day.replace(day=1).timestamp(), None
    if period == "day":
        return start_of_day.timestamp(), None
    if period == "week":
        return (now - timedelta(days=7)).timestamp(), None
    if period == "all":
        return 0.0, None
    if re.fullmatch(r"\d{4}-\d{2}", period):
        try:
            first = datetime.strptime(period, "%Y-%m").astimezone()
        except ValueError:
            raise UsageError(f"--period: expected {PERIODS}, got '{period}'") from None
        following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
        return first.timestamp(), following.timestamp()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", period):
        try:
            day = datetime.strptime(period, "%Y-%m-%d").astimezone()
        except ValueError:
            raise UsageError(f"--period: expected {PERIODS}, got '{period}'") from None
        return day.timestamp(), (day + timedelta(days=1)).timestamp()
    raise UsageError(f"--period: expected {PERIODS}, got '{period}'")


def sites_command(as_json: JsonFlag = False) -> None:
    """The sites of the network: where they are, what they hold, what is free and its price."""
    with connect() as client:
        sites = client.sites()
    if as_json:
        print_json({"sites": sites})
        return
    table = Table(box=None, header_style="bold")
    for column in ("site", "owner", "region", "backend", "online", "seen", "pool", "device",
                   "free / count", "price / CU-h"):
        table.add_column(column, justify="right" if column in ("free / count", "price / CU-h")
                         else "left")
    for s in sites:
        for i, p in enumerate(s.pools):
            first = i == 0
            table.add_row(s.id if first else "", s.owner if first else "",
                          s.region if first else "", s.backend if first else "",
                          ("[green]yes[/green]" if s.online else "[red]no[/red]") if first else "",
                          ago(s.last_seen_at) if first else "", p.id, p.device,
                          f"{p.free:g} / {p.count}", f"{p.price_per_cu_hour:g}")
    if sites:
        stdout.print(table)
    else:
        note("no sites have joined yet")


def usage_command(
    period: Annotated[str, typer.Option(help=f"Window: {PERIODS}.")] = "month",
    tenant: Annotated[str | None, typer.Option(help="Another tenant (operators only).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your tenant's metered use and bill: CU-hours, energy, carbon, data moved, money."""
    since, until = period_window(period)
    with connect() as client:
        bill = client.usage(since, until, tenant)
    if as_json:
        print_json(bill)
        return
    c = bill.currency
    rows = [("tenant", bill.tenant), ("period", period), ("attempts billed", str(bill.attempts)),
            ("CU-hours", f"{bill.cu_hours:.6f}"), ("device-hours", f"{bill.device_hours:.6f}"),
            ("energy", f"{bill.kwh:.6f} kWh"), ("carbon", f"{bill.carbon_kg:.6f} kg CO2e"),
            ("data moved", f"{bill.gb_moved:.3f} GB"), ("compute", money(bill.compute, c)),
            ("energy cost", money(bill.energy, c)), ("network", money(bill.network, c)),
            ("total", money(bill.total, c))]
    if bill.budget is not None:
        rows.append(("budget left (month)", f"{money(bill.budget_left, c)} of "
                                            f"{money(bill.budget, c)}"))
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(key, value)
    stdout.print(table)


def login_command(
    server: Annotated[str, typer.Option(help="The service's URL, e.g. https://cu.example.org.")],
    key: Annotated[str | None, typer.Option(help="API key; '-' reads it from stdin (default: "
                                            "asked for).")] = None,
    profile: Annotated[str, typer.Option(help="Profile name (COMPUTILITY_PROFILE selects "
                                         "it later).")] = DEFAULT_PROFILE,
) -> None:
    """Check a service URL and API key, then save them as a profile (mode 600)."""
    if not re.match(r"^https?://[^\s/]+", server):
        raise UsageError(f"--server: expected an http:// or https:// URL, got '{server}'")
    if not PROFILE_NAME.match(profile):
        raise UsageError(f"--profile: expected 1-64 letters, digits, '-' or '_', got "
                         f"'{profile}'")
    if key == "-":
        key = sys.stdin.readline().strip()
    elif key is None:
        key = getpass.getpass("API key: ").strip() if sys.stdin.isatty() \
            else sys.stdin.readline().strip()
    if not re.fullmatch(r"cu_[A-Za-z0-9]+_[A-Za-z0-9_-]+", key or ""):
        raise UsageError("--key: expected an API key 'cu_<id>_<secret>'")
    server = server.rstrip("/")
    try:
        with Client(server, key, retries=1) as client:
            who = client.whoami()
    except Unauthorized as error:  # nothing is saved: the next command would fail the same way
        raise ComputilityError(f"login: {server} refused the key: {error.detail}") from None
    path = save_profile(Profile(server, key), profile)
    note(f"logged in to {server} with {who.get('role')} key {who.get('key')} of tenant "
         f"{who.get('tenant')}; profile '{profile}' saved in {path}")
