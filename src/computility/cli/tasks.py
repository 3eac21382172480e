"""The user's task commands: ``submit``, ``status``, ``logs``, ``cancel``, ``download``,
``explain`` and ``quote``. Read commands take ``--json``; long waits show progress on stderr
when it is a terminal."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from computility.cli.run import copy_output, exit_code_of
from computility.cli.session import (
    JsonFlag,
    ago,
    connect,
    interactive,
    money,
    note,
    poll,
    print_json,
    span,
    stderr,
    stdout,
    when,
)
from computility.domain.errors import UsageError
from computility.sdk.client import Client
from computility.sdk.task import Task
from computility.wire.api import (
    TASK_STATES,
    TERMINAL_TASK_STATES,
    AttemptOut,
    Candidate,
    TaskOut,
)

TaskIds = Annotated[list[int], typer.Argument(help="Task ids.", min=1, show_default=False)]
TaskIdArg = Annotated[int, typer.Argument(help="The task's id.", min=1, show_default=False)]

STATE_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "lost": "red",
               "running": "cyan", "held": "magenta"}


def _state(state: str) -> str:
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def task_table(tasks: list[TaskOut]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "state", "site", "submitted", "cost", "reason"):
        table.add_column(column, justify="right" if column in ("id", "cost") else "left",
                         overflow="fold")
    for t in tasks:
        table.add_row(str(t.id), t.name or "", _state(t.state), t.site or "",
                      ago(t.submitted_at), money(t.cost, t.currency), t.reason or "")
    return table


# --- submit ------------------------------------------------------------------------------------


def submit_command(
    files: Annotated[list[Path], typer.Argument(help="Task spec YAML files.",
                                                show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every task has ended; "
                                       "exit with the first failure's code.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit tasks from YAML specs; prints each task's id (one per line)."""
    with connect() as client:
        tasks = client.submit_many(list(files)) if len(files) > 1 else [client.submit(files[0])]
        for task in tasks:
            note(f"task {task.id} ({task.record.name or 'unnamed'}) {task.state}; at most "
                 f"{money(task.record.quote_max, task.record.currency)}")
        if wait:
            wait_all(tasks)
    if as_json:
        print_json({"tasks": [t.record for t in tasks]})
    else:
        for task in tasks:
            sys.stdout.write(f"{task.id}\n")
    if wait:
        failed = [t.record for t in tasks if t.state != "succeeded"]
        if failed:
            note(f"{len(failed)} of {len(tasks)} task(s) did not succeed: " +
                 ", ".join(f"{t.id} {t.state}" for t in failed))
            raise typer.Exit(exit_code_of(failed[0]) or 1)


def wait_all(tasks: list[Task]) -> None:
    """Poll until every task has ended, with a progress bar on a terminal."""
    progress = Progress(TextColumn("waiting"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=stderr, transient=True, disable=not interactive())
    with progress:
        bar = progress.add_task("", total=len(tasks))

        def done() -> bool:
            for task in tasks:
                if not task.done:
                    task.refresh()
            finished = sum(t.done for t in tasks)
            running = sum(t.state == "running" for t in tasks)
            progress.update(bar, completed=finished, description=f"{running} running")
            return finished == len(tasks)

        poll(done)


# --- status ------------------------------------------------------------------------------------


def status_command(
    task_id: Annotated[int | None, typer.Argument(help="A task's id (default: the recent "
                                                  "tasks).", min=1, show_default=False)] = None,
    state: Annotated[str | None, typer.Option(help=f"Only tasks in this state: "
                                              f"{', '.join(TASK_STATES)}.")] = None,
    limit: Annotated[int, typer.Option(help="How many recent tasks.", min=1, max=10_000)] = 20,
    watch: Annotated[bool, typer.Option("--watch", help="Wait until every task shown has "
                                        "ended (a live table on a terminal).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """One task in detail, or a table of the recent ones."""
    if state is not None and state not in TASK_STATES:
        raise UsageError(f"--state: expected one of {', '.join(TASK_STATES)}, got '{state}'")
    with connect() as client:
        if task_id is not None:
            record = client.get(task_id)
            if watch:
                (record,) = watch_until_ended(client, [record])
            if as_json:
                print_json(record)
                return
            show_task(record, client.attempts(task_id))
            return
        tasks = list(client.tasks(state=state, limit=limit))
        if watch:
            tasks = watch_until_ended(client, tasks)
    if as_json:
        print_json({"tasks": tasks})
    elif tasks:
        stdout.print(task_table(tasks))
    else:
        note("no tasks" + (f" in state {state}" if state else ""))


def watch_until_ended(client: Client, tasks: list[TaskOut]) -> list[TaskOut]:
    """Poll until every task has ended (a live table on stderr when a person is watching);
    their final records."""
    live = Live(task_table(tasks), console=stderr, transient=True) if interactive() else None
    with live or contextlib.nullcontext():
        def done() -> bool:
            tasks[:] = [client.get(t.id) if t.state not in TERMINAL_TASK_STATES else t
                        for t in tasks]
            if live is not None:
                live.update(task_table(tasks))
            return all(t.state in TERMINAL_TASK_STATES for t in tasks)
        poll(done, first=0.25)
    return tasks


def show_task(t: TaskOut, attempts: list[AttemptOut]) -> None:
    rows = [("task", f"{t.id} {t.name or ''}"), ("state", _state(t.state)),
            ("reason", t.reason or ""), ("site", f"{t.site or '—'} (pool {t.pool or '—'})"),
            ("policy", t.policy), ("submitted", when(t.submitted_at)),
            ("finished", when(t.finished_at)),
            ("exit code", "—" if t.exit_code is None else str(t.exit_code)),
            ("attempts", f"{t.attempts} ({t.user_failures} failed, {t.infra_failures} "
                         f"re-placed; {t.retries} retries allowed)"),
            ("quote (max)", money(t.quote_max, t.currency)), ("cost", money(t.cost, t.currency)),
            ("energy", f"{t.energy_kwh:.6f} kWh"), ("carbon", f"{t.carbon_kg:.6f} kg CO2e")]
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    stdout.print(table)
    if attempts:
        at = Table(box=None, header_style="bold", title="attempts", title_justify="left")
        for column in ("#", "site", "pool", "state", "ran", "exit", "reason"):
            at.add_column(column)
        for a in attempts:
            at.add_row(str(a.number), a.site, a.pool, _state(a.state), span(a.run_s),
                       "—" if a.exit_code is None else str(a.exit_code), a.reason or "")
        stdout.print(at)


# --- logs, cancel, download ----------------------------------------------------------------------


def logs_command(
    task_id: TaskIdArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing as the task "
                                         "writes, until it ends.")] = False,
    stream: Annotated[str, typer.Option(help="stdout, stderr or both (each to our own).")]
    = "both",
    as_json: JsonFlag = False,
) -> None:
    """A task's output: its stdout on our stdout, its stderr on our stderr."""
    if stream not in ("stdout", "stderr", "both"):
        raise UsageError(f"--stream: expected stdout, stderr or both, got '{stream}'")
    if follow and as_json:
        raise UsageError("--json: cannot be combined with --follow")
    names = ("stdout", "stderr") if stream == "both" else (stream,)
    with connect() as client:
        record = client.get(task_id)
        if as_json:
            print_json({"task": task_id, "state": record.state,
                        **{n: client.logs(task_id, n).decode("utf-8", "replace")
                           for n in names}})
            return
        copy_output(client, record, names, follow=follow)


def cancel_command(task_ids: TaskIds, as_json: JsonFlag = False) -> None:
    """Cancel tasks.

    One not yet running ends at once; a running one is stopped by its site, billed as it ran.
    """
    with connect() as client:
        records = [client.cancel(i) for i in task_ids]
    if as_json:
        print_json({"tasks": records})
        return
    for r in records:
        sys.stdout.write(f"{r.id} {r.state}\n")


def download_command(
    task_id: TaskIdArg,
    out: Annotated[Path | None, typer.Option("--out", help="Directory to unpack into "
                                             "(default: ./task-ID).")] = None,
) -> None:
    """Download a finished task's outputs and unpack them."""
    dest = out or Path(f"task-{task_id}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"--out: expected an empty or new directory, got '{dest}'")
    with connect() as client:
        names = client.download(task_id, dest)
    note(f"{len(names)} entries in {dest}")


# --- explain, quote ------------------------------------------------------------------------------


def candidate_table(candidates: list[Candidate], currency: str) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("", "site", "pool", "device", "region", "run", "price", "at most",
                   "kg CO2e", "kWh", "free now", "score"):
        table.add_column(column, justify="left" if column in ("", "site", "pool", "device",
                                                              "region") else "right")
    ordered = sorted(candidates, key=lambda c: (not c.chosen, c.score is None,
                                                c.score or 0.0, c.max_price))
    for c in ordered:
        table.add_row("→" if c.chosen else "", c.site, c.pool, c.device, c.region,
                      span(c.run_s), money(c.price, currency), money(c.max_price, currency),
                      f"{c.carbon_kg:.4f}", f"{c.energy_kwh:.4f}", "yes" if c.free_now else "no",
                      "—" if c.score is None else f"{c.score:.3f}")
    return table


def explain_command(task_id: TaskIdArg, as_json: JsonFlag = False) -> None:
    """Why the task runs where it runs, or why it waits: every candidate site, scored."""
    with connect() as client:
        why = client.explain(task_id)
        currency = client.get(task_id).currency
    if as_json:
        print_json(why)
        return
    where = f" on {why.site} (pool {why.pool})" if why.site else ""
    stdout.print(f"task {why.task}: {_state(why.state)}{where}, policy {why.policy}")
    if why.reason:
        stdout.print(f"reason: {why.reason}")
    if why.candidates:
        stdout.print(candidate_table(why.candidates, currency))
    else:
        stdout.print("no site can hold this task now")


def quote_command(
    file: Annotated[Path, typer.Argument(help="A task spec YAML file.", show_default=False)],
    as_json: JsonFlag = False,
) -> None:
    """Price, run time and carbon of a task at every site that could run it.

    Nothing is submitted.
    """
    with connect() as client:
        quote = client.quote(file)
    if as_json:
        print_json(quote)
        return
    stdout.print(f"expected run {span(quote.run_s)} on the reference device; timeout "
                 f"{span(quote.timeout_s)}")
    if quote.reason:
        stdout.print(f"note: {quote.reason}")
    if quote.candidates:
        stdout.print(candidate_table(quote.candidates, quote.currency))
    else:
        stdout.print("no registered site can run this task")
