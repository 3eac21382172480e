"""`computility sim`: replay a workload and report, as a table, JSON and plots."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from computility.cli.render import print_report, results_table
from computility.domain.errors import UsageError
from computility.sim.engine import ProgressFn
from computility.sim.run import (
    DEFAULT_START,
    ProgressFactory,
    SimOutcome,
    SimRequest,
    simulate,
)

PROGRESS_MIN_JOBS = 20_000
"""Smaller runs finish before a bar would be worth drawing."""


def _split(values: list[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        return default
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


def sim_command(
    trace: Annotated[
        str | None,
        typer.Option("--trace", help="Trace file (plain or .gz), or builtin:lublin_256."),
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option("--synthetic", help="N seeded synthetic tasks instead of a trace."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto|swf|alibaba|philly|csv")
    ] = "auto",
    limit: Annotated[int | None, typer.Option(help="Keep the first N simulated records.")] = None,
    network: Annotated[
        str | None,
        typer.Option(
            help="default|single|generated:N|PATH (default: single for a trace, default for "
            "--synthetic)."
        ),
    ] = None,
    cpus: Annotated[int | None, typer.Option(help="Processors of the single site.")] = None,
    gpus: Annotated[
        list[str] | None, typer.Option(help="Accelerator pool TYPE:N (repeatable).")
    ] = None,
    policy: Annotated[
        list[str] | None, typer.Option(help="Placement policies, comma-separated.")
    ] = None,
    queue: Annotated[
        list[str] | None, typer.Option(help="Queue disciplines fcfs,easy,conservative.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    start: Annotated[str, typer.Option(help="Wall-clock time of simulated time 0.")] = (
        DEFAULT_START
    ),
    arrivals: Annotated[
        str | None, typer.Option(help="poisson:RATE_PER_HOUR for traces without times.")
    ] = None,
    explain: Annotated[
        int | None,
        typer.Option(
            help="Task id: show every site's score at its placement, why others were ruled "
            "out, and why it waited."
        ),
    ] = None,
    placement: Annotated[
        str,
        typer.Option(
            help="auto: large networks walk cached rankings (docs/placement.md); full: score "
            "every candidate of every task."
        ),
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON report on stdout.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for report.json, table and plots.")] = (
        None
    ),
) -> None:
    """Replay a workload on a model of the network with the live scheduler, and report."""
    if (trace is None) == (synthetic is None):
        raise UsageError("sim: give exactly one of --trace PATH or --synthetic N")
    req = SimRequest(
        trace=trace or "",
        synthetic=synthetic,
        fmt=fmt,
        limit=limit,
        network=network or "",
        cpus=cpus,
        gpus=tuple(gpus or ()),
        policies=_split(policy, ("balanced",)),
        queues=_split(queue, ("easy",)),
        seed=seed,
        start=start,
        arrivals=arrivals,
        explain=explain,
        placement=placement,
    )
    if out is not None:
        check_out(out)
    with ExitStack() as stack:
        factory = _progress_factory(stack) if sys.stderr.isatty() else None
        outcome = simulate(req, progress=factory)
    report = outcome.report()
    if out is not None:
        write_outputs(outcome, report, out)
    if as_json:
        # allow_nan=False: the contract's "null, never NaN" is enforced at the last step too.
        sys.stdout.write(json.dumps(report, allow_nan=False) + "\n")
    else:
        print_report(report, Console(width=None if sys.stdout.isatty() else 160))


def check_out(out: Path) -> None:
    """Refuse an --out that cannot become a folder, before any work is done."""
    for place in (out, *out.parents):
        if place.exists():
            if not place.is_dir():
                raise UsageError(f"--out: '{place}' exists and is not a folder")
            break


def write_outputs(outcome: SimOutcome, report: dict[str, object], out: Path) -> None:
    """Write report.json, report.txt and the plots into `out`, all or nothing.

    Everything is written to a scratch folder beside `out` first. A new `out` is that folder
    renamed in one step; into an existing one the finished files are moved, so a failure part
    way through writing leaves `out` as it was.
    """
    from computility.sim.plots import write_plots

    check_out(out)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=parent, prefix=".computility-out-"))
        try:
            (scratch / "report.json").write_text(
                json.dumps(report, indent=2, allow_nan=False) + "\n"
            )
            with open(scratch / "report.txt", "w") as text:
                Console(file=text, width=160).print(results_table(report))
            write_plots(outcome, scratch)
            if out.exists():
                for item in scratch.iterdir():
                    os.replace(item, out / item.name)
            else:
                os.rename(scratch, out)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except OSError as e:
        raise UsageError(f"--out: cannot write '{out}': {e.strerror or e}") from None


def _progress_factory(stack: ExitStack) -> ProgressFactory:
    progress = stack.enter_context(
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} jobs"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    )

    def factory(label: str, total: int) -> ProgressFn | None:
        if total < PROGRESS_MIN_JOBS:
            return None
        task = progress.add_task(label, total=total)

        def update(done: int) -> None:
            progress.update(task, completed=done)

        return update

    return factory
