"""A finished run's result as the page shows it: the comparison table (best value of each
column marked) and the chart specifications that ``static/app.js`` draws.

The figures are the simulator's own (`computility sim --json`'s result entries); only their
presentation is decided here: which columns, which direction is better, which units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from computility.server.web.i18n import Translator
from computility.server.web.render import duration, number, percent


@dataclass(frozen=True)
class Metric:
    key: str  # the simulator's result field
    label: str  # message key
    kind: str  # duration | ratio | percent | money | number | count
    better: str  # low | high
    narrow: bool = True  # shown on a phone's width too
    chart: bool = False  # drawn as a bar chart by policy


METRICS: tuple[Metric, ...] = (
    Metric("mean_wait_s", "validation.col.mean_wait", "duration", "low", chart=True),
    Metric("p95_wait_s", "validation.col.p95_wait", "duration", "low", narrow=False),
    Metric("mean_jct_s", "validation.col.mean_jct", "duration", "low", chart=True),
    Metric("mean_bounded_slowdown", "validation.col.bsld", "ratio", "low", chart=True),
    Metric("utilization", "validation.col.utilization", "percent", "high", chart=True),
    Metric("cost", "validation.col.cost", "money", "low", chart=True),
    Metric("carbon_kg", "validation.col.carbon", "number", "low", chart=True),
    Metric("energy_kwh", "validation.col.energy", "number", "low", narrow=False),
    Metric("data_moved_gb", "validation.col.moved", "number", "low", narrow=False),
    Metric("deadline_misses", "validation.col.misses", "count", "low"),
    Metric("completed", "validation.col.completed", "count", "high", narrow=False),
    Metric("rejected", "validation.col.rejected", "count", "low", narrow=False),
)


def _value(result: dict[str, Any], key: str) -> float | None:
    value = result.get(key)
    return float(value) if isinstance(value, int | float) else None


def best_flags(values: Sequence[float | None], better: str) -> list[bool]:
    """Which values are the best of their column: none unless at least two policies differ
    (a column where every policy is equal has no winner to point at)."""
    known = [v for v in values if v is not None]
    if len(values) < 2 or len(set(known)) < 2:
        return [False] * len(values)
    best = min(known) if better == "low" else max(known)
    return [v == best for v in values]


def time_unit(seconds: Sequence[float | None]) -> tuple[str, float]:
    """The unit that keeps these durations readable on one axis: (message key, divisor)."""
    top = max((abs(v) for v in seconds if v is not None), default=0.0)
    if top >= 3 * 3600:
        return "validation.unit.h", 3600.0
    if top >= 120:
        return "validation.unit.min", 60.0
    return "validation.unit.s", 1.0


def _formatter(kind: str, currency: str) -> Callable[[float | None], str]:
    if kind == "duration":
        return duration
    if kind == "percent":
        return lambda v: percent(v, 1)
    if kind == "ratio":
        return lambda v: number(v, 2)
    if kind == "money":
        return lambda v: "—" if v is None else f"{v:,.2f} {currency}"
    if kind == "count":
        return lambda v: "—" if v is None else f"{int(v):,}"
    return lambda v: number(v, 1)


def _scaled(values: Sequence[float | None], divisor: float) -> list[float | None]:
    return [None if v is None else round(v / divisor, 6) for v in values]


def comparison_view(result: dict[str, Any], t: Translator, currency: str) -> dict[str, Any]:
    """Table rows and chart specs of a finished run (see the module docstring)."""
    results: list[dict[str, Any]] = list(result.get("results") or [])
    names = [t(f"validation.policy.{r.get('policy')}") for r in results]
    columns = [{"label": t(m.label), "narrow": m.narrow} for m in METRICS]
    cells: list[list[dict[str, Any]]] = [[] for _ in results]
    bars: list[dict[str, Any]] = []
    for metric in METRICS:
        values = [_value(r, metric.key) for r in results]
        fmt = _formatter(metric.kind, str(results[0].get("currency", currency))
                         if results else currency)
        for row, value, best in zip(cells, values, best_flags(values, metric.better),
                                    strict=True):
            row.append({"text": fmt(value), "best": best, "narrow": metric.narrow})
        if metric.chart:
            bars.append({"id": f"bar-{metric.key.replace('_', '-')}", "title": t(metric.label),
                         "spec": _bar_spec(metric, values, names, t, currency)})
    rows = [{"policy": name, "cells": row} for name, row in zip(names, cells, strict=True)]
    return {"columns": columns, "rows": rows, "bars": bars, "lines": _line_specs(result, names, t)}


def _bar_spec(metric: Metric, values: list[float | None], names: list[str], t: Translator,
              currency: str) -> dict[str, Any]:
    unit, divisor = "", 1.0
    if metric.kind == "duration":
        key, divisor = time_unit(values)
        unit = t(key)
    elif metric.kind == "percent":
        unit, divisor = "%", 0.01
    elif metric.kind == "money":
        unit = currency
    elif metric.kind == "ratio":
        unit = t("validation.unit.ratio")
    elif metric.key == "carbon_kg":
        unit = "kgCO2e"
    return {"x": list(range(len(names))), "xlabels": names, "time": False, "bars": True,
            "unit": unit, "series": [{"label": t(metric.label),
                                      "values": _scaled(values, divisor)}]}


def _line_specs(result: dict[str, Any], names: list[str], t: Translator) -> list[dict[str, Any]]:
    """Utilisation and waiting tasks over simulated time, and waits by percentile."""
    series = result.get("series") or {}
    x = list(series.get("x") or [])
    out: list[dict[str, Any]] = []
    if x:
        util = series.get("utilization") or []
        out.append({"id": "line-utilization", "title": t("validation.chart.utilization"),
                    "spec": {"x": x, "unit": "%", "series": [
                        {"label": n, "values": _scaled(v, 0.01)}
                        for n, v in zip(names, util, strict=False)]}})
        out.append({"id": "line-waiting", "title": t("validation.chart.waiting"),
                    "spec": {"x": x, "unit": t("validation.unit.tasks"), "series": [
                        {"label": n, "values": v}
                        for n, v in zip(names, series.get("waiting") or [], strict=False)]}})
    pct = result.get("wait_percentiles") or {}
    waits: list[list[float | None]] = list(pct.get("values") or [])
    if pct.get("x") and waits:
        key, divisor = time_unit([v for w in waits for v in w])
        out.append({"id": "line-wait-percentiles", "title": t("validation.chart.wait_percentiles"),
                    "spec": {"x": list(pct["x"]), "time": False, "unit": t(key), "series": [
                        {"label": n, "values": _scaled(w, divisor)}
                        for n, w in zip(names, waits, strict=False)]}})
    return out
