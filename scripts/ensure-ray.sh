#!/usr/bin/env bash
# Make sure a Ray head answers the Jobs REST API at http://127.0.0.1:8265, as the ray backend's
# contract tests expect. Idempotent: if one answers, do nothing but say so.
#
# Ray lives in its own virtualenv (.venv-ray in the repo root), not in .venv: the agent only
# speaks HTTP to the head, and Ray's pinned dependencies (grpcio, protobuf, pydantic, aiohttp)
# must not constrain the project's own. The head is a single local node: 2 CPUs, no GPUs, the
# dashboard (which serves the Jobs API) bound to 127.0.0.1 only. Works as root in a container.
# Ray itself turns --node-ip-address 127.0.0.1 into the host's reachable address and its gRPC
# ports (GCS, raylet, agents) listen on all interfaces: run it on a host or in a container whose
# network you trust. Stop it with: .venv-ray/bin/ray stop
#
# Environment: COMPUTILITY_RAY_VERSION (default below), COMPUTILITY_RAY_PYTHON (interpreter for the venv),
# COMPUTILITY_RAY_NUM_CPUS (default 2), COMPUTILITY_RAY_GCS_PORT (default 6385).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/.venv-ray
ray_version=${COMPUTILITY_RAY_VERSION:-2.58.0}   # wheels for cp311 manylinux x86_64
port=8265
gcs_port=${COMPUTILITY_RAY_GCS_PORT:-6385}   # not Ray's default 6379, which Redis may hold
address=http://127.0.0.1:$port
t0=$(date +%s%N)

elapsed() {
  local ms=$((($(date +%s%N) - t0) / 1000000))
  printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
say() { echo >&2 "ensure-ray: $* ($(elapsed) s)"; }
answers() { curl -fsS --max-time 3 "$address/api/version" >/dev/null 2>&1; }
jobs_api() { curl -fsS --max-time 3 "$address/api/jobs/" >/dev/null 2>&1; }

if answers && jobs_api; then
  say "a Ray head answers at $address: $(curl -fsS --max-time 3 "$address/api/version")"
  exit 0
fi

if ! [[ -x $venv/bin/ray ]] || ! "$venv/bin/python" -c \
    "import ray, sys; sys.exit(ray.__version__ != '$ray_version')" 2>/dev/null; then
  python=${COMPUTILITY_RAY_PYTHON:-$(command -v python3.11 || command -v python3)}
  say "creating $venv with $($python -V 2>&1) and ray[default]==$ray_version"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q "ray[default]==$ray_version"
  say "installed ray $("$venv/bin/python" -c 'import ray; print(ray.__version__)')"
fi

# The head's processes inherit this environment; put the venv first on PATH so that `python3`
# in a job's entrypoint (the backend's wrapper) finds a Python even on a host without one.
# RAY_DISABLE_DOCKER_CPU_WARNING: inside a container Ray warns about cgroup CPU quotas.
# --object-store-memory: keep Ray from sizing the store to 30% of RAM and /dev/shm.
export PATH=$venv/bin:$PATH RAY_DISABLE_DOCKER_CPU_WARNING=1 RAY_USAGE_STATS_ENABLED=0
say "starting a Ray head on 127.0.0.1 (dashboard and Jobs API on port $port)"
"$venv/bin/ray" start --head \
  --node-ip-address 127.0.0.1 --port "$gcs_port" \
  --dashboard-host 127.0.0.1 --dashboard-port "$port" --include-dashboard true \
  --num-cpus "${COMPUTILITY_RAY_NUM_CPUS:-2}" --num-gpus 0 \
  --object-store-memory $((256 * 1024 * 1024)) \
  --disable-usage-stats >/dev/null

for _ in $(seq 1 120); do
  if answers && jobs_api; then
    say "Ray head up at $address: $(curl -fsS --max-time 3 "$address/api/version")"
    exit 0
  fi
  sleep 1
done
say "the Ray head did not answer at $address/api/jobs/ (logs: /tmp/ray/session_latest/logs;
  a half-dead head from an earlier run: $venv/bin/ray stop)"
exit 1
