#!/usr/bin/env bash
# The README's main job: set up, then `computility demo`: the service on a temporary database,
# five emulated national clusters joined by a real agent on this machine, a sample workload of
# real tasks from two tenants, and the summary (where each task ran and why, cost, energy,
# carbon, the alternatives it beat, the bill per tenant). Extra arguments go to `computility
# demo` (`--keep` leaves the network running; `--json` prints the summary as JSON).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/setup-dev.sh" >/dev/null
exec .venv/bin/computility demo "$@"
