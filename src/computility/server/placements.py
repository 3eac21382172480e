"""A scheduling cycle's placements, as columns, and how they are written.

A cycle over 10^4–10^5 pending tasks places most of them; an object (or dict) per placement and a
per-row Python pass to build it, check it and write it cost as much as the placement itself.
`decide` therefore works on whole columns (numpy for units and CU, a Python pass only over the
tasks whose tenant has a concurrent-CU quota), and `write` hands the database whole columns: on
PostgreSQL one ``UPDATE … FROM unnest(array literals)``, on SQLite a temporary table and one
``UPDATE … FROM``. Every update is conditional on the task's version, so a placement decided on a
stale row changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text

from computility.server import states

PARALLEL_WRITE_MIN = 5_000
"""From this many placements, PostgreSQL writes them in `WRITERS` parallel transactions."""
WRITERS = 2


@dataclass(frozen=True)
class Placements:
    """Per placed task: its id, the version it was read at, its state, and where it goes."""

    ids: list[int]
    versions: list[int]
    states: list[str]
    sites: list[str]
    pools: list[str]
    units: list[int]
    cu: list[float]

    def __len__(self) -> int:
        return len(self.ids)

    def split(self, parts: int) -> list[Placements]:
        size = -(-len(self) // parts)
        return [Placements(*(column[i:i + size] for column in self._columns()))
                for i in range(0, len(self), size)]

    def check(self) -> None:
        """Every task may move to ``queued`` from its state (checked once per distinct state)."""
        for state in set(self.states):
            states.check_task(state, states.QUEUED)

    def _columns(self) -> tuple[list[Any], ...]:
        return (self.ids, self.versions, self.states, self.sites, self.pools, self.units,
                self.cu)


NONE = Placements([], [], [], [], [], [], [])


def decide(
    ids: Sequence[int], versions: Sequence[int], task_states: Sequence[str],
    tenants: Sequence[str], cpus: Sequence[int], gpu_milli: Sequence[int],
    choice: np.ndarray, pool_is_cpu: np.ndarray, cu_per_unit: np.ndarray,
    pool_keys: Sequence[tuple[str, str]], quotas: dict[str, float], in_use: dict[str, float],
) -> tuple[Placements, list[tuple[int, str]]]:
    """The placements to write, and the task rows held by their tenant's concurrent-CU quota
    (row, reason). A task row whose `choice` is -1 is not placed and keeps its state."""
    rows = np.flatnonzero(choice >= 0)
    if rows.size == 0:
        return NONE, []
    pools = choice[rows]
    units = np.where(pool_is_cpu[pools], np.asarray(cpus, np.int64)[rows],
                     np.asarray(gpu_milli, np.int64)[rows])
    cu = units * cu_per_unit[pools]
    held: list[tuple[int, str]] = []
    if quotas:
        keep = np.ones(rows.size, np.bool_)
        used = {t: float(in_use.get(t) or 0.0) for t in quotas}
        for k, i in enumerate(rows.tolist()):  # in row order: earlier tasks go first
            quota = quotas.get(tenants[i])
            if quota is None:
                continue
            need = float(cu[k])
            if used[tenants[i]] + need > quota + 1e-9:
                held.append((i, f"held: over the tenant's concurrent quota "
                                f"({used[tenants[i]]:.1f} of {quota:g} CU in use, this task "
                                f"needs {need:.1f})"))
                keep[k] = False
            else:
                used[tenants[i]] += need
        rows, pools, units, cu = rows[keep], pools[keep], units[keep], cu[keep]
    where = [pool_keys[p] for p in pools.tolist()]
    return Placements(
        ids=[ids[i] for i in rows.tolist()], versions=[versions[i] for i in rows.tolist()],
        states=[task_states[i] for i in rows.tolist()], sites=[s for s, _ in where],
        pools=[p for _, p in where], units=units.tolist(), cu=cu.tolist(),
    ), held


def write(conn: Any, placed: Placements, now: float) -> None:
    """Set every placed task ``queued`` on its pool, conditional on its version."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(
            "UPDATE tasks SET state = 'queued', site_id = v.site, pool_id = v.pool, "
            "units = v.units, cu = v.cu, version = tasks.version + 1, updated_at = :now, "
            "reason = NULL FROM unnest(CAST(:ids AS bigint[]), CAST(:vs AS integer[]), "
            "CAST(:sites AS text[]), CAST(:pools AS text[]), CAST(:units AS bigint[]), "
            "CAST(:cus AS float8[])) AS v(id, version, site, pool, units, cu) "
            "WHERE tasks.id = v.id AND tasks.version = v.version"
        ), {"ids": array_literal(placed.ids), "vs": array_literal(placed.versions),
            "sites": array_literal(placed.sites, quoted=True),
            "pools": array_literal(placed.pools, quoted=True),
            "units": array_literal(placed.units), "cus": array_literal(placed.cu), "now": now})
        return
    conn.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS placed (id INTEGER PRIMARY KEY, version INTEGER, "
        "site TEXT, pool TEXT, units INTEGER, cu REAL)")
    conn.exec_driver_sql("DELETE FROM placed")
    conn.exec_driver_sql(
        "INSERT INTO placed VALUES (?, ?, ?, ?, ?, ?)",
        list(zip(placed.ids, placed.versions, placed.sites, placed.pools, placed.units,
                 placed.cu, strict=True)))
    conn.exec_driver_sql(
        "UPDATE tasks SET state = 'queued', site_id = placed.site, pool_id = placed.pool, "
        "units = placed.units, cu = placed.cu, version = tasks.version + 1, updated_at = ?, "
        "reason = NULL FROM placed WHERE tasks.id = placed.id "
        "AND tasks.version = placed.version", (now,))


def array_literal(values: Iterable[Any], quoted: bool = False) -> str:
    """A PostgreSQL array literal of `values`: the server parses one string several times
    faster than the driver adapts a Python list element by element (a third of the write's
    time at 10,000 placements). Numbers print as themselves (``str`` of a float round-trips
    exactly); `quoted` elements are double-quoted with backslash escapes, so no name can read
    as ``NULL`` or break the literal."""
    if quoted:
        return "{" + ",".join(
            '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"
