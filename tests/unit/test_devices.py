"""Specification of the device catalogue and of the compute unit (CU = dense FP32 TFLOPS)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from computility.domain.devices import Catalogue, DeviceType, default_catalogue
from computility.domain.errors import BadInput, UnknownDeviceType

REQUIRED_IDS = (
    "XEON-8380",
    "EPYC-7763",
    "KUNPENG-920",
    "K80",
    "P100-16GB",
    "T4",
    "V100-16GB",
    "V100-32GB",
    "A10",
    "A100-40GB",
    "A100-80GB",
    "H100-SXM",
    "H200-SXM",
    "L40S",
    "RTX-4090",
    "ASCEND-910B",
    "MI250X",
    "MI300X",
    "ALI-G2",
    "ALI-G3",
)

_DROP = object()


def entry(**changes: Any) -> dict[str, Any]:
    """A valid catalogue entry with `changes` applied; a value of `_DROP` removes the field."""
    fields: dict[str, Any] = {
        "id": "TEST-1",
        "name": "Test accelerator",
        "kind": "gpu",
        "vendor": "Acme",
        "family": "TEST",
        "unit": "device",
        "memory_gb": 16,
        "fp64": 1.0,
        "fp32": 10.0,
        "fp16": None,
        "int8": None,
        "tdp_w": 100,
        "aliases": [],
        "source": "Acme test sheet",
        "assumption": None,
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not _DROP}


def document(*entries: dict[str, Any], defaults: dict[str, str] | None = None) -> str:
    body: dict[str, Any] = {"devices": list(entries)}
    if defaults is not None:
        body["defaults"] = defaults
    return yaml.safe_dump(body, sort_keys=False)


def load(text: str) -> Catalogue:
    return Catalogue.from_yaml_text(text, source="test.yaml")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return default_catalogue()


# ------------------------------------------------------------------------- contents


def test_the_shipped_catalogue_has_every_required_device(catalogue: Catalogue) -> None:
    missing = [device_id for device_id in REQUIRED_IDS if device_id not in catalogue.ids]
    assert missing == []


def test_it_has_two_x86_core_classes_and_one_arm_core_class(catalogue: Catalogue) -> None:
    cpus = {device.id: device for device in catalogue if device.kind == "cpu"}
    assert {"XEON-8380", "EPYC-7763", "KUNPENG-920"} <= set(cpus)
    assert all(device.unit == "core" for device in cpus.values())
    assert {cpus["XEON-8380"].vendor, cpus["EPYC-7763"].vendor, cpus["KUNPENG-920"].vendor} == {
        "Intel",
        "AMD",
        "Huawei",
    }


def test_accelerators_are_counted_per_device(catalogue: Catalogue) -> None:
    assert all(device.unit == "device" for device in catalogue if device.is_accelerator)


def test_a_k80_is_one_gk210_die_with_12_gb(catalogue: Catalogue) -> None:
    k80 = catalogue.get("K80")
    assert k80.memory_gb == 12
    assert k80.assumption is not None and "die" in k80.assumption


def test_every_device_cites_a_source(catalogue: Catalogue) -> None:
    assert all(device.source.strip() for device in catalogue)


def test_devices_with_guessed_figures_state_the_assumption(catalogue: Catalogue) -> None:
    for device_id in ("ALI-G2", "ALI-G3", "ASCEND-910B", "K80", "MI250X"):
        assert catalogue.get(device_id).assumption, device_id
    assert "FP32" in (catalogue.get("ASCEND-910B").assumption or "")


def test_alibaba_g2_and_g3_are_separate_device_types(catalogue: Catalogue) -> None:
    assert catalogue.get("G2") is catalogue.get("ALI-G2")
    assert catalogue.get("G3") is catalogue.get("ALI-G3")
    assert catalogue.get("G2") is not catalogue.get("G3")


def test_defaults_are_a_xeon_core_and_an_a100_80gb(catalogue: Catalogue) -> None:
    assert catalogue.default_cpu.id == "XEON-8380"
    assert catalogue.default_gpu.id == "A100-80GB"


def test_the_default_catalogue_is_parsed_once(catalogue: Catalogue) -> None:
    assert default_catalogue() is catalogue


def test_len_iter_and_ids_agree(catalogue: Catalogue) -> None:
    assert len(catalogue) == len(catalogue.ids) == len(list(catalogue))
    assert tuple(device.id for device in catalogue) == catalogue.ids


# ------------------------------------------------------------------------- compute units


def test_the_cu_of_an_a100_is_19_5(catalogue: Catalogue) -> None:
    assert catalogue.get("A100-80GB").cu == 19.5
    assert catalogue.get("A100-40GB").cu == 19.5


def test_the_cu_of_every_device_is_its_fp32_peak(catalogue: Catalogue) -> None:
    assert all(device.cu == device.fp32 for device in catalogue)


def test_the_cu_of_a_cpu_core_is_its_fp32_peak_per_core(catalogue: Catalogue) -> None:
    # cores x GHz x FLOP/cycle, for one core: 2.3 GHz x 64 FP32 FLOP/cycle (2 AVX-512 FMA units).
    xeon = catalogue.get("XEON-8380")
    assert xeon.cu == pytest.approx(2.3 * 64 / 1000)
    # Zen 3: 2.45 GHz x 32 FLOP/cycle; TaiShan v110: 2.6 GHz x 16 FLOP/cycle.
    assert catalogue.get("EPYC-7763").cu == pytest.approx(2.45 * 32 / 1000)
    assert catalogue.get("KUNPENG-920").cu == pytest.approx(2.6 * 16 / 1000)


def test_a_cpu_core_tdp_is_the_chip_tdp_shared_by_its_cores(catalogue: Catalogue) -> None:
    assert catalogue.get("XEON-8380").tdp_w == pytest.approx(270 / 40)
    assert catalogue.get("EPYC-7763").tdp_w == pytest.approx(280 / 64)


# ------------------------------------------------------------------------- peaks


def test_a_peak_is_read_at_the_asked_precision(catalogue: Catalogue) -> None:
    a100 = catalogue.get("A100-80GB")
    assert (a100.peak("fp64"), a100.peak("fp32"), a100.peak("fp16"), a100.peak("int8")) == (
        9.7,
        19.5,
        312,
        624,
    )


def test_fp16_falls_back_to_fp32_when_the_device_has_no_fp16_peak(catalogue: Catalogue) -> None:
    k80 = catalogue.get("K80")
    assert k80.fp16 is None
    assert k80.peak("fp16") == k80.fp32


def test_an_unknown_precision_is_bad_input(catalogue: Catalogue) -> None:
    with pytest.raises(BadInput, match="unknown precision 'fp8'"):
        catalogue.get("A100-80GB").peak("fp8")


# ------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "device_id"),
    [
        ("V100M32", "V100-32GB"),
        ("V100M16", "V100-16GB"),
        ("G2", "ALI-G2"),
        ("G3", "ALI-G3"),
        ("P100", "P100-16GB"),
        ("p100", "P100-16GB"),
        ("k80", "K80"),
        ("T4", "T4"),
        ("A10", "A10"),
        ("aws", "T4"),
        ("azure", "V100-32GB"),
        ("dgx-ext", "A100-40GB"),
        ("quad", "RTX-6000"),
        ("rtx", "RTX-2080TI"),
    ],
)
def test_trace_and_paper_aliases_resolve_to_catalogue_ids(
    catalogue: Catalogue, name: str, device_id: str
) -> None:
    assert catalogue.get(name).id == device_id
    assert catalogue.match(name) == (catalogue.get(device_id),)


def test_names_are_case_insensitive(catalogue: Catalogue) -> None:
    assert catalogue.get("a100-80gb") is catalogue.get("A100-80GB")
    assert catalogue.get("v100m32") is catalogue.get("V100M32")


def test_a_family_name_matches_every_variant(catalogue: Catalogue) -> None:
    assert {device.id for device in catalogue.match("A100")} == {"A100-40GB", "A100-80GB"}
    assert {device.id for device in catalogue.match("v100")} == {"V100-16GB", "V100-32GB"}


def test_an_id_matches_only_that_device(catalogue: Catalogue) -> None:
    assert [device.id for device in catalogue.match("A100-40GB")] == ["A100-40GB"]


def test_a_family_name_is_not_one_device(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownDeviceType):
        catalogue.get("A100")
    assert "A100" not in catalogue


@pytest.mark.parametrize("name", ["B200", "", "A100:2", "V100M64"])
def test_unknown_names_raise_unknown_device_type(catalogue: Catalogue, name: str) -> None:
    with pytest.raises(UnknownDeviceType, match="unknown device type"):
        catalogue.get(name)
    with pytest.raises(UnknownDeviceType):
        catalogue.match(name)


def test_unknown_device_type_is_bad_input_naming_the_name(catalogue: Catalogue) -> None:
    with pytest.raises(BadInput, match="'B200'"):
        catalogue.match("B200")


def test_membership_means_get_would_succeed(catalogue: Catalogue) -> None:
    assert "V100M32" in catalogue
    assert "h100-sxm" in catalogue
    assert 42 not in catalogue


def test_every_name_is_unique_across_the_catalogue(catalogue: Catalogue) -> None:
    names = [name.casefold() for device in catalogue for name in (device.id, *device.aliases)]
    assert len(names) == len(set(names))


# ------------------------------------------------------------------------- file validation


def test_a_valid_document_builds_a_catalogue() -> None:
    text = document(
        entry(),
        entry(id="CPU-1", kind="cpu", unit="core", family="CPU", fp32=0.1, aliases=["c1"]),
        defaults={"cpu": "c1", "gpu": "TEST-1"},
    )
    catalogue = load(text)
    assert catalogue.ids == ("TEST-1", "CPU-1")
    assert catalogue.default_cpu.id == "CPU-1"
    assert catalogue.default_gpu.id == "TEST-1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fp32": _DROP}, "device 'TEST-1': field 'fp32': missing"),
        ({"fp16": _DROP}, "device 'TEST-1': field 'fp16': missing"),
        ({"fp32": "fast"}, "device 'TEST-1': field 'fp32': expected a number, got 'fast'"),
        ({"fp32": -1}, "device 'TEST-1': field 'fp32': expected a positive number, got -1.0"),
        ({"tdp_w": 0}, "device 'TEST-1': field 'tdp_w': expected a positive number, got 0.0"),
        ({"fp16": -5}, "device 'TEST-1': field 'fp16': expected a positive number or null"),
        ({"memory_gb": True}, "device 'TEST-1': field 'memory_gb': expected a number, got True"),
        ({"int8": "lots"}, "device 'TEST-1': field 'int8': expected a number or null"),
        ({"aliases": "G9"}, "device 'TEST-1': field 'aliases': expected a list of names"),
        ({"aliases": ["x y"]}, "device 'TEST-1': field 'aliases': expected names, got 'x y'"),
        ({"aliases": ["test-1"]}, "device 'TEST-1': field 'aliases': 'test-1' repeats the id"),
        ({"kind": "tpu"}, "device 'TEST-1': field 'kind': expected one of cpu, gpu, npu"),
        ({"unit": "core"}, "device 'TEST-1': field 'unit': expected 'device' for a gpu"),
        ({"name": ""}, "device 'TEST-1': field 'name': expected a non-empty string"),
        ({"source": None}, "device 'TEST-1': field 'source': expected a non-empty string"),
        ({"assumption": 3}, "device 'TEST-1': field 'assumption': expected a non-empty string"),
        ({"id": "A100:2"}, "device 'A100:2': field 'id': expected letters, digits"),
        ({"speed": 3}, "device 'TEST-1': field 'speed': unknown field"),
        ({"fp23": 1, "fp32": _DROP}, "field 'fp32': missing (is the unknown field 'fp23' a typo?)"),
        ({"id": _DROP}, "device #1: field 'id': missing"),
    ],
)
def test_a_malformed_entry_is_bad_input_naming_the_entry_and_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadInput) as raised:
        load(document(entry(**changes)))
    assert str(raised.value).startswith("test.yaml:")
    assert message in str(raised.value)


def test_a_duplicate_id_is_bad_input() -> None:
    with pytest.raises(BadInput, match="device 'TEST-1': field 'id': 'TEST-1' is already the id"):
        load(document(entry(), entry(family="OTHER")))


def test_a_duplicate_alias_is_bad_input_even_in_another_case() -> None:
    text = document(entry(aliases=["g9"]), entry(id="TEST-2", aliases=["G9"]))
    with pytest.raises(
        BadInput, match="device 'TEST-2': field 'aliases': 'G9' is already an alias"
    ):
        load(text)


def test_an_alias_may_not_take_the_name_of_a_family_of_several_variants() -> None:
    text = document(
        entry(), entry(id="TEST-2"), entry(id="OTHER", family="OTHER", aliases=["test"])
    )
    with pytest.raises(BadInput, match="field 'aliases': 'TEST' is also the family"):
        load(text)


def test_a_default_must_name_a_device_of_the_right_kind() -> None:
    with pytest.raises(BadInput, match="defaults: field 'cpu': 'TEST-1' is a gpu"):
        load(document(entry(), defaults={"cpu": "TEST-1"}))
    with pytest.raises(BadInput, match="defaults: field 'gpu': 'B200' is not a device id"):
        load(document(entry(), defaults={"gpu": "B200"}))


def test_a_catalogue_without_cpus_has_no_default_cpu() -> None:
    catalogue = load(document(entry()))
    with pytest.raises(BadInput, match="no cpu type"):
        _ = catalogue.default_cpu


def test_messages_point_at_the_line_of_the_bad_field() -> None:
    text = document(entry(), entry(id="TEST-2", fp32=-3))
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "fp32: -3" in row)
    with pytest.raises(BadInput, match=rf"^test\.yaml:{line}: device 'TEST-2': field 'fp32'"):
        load(text)


def test_text_that_is_not_yaml_is_bad_input_with_its_line() -> None:
    with pytest.raises(BadInput, match=r"^test\.yaml:2: not valid YAML"):
        load("devices:\n  - id: a: b\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a mapping with a 'devices' list"),
        ("devices: []\n", "expected a non-empty list of devices"),
        ("devices: [1]\n", "device #1: field 'id': expected a mapping of fields"),
        (document(entry()) + "extra: 1\n", "'extra': unknown top-level field"),
    ],
)
def test_a_malformed_document_is_bad_input(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        load(text)


def test_a_device_type_built_in_code_is_checked_too() -> None:
    with pytest.raises(BadInput, match="field 'fp32': expected a positive number"):
        DeviceType(
            id="X",
            name="X",
            kind="gpu",
            vendor="Acme",
            family="X",
            unit="device",
            memory_gb=1,
            fp64=None,
            fp32=-1,
            fp16=None,
            int8=None,
            tdp_w=1,
        )
