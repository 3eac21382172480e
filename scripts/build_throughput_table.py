"""Write the embedded Gavel throughput table from ../shared/data, so it is reproducible.

The output is ``src/computility/data/throughput/gavel_osdi20.csv``: Gavel's isolated (run-alone)
training throughputs on its consolidated worker types, with the worker type renamed to the
catalogue name it resolves to. The ``*_unconsolidated`` worker types (a multi-GPU job spread over
several servers) are left out: every pool a Computility site offers packs a job onto one node.

Usage: ``.venv/bin/python scripts/build_throughput_table.py [--data DIR] [--out FILE]``
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path("gpu_throughput_tables") / "gavel_osdi20" / "isolated_throughputs_long.csv"
OUT = ROOT / "src" / "computility" / "data" / "throughput" / "gavel_osdi20.csv"
COLUMNS = ("profile", "scale_factor", "device", "steps_per_s")
# Gavel worker type -> catalogue name. `v100` is the family name: Gavel measured on 16 GB SXM2
# parts, and the figures hold for the 32 GB variant too (the jobs fit in 16 GB).
DEVICES = {"k80": "K80", "p100": "P100-16GB", "v100": "V100"}


def build(source_text: str) -> str:
    """The CSV text of the embedded table from the text of Gavel's long table."""
    rows: list[tuple[str, int, int, str]] = []
    order = list(DEVICES)
    for record in csv.DictReader(io.StringIO(source_text)):
        worker = record["gpu_type"]
        if worker not in DEVICES:
            continue
        steps = record["steps_per_sec"]
        float(steps)  # refuse a non-number here rather than ship it
        rows.append(
            (record["job_type"], int(record["scale_factor_gpus"]), order.index(worker), steps)
        )
    rows.sort()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for profile, scale, worker_index, steps in rows:
        writer.writerow((profile, scale, DEVICES[order[worker_index]], steps))
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    text = (args.data / SOURCE).read_text(encoding="utf-8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(build(text), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
