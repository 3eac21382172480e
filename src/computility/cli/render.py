"""Human-readable tables of reports; machine output is JSON and lives elsewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

COLUMNS: tuple[tuple[str, str], ...] = (
    ("policy", "policy"),
    ("queue", "queue"),
    ("completed", "done"),
    ("rejected", "rej"),
    ("mean_wait_s", "mean wait s"),
    ("p95_wait_s", "p95 wait s"),
    ("mean_jct_s", "mean JCT s"),
    ("mean_bounded_slowdown", "mean bsld"),
    ("utilization", "util"),
    ("cost", "cost"),
    ("energy_kwh", "kWh"),
    ("carbon_kg", "kg CO2e"),
    ("deadline_misses", "missed"),
    ("wall_s", "wall s"),
)


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def results_table(report: Mapping[str, object]) -> Table:
    """One row per (policy, queue) result."""
    title = (
        f"{report['trace']} on {report['network']}: {report['jobs']} jobs "
        f"({report['skipped']} skipped, {report['censored']} censored)"
    )
    table = Table(title=title, title_justify="left")
    for _, header in COLUMNS:
        table.add_column(header, justify="left" if header in ("policy", "queue") else "right")
    results = report["results"]
    assert isinstance(results, Sequence)
    for row in results:
        assert isinstance(row, Mapping)
        table.add_row(*(_fmt(row.get(key)) for key, _ in COLUMNS))
    return table


def print_report(report: Mapping[str, object], console: Console) -> None:
    console.print(results_table(report))
