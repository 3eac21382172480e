"""Which pools can run a task at all, and in words why the others cannot.

A pool is a candidate when the task fits one of its nodes (cores, or devices x 1000 milli-units),
the device is one the task accepts, its data may be read there (``residency: local`` data runs only
where a copy is), and the site is allowed by the task's rules (regions, sites, owners, latency to
its user). None of this changes with load, so it is computed once per distinct kind of task.
`FeasibilityMixin` is one part of `computility.scheduler.placement.Placement`.
"""

from __future__ import annotations

import numpy as np

from computility.domain.network import Network
from computility.domain.site import MILLI
from computility.domain.workload import ANY_GPU, NO_INDEX, Workload
from computility.scheduler.candidates import (
    BoolArray,
    IntArray,
    SiteRules,
    flag_col,
    index_col,
)
from computility.scheduler.policies import SHIFTING_POLICIES


class FeasibilityMixin:
    """The feasibility half of `Placement` (it sets these attributes up)."""

    network: Network
    tasks: Workload
    policy: str
    rules: dict[int, SiteRules]
    pool_is_cpu: BoolArray
    pool_site: IntArray
    pool_region: IntArray
    node_units: IntArray
    feasible_count: IntArray
    _device_ids: list[str]
    _dataset_regions: list[IntArray | None]
    _location_row: list[int]
    _class_of: IntArray
    _class_mask: BoolArray

    def user_location(self, task: int) -> int:
        """The network's demand row for the task's user (`NO_INDEX` when unknown or none)."""
        t = self.tasks
        if not t.location.shape[0]:
            return NO_INDEX
        k = int(t.location[task])
        return self._location_row[k] if 0 <= k < len(self._location_row) else NO_INDEX

    def _dataset_holders(self) -> list[IntArray | None]:
        """Per workload dataset: regions holding a copy; None if the network has no such data."""
        out: list[IntArray | None] = []
        known = {d.id for d in self.network.datasets}
        for name in self.tasks.datasets:
            if name not in known:
                out.append(None)
                continue
            sites = self.network.dataset(name).sites
            out.append(
                np.array(
                    sorted({self.network.region_index(self.network.site(s).region) for s in sites}),
                    np.int64,
                )
            )
        return out

    def _feasibility_classes(self) -> tuple[IntArray, BoolArray]:
        t = self.tasks
        n = len(t)
        any_ds = index_col(t.dataset, n)
        local_ds = np.where(flag_col(t.data_local, n), any_ds, NO_INDEX)
        keys = np.stack(
            (
                t.cpus,
                t.gpu_milli,
                t.gpu_types.astype(np.int64),
                local_ds.astype(np.int64),
                # Data that may move only matters to feasibility when the network lacks it.
                np.isin(any_ds, self._unknown_datasets()).astype(np.int64),
                np.isin(np.arange(n), list(self.rules)).astype(np.int64) * (np.arange(n) + 1),
            ),
            axis=1,
        )
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, len(self._device_ids)), np.bool_)
        uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        masks = np.stack([self.mask_of(int(first[k])) for k in range(uniq.shape[0])])
        return inverse.reshape(-1).astype(np.int64), masks

    def _unknown_datasets(self) -> IntArray:
        """Workload dataset indices the network holds no copy of."""
        return np.array(
            [k for k, holders in enumerate(self._dataset_regions) if holders is None], np.int64
        )

    def mask_of(self, task: int) -> BoolArray:
        """Candidate pools of `task` (every rule of the module's step 1)."""
        return self._reasons(task, explain=False)[0]

    def rejections(self, task: int) -> dict[str, str]:
        """For each site with no candidate pool for `task`, the reason in a user's words."""
        return self._reasons(task, explain=True)[1]

    def _reasons(self, task: int, explain: bool) -> tuple[BoolArray, dict[str, str]]:
        t = self.tasks
        gpu = int(t.gpu_milli[task])
        cpus = int(t.cpus[task])
        if gpu == 0:
            kind_ok = self.pool_is_cpu.copy()
            fits = kind_ok & (self.node_units >= cpus)
        else:
            kind_ok = ~self.pool_is_cpu
            types = int(t.gpu_types[task])
            if types != ANY_GPU:
                allowed = set(t.gpu_type_sets[types])
                kind_ok = kind_ok & np.array([d in allowed for d in self._device_ids], np.bool_)
            fits = kind_ok & (self.node_units >= gpu)
        ok = fits.copy()
        data_ok = np.ones_like(ok)
        ds = int(t.dataset[task]) if t.dataset.shape[0] else NO_INDEX
        if ds != NO_INDEX:
            holders = self._dataset_regions[ds]
            if holders is None:
                data_ok[:] = False
            elif t.data_local.shape[0] and bool(t.data_local[task]):
                sites = {
                    self.network.site_index(s)
                    for s in self.network.dataset(t.datasets[ds]).sites
                }
                data_ok = np.isin(self.pool_site, list(sites))
        ok &= data_ok
        rules = self.rules.get(task)
        rule_ok = np.ones_like(ok)
        rule_why: dict[int, str] = {}
        if rules is not None:
            rule_ok, rule_why = self._apply_rules(task, rules)
        ok &= rule_ok
        if not explain:
            return ok, {}
        why: dict[str, str] = {}
        for s, site in enumerate(self.network.sites):
            rows = np.flatnonzero(self.pool_site == s)
            if ok[rows].any():
                continue
            if s in rule_why:
                why[site.id] = rule_why[s]
            elif not kind_ok[rows].any():
                why[site.id] = (
                    "has no CPU pool"
                    if gpu == 0
                    else f"has no accelerator of the allowed types ({self._allowed(task)})"
                )
            elif not fits[rows].any():
                largest = int(self.node_units[rows][kind_ok[rows]].max())
                if gpu == 0:
                    why[site.id] = f"largest node holds {largest} cores; the task needs {cpus}"
                else:
                    why[site.id] = (
                        f"largest node holds {largest / MILLI:g} of the allowed accelerators; "
                        f"the task needs {gpu / MILLI:g}"
                    )
            else:
                name = t.datasets[ds]
                why[site.id] = (
                    f"dataset '{name}' is not known to the network"
                    if self._dataset_regions[ds] is None
                    else f"does not hold dataset '{name}' (residency: local)"
                )
        return ok, why

    def _allowed(self, task: int) -> str:
        types = int(self.tasks.gpu_types[task])
        return "any accelerator" if types == ANY_GPU else "|".join(self.tasks.gpu_type_sets[types])

    def _apply_rules(self, task: int, rules: SiteRules) -> tuple[BoolArray, dict[int, str]]:
        ok = np.ones(len(self._device_ids), np.bool_)
        why: dict[int, str] = {}
        for s, site in enumerate(self.network.sites):
            reason = None
            if rules.regions is not None and site.region not in rules.regions:
                reason = f"region {site.region} is not among the allowed regions"
            elif rules.sites is not None and site.id not in rules.sites:
                reason = "not among the allowed sites"
            elif site.id in rules.exclude_sites:
                reason = "excluded by the task"
            elif rules.owners is not None and site.owner not in rules.owners:
                reason = f"owner {site.owner} is not among the allowed owners"
            elif rules.max_latency_ms is not None:
                loc = self.user_location(task)
                if loc != NO_INDEX:
                    lat = float(self.network.arrays.demand_latency_ms[loc, self.pool_region[
                        int(np.flatnonzero(self.pool_site == s)[0])]])
                    if lat > rules.max_latency_ms:
                        reason = (
                            f"latency {lat:.1f} ms from the user exceeds max_latency_ms "
                            f"{rules.max_latency_ms:g}"
                        )
            if reason is not None:
                why[s] = reason
                ok[self.pool_site == s] = False
        return ok, why

    def candidates_mask(self, task: int) -> BoolArray:
        """Candidate pools of `task`, from the per-kind table."""
        mask: BoolArray = self._class_mask[self._class_of[task]]
        return mask

    # ------------------------------------------------------------------ large networks

    def first_candidate(self) -> IntArray:
        """Per task: its first candidate pool (meaningful where it has any)."""
        first: IntArray = np.argmax(self._class_mask, axis=1)[self._class_of]
        return first

    def needs_scoring(self) -> BoolArray:
        """Tasks whose pool or start is a real choice: several candidates, data to move, or
        a deadline a shifting policy may use. The others go straight to their one pool."""
        t = self.tasks
        n = len(t)
        several = self.feasible_count > 1
        moves = (index_col(t.dataset, n) >= 0) & ~flag_col(t.data_local, n)
        shifts = np.isfinite(t.deadline) if self.policy in SHIFTING_POLICIES else np.zeros(n, bool)
        out: BoolArray = several | moves | shifts
        return out

    # ------------------------------------------------------------------ scoring
