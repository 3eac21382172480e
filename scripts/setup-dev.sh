#!/usr/bin/env bash
# Create or refresh the development virtualenv `.venv` in the repository root:
#   python3 -m venv .venv (if missing or broken), upgrade pip, pip install -e '.[dev]'.
# Re-running is cheap: the install is skipped while pyproject.toml and the interpreter are
# unchanged and the tools are present. `--force` (or SETUP_DEV_FORCE=1) reinstalls anyway;
# PYTHON=/path/to/python3.11 picks the interpreter used to create the venv.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

force=${SETUP_DEV_FORCE:-0}
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo >&2 "setup-dev: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

python=${PYTHON:-python3}
venv_py=.venv/bin/python

if [[ ! -x $venv_py ]] || ! "$venv_py" -c 'pass' 2>/dev/null; then
  echo >&2 "setup-dev: creating .venv with $("$python" -V 2>&1) ($(command -v "$python"))"
  "$python" -m venv --clear .venv
fi

stamp=.venv/.computility-setup-stamp
want="$("$venv_py" -VV | head -n 1) | pyproject.toml $(sha256sum pyproject.toml | cut -d' ' -f1)"
tools_present() {
  local tool
  for tool in pytest ruff mypy lint-imports; do
    [[ -x .venv/bin/$tool ]] || return 1
  done
  # find_spec does not execute the package, so a half-edited src/ cannot break this check.
  "$venv_py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("computility") is None)' \
    2>/dev/null
}

if [[ $force != 1 && -f $stamp && "$(cat "$stamp")" == "$want" ]] && tools_present; then
  echo >&2 "setup-dev: .venv is up to date (scripts/setup-dev.sh --force reinstalls)"
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
"$venv_py" -m pip install --upgrade pip
"$venv_py" -m pip install -e '.[dev]'
printf '%s\n' "$want" >"$stamp"
echo >&2 "setup-dev: .venv ready ($("$venv_py" -V))"
