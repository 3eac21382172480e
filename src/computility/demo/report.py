"""What the demo shows at the end: where each task ran and why, what it cost, its energy and
carbon and the alternatives it beat; then each tenant's bill.

"Why" is the service's own explanation (`GET /tasks/{id}/explain`): every candidate pool scored
by the task's policy, the chosen one marked. Quoted figures are for the job the task stands for
(its ``estimate``); billed figures are what the ledger charged for the seconds it really ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from computility.wire.api import AttemptOut, Candidate, Explanation, SiteOut, TaskOut, Usage


@dataclass(frozen=True)
class Outcome:
    shows: str
    task: TaskOut
    why: Explanation
    attempts: list[AttemptOut]


def _money(value: float) -> str:
    return f"{value:.6f}" if value < 1 else f"{value:,.2f}"


def _delta_time(seconds: float) -> str:
    if abs(seconds) < 90:
        return f"{seconds:+.0f} s"
    if abs(seconds) < 5400:
        return f"{seconds / 60:+.0f} min"
    return f"{seconds / 3600:+.1f} h"


def alternatives(why: Explanation) -> tuple[Candidate | None, list[Candidate]]:
    """The chosen candidate and the others, best first by the policy's score."""
    chosen = next((c for c in why.candidates if c.chosen), None)
    if chosen is None and why.site is not None:
        chosen = next((c for c in why.candidates if c.site == why.site and c.pool == why.pool),
                      None)
    others = [c for c in why.candidates if c is not chosen]
    others.sort(key=lambda c: (c.score is None, c.score or 0.0, c.price))
    return chosen, others


def reason(outcome: Outcome, sites: Sequence[SiteOut]) -> str:
    """One line on why the task ran where it did."""
    t, why = outcome.task, outcome.why
    chosen, others = alternatives(why)
    parts = [f"{t.policy}"]
    inputs = (t.spec or {}).get("inputs") or []
    for item in inputs:
        name = item.get("dataset") if isinstance(item, dict) else None
        holders = [s.id for s in sites if name in {d.id for d in getattr(s, "datasets", [])}]
        if name and t.site in holders:
            parts.append(f"holds {name}, so no data moves")
        elif name:
            parts.append(f"{name} moved from {', '.join(holders) or 'nowhere'}")
    if chosen is not None and others:
        best = others[0]
        parts.append(f"beat {len(others)} option(s); next best {best.site}/{best.pool}: "
                     f"{best.price - chosen.price:+.2f} {t.currency}, "
                     f"{_delta_time(best.run_s - chosen.run_s)}, "
                     f"{best.carbon_kg - chosen.carbon_kg:+.2f} kg")
    elif chosen is not None:
        parts.append("the only site that fits")
    deadline = ((t.spec or {}).get("placement") or {}).get("deadline")
    if deadline and chosen is not None:
        parts.append(f"deadline {deadline}: " + (
            f"held {chosen.hold_s / 3600:.1f} h for a better hour" if chosen.hold_s > 0
            else "no later hour before it does better, so it starts now"))
    failed = [a for a in outcome.attempts if a.state == "failed"]
    if failed and t.state == "succeeded":
        parts.append(f"attempt {failed[0].number} exited {failed[0].exit_code}, retried "
                     f"on {outcome.attempts[-1].site}")
    return "; ".join(parts)


def task_table(outcomes: Sequence[Outcome], sites: Sequence[SiteOut]) -> Table:
    table = Table(title="Where each task ran, and why", title_justify="left",
                  header_style="bold", show_lines=False)
    for column, justify in (("task", "left"), ("tenant", "left"), ("shows", "left"),
                            ("state", "left"), ("site", "left"), ("device", "left"),
                            ("why", "left"), ("quoted", "right"), ("billed", "right"),
                            ("kWh", "right"), ("kg CO2e", "right")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for o in outcomes:
        t = o.task
        chosen, _ = alternatives(o.why)
        table.add_row(
            f"{t.id} {t.name}", t.tenant, o.shows, t.state, t.site or "—",
            chosen.device if chosen else "—", reason(o, sites),
            _money(chosen.price) if chosen else "—", _money(t.cost),
            f"{t.energy_kwh:.6f}", f"{t.carbon_kg:.6f}")
    return table


def bill_table(bills: Sequence[Usage]) -> Table:
    table = Table(title="Bill per tenant (this month)", title_justify="left",
                  header_style="bold")
    for column in ("tenant", "attempts", "CU-h", "kWh", "kg CO2e", "GB moved", "compute",
                   "energy", "network", "total"):
        table.add_column(column, justify="left" if column == "tenant" else "right")
    for b in bills:
        table.add_row(b.tenant, str(b.attempts), f"{b.cu_hours:.6f}", f"{b.kwh:.6f}",
                      f"{b.carbon_kg:.6f}", f"{b.gb_moved:.1f}", _money(b.compute),
                      _money(b.energy), _money(b.network), f"{_money(b.total)} {b.currency}")
    return table
