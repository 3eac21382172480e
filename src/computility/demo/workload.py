"""The demo's sample workload: a handful of real tasks from two tenants, each chosen to show one
thing the network decides.

- CPU work under each placement policy (cheapest, fastest, greenest, balanced);
- a data-heavy task whose 350 GB dataset lives at one site (``qy-data``): moving it would cost
  more and take longer than running where it is;
- a deadline-flexible batch task (greenest, 12 h of slack);
- a GPU task on emulated A100s;
- one task that fails on its first attempt and succeeds when retried.

Every task really runs on this machine (the sites are emulated, the processes are not); the
scripts are small so the whole demo takes seconds, and their ``estimate`` states the size of
the job they stand for, which is what quotes and placement weigh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PY = '"$COMPUTILITY_PYTHON"'
REF_CPU = "EPYC-7763"
"""The CPU the CPU tasks' estimates were measured on, so run times scale by each site's cores."""

PRIMES = """\
import os, sys
n = int(sys.argv[1])
sieve = bytearray([1]) * (n + 1)
sieve[0:2] = b"\\x00\\x00"
for i in range(2, int(n ** 0.5) + 1):
    if sieve[i]:
        sieve[i * i::i] = bytearray(len(range(i * i, n + 1, i)))
print(f"{sum(sieve)} primes below {n} on {os.environ['COMPUTILITY_SITE']}")
"""

MONTHLY_MEANS = """\
import csv, os
from collections import defaultdict
path = os.environ.get("COMPUTILITY_INPUT_ERA5_CHINA_2023")
if not path:
    raise SystemExit("dataset era5-china-2023 is not held at this site")
sums, counts = defaultdict(float), defaultdict(int)
with open(os.path.join(path, "t2m-daily.csv")) as f:
    for row in csv.DictReader(f):
        month = min(12, (int(row["day"]) - 1) // 31 + 1)
        sums[row["province"], month] += float(row["t2m_c"])
        counts[row["province"], month] += 1
os.makedirs("results", exist_ok=True)
with open("results/monthly-means.csv", "w") as out:
    out.write("province,month,t2m_mean_c\\n")
    for key in sorted(sums):
        out.write(f"{key[0]},{key[1]},{sums[key] / counts[key]:.2f}\\n")
print(f"{len(sums)} province-months from {sum(counts.values())} rows")
"""

MATMUL = """\
import os, random
random.seed(1)
n = 90
a = [[random.random() for _ in range(n)] for _ in range(n)]
c = [[sum(x * y for x, y in zip(row, col)) for col in zip(*a)] for row in a]
print(f"fine-tuned 1 epoch on GPU {os.environ.get('CUDA_VISIBLE_DEVICES')} "
      f"of {os.environ['COMPUTILITY_SITE']}: trace {sum(c[i][i] for i in range(n)):.1f}")
"""

FLAKY = """\
import os, sys
if os.environ["COMPUTILITY_ATTEMPT_NUMBER"] == "1":
    print("shard 3 unreadable: transient I/O error", file=sys.stderr)
    sys.exit(1)
print("preprocessed 12 shards")
"""


@dataclass(frozen=True)
class DemoTask:
    tenant: str
    shows: str
    """What this task demonstrates, in the summary's words."""
    spec: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


def sample() -> list[DemoTask]:
    """The workload, in the order it is submitted."""
    return [
        DemoTask("climate-lab", "cheapest CPU", {
            "name": "primes-cheap", "run": f"{PY} primes.py 3000000",
            "resources": {"cpus": 16, "estimate_on": REF_CPU, "estimate": "2h"},
            "placement": {"policy": "cheapest"}}, {"primes.py": PRIMES}),
        DemoTask("climate-lab", "fastest CPU", {
            "name": "primes-fast", "run": f"{PY} primes.py 3000000",
            "resources": {"cpus": 16, "estimate_on": REF_CPU, "estimate": "2h"},
            "placement": {"policy": "fastest"}}, {"primes.py": PRIMES}),
        DemoTask("climate-lab", "data stays put", {
            "name": "era5-monthly-means", "run": f"{PY} means.py",
            "resources": {"cpus": 8, "estimate_on": REF_CPU, "estimate": "1h"},
            "inputs": [{"dataset": "era5-china-2023", "residency": "any"}],
            "outputs": ["results/"]}, {"means.py": MONTHLY_MEANS}),
        DemoTask("climate-lab", "deadline-flexible", {
            "name": "downscale-batch", "run": f"{PY} primes.py 2000000",
            "resources": {"cpus": 32, "estimate_on": REF_CPU, "estimate": "3h"},
            "placement": {"policy": "greenest", "deadline": "12h"}}, {"primes.py": PRIMES}),
        DemoTask("vision-startup", "GPU", {
            "name": "resnet-finetune", "run": f"{PY} train.py",
            "resources": {"cpus": 8, "accelerators": "A100:1", "estimate": "45m"},
            "placement": {"policy": "fastest"}}, {"train.py": MATMUL}),
        DemoTask("vision-startup", "retried after a failure", {
            "name": "flaky-preprocess", "run": f"{PY} prep.py", "retries": 1,
            "resources": {"cpus": 4, "estimate_on": REF_CPU, "estimate": "20m"}},
                 {"prep.py": FLAKY}),
        DemoTask("vision-startup", "greenest CPU", {
            "name": "thumbnails-green", "run": f"{PY} primes.py 1500000",
            "resources": {"cpus": 8, "estimate_on": REF_CPU, "estimate": "30m"},
            "placement": {"policy": "greenest"}}, {"primes.py": PRIMES}),
        DemoTask("vision-startup", "balanced CPU", {
            "name": "eval-balanced", "run": f"{PY} primes.py 1500000",
            "resources": {"cpus": 8, "estimate_on": REF_CPU, "estimate": "30m"},
            "placement": {"policy": "balanced", "user_location": "SH"}},
                 {"primes.py": PRIMES}),
    ]


def write_workdir(task: DemoTask, root: Path) -> Path:
    """The task's files in a directory of their own, for upload as its ``workdir``."""
    workdir = root / str(task.spec["name"])
    workdir.mkdir(parents=True, exist_ok=True)
    for name, text in task.files.items():
        (workdir / name).write_text(text, encoding="utf-8")
    return workdir
