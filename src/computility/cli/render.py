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
    ("data_moved_gb", "GB moved"),
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


NARROW: tuple[str, ...] = (
    "policy", "queue", "completed", "rejected", "mean_wait_s", "mean_bounded_slowdown",
    "utilization", "cost", "carbon_kg",
)
"""The columns kept on a terminal too narrow for all of them; numbers fold, never cut short."""


def results_table(report: Mapping[str, object], width: int = 200) -> Table:
    """One row per (policy, queue) result; fewer columns when `width` is under 140."""
    columns = COLUMNS if width >= 140 else tuple(c for c in COLUMNS if c[0] in NARROW)
    title = (
        f"{report['trace']} on {report['network']}: {report['jobs']} jobs "
        f"({report['skipped']} skipped, {report['censored']} censored)"
    )
    table = Table(title=title, title_justify="left")
    for _, header in columns:
        table.add_column(header, justify="left" if header in ("policy", "queue") else "right",
                         overflow="fold")
    results = report["results"]
    assert isinstance(results, Sequence)
    for row in results:
        assert isinstance(row, Mapping)
        table.add_row(*(_fmt(row.get(key)) for key, _ in columns))
    return table


def print_report(report: Mapping[str, object], console: Console) -> None:
    console.print(results_table(report, console.width))
    results = report["results"]
    assert isinstance(results, Sequence)
    for row in results:
        assert isinstance(row, Mapping)
        for explanation in row.get("explain") or ():
            assert isinstance(explanation, Mapping)
            for item in explanation_tables(explanation, f"{row['policy']}/{row['queue']}"):
                console.print(item)


EXPLAIN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site", "site"),
    ("pool", "pool"),
    ("device", "device"),
    ("wait_s", "wait s"),
    ("transfer_s", "transfer s"),
    ("hold_s", "hold s"),
    ("run_s", "run s"),
    ("finish_s", "finish at s"),
    ("money", "money"),
    ("carbon_kg", "kg CO2e"),
    ("latency_ms", "latency ms"),
    ("score", "score"),
)


def explanation_tables(explanation: Mapping[str, object], label: str) -> list[object]:
    """What ``--explain`` prints for one explanation: a candidates table, rejections, blocker."""
    out: list[object] = []
    task = explanation["task"]
    at = _fmt(explanation["at_s"])
    if explanation["state"] == "placing":
        table = Table(
            title=f"{label}: task {task} placed at {at} s — candidates, best first",
            title_justify="left",
        )
        for _, header in EXPLAIN_COLUMNS:
            table.add_column(header, justify="left" if header in ("site", "pool", "device")
                             else "right", overflow="fold")
        table.add_column("")
        candidates = explanation["candidates"]
        assert isinstance(candidates, Sequence)
        for c in candidates:
            assert isinstance(c, Mapping)
            table.add_row(*(_fmt(c.get(k)) for k, _ in EXPLAIN_COLUMNS),
                          "chosen" if c.get("chosen") else "")
        out.append(table)
        rejected = explanation["rejected"]
        assert isinstance(rejected, Mapping)
        for site, reason in rejected.items():
            out.append(f"  {site}: ruled out: {reason}")
    else:
        start = _fmt(explanation.get("estimated_start_s"))
        out.append(
            f"{label}: task {task} {explanation['state']} at {at} s: {explanation['blocker']}; "
            f"estimated start {start} s"
        )
    return out
