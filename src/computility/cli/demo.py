"""``computility demo``: the whole network, working, in one command and under two minutes.

Starts the service on a temporary SQLite database and a free port, joins five emulated national
clusters served by a real agent on this machine, submits the sample workload of real tasks from
two tenants (`computility.demo.workload`), shows their progress on stderr, and ends with the
summary on stdout: where each task ran and why, its cost, energy and carbon, the alternatives it
beat, then the bill per tenant. The user's profiles and data are left alone; ``--keep`` keeps
the network running (until Ctrl-C) with a profile ``demo`` pointing at it while it runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from computility.cli.session import JsonFlag, dump, interactive, note, print_json, stderr, stdout
from computility.sdk.profile import Profile, read_profiles, remove_profile, save_profile
from computility.wire.api import TERMINAL_TASK_STATES

if TYPE_CHECKING:  # the demo's network pulls in the whole service: imported when it runs
    from computility.demo.network import DemoNetwork
    from computility.demo.workload import DemoTask
    from computility.sdk.client import Client
    from computility.sdk.task import Task

WAIT_S = 100.0


def demo_command(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the network running after the "
                                       "summary (until Ctrl-C), with profile 'demo' for it.")]
    = False,
    as_json: JsonFlag = False,
) -> None:
    """Start a demo network on this machine, run a sample workload on it, and show where each
    task ran, why, and what it cost."""
    from computility.demo.network import TENANTS, DemoNetwork
    from computility.demo.report import Outcome, bill_table, reason, task_table
    from computility.demo.workload import sample

    started = time.monotonic()
    note("starting the service and five emulated national clusters")
    with DemoNetwork() as net, tempfile.TemporaryDirectory(prefix="computility-demo-") as tmp:
        with net.client() as admin:
            for site in admin.sites():
                pools = ", ".join(f"{p.count} × {p.device} at {p.price_per_cu_hour:g}/CU-h"
                                  for p in site.pools)
                note(f"site {site.id} ({site.region}) joined: {pools}")
        clients = {tenant: net.client(tenant) for tenant in TENANTS}
        try:
            submitted = submit(clients, sample(), Path(tmp) / "workdirs")
            watch(submitted)
            outcomes = [Outcome(shows, task.refresh(), task.client.explain(task.id),
                                task.client.attempts(task.id)) for shows, task in submitted]
        finally:
            for client in clients.values():
                client.close()
        with net.client() as admin:
            sites = admin.sites()
            bills = [admin.usage(tenant=tenant) for tenant in TENANTS]
        wall = time.monotonic() - started
        if as_json:
            print_json({
                "server": net.url, "dashboard": f"{net.url}/", "wall_s": round(wall, 3),
                "bills": bills,
                "tasks": [{**dump(o.task), "shows": o.shows, "why": reason(o, sites),
                           "explain": o.why, "attempt_records": o.attempts} for o in outcomes],
            })
        else:
            stdout.print(task_table(outcomes, sites))
            stdout.print(bill_table(bills))
            stdout.print(f"{len(outcomes)} tasks on {len(sites)} sites in {wall:.1f} s; "
                         f"the service was {net.url}")
            stdout.print(f"The dashboard was at {net.url}/ (run with --keep to browse it)"
                         if not keep else f"The dashboard: {net.url}/")
        if keep:
            hold(net)
    ok = all(o.task.state == "succeeded" for o in outcomes)
    raise typer.Exit(0 if ok else 1)


def submit(clients: dict[str, Client], tasks: list[DemoTask],
           root: Path) -> list[tuple[str, Task]]:
    from computility.demo.workload import write_workdir

    out = []
    for demo_task in tasks:
        workdir = write_workdir(demo_task, root)
        spec: dict[str, Any] = {**demo_task.spec, "workdir": str(workdir)}
        task = clients[demo_task.tenant].submit(spec)
        note(f"{demo_task.tenant} submitted task {task.id} {spec['name']} ({demo_task.shows})")
        out.append((demo_task.shows, task))
    return out


def progress_table(tasks: list[tuple[str, Task]]) -> Table:
    table = Table(box=None, header_style="bold", title="demo workload", title_justify="left")
    for column in ("task", "tenant", "state", "site", "attempts"):
        table.add_column(column)
    for _, t in tasks:
        r = t.record
        table.add_row(f"{r.id} {r.name}", r.tenant, r.state, r.site or "—", str(r.attempts))
    return table


def watch(tasks: list[tuple[str, Task]]) -> None:
    """Poll until every task has ended: a live table on a terminal, else one line per change."""
    deadline = time.monotonic() + WAIT_S
    seen: dict[int, tuple[str, str | None]] = {}
    live = Live(progress_table(tasks), console=stderr, transient=True) if interactive() \
        else None
    if live is not None:
        live.start()
    try:
        while True:
            for _, task in tasks:
                if not task.done:
                    task.refresh()
                r = task.record
                if live is None and seen.get(r.id) != (r.state, r.site):
                    seen[r.id] = (r.state, r.site)
                    where = f" on {r.site}" if r.site else ""
                    why = f" ({r.reason})" if r.reason and r.state != "succeeded" else ""
                    note(f"task {r.id} {r.name}: {r.state}{where}{why}")
            if live is not None:
                live.update(progress_table(tasks))
            if all(t.record.state in TERMINAL_TASK_STATES for _, t in tasks):
                return
            if time.monotonic() > deadline:
                note(f"stopped waiting after {WAIT_S:.0f} s")
                return
            time.sleep(0.25)
    finally:
        if live is not None:
            live.stop()


DEMO_PROFILE = "demo"


def hold(net: DemoNetwork) -> None:
    """Keep the demo network serving until Ctrl-C, with profile ``demo`` pointing at it (the
    user's default profile is never touched); the profile goes when the network does."""
    path = save_profile(Profile(net.url, net.keys["operator"]), DEMO_PROFILE)
    note(f"the demo network keeps running at {net.url}; profile '{DEMO_PROFILE}' saved in "
         f"{path}")
    note("try: COMPUTILITY_PROFILE=demo computility sites   ·   "
         "COMPUTILITY_PROFILE=demo computility run -- hostname")
    note(f"dashboard: {net.url}/ — sign in as the operator with {net.keys['operator']}, or "
         f"as a user of climate-lab with {net.keys['climate-lab']}")
    note("press Ctrl-C to stop it")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        note("stopping the demo network")
    finally:
        if read_profiles().get(DEMO_PROFILE, {}).get("server") == net.url:
            remove_profile(DEMO_PROFILE)
