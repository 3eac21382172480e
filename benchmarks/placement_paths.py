"""What the large-network placement path gives up against scoring every candidate in full.

    python -m benchmarks.placement_paths

Runs ``computility sim --synthetic 10000 --network generated:100 --seed 2`` under balanced,
cheapest, greenest and fastest twice: ``--placement full`` (every candidate of every task scored
with the cost model, queue waits included) and ``--placement auto`` (the cached-ranking path
large networks take, docs/placement.md section 5), and prints both sets of figures side by side.
A quality measurement, not a speed one: it has no floor in CI.
"""

from __future__ import annotations

from typing import Any

from benchmarks._common import record
from computility.sim.run import SimRequest, simulate

POLICIES = ("balanced", "cheapest", "greenest", "fastest")
FIGURES = ("cost", "mean_jct_s", "carbon_kg", "data_moved_gb", "deadline_misses", "wall_s")


def measure(tasks: int = 10_000, network: str = "generated:100", seed: int = 2) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for mode in ("full", "auto"):
        outcome = simulate(SimRequest(synthetic=tasks, network=network, seed=seed,
                                      placement=mode, policies=POLICIES))
        for run in outcome.runs:
            rows.setdefault(run.policy, {})[mode] = {k: run.summary[k] for k in FIGURES}
    return {"tasks": tasks, "network": network, "seed": seed, "rows": rows}


def main() -> dict[str, Any]:
    result = measure()
    record("placement_paths", result)
    print("| policy | path | cost (CNY) | mean JCT (s) | carbon (kg) | GB moved | missed "
          "| wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for policy, modes in result["rows"].items():
        for mode, r in modes.items():
            print(f"| {policy} | {mode} | {r['cost']:,.0f} | {r['mean_jct_s']:,.0f} | "
                  f"{r['carbon_kg']:,.1f} | {r['data_moved_gb']:,.0f} | {r['deadline_misses']} | "
                  f"{r['wall_s']:.2f} |")
    return result


if __name__ == "__main__":
    main()
