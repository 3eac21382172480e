"""What an operator may ask to validate, checked field by field before any run exists.

A run replays one workload (a trace shipped with the package, ``synthetic:N`` drawn by the
simulator, or an uploaded SWF or Computility CSV file) on one network (``default``, ``single``
for a trace's own machine, or ``generated:N``) under one or more placement policies, with one
queue discipline. Every refusal names its form field and says what was expected, so the form
can be shown again with the message beside the field.

The service does not import the simulator (the layering forbids it): an uploaded trace is read
by the simulator's worker process (`computility.sim.worker`, command ``check``), exactly as the
run will read it, and its first bad line is reported before a run is created.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from computility.scheduler import QUEUE_DISCIPLINES
from computility.scheduler.policies import PLACEMENT_POLICIES

MAX_SYNTHETIC = 100_000
MAX_GENERATED_SITES = 5_000
MAX_LIMIT = 10_000_000
MAX_SEED = 2**31 - 1
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Largest uploaded trace (compressed or not): about a million SWF records gzipped."""
CHECK_TIMEOUT_S = 300.0
UPLOAD_FORMATS = ("auto", "swf", "csv")
SOURCES = ("bundled", "synthetic", "upload")
NETWORKS = ("default", "single", "generated")
DEFAULT_POLICIES = ("cheapest", "greenest", "balanced")
WORKER_MODULE = "computility.sim.worker"
_SUFFIXES = (".swf.gz", ".csv.gz", ".swf", ".csv", ".gz")


def bundled_traces() -> tuple[str, ...]:
    """The traces shipped inside the package, by name (``lublin_256``)."""
    folder = resources.files("computility") / "data" / "traces"
    return tuple(sorted(p.name.split(".")[0] for p in folder.iterdir()
                        if p.name.endswith(".gz")))


@dataclass(frozen=True)
class FieldProblem:
    """A refused form field: the message key and its values (translated by the page)."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunChoices:
    """A checked run request (before an upload, if any, is stored and read)."""

    source: str
    trace: str  # builtin:NAME for a bundled trace; "" otherwise
    synthetic: int | None
    fmt: str
    network: str
    policies: tuple[str, ...]
    queue: str
    limit: int | None
    seed: int

    def label(self, upload_name: str | None) -> str:
        """The run's workload as listed: ``builtin:NAME``, ``synthetic:N`` or ``upload:NAME``."""
        if self.synthetic is not None:
            return f"synthetic:{self.synthetic}"
        return self.trace or f"upload:{upload_name or 'trace'}"

    def options(self, upload: str | None, upload_name: str | None) -> dict[str, Any]:
        return {"source": self.source, "trace": self.trace, "synthetic": self.synthetic,
                "fmt": self.fmt, "queue": self.queue, "limit": self.limit, "seed": self.seed,
                "upload": upload, "upload_name": upload_name}


def _whole(form: dict[str, str], name: str, low: int, high: int, problems: dict[str, FieldProblem],
           default: int | None = None) -> int | None:
    text = form.get(name, "").strip()
    if not text:
        if default is None:
            problems[name] = FieldProblem("validation.error.required")
        return default
    if not re.fullmatch(r"\d{1,12}", text) or not low <= int(text) <= high:
        problems[name] = FieldProblem("validation.error.whole", {"low": f"{low:,}",
                                                                  "high": f"{high:,}",
                                                                  "got": text[:40]})
        return default
    return int(text)


def parse_choices(form: dict[str, str], policies: list[str],
                  has_upload: bool) -> tuple[RunChoices | None, dict[str, FieldProblem]]:
    """The run the form asks for, or the problems of its fields (keyed by field name)."""
    problems: dict[str, FieldProblem] = {}
    source = form.get("source", "")
    if source not in SOURCES:
        problems["source"] = FieldProblem("validation.error.source")
    trace, synthetic, fmt = "", None, "auto"
    if source == "bundled":
        name = form.get("bundled", "")
        if name not in bundled_traces():
            problems["bundled"] = FieldProblem("validation.error.bundled",
                                               {"have": ", ".join(bundled_traces())})
        trace = f"builtin:{name}"
    elif source == "synthetic":
        synthetic = _whole(form, "synthetic", 1, MAX_SYNTHETIC, problems)
    elif source == "upload":
        fmt = form.get("format", "auto")
        if fmt not in UPLOAD_FORMATS:
            problems["format"] = FieldProblem("validation.error.choice",
                                              {"choices": ", ".join(UPLOAD_FORMATS)})
        if not has_upload:
            problems["upload"] = FieldProblem("validation.error.no_file")
    network = form.get("network", "default")
    if network not in NETWORKS:
        problems["network"] = FieldProblem("validation.error.choice",
                                           {"choices": ", ".join(NETWORKS)})
    elif network == "generated":
        sites = _whole(form, "sites", 1, MAX_GENERATED_SITES, problems)
        network = f"generated:{sites}"
    elif network == "single" and source == "synthetic":
        problems["network"] = FieldProblem("validation.error.single_needs_trace")
    chosen = tuple(p for p in PLACEMENT_POLICIES if p in policies)
    unknown = [p for p in policies if p not in PLACEMENT_POLICIES]
    if unknown or not chosen:
        problems["policy"] = FieldProblem("validation.error.policies",
                                          {"choices": ", ".join(PLACEMENT_POLICIES)})
    queue = form.get("queue", "easy")
    if queue not in QUEUE_DISCIPLINES:
        problems["queue"] = FieldProblem("validation.error.choice",
                                         {"choices": ", ".join(QUEUE_DISCIPLINES)})
    limit = _whole(form, "limit", 1, MAX_LIMIT, problems, default=0) or None
    seed = _whole(form, "seed", 0, MAX_SEED, problems, default=0) or 0
    if problems:
        return None, problems
    if synthetic is not None and limit is not None:
        synthetic, limit = min(synthetic, limit), None  # a limit caps a synthetic workload
    return RunChoices(source=source, trace=trace, synthetic=synthetic, fmt=fmt, network=network,
                      policies=chosen, queue=queue, limit=limit, seed=seed), {}


def uploads_dir(data_dir: Path) -> Path:
    return data_dir / "validation" / "uploads"


def safe_suffix(filename: str) -> str:
    """The file's trace suffix (``.swf``, ``.csv.gz``...), which format detection reads; the
    rest of the name is the user's and never becomes part of a path."""
    lower = filename.lower()
    return next((s for s in _SUFFIXES if lower.endswith(s)), "")


class UploadTooLarge(Exception):
    """The uploaded file is over `MAX_UPLOAD_BYTES`."""


def store_upload(source: IO[bytes], filename: str, data_dir: Path,
                 limit: int = MAX_UPLOAD_BYTES) -> Path:
    """Copy an uploaded file under the data folder with a fresh random name; its path."""
    folder = uploads_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(12)}{safe_suffix(filename)}"
    copied = 0
    try:
        with open(path, "wb") as out:
            while chunk := source.read(1 << 20):
                copied += len(chunk)
                if copied > limit:
                    raise UploadTooLarge()
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class TraceCheck:
    """What reading an uploaded trace found: its job count, or the first problem: the
    simulator's message and, for a bad value, its line and field; or, when the worker gave no
    answer, `key`, a message key of the page."""

    jobs: int | None = None
    key: str | None = None
    message: str | None = None
    line: int | None = None
    field: str | None = None
    expected: str | None = None
    got: str | None = None


def worker_command(python: str = sys.executable) -> list[str]:
    return [python, "-m", WORKER_MODULE]


def check_trace(path: Path, fmt: str, limit: int | None, shown_as: str) -> TraceCheck:
    """Read the stored trace in a worker process as the run will; `shown_as` replaces the
    stored path in messages (the operator knows the file by its own name)."""
    request = json.dumps({"command": "check", "trace": str(path), "fmt": fmt, "limit": limit})
    try:
        done = subprocess.run(worker_command(), input=request, capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return TraceCheck(key="validation.error.check_timeout")
    answer: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        try:
            answer = json.loads(line)
        except ValueError:
            continue
    if answer.get("event") == "checked":
        return TraceCheck(jobs=int(answer["jobs"]))
    if answer.get("event") != "error":
        return TraceCheck(key="validation.error.check_failed")
    message = str(answer.get("message", "")).replace(str(path), shown_as)
    return TraceCheck(message=message, line=answer.get("line"), field=answer.get("field"),
                      expected=answer.get("expected"), got=answer.get("got"))


def discard(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
