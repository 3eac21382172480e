"""The file readers on arbitrary and mutated input: a valid object or one clear line, never a crash.

Task specs (YAML and JSON), network files and the four trace formats are read from what users
hand-edit, so any input must end in either a checked object or the project's own `BadInput`
(`FieldError`, `UsageError`) in one line naming the file, and the field or line at fault. Any
other exception, a multi-line message or a traceback is a defect. Inputs start from the
contract's own examples and are mutated by value (a field replaced, removed or added) and by
text (bytes cut, inserted or repeated), plus wholly arbitrary text.
"""

from __future__ import annotations

import gzip
import json
import os
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from computility.domain.errors import BadInput, FieldError
from computility.domain.network import Network
from computility.domain.workload import Workload
from computility.network import parse_network
from computility.sim.traces import FORMATS, read_trace
from computility.wire.spec import TaskSpec, parse_task_spec, task_spec_from_mapping

EXAMPLES = int(os.environ.get("COMPUTILITY_FUZZ_READER_EXAMPLES", "150"))
RANDOM = os.environ.get("COMPUTILITY_FUZZ_RANDOM", "") not in ("", "0")
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
"""A fixed seed in CI; ``COMPUTILITY_FUZZ_RANDOM=1 COMPUTILITY_FUZZ_READER_EXAMPLES=3000`` for a
long random run."""
ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "tests" / "data" / "traces"

SPEC = """\
name: train-resnet
run: python train.py --epochs 3
setup: pip install -r requirements.txt
workdir: .
image: null
envs: {SEED: "1"}
resources:
  cpus: 4
  memory: 16GB
  accelerators: A100:2
  nodes: 1
  disk: 50GB
  estimate: 30m
  estimate_on: A100-80GB
  precision: fp16
  profile: resnet50
inputs:  [{dataset: imagenet-mini, residency: any}]
outputs: [results/]
placement:
  policy: balanced
  regions: [TF, GA]
  deadline: 6h
  max_price: 50
  max_latency_ms: 20
  user_location: SH
retries: 2
timeout: 2h
"""

NETWORK = """\
format: computility-network/1
name: two-regions
currency: CNY
utc_offset_minutes: 480
intra_region: {latency_ms: 1, bandwidth_gbps: 100}
regions:
  - {id: EAST, lat: 31.2, lon: 121.5}
  - {id: WEST, lat: 30.6, lon: 104.1}
sites:
  - id: east-1
    region: EAST
    owner: acme
    pue: 1.3
    electricity_price_per_kwh: [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
                                0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3]
    carbon_kg_per_kwh: 0.55
    pools:
      - {id: cpu, device: XEON-8380, count: 160, devices_per_node: 80, price_per_cu_hour: 0.7}
      - id: gpu
        device: A100-80GB
        count: 16
        devices_per_node: 8
        price_per_cu_hour: 0.45
  - id: west-1
    region: WEST
    owner: acme
    pue: 1.2
    electricity_price_per_kwh: 0.35
    carbon_kg_per_kwh: 0.15
    pools:
      - {id: cpu, device: EPYC-7763, count: 128, price_per_cu_hour: 0.9}
links:
  - {from: EAST, to: WEST, latency_ms: 20, bandwidth_gbps: 100, egress_per_gb: 0.2}
datasets:
  - {id: imagenet, size: 150GB, sites: [east-1]}
  - {id: weights, size: 2TiB, sites: [east-1, west-1]}
demand:
  - {id: SH, lat: 31.23, lon: 121.47, latency_ms: {EAST: 5.5, WEST: 23}}
"""

TOKENS = st.sampled_from([
    "", " ", "0", "-1", "1", "1.5", "-0", "1e309", "-1e309", "nan", "inf", "NaN", "1e-320",
    "99999999999999999999999", "0x10", "1_000", "A100", "A100:2", "H100:0", "TPUv9", "null",
    "true", "~", "[]", "{}", "[1, 2]", "{a: 1}", "'", '"', ",", ":", "- x", "&a", "*a", "!!int x",
    "!!binary AAAA", "? x", "%YAML 1.1", "---", "...", "#", "\t", "\x00", "\ufeff", "\u2028",
    "30m", "2h", "1h30m", "366d", "16GB", "1.5TiB", "-5GB", "1e400GB", "2026-01-01T00:00:00",
    "2026-01-01T00:00:00+08:00", "2017-10-09 07:01:55", "2017-13-45 99:99:99", "4+", "+",
]) | st.text(max_size=12)
"""Cell and scalar values that readers have to think about."""

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.integers(-(2**70), 2**70) | TOKENS)
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(TOKENS, inner, max_size=3), max_leaves=6)
"""Values a YAML or JSON document can hold."""


# -- mutation -------------------------------------------------------------------------------------


def paths(doc: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value in `doc` (the root's is the empty path)."""
    yield here
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, (*here, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from paths(value, (*here, i))


def mutated(doc: Any, data: st.DataObject, fields: list[str]) -> Any:
    """`doc` with one value replaced, removed or given a sibling, chosen by `data`."""
    doc = json.loads(json.dumps(doc))
    path = data.draw(st.sampled_from(list(paths(doc))), label="path")
    if not path:
        return data.draw(JSONISH, label="root")
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    action = data.draw(st.sampled_from(["replace", "remove", "add"]), label="action")
    if action == "replace":
        parent[last] = data.draw(JSONISH, label="value")
    elif action == "remove":
        del parent[last]
    elif isinstance(parent, dict):
        key = data.draw(st.sampled_from(fields) | TOKENS, label="key")
        parent[key] = data.draw(JSONISH, label="value")
    else:
        parent.insert(last, data.draw(JSONISH, label="item"))
    return doc


def edited(text: str, data: st.DataObject) -> str:
    """`text` with a few bytes cut, inserted, repeated or lines swapped, chosen by `data`."""
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        at = data.draw(st.integers(0, len(text)), label="at")
        kind = data.draw(st.sampled_from(["cut", "insert", "repeat", "swap"]), label="edit")
        if kind == "cut":
            text = text[:at] + text[at + data.draw(st.integers(1, 20), label="n"):]
        elif kind == "insert":
            text = text[:at] + data.draw(TOKENS | st.text(max_size=5), label="s") + text[at:]
        elif kind == "repeat":
            text = text[:at] + text[at:at + data.draw(st.integers(1, 60), label="n")] + text[at:]
        else:
            lines = text.split("\n")
            i = data.draw(st.integers(0, len(lines) - 1), label="i")
            j = data.draw(st.integers(0, len(lines) - 1), label="j")
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


def fields_of(doc: Any) -> list[str]:
    return sorted({str(p[-1]) for p in paths(doc) if p and isinstance(p[-1], str)})


# -- judging --------------------------------------------------------------------------------------


def read_or_refuse(read: Callable[[], Any], source: str, kind: type) -> None:
    """`read()` gives a `kind`, or refuses with one line of `BadInput` that names `source`."""
    try:
        value = read()
    except BadInput as error:
        message = str(error)
        assert message and "\n" not in message, f"not one line: {message!r}"
        assert "Traceback" not in message
        assert source in message, f"names not the file: {message!r}"
        if isinstance(error, FieldError):
            assert error.line >= 1 and error.field_name.strip(), message
        return
    assert isinstance(value, kind)


# -- task specs -----------------------------------------------------------------------------------

SPEC_DOC = yaml.safe_load(SPEC)
SPEC_FIELDS = fields_of(SPEC_DOC)


def test_the_unmutated_examples_are_valid() -> None:
    assert isinstance(parse_task_spec(SPEC), TaskSpec)
    assert isinstance(parse_network(NETWORK), Network)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_is_a_task_spec_or_one_line_naming_the_file(text: str) -> None:
    read_or_refuse(lambda: parse_task_spec(text, "spec.yaml"), "spec.yaml", TaskSpec)


@FUZZ
@given(st.data())
def test_a_task_spec_with_a_field_mutated_reads_or_names_the_field(data: st.DataObject) -> None:
    doc = mutated(SPEC_DOC, data, SPEC_FIELDS)
    as_json = data.draw(st.booleans(), label="json")
    text = json.dumps(doc) if as_json else yaml.safe_dump(doc, allow_unicode=True)
    read_or_refuse(lambda: parse_task_spec(text, "spec.yaml"), "spec.yaml", TaskSpec)
    # The REST API checks the JSON body it decoded with the same rules.
    read_or_refuse(lambda: task_spec_from_mapping(doc, "body"), "body", TaskSpec)


@FUZZ
@given(st.data())
def test_a_task_spec_with_its_text_edited_reads_or_names_the_line(data: st.DataObject) -> None:
    text = edited(SPEC, data)
    read_or_refuse(lambda: parse_task_spec(text, "spec.yaml"), "spec.yaml", TaskSpec)


# -- network files --------------------------------------------------------------------------------

NETWORK_DOC = yaml.safe_load(NETWORK)
NETWORK_FIELDS = fields_of(NETWORK_DOC)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_is_a_network_or_one_line_naming_the_file(text: str) -> None:
    read_or_refuse(lambda: parse_network(text, "net.yaml"), "net.yaml", Network)


@FUZZ
@given(st.data())
def test_a_network_with_a_field_mutated_reads_or_names_the_field(data: st.DataObject) -> None:
    text = yaml.safe_dump(mutated(NETWORK_DOC, data, NETWORK_FIELDS), allow_unicode=True)
    read_or_refuse(lambda: parse_network(text, "net.yaml"), "net.yaml", Network)


@FUZZ
@given(st.data())
def test_a_network_with_its_text_edited_reads_or_names_the_line(data: st.DataObject) -> None:
    text = edited(NETWORK, data)
    read_or_refuse(lambda: parse_network(text, "net.yaml"), "net.yaml", Network)


@pytest.mark.parametrize("depth", [50, 5000])
def test_deeply_nested_documents_are_refused_in_one_line(depth: int) -> None:
    deep = "[" * depth + "]" * depth
    for text in (deep, f"run: echo\nenvs: {deep}\n", f"resources: {{cpus: {deep}}}\nrun: x\n"):
        read_or_refuse(lambda t=text: parse_task_spec(t, "spec.yaml"), "spec.yaml", TaskSpec)
        read_or_refuse(lambda t=text: parse_network(t, "net.yaml"), "net.yaml", Network)


# -- traces ---------------------------------------------------------------------------------------

TRACE_SEEDS = {
    "swf": "; MaxProcs: 64\n;\n" + "".join(
        (TRACES / "small.swf").read_text().splitlines(keepends=True)[:12]),
    "alibaba": "".join((TRACES / "openb_pod_list_tiny.csv").read_text()
                       .splitlines(keepends=True)[:6]),
    "philly": "".join((TRACES / "philly_tiny.csv").read_text().splitlines(keepends=True)[:6]),
    "csv": "".join((TRACES / "tasks.csv").read_text().splitlines(keepends=True)[:6]),
}
@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every example's file (a function-scoped one would not reset per example)."""
    return tmp_path_factory.mktemp("traces")


def trace_file(scratch: Path, name: str, content: str | bytes, packed: bool = False) -> Path:
    path = scratch / name
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    path.write_bytes(gzip.compress(raw) if packed else raw)
    return path


def cells_mutated(text: str, fmt: str, data: st.DataObject) -> str:
    """`text` with a few cells (whitespace-separated in SWF, commas elsewhere) replaced."""
    sep = " " if fmt == "swf" else ","
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(1, 4), label="cells")):
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        cells = lines[i].split() if fmt == "swf" else lines[i].split(",")
        if not cells:
            continue
        j = data.draw(st.integers(0, len(cells) - 1), label="cell")
        choice = data.draw(st.sampled_from(["replace", "drop", "add"]), label="how")
        if choice == "replace":
            cells[j] = data.draw(TOKENS, label="token")
        elif choice == "drop":
            del cells[j]
        else:
            cells.insert(j, data.draw(TOKENS, label="token"))
        lines[i] = sep.join(cells)
    return "\n".join(lines)


@FUZZ
@given(st.sampled_from(FORMATS), st.data())
def test_a_trace_with_cells_mutated_reads_or_names_the_line_and_field(
    scratch: Path, fmt: str, data: st.DataObject
) -> None:
    text = cells_mutated(TRACE_SEEDS[fmt], fmt, data)
    path = trace_file(scratch, f"t-{fmt}", text, packed=data.draw(st.booleans(), label="gzip"))
    given_fmt = data.draw(st.sampled_from([fmt, "auto"]), label="format")
    read_or_refuse(lambda: read_trace(path, given_fmt), str(path), Workload)


@FUZZ
@given(st.sampled_from(FORMATS), st.data())
def test_a_trace_with_its_text_edited_reads_or_names_the_line(
    scratch: Path, fmt: str, data: st.DataObject
) -> None:
    path = trace_file(scratch, f"e-{fmt}", edited(TRACE_SEEDS[fmt], data))
    read_or_refuse(lambda: read_trace(path, fmt), str(path), Workload)


@FUZZ
@given(st.sampled_from([*FORMATS, "auto"]), st.binary(max_size=200) | st.text(
    alphabet=string.printable, max_size=200).map(str.encode), st.booleans(), st.booleans())
def test_arbitrary_bytes_plain_gzip_or_truncated_gzip_are_a_trace_or_one_line(
    scratch: Path, fmt: str, raw: bytes, packed: bool, truncated: bool
) -> None:
    content = gzip.compress(raw) if packed else raw
    if packed and truncated:
        assume(len(content) > 12)
        content = content[: len(content) // 2]
    path = trace_file(scratch, "bytes", content)
    read_or_refuse(lambda: read_trace(path, fmt), str(path), Workload)
