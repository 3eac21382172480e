"""Network YAML files: a valid file loads, and each mistake is reported on its own line."""

from __future__ import annotations

from pathlib import Path

import pytest

from computility.domain.errors import BadInput, FieldError
from computility.network import load_network, parse_network

VALID = """\
format: computility-network/1
name: two-regions
regions:
  - {id: EAST, lat: 31.2, lon: 121.5}
  - {id: WEST, lat: 30.6, lon: 104.1}
sites:
  - id: east-1
    region: EAST
    owner: acme
    pue: 1.3
    electricity_price_per_kwh: 0.6
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


def error_for(text: str) -> FieldError:
    with pytest.raises(FieldError) as caught:
        parse_network(text, source="net.yaml")
    return caught.value


def line_of(text: str, needle: str) -> int:
    (line,) = [i for i, row in enumerate(text.splitlines(), 1) if needle in row]
    return line


def test_a_valid_file_loads_with_every_part() -> None:
    network = parse_network(VALID, source="net.yaml")
    assert network.name == "two-regions"
    assert [s.id for s in network.sites] == ["east-1", "west-1"]
    gpu = network.site("east-1").pools[1]
    assert (gpu.device.id, gpu.count, gpu.devices_per_node, gpu.nodes) == ("A100-80GB", 16, 8, 2)
    assert gpu.price_per_cu_hour == 450_000
    assert network.link("WEST", "EAST").egress_per_gb == 200_000  # both ways by default
    assert network.dataset("weights").size_gb == pytest.approx(2 * 2**40 / 1e9)
    assert network.demand_location("SH").latency_ms["WEST"] == 23


def test_a_flat_value_becomes_a_flat_24_hour_curve() -> None:
    site = parse_network(VALID).site("west-1")
    assert site.electricity_price_curve == (350_000,) * 24
    assert site.carbon_curve == (0.15,) * 24


def test_a_file_path_loads_through_load_network(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(VALID, encoding="utf-8")
    assert load_network(str(path)).name == "two-regions"


def test_a_missing_file_is_bad_input_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read network file"):
        load_network(str(tmp_path / "nope.yaml"))


def test_missing_field_names_the_entry_line_and_the_field() -> None:
    text = VALID.replace("    pue: 1.2\n", "")
    error = error_for(text)
    assert error.line == line_of(text, "id: west-1")
    assert str(error) == (
        f"net.yaml:{error.line}: field sites[1] (pue): expected this field (it is missing), got ''"
    )


def test_unknown_device_names_its_line() -> None:
    text = VALID.replace("device: A100-80GB", "device: Z100")
    error = error_for(text)
    assert error.line == line_of(text, "device: Z100")
    assert error.field_no == "sites[0].pools[1]"
    assert error.field_name == "device"
    assert error.got == "Z100"
    assert "catalogue" in error.expected


def test_bad_size_unit_names_its_line() -> None:
    text = VALID.replace("size: 150GB", "size: 150GiGa")
    error = error_for(text)
    assert error.line == line_of(text, "150GiGa")
    assert (error.field_name, error.got) == ("size", "150GiGa")
    assert "KB, MB, GB, TB, KiB, MiB, GiB or TiB" in error.expected


def test_unknown_region_in_a_link_names_its_line() -> None:
    text = VALID.replace("to: WEST, latency_ms: 20", "to: NORTH, latency_ms: 20")
    error = error_for(text)
    assert error.line == line_of(text, "to: NORTH")
    assert (error.field_no, error.field_name, error.got) == ("links[0]", "to", "NORTH")


def test_dataset_at_an_unknown_site_names_its_line() -> None:
    text = VALID.replace("sites: [east-1, west-1]", "sites: [east-1, mars-1]")
    error = error_for(text)
    assert error.line == line_of(text, "mars-1")
    assert (error.field_no, error.got) == ("datasets[1]", "mars-1")


def test_a_missing_link_between_two_regions_is_reported() -> None:
    text = VALID.replace(
        "  - {from: EAST, to: WEST, latency_ms: 20, bandwidth_gbps: 100, egress_per_gb: 0.2}\n",
        "  - {from: EAST, to: WEST, latency_ms: 20, bandwidth_gbps: 100, egress_per_gb: 0.2,"
        " both_ways: false}\n",
    )
    assert "none from WEST to EAST" in str(error_for(text))


def test_unknown_field_is_reported_at_its_key() -> None:
    text = VALID.replace("    pue: 1.3\n", "    pue: 1.3\n    puee: 1.3\n")
    error = error_for(text)
    assert error.line == line_of(text, "puee")
    assert error.field_name == "puee"


def test_a_repeated_key_is_refused_rather_than_silently_overwritten() -> None:
    text = VALID.replace("    pue: 1.3\n", "    pue: 1.3\n    pue: 1.1\n")
    error = error_for(text)
    assert error.line == line_of(text, "pue: 1.1")
    assert "first given on line" in error.expected


def test_a_curve_of_the_wrong_length_is_refused() -> None:
    text = VALID.replace("carbon_kg_per_kwh: 0.15", "carbon_kg_per_kwh: [0.1, 0.2, 0.3]")
    error = error_for(text)
    assert error.line == line_of(text, "[0.1, 0.2, 0.3]")
    assert error.got == "3 values"


def test_a_pool_of_partial_nodes_is_refused() -> None:
    text = VALID.replace("count: 160, devices_per_node: 80", "count: 100, devices_per_node: 80")
    error = error_for(text)
    assert error.field_name == "devices_per_node"
    assert "divisor of count 100" in error.expected


def test_pue_below_one_is_refused() -> None:
    error = error_for(VALID.replace("pue: 1.3", "pue: 0.9"))
    assert (error.field_name, error.got) == ("pue", "0.9")


def test_yaml_syntax_error_names_its_line() -> None:
    text = VALID.replace("  - {id: WEST, lat: 30.6, lon: 104.1}", "  - {id: WEST, lat: [30.6")
    with pytest.raises(BadInput, match=r"^net\.yaml:\d+: not valid YAML"):
        parse_network(text, source="net.yaml")


def test_an_empty_file_is_bad_input() -> None:
    with pytest.raises(FieldError, match=r"^net\.yaml:1:"):
        parse_network("", source="net.yaml")


def test_a_mapping_where_a_name_belongs_is_refused() -> None:
    error = error_for(VALID.replace("owner: acme\n    pue: 1.3", "owner: {a: 1}\n    pue: 1.3"))
    assert (error.field_name, error.got) == ("owner", "a mapping")


def test_an_unknown_yaml_tag_is_bad_input_not_a_traceback() -> None:
    error = error_for(VALID.replace("pue: 1.3", "pue: !weird 1.3"))
    assert error.field_name == "pue"
    assert "no YAML tag" in error.expected


def test_an_empty_field_name_is_shown_quoted() -> None:
    error = error_for(VALID + '"": 1\n')
    assert str(error).startswith(f"net.yaml:{len(VALID.splitlines()) + 1}: field network (''): ")


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_file_nested_too_deeply_is_one_line_of_bad_input(depth: int) -> None:
    deep = "[" * depth + "]" * depth
    for text in (deep, VALID + f"notes: {deep}\n"):
        with pytest.raises(BadInput, match=r"^net\.yaml: lists or mappings nested too deeply"):
            parse_network(text, source="net.yaml")
