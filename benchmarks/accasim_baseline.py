#!/usr/bin/env python3
"""Run the AccaSim HPC workload simulator on an SWF trace as an external baseline.

Usage::

    python benchmarks/accasim_baseline.py --trace /work/shared/data/swf_hpc/lublin_256.swf \
        --dispatcher easy --out /tmp/accasim-results/lublin_256-easy.json

The script needs AccaSim (``pip install accasim``, tested with 1.1.3) in the Python
that runs it; it is *not* a dependency of computility.  See docs/accasim-notes.md.

What it does:

* models the machine as ONE node with ``--cores`` cores (default 256); every SWF
  processor is one AccaSim core (``equivalence = {"processor": {"core": 1}}``);
* keeps SWF submit times as they are (``start_time = 0`` in the system config, so
  AccaSim's clock is the trace's own clock, origin = t=0 of SWF field 2);
* if SWF field 9 (requested time) is missing (-1 / 0), sets it to the run time, so
  AccaSim's ``expected_duration`` = run time (perfect estimates);
* runs ``FirstInFirstOut`` (``--dispatcher fifo``) or ``EASYBackfilling``
  (``--dispatcher easy``) with the ``FirstFit`` allocator;
* times the AccaSim run (construction of the simulator + ``start_simulation()``);
* reads back AccaSim's own per-job dispatching-plan file (written in an integer
  format configured here) and writes a JSON summary with per-job start times.

Exit status: 0 ok, 2 bad arguments, 3 AccaSim not importable, 4 AccaSim failed.
"""

from __future__ import annotations

import argparse
import collections
import collections.abc
import json
import os
import sys
import tempfile
import time

# AccaSim 1.1.3 does ``from collections import Mapping`` (removed in Python 3.10).
# Restore the old aliases before importing it; this does not change AccaSim's logic.
for _name in ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Iterable", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

try:
    import accasim
    from accasim.base.allocator_class import BestFit, FirstFit
    from accasim.base.scheduler_class import EASYBackfilling, FirstInFirstOut
    from accasim.base.simulator_class import Simulator
    from accasim.utils.reader_class import DefaultTweaker
except ImportError as exc:  # pragma: no cover - depends on the environment
    print(f"AccaSim is not importable ({exc}); install it with: pip install accasim")
    sys.exit(3)

SCHED_PREFIX = "sched-"
STATS_PREFIX = "stats-"

# Per-job line written by AccaSim (EventManager._schd_write_preprocessor) when a job ends.
# Integer seconds instead of AccaSim's default local-time date strings.
SCHEDULE_OUTPUT = {
    "format": "{job_id};{queue_time};{start_time};{end_time};{total_cpu};{expected_duration}",
    "attributes": {
        "job_id": ("id", "str"),
        "queue_time": ("queued_time", "int"),
        "start_time": ("start_time", "int"),
        "end_time": ("end_time", "int"),
        "total_cpu": ("core", "int"),
        "expected_duration": ("expected_duration", "int"),
    },
}


class RequestedIsRuntimeTweaker(DefaultTweaker):
    """AccaSim's default SWF tweaker, plus: missing requested time (<= 0) := run time."""

    def __init__(self, start_time, system_resources=None, equivalence=None, fix_requested=True):
        super().__init__(start_time, system_resources, equivalence)
        self.fix_requested = fix_requested
        self.fixed = 0

    def tweak_function(self, _dict):
        _dict = super().tweak_function(_dict)
        if self.fix_requested and _dict.get("requested_time", -1) <= 0:
            _dict["requested_time"] = _dict["duration"]
            self.fixed += 1
        return _dict


def read_swf_ids(path, max_lines=None):
    """Job ids, submit times and run times from the SWF file (for drop detection).

    ``max_lines`` counts every line, header comments included, as AccaSim does."""
    jobs = {}
    with open(path) as fh:
        for i, line in enumerate(fh):
            if max_lines and i >= max_lines:
                break
            s = line.strip()
            if not s or s.startswith(";"):
                continue
            f = s.split()
            jobs[f[0]] = (int(float(f[1])), int(float(f[3])))
    return jobs


def parse_sched(path):
    rows = {}
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            jid, q, st, en, cpu, exp = line.split(";")
            rows[jid] = (int(q), int(st), int(en), int(cpu), int(exp))
    return rows


def parse_stats(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as fh:
        for line in fh:
            if ":" in line:
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", required=True, help="SWF workload file")
    ap.add_argument("--dispatcher", required=True, choices=["fifo", "easy"])
    ap.add_argument("--out", required=True, help="JSON summary to write")
    ap.add_argument("--cores", type=int, default=256, help="cores of the single node (default 256)")
    ap.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="number of identical nodes of --cores cores each (default 1)",
    )
    ap.add_argument(
        "--allocator",
        choices=["ff", "bf"],
        default="ff",
        help="AccaSim allocator: FirstFit (default) or BestFit",
    )
    ap.add_argument(
        "--keep-requested",
        action="store_true",
        help="do NOT replace a missing requested time (-1) by the run time",
    )
    ap.add_argument(
        "--results-dir",
        default=None,
        help="where AccaSim writes its own files (default: a temp dir, removed)",
    )
    ap.add_argument(
        "--max-lines",
        type=int,
        default=None,
        help="only read the first N lines of the trace, header lines included "
        "(AccaSim's max_lines)",
    )
    args = ap.parse_args(argv)

    trace = os.path.abspath(args.trace)
    if not os.path.isfile(trace):
        print(f"no such trace: {trace}", file=sys.stderr)
        return 2

    tmp = None
    if args.results_dir:
        results_dir = os.path.abspath(args.results_dir)
        os.makedirs(results_dir, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="accasim-")
        results_dir = tmp.name

    sys_config = {
        "system_name": f"{args.nodes}x{args.cores}-core",
        "groups": {"g0": {"core": args.cores}},
        "resources": {"g0": args.nodes},
        "equivalence": {"processor": {"core": 1}},
        "start_time": 0,
    }
    sys_config_path = os.path.join(results_dir, "sys_config.json")
    with open(sys_config_path, "w") as fh:
        json.dump(sys_config, fh, indent=1)

    alloc = FirstFit() if args.allocator == "ff" else BestFit()
    dispatcher = FirstInFirstOut(alloc) if args.dispatcher == "fifo" else EASYBackfilling(alloc)

    extra = {}
    if args.max_lines:
        extra["max_lines"] = args.max_lines

    t0 = time.perf_counter()
    # The tweaker needs the resource manager only for a type check; AccaSim builds the
    # real one from sys_config inside Simulator.__init__.
    tweaker = RequestedIsRuntimeTweaker(
        0, None, sys_config["equivalence"], fix_requested=not args.keep_requested
    )
    try:
        sim = Simulator(
            trace,
            sys_config_path,
            dispatcher,
            tweak_function=tweaker,
            RESULTS_FOLDER_PATH=results_dir,
            SCHEDULE_OUTPUT=SCHEDULE_OUTPUT,
            scheduling_output=True,
            statistics_output=True,
            pprint_output=False,
            benchmark_output=False,
            show_statistics=False,
            **extra,
        )
        sim.start_simulation(system_status=False)
    except Exception as exc:  # AccaSim prints its own reason too
        print(f"AccaSim run failed: {exc!r}", file=sys.stderr)
        return 4
    wall_s = time.perf_counter() - t0

    base = os.path.basename(trace)
    rows = parse_sched(os.path.join(results_dir, SCHED_PREFIX + base))
    stats = parse_stats(os.path.join(results_dir, STATS_PREFIX + base))

    swf = read_swf_ids(trace, args.max_lines)
    dropped = sorted((j for j in swf if j not in rows), key=lambda x: int(x))

    starts, waits, bslds = {}, [], []
    for jid in sorted(rows, key=lambda x: int(x)):
        q, st, en, _cpu, _exp = rows[jid]
        wait = st - q
        run = en - st
        starts[jid] = st
        waits.append(wait)
        bslds.append(max(1.0, (wait + run) / max(run, 10)))
    n = len(rows)

    summary = {
        "dispatcher": args.dispatcher,
        "wall_s": round(wall_s, 3),
        "jobs": n,
        "mean_wait_s": (sum(waits) / n) if n else None,
        "mean_bounded_slowdown": (sum(bslds) / n) if n else None,
        "starts": starts,
        # --- extra context (not needed for the job-by-job comparison) ---
        "time_origin": "SWF field-2 clock (t=0 of the trace); AccaSim start_time=0, no shift",
        "accasim_version": getattr(accasim, "__version__", "?"),
        "accasim_dispatcher_id": str(dispatcher),
        "python": sys.version.split()[0],
        "trace": trace,
        "system": sys_config,
        "requested_time_set_to_runtime": tweaker.fixed,
        "dropped_job_ids": dropped,
        "accasim_internal_sim_time_s": sim.end_simulation_time - sim.start_simulation_time
        if sim.end_simulation_time is not None
        else None,
        "accasim_stats": stats,
        "ends": {jid: rows[jid][2] for jid in starts},
    }
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        json.dump(summary, fh, indent=1)
    print(
        f"{args.dispatcher}: {n} jobs ({len(dropped)} dropped), wall {wall_s:.2f} s, "
        f"mean wait {summary['mean_wait_s']:.1f} s, "
        f"mean bounded slowdown {summary['mean_bounded_slowdown']:.2f} -> {out}"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
