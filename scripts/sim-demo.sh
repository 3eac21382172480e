#!/usr/bin/env bash
# The simulator's showcase: set up, then place 5,000 seeded synthetic tasks (CPU, GPU and
# data-heavy, some with deadlines, users in eight cities) on the embedded national network under
# the four placement policies, print the table and write the report and plots to out/demo/.
# `--quick` places 1,000 tasks only (CI's smoke run).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/setup-dev.sh" >/dev/null
tasks=5000
[[ ${1:-} == --quick ]] && tasks=1000
exec .venv/bin/computility sim --synthetic "$tasks" --seed 7 --network default \
  --policy balanced,cheapest,fastest,greenest --queue easy --out out/demo
