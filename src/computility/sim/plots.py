"""PNG plots of a simulation: wait and slowdown distributions, utilisation over time, and (with
several results) cost, JCT and carbon of each relative to the best.

Matplotlib is imported only here and only when plots are asked for, so a plain run starts fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from computility.sim.metrics import BOUNDED_SLOWDOWN_FLOOR_S, meter, utilization_series

if TYPE_CHECKING:
    from computility.sim.run import SimOutcome


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values)
    y = np.arange(1, x.shape[0] + 1) / max(x.shape[0], 1)
    return x, y


def write_plots(outcome: SimOutcome, folder: Path) -> list[Path]:
    """Write the three plots into `folder` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = outcome.workload
    name = Path(w.name).name
    paths: list[Path] = []
    fig_w, ax_w = plt.subplots(figsize=(7, 4.5))
    fig_s, ax_s = plt.subplots(figsize=(7, 4.5))
    fig_u, ax_u = plt.subplots(figsize=(9, 4.5))
    for run in outcome.runs:
        label = f"{run.policy}/{run.queue}"
        done = ~run.schedule.rejected
        wait = (run.schedule.start - w.submit)[done]
        runtime = (run.schedule.end - run.schedule.start)[done]
        bsld = np.maximum(1.0, (wait + runtime) / np.maximum(runtime, BOUNDED_SLOWDOWN_FLOOR_S))
        x, y = _cdf(np.maximum(wait, 1.0))
        ax_w.step(x, y, where="post", label=label)
        x, y = _cdf(bsld)
        ax_s.step(x, y, where="post", label=label)
        usage = meter(w, run.schedule, outcome.net, outcome.start)
        total_cu = sum(p.total_cu for _, p in outcome.net.pools)
        t, u = utilization_series(run.schedule, usage, total_cu)
        ax_u.plot(t / 3600.0, u, label=label, linewidth=1)
    ax_w.set(xscale="log", xlabel="wait (s, floored at 1 s)", ylabel="fraction of jobs",
             title=f"Wait time distribution — {name}")
    ax_s.set(xscale="log", xlabel="bounded slowdown (10 s floor)", ylabel="fraction of jobs",
             title=f"Bounded slowdown distribution — {name}")
    ax_u.set(xlabel="simulated time (h)", ylabel="busy share of CU", ylim=(0, 1.05),
             title=f"Utilisation over time — {outcome.network}")
    for name, fig, ax in (
        ("wait_cdf.png", fig_w, ax_w),
        ("slowdown_cdf.png", fig_s, ax_s),
        ("utilization.png", fig_u, ax_u),
    ):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    if len(outcome.runs) > 1:
        paths.append(
            compare_results([r.summary for r in outcome.runs], folder / "policies.png",
                            f"{Path(w.name).name} on {outcome.network}")
        )
    return paths


COMPARED = (("cost", "cost"), ("mean_jct_s", "mean JCT"), ("carbon_kg", "carbon"))


def compare_results(
    results: list[dict[str, object]], path: Path, title: str, guide: float | None = None
) -> Path:
    """Bars of each result's cost, mean JCT and carbon divided by the best result's.

    Dividing by the best puts unlike units on one axis: 1 is the best figure, 1.2 is 20 % worse.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['policy']}/{r['queue']}" for r in results]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(labels) + 2), 4.5))
    width = 0.8 / len(COMPARED)
    x = np.arange(len(labels))
    for k, (key, label) in enumerate(COMPARED):
        values = np.array([float(r[key]) if r[key] is not None else np.nan for r in results])  # type: ignore[arg-type]
        best = np.nanmin(values) if np.isfinite(values).any() else np.nan
        ax.bar(x + (k - 1) * width, values / best if best > 0 else values, width, label=label)
    if guide is not None:
        ax.axhline(guide, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylabel("relative to the best (1 = best)")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
