"""Every placement policy on the embedded default network: cost, JCT, carbon, data moved, misses.

    python -m benchmarks.policy_table            # 5,000 tasks, seed 7 (the issue's setting)
    python -m benchmarks.policy_table --tasks 500 --no-plot

Runs ``computility sim --synthetic N --seed 7`` with all eight policies (EASY queues) through
`computility.sim.run.simulate` and checks what the policies promise:

- every policy completes every task;
- ``greenest`` has the least carbon of all and misses no deadline;
- ``balanced`` is within `BALANCED_TOLERANCE` of the best policy on each of cost, mean JCT and
  carbon.

It prints a Markdown table for docs/benchmarks.md and draws docs/img/policy-table.png (each figure
divided by the best policy's, so one chart compares unlike units).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._common import record
from computility.scheduler.policies import PLACEMENT_POLICIES
from computility.sim.plots import compare_results
from computility.sim.run import SimRequest, simulate

TASKS = 5000
SEED = 7
BALANCED_TOLERANCE = 0.20
FIGURES = (("cost", "cost (CNY)"), ("mean_jct_s", "mean JCT (s)"), ("carbon_kg", "carbon (kg)"))
PLOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "policy-table.png"


def measure(tasks: int = TASKS, seed: int = SEED) -> dict[str, object]:
    """Replay the workload under every policy; return rows and the checks' verdicts."""
    outcome = simulate(SimRequest(synthetic=tasks, seed=seed, policies=PLACEMENT_POLICIES))
    rows = {str(r.summary["policy"]): r.summary for r in outcome.runs}
    best = {key: min(float(rows[p][key]) for p in rows) for key, _ in FIGURES}  # type: ignore[arg-type]
    balanced_gap = {
        key: float(rows["balanced"][key]) / best[key] - 1.0 for key, _ in FIGURES  # type: ignore[arg-type]
    }
    greenest = float(rows["greenest"]["carbon_kg"])  # type: ignore[arg-type]
    checks = {
        "all_complete": all(rows[p]["completed"] == tasks for p in rows),
        "greenest_least_carbon": all(
            greenest <= float(rows[p]["carbon_kg"]) for p in rows  # type: ignore[arg-type]
        ),
        "greenest_no_misses": rows["greenest"]["deadline_misses"] == 0,
    }
    return {
        "tasks": tasks,
        "seed": seed,
        "network": outcome.network,
        "rows": {
            p: {
                k: rows[p][k]
                for k in ("completed", "cost", "mean_jct_s", "carbon_kg", "data_moved_gb",
                          "deadline_misses", "held", "mean_wait_s", "wall_s")
            }
            for p in rows
        },
        "balanced_gap": balanced_gap,
        "checks": checks,
    }


def verdict(result: dict[str, object], tolerance: float = BALANCED_TOLERANCE) -> list[str]:
    """What failed (empty when every promise holds)."""
    failed = [name for name, ok in result["checks"].items() if not ok]  # type: ignore[attr-defined]
    gaps = result["balanced_gap"]
    assert isinstance(gaps, dict)
    failed += [
        f"balanced {key} {gap:+.1%} over best (limit {tolerance:.0%})"
        for key, gap in gaps.items()
        if gap > tolerance
    ]
    return failed


def markdown(result: dict[str, object]) -> str:
    rows = result["rows"]
    assert isinstance(rows, dict)
    lines = [
        "| policy | completed | cost (CNY) | mean JCT (s) | carbon (kg CO2e) | GB moved | "
        "deadline misses | held |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for policy, r in rows.items():
        lines.append(
            f"| {policy} | {r['completed']:,} | {r['cost']:,.0f} | {r['mean_jct_s']:,.0f} | "
            f"{r['carbon_kg']:,.1f} | {r['data_moved_gb']:,.0f} | {r['deadline_misses']} | "
            f"{r['held']} |"
        )
    return "\n".join(lines)


def plot(result: dict[str, object], path: Path = PLOT) -> Path:
    rows = result["rows"]
    assert isinstance(rows, dict)
    results = [{"policy": p, "queue": "easy", **r} for p, r in rows.items()]
    title = (
        f"Placement policies, default network, --synthetic {result['tasks']} "
        f"--seed {result['seed']} (EASY)"
    )
    return compare_results(results, path, title, guide=1.0 + BALANCED_TOLERANCE)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.tasks, args.seed)
    record("policy_table", result)
    print(markdown(result))
    if not args.no_plot:
        print(f"plot: {plot(result)}")
    failed = verdict(result)
    if failed:
        raise SystemExit("policy promises broken: " + "; ".join(failed))
    return result


if __name__ == "__main__":
    main()
