#!/usr/bin/env bash
# The README's main job: set up, then replay the shipped Lublin trace on its 256-processor
# machine under FCFS, EASY and conservative backfilling, print the table and write the report
# and plots to out/demo/. `--quick` replays the first 2,000 jobs only (CI's smoke run).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/setup-dev.sh" >/dev/null
limit=()
[[ ${1:-} == --quick ]] && limit=(--limit 2000)
exec .venv/bin/computility sim --trace builtin:lublin_256 --network single \
  --queue fcfs,easy,conservative "${limit[@]}" --out out/demo
