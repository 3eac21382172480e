#!/usr/bin/env bash
# The README's test command, `scripts/setup-dev.sh && .venv/bin/pytest`, as one script.
# Every argument goes to pytest, e.g. `scripts/test.sh tests/unit -k devices`.
# CI runs it as `scripts/test.sh -m "not gpu and not kubernetes" -p no:cacheprovider`; with CI=true
# a skipped test fails the run (see tests/conftest.py).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup-dev.sh"
# No cd: relative paths given to pytest keep meaning what they meant in the caller's directory.
exec "$root/.venv/bin/pytest" "$@"
