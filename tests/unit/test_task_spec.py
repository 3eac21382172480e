"""The task spec of CONTRACT.md: every form it allows is read and normalised, every mistake is one
located line naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from computility.domain.errors import BadInput, FieldError
from computility.wire import parse_duration_s, parse_task_spec
from computility.wire.spec import task_spec_from_mapping

CONTRACT_EXAMPLE = """\
name: train-resnet
run: python train.py --epochs 3        # shell command (required)
setup: pip install -r requirements.txt # optional
workdir: .                             # optional: packed and uploaded with the task
image: null                            # reserved: container image, for backends that support it
envs: {SEED: "1"}
resources:
  cpus: 4            # or "4+" (at least)
  memory: 16GB
  accelerators: A100:2          # or [A100:2, H100:1] (preference order) or {A100: 2, L40S: 4} (any)
  nodes: 1                      # reserved: multi-node tasks
  disk: 50GB
  estimate: 30m                 # expected run time on estimate_on (default: timeout)
  estimate_on: A100-80GB        # reference device for the estimate
  precision: fp16               # fp64 | fp32 | fp16 | int8 (default fp32)
  profile: resnet50             # optional job type of a measured throughput table
inputs:  [{dataset: imagenet-mini, residency: any}]   # residency: any | local
outputs: [results/]
placement:
  policy: balanced               # cheapest | fastest | greenest | balanced
  regions: [TF, GA]              # allowed regions; also sites:, owners:, exclude_sites:
  deadline: 6h                   # or an ISO-8601 time; lets the network shift the task in time
  max_price: 50                  # whole task, network currency
  max_latency_ms: 20             # one-way, from user_location
  user_location: SH
retries: 2
timeout: 2h
"""


def test_the_contracts_example_reads_and_normalises() -> None:
    spec = parse_task_spec(CONTRACT_EXAMPLE)
    assert spec.name == "train-resnet" and spec.run == "python train.py --epochs 3"
    assert spec.envs == {"SEED": "1"}
    r = spec.resources
    assert (r.cpus, r.cpus_at_least, r.memory_gb, r.disk_gb) == (4, False, 16.0, 50.0)
    assert r.accelerators is not None and r.accelerators.form == "one"
    assert [(c.device, c.count) for c in r.accelerators.choices] == [("A100", 2)]
    assert (r.estimate_s, r.estimate_on, r.precision, r.profile) == (
        1800.0, "A100-80GB", "fp16", "resnet50"
    )
    assert [(i.dataset, i.residency) for i in spec.inputs] == [("imagenet-mini", "any")]
    assert spec.outputs == ("results/",)
    p = spec.placement
    assert (p.policy, p.regions, p.deadline_in_s, p.max_price_micro) == (
        "balanced", ("TF", "GA"), 6 * 3600.0, 50_000_000
    )
    assert (p.max_latency_ms, p.user_location) == (20.0, "SH")
    assert (spec.retries, spec.timeout_s) == (2, 7200.0)


def test_a_minimal_spec_takes_the_defaults() -> None:
    spec = parse_task_spec("run: echo hi\n")
    assert spec.resources.cpus == 1 and spec.resources.precision == "fp32"
    assert spec.placement.policy == "balanced" and spec.retries == 0 and spec.timeout_s is None


@pytest.mark.parametrize(
    ("text", "form", "choices"),
    [
        ("A100:2", "one", [("A100", 2)]),
        ("T4", "one", [("T4", 1)]),
        ("[A100:2, H100-SXM:1]", "preference", [("A100", 2), ("H100-SXM", 1)]),
        ("{A100: 2, L40S: 4}", "any", [("A100", 2), ("L40S", 4)]),
    ],
)
def test_accelerators_come_in_three_forms(
    text: str, form: str, choices: list[tuple[str, int]]
) -> None:
    spec = parse_task_spec(f"run: x\nresources:\n  accelerators: {text}\n")
    acc = spec.resources.accelerators
    assert acc is not None and acc.form == form
    assert [(c.device, c.count) for c in acc.choices] == choices


def test_cpus_with_a_plus_means_at_least() -> None:
    r = parse_task_spec('run: x\nresources: {cpus: "8+"}\n').resources
    assert (r.cpus, r.cpus_at_least) == (8, True)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1d", 86400.0), ("1h30m", 5400.0),
     (45, 45.0), ("1.5h", 5400.0)],
)
def test_durations_in_the_units_users_write(text: object, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


def test_a_deadline_may_be_an_iso_time() -> None:
    p = parse_task_spec("run: x\nplacement: {deadline: '2026-12-01T08:00:00+08:00'}\n").placement
    assert p.deadline_at == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert p.deadline_in_s is None


def test_money_is_kept_exactly_in_micro_units() -> None:
    p = parse_task_spec("run: x\nplacement: {max_price: 12.345678}\n").placement
    assert p.max_price_micro == 12_345_678


def error(text: str) -> FieldError:
    with pytest.raises(FieldError) as caught:
        parse_task_spec(text, "spec.yaml")
    return caught.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, row in enumerate(text.splitlines(), 1) if needle in row)


@pytest.mark.parametrize(
    ("change", "needle", "field", "expected", "got"),
    [
        (("cpus: 4 ", "cpus: four "), "cpus:", "resources (cpus)", "a valid integer", "four"),
        (("cpus: 4 ", "cpus: -2 "), "cpus:", "resources (cpus)", "greater than or equal to 1",
         "-2"),
        (("16GB", "16XB"), "memory:", "resources (memory)", "a size unit", "16XB"),
        (("A100:2 ", "B900:2 "), "accelerators:", "resources (accelerators)",
         "a device type of the catalogue", "B900:2"),
        (("estimate_on: A100-80GB", "estimate_on: Z9"), "estimate_on:",
         "resources (estimate_on)", "a device type of the catalogue", "Z9"),
        (("precision: fp16", "precision: fp8"), "precision:", "resources (precision)",
         "'fp64', 'fp32', 'fp16' or 'int8'", "fp8"),
        (("nodes: 1 ", "nodes: 2 "), "nodes:", "resources (nodes)", "1 (multi-node", "2"),
        (("residency: any}", "residency: far}"), "inputs:", "inputs[0] (residency)",
         "'any' or 'local'", "far"),
        (("deadline: 6h", "deadline: soon"), "deadline:", "placement (deadline)", "a duration",
         "soon"),
        (("max_price: 50", "max_price: -3"), "max_price:", "placement (max_price)",
         "a non-negative amount", "-3"),
        (("policy: balanced", "policy: quickest"), "policy:", "placement (policy)",
         "'cheapest', 'fastest', 'greenest' or 'balanced'", "quickest"),
        (("retries: 2", "retrys: 2"), "retrys:", "task (retrys)", "no such field", "2"),
        (("timeout: 2h", "timeout: forever"), "timeout:", "task (timeout)", "a duration",
         "forever"),
    ],
)
def test_each_mistake_is_one_line_naming_the_line_and_field(
    change: tuple[str, str], needle: str, field: str, expected: str, got: str
) -> None:
    text = CONTRACT_EXAMPLE.replace(*change)
    assert text != CONTRACT_EXAMPLE
    e = error(text)
    message = str(e)
    assert "\n" not in message
    assert message.startswith(f"spec.yaml:{line_of(text, needle)}: field {field}: expected ")
    assert expected in message
    assert message.endswith(f", got '{got}'")


def test_a_missing_command_is_named() -> None:
    assert str(error("name: x\n")) == (
        "spec.yaml:1: field task (run): expected this required field, got ''"
    )


def test_not_yaml_and_not_a_mapping_are_bad_input() -> None:
    with pytest.raises(BadInput, match=r"^spec.yaml:1: not valid YAML"):
        parse_task_spec("run: [", "spec.yaml")
    with pytest.raises(BadInput, match="expected a mapping of task fields"):
        parse_task_spec("- a\n- b\n", "spec.yaml")


@pytest.mark.parametrize("accelerators", ["A100:0", "{A100: 0}", "[T4:1, A100:100001]"])
def test_an_accelerator_count_out_of_range_is_one_line_naming_accelerators(
    accelerators: str,
) -> None:
    with pytest.raises(FieldError) as caught:
        parse_task_spec(f"run: x\nresources:\n  accelerators: {accelerators}\n", "t.yaml")
    assert str(caught.value).startswith("t.yaml:3: field resources (accelerators): expected "
                                        "from 1 to 100000 ")
    assert "\n" not in str(caught.value)


def test_json_escapes_of_characters_beyond_u_ffff_read_as_those_characters() -> None:
    # YAML reads "\ud83d\ude00" as two lone surrogates; JSON, and the spec, mean one character.
    spec = parse_task_spec('{"run": "echo \\ud83d\\ude00", "envs": {"\\ud83d\\ude00": "1"}}')
    assert spec.run == "echo \U0001f600" and spec.envs == {"\U0001f600": "1"}


def test_a_lone_surrogate_is_refused_naming_its_field_and_line() -> None:
    with pytest.raises(FieldError) as caught:
        parse_task_spec('run: x\nplacement:\n  user_location: "S\\ud800"\n', "t.yaml")
    assert str(caught.value) == (
        "t.yaml:3: field placement (user_location): expected text (a lone UTF-16 surrogate is "
        "not a character), got 'S\\ud800'")
    str(caught.value).encode("utf-8")  # printable as it is
    with pytest.raises(FieldError, match=r"^task:1: field task \(run\)"):
        task_spec_from_mapping({"run": "echo \ud800"})


def test_an_empty_field_name_is_shown_quoted() -> None:
    with pytest.raises(FieldError) as caught:
        parse_task_spec('run: x\n"": 1\n', "t.yaml")
    assert str(caught.value).startswith("t.yaml:2: field task (''): expected no such field")


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_spec_nested_too_deeply_is_one_line_of_bad_input(depth: int) -> None:
    deep = "[" * depth + "]" * depth
    for text in (deep, f"run: x\nenvs: {deep}\n"):
        with pytest.raises(BadInput, match=r"^t\.yaml: lists or mappings nested too deeply"):
            parse_task_spec(text, "t.yaml")
    nested: object = []
    for _ in range(depth):
        nested = [nested]
    with pytest.raises(BadInput, match=r"^task: lists or mappings nested too deeply"):
        task_spec_from_mapping({"run": "x", "envs": nested})
