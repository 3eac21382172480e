"""Device types and the catalogue that names them: the scale every use is metered on.

Sites, traces and users name the same hardware differently (``V100M32``, ``v100``, ``A100``), and
a task priced in CU-hours must come to the same number whoever named its device. So every name is
resolved here, once, to a `DeviceType` whose FP32 peak *is* its compute-unit rate (CONTRACT.md,
"Units"). The figures live in ``computility/data/devices.yaml`` so that they can be reviewed
against their spec sheets and every assumption sits next to the number it explains.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal

import yaml

from computility.domain.errors import BadInput, UnknownDeviceType

DeviceKind = Literal["cpu", "gpu", "npu"]
DeviceUnit = Literal["core", "device"]

KINDS: Final[tuple[DeviceKind, ...]] = ("cpu", "gpu", "npu")
PRECISIONS: Final[tuple[str, ...]] = ("fp64", "fp32", "fp16", "int8")

_UNIT_OF_KIND: Final[Mapping[DeviceKind, DeviceUnit]] = {
    "cpu": "core",
    "gpu": "device",
    "npu": "device",
}
# Names appear in `--gpus TYPE:N` and `A100:2`, so they may not hold ':' ',' or spaces.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DEFAULTS_SECTION: Final = -1


def _fold(name: str) -> str:
    """The look-up key of a name: users type ``a100-80gb`` as often as ``A100-80GB``."""
    return name.strip().casefold()


class _EntryProblem(BadInput):
    """A bad field of one catalogue entry, kept structured so a file reader can add its line."""

    def __init__(self, where: str, field: str, detail: str, index: int | None = None) -> None:
        self.where = where
        self.field = field
        self.detail = detail
        self.index = index
        super().__init__(f"{where}: field '{field}': {detail}")


@dataclass(frozen=True, slots=True)
class DeviceType:
    """One kind of processor, with the spec-sheet peaks that price and estimate work on it.

    A CPU entry describes one *core* (``unit == "core"``): CPU work is requested and metered in
    cores, so per-core figures let a pool of N cores be N identical devices.

    Attributes:
        id: catalogue id, the name specs and reports use (``A100-80GB``).
        name: marketing name, for people.
        kind: ``cpu``, ``gpu`` or ``npu``.
        vendor: who makes it (``unknown`` where a trace hides it).
        family: the name shared by its variants (``A100``).
        unit: ``core`` for CPUs, ``device`` for accelerators.
        memory_gb: memory per device, GB (10^9 bytes); a typical share per core for CPUs.
        fp64: dense vector FP64 peak, TFLOPS, or None.
        fp32: dense non-tensor FP32 peak, TFLOPS: the CU rate.
        fp16: dense FP16 tensor/matrix peak (else vector peak), TFLOPS, or None.
        int8: dense INT8 tensor/matrix peak (else dot-product vector peak), TOPS, or None.
        tdp_w: thermal design power per device (per core for CPUs), watts.
        aliases: other names for it in traces and papers (``V100M32``, ``G2``, ``p100``).
        source: the spec sheet or document the figures come from.
        assumption: what was assumed where the sheet is silent, and why; None if nothing was.
        notes: arithmetic and context behind the figures, if any.
    """

    id: str
    name: str
    kind: DeviceKind
    vendor: str
    family: str
    unit: DeviceUnit
    memory_gb: float
    fp64: float | None
    fp32: float
    fp16: float | None
    int8: float | None
    tdp_w: float
    aliases: tuple[str, ...] = ()
    source: str = ""
    assumption: str | None = None
    notes: str | None = None

    def __post_init__(self) -> None:
        _check_device(self)

    @property
    def cu(self) -> float:
        """Compute units of one device (one core for a CPU): its FP32 peak in TFLOPS."""
        return self.fp32

    @property
    def is_accelerator(self) -> bool:
        """True for GPUs and NPUs, which are requested by count rather than by cores."""
        return self.kind != "cpu"

    def peak(self, precision: str) -> float:
        """Peak rate at `precision` (``fp64``, ``fp32``, ``fp16`` or ``int8``), TFLOPS or TOPS.

        A null peak falls back to FP32: a device without a faster path for that precision still
        runs the work, upcast to FP32 by the framework, so the FP32 rate is the honest speed
        estimate. This is an estimate, not a feasibility check; whether FP64 work belongs on a
        device without FP64 units is for placement to decide.

        Raises:
            BadInput: `precision` is not one of the four.
        """
        key = precision.strip().lower()
        if key == "fp64":
            value = self.fp64
        elif key == "fp32":
            value = self.fp32
        elif key == "fp16":
            value = self.fp16
        elif key == "int8":
            value = self.int8
        else:
            raise BadInput(
                f"unknown precision '{precision}': expected one of {', '.join(PRECISIONS)}"
            )
        return self.fp32 if value is None else value


def _check_device(device: DeviceType) -> None:
    """Reject values no spec sheet could give, so a typo cannot silently misprice a device."""
    where = f"device '{device.id}'"
    if not _NAME.fullmatch(device.id):
        raise _EntryProblem(
            where, "id", f"expected letters, digits, '.', '_' or '-', got {device.id!r}"
        )
    for field, text in (("name", device.name), ("vendor", device.vendor)):
        if not text.strip():
            raise _EntryProblem(where, field, "expected a non-empty string")
    if device.kind not in KINDS:
        raise _EntryProblem(
            where, "kind", f"expected one of {', '.join(KINDS)}, got {device.kind!r}"
        )
    if device.unit != _UNIT_OF_KIND[device.kind]:
        raise _EntryProblem(
            where,
            "unit",
            f"expected '{_UNIT_OF_KIND[device.kind]}' for a {device.kind}, got {device.unit!r}",
        )
    if not _NAME.fullmatch(device.family):
        raise _EntryProblem(where, "family", f"expected a name, got {device.family!r}")
    for field, number in (
        ("memory_gb", device.memory_gb),
        ("fp32", device.fp32),
        ("tdp_w", device.tdp_w),
    ):
        if not math.isfinite(number) or number <= 0:
            raise _EntryProblem(where, field, f"expected a positive number, got {number!r}")
    for field, maybe in (("fp64", device.fp64), ("fp16", device.fp16), ("int8", device.int8)):
        if maybe is not None and (not math.isfinite(maybe) or maybe <= 0):
            raise _EntryProblem(where, field, f"expected a positive number or null, got {maybe!r}")
    seen = {_fold(device.id)}
    for alias in device.aliases:
        if not _NAME.fullmatch(alias):
            raise _EntryProblem(where, "aliases", f"expected names, got {alias!r}")
        if _fold(alias) in seen:
            raise _EntryProblem(
                where, "aliases", f"'{alias}' repeats the id or another alias (case-insensitively)"
            )
        seen.add(_fold(alias))


class Catalogue:
    """Every device type the network knows, looked up by id, alias or family.

    Names are case-insensitive and unique across ids and aliases, so one name never means two
    devices. A family name stands for all its variants (``A100`` -> 40 GB and 80 GB) because a
    user asking for "an A100" accepts either; an id or alias always means exactly one.
    """

    __slots__ = ("_by_name", "_default_cpu", "_default_gpu", "_devices", "_families")

    def __init__(
        self,
        devices: Iterable[DeviceType],
        default_cpu: str | None = None,
        default_gpu: str | None = None,
    ) -> None:
        """Index `devices` and check that every name resolves one way.

        Args:
            devices: the device types, in the order listings should show them.
            default_cpu: id or alias of the CPU core type assumed where an input names none
                (a plain SWF machine); the first CPU if None.
            default_gpu: id or alias of the accelerator assumed where an input names none;
                the first accelerator if None.

        Raises:
            BadInput: a duplicate id or alias, a family name that an id or alias shadows, or a
                default that is missing or of the wrong kind.
        """
        self._devices = tuple(devices)
        self._by_name: dict[str, DeviceType] = {}
        owner_index: dict[str, int] = {}
        for index, device in enumerate(self._devices):
            names = [("id", device.id)] + [("aliases", alias) for alias in device.aliases]
            for field, name in names:
                key = _fold(name)
                if key in self._by_name:
                    other = self._by_name[key]
                    role = "the id" if _fold(other.id) == key else "an alias"
                    raise _EntryProblem(
                        f"device '{device.id}'",
                        field,
                        f"'{name}' is already {role} of device '{other.id}' "
                        f"(entry {owner_index[key] + 1})",
                        index,
                    )
                self._by_name[key] = device
                owner_index[key] = index
        families: dict[str, list[DeviceType]] = {}
        for device in self._devices:
            families.setdefault(_fold(device.family), []).append(device)
        self._families = {key: tuple(members) for key, members in families.items()}
        for key, members in self._families.items():
            owner = self._by_name.get(key)
            if owner is not None and members != (owner,):
                field = "id" if _fold(owner.id) == key else "aliases"
                raise _EntryProblem(
                    f"device '{owner.id}'",
                    field,
                    f"'{members[0].family}' is also the family of "
                    f"{', '.join(repr(m.id) for m in members)}; a family name must match "
                    "every variant, so no id or alias may take it",
                    owner_index[key],
                )
        self._default_cpu = self._pick_default("cpu", default_cpu)
        self._default_gpu = self._pick_default("gpu", default_gpu)

    def _pick_default(self, role: Literal["cpu", "gpu"], name: str | None) -> DeviceType | None:
        wants_cpu = role == "cpu"
        if name is None:
            return next((d for d in self._devices if (d.kind == "cpu") == wants_cpu), None)
        device = self._by_name.get(_fold(name))
        if device is None:
            raise _EntryProblem("defaults", role, f"'{name}' is not a device id or alias")
        if (device.kind == "cpu") != wants_cpu:
            expected = "a cpu" if wants_cpu else "an accelerator (gpu or npu)"
            raise _EntryProblem(
                "defaults", role, f"'{name}' is a {device.kind}, expected {expected}"
            )
        return device

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "devices.yaml") -> Catalogue:
        """Build a catalogue from the text of a ``devices.yaml``, checking every field.

        The checks are strict (every field present, of its type, no unknown field) because a
        mistyped peak would misprice every task on that device without any visible failure.

        Args:
            text: the YAML text: a mapping with ``devices`` (a list) and optional ``defaults``.
            source: the file name to put in messages.

        Raises:
            BadInput: ``SOURCE:LINE: device 'ID': field 'NAME': ...`` for the first problem.
        """
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 5x faster
        try:
            data = yaml.load(text, Loader=loader)  # a safe loader either way
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise BadInput(f"{source}{at}: not valid YAML: {problem}") from None

        def located(problem: _EntryProblem) -> BadInput:
            # Line numbers are only needed for a message, so the node tree is built only then.
            lines = _field_lines(yaml.compose(text, Loader=yaml.SafeLoader))
            section = _DEFAULTS_SECTION if problem.where == "defaults" else problem.index
            line = None
            if section is not None:
                line = lines.get((section, problem.field)) or lines.get((section, ""))
            at = f":{line}" if line else ""
            return BadInput(f"{source}{at}: {problem}")

        try:
            devices, defaults = _parse_document(data)
            return cls(devices, defaults.get("cpu"), defaults.get("gpu"))
        except _EntryProblem as problem:
            raise located(problem) from None

    @property
    def ids(self) -> tuple[str, ...]:
        """Catalogue ids in file order."""
        return tuple(device.id for device in self._devices)

    @property
    def default_cpu(self) -> DeviceType:
        """The CPU core type assumed where an input names none (a plain SWF machine)."""
        return self._required_default(self._default_cpu, "cpu")

    @property
    def default_gpu(self) -> DeviceType:
        """The accelerator type assumed where an input asks for a GPU without naming one."""
        return self._required_default(self._default_gpu, "accelerator")

    @staticmethod
    def _required_default(device: DeviceType | None, what: str) -> DeviceType:
        if device is None:
            raise BadInput(f"the device catalogue has no {what} type")
        return device

    def get(self, name: str) -> DeviceType:
        """The one device an id or alias names, case-insensitively.

        Raises:
            UnknownDeviceType: `name` is no id or alias (a family name is not enough here,
                because it may name several devices; use `match`).
        """
        device = self._by_name.get(_fold(name))
        if device is None:
            raise UnknownDeviceType(name, list(self.ids))
        return device

    def match(self, name: str) -> tuple[DeviceType, ...]:
        """Every device a requested name accepts: one for an id or alias, all variants for a family.

        Raises:
            UnknownDeviceType: `name` is no id, alias or family.
        """
        key = _fold(name)
        device = self._by_name.get(key)
        if device is not None:
            return (device,)
        family = self._families.get(key)
        if family is not None:
            return family
        raise UnknownDeviceType(name, list(self.ids))

    def __contains__(self, name: object) -> bool:
        """True when `name` is an id or alias, i.e. when `get` would succeed."""
        return isinstance(name, str) and _fold(name) in self._by_name

    def __iter__(self) -> Iterator[DeviceType]:
        return iter(self._devices)

    def __len__(self) -> int:
        return len(self._devices)

    def __repr__(self) -> str:
        return f"Catalogue({len(self._devices)} device types)"


@functools.lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """The catalogue shipped with the package, parsed once per process."""
    text = (resources.files("computility") / "data" / "devices.yaml").read_text(encoding="utf-8")
    return Catalogue.from_yaml_text(text, source="computility/data/devices.yaml")


# --------------------------------------------------------------------------- YAML parsing

_REQUIRED_FIELDS: Final[tuple[str, ...]] = (
    "id", "name", "kind", "vendor", "family", "unit", "memory_gb",
    "fp64", "fp32", "fp16", "int8", "tdp_w", "aliases", "source", "assumption",
)  # fmt: skip
_OPTIONAL_FIELDS: Final[tuple[str, ...]] = ("notes",)


def _parse_document(data: object) -> tuple[list[DeviceType], dict[str, str]]:
    if not isinstance(data, dict):
        raise _EntryProblem("document", "devices", "expected a mapping with a 'devices' list")
    unknown = sorted(str(key) for key in data if key not in ("devices", "defaults"))
    if unknown:
        raise _EntryProblem("document", unknown[0], "unknown top-level field")
    entries = data.get("devices")
    if not isinstance(entries, list) or not entries:
        raise _EntryProblem("document", "devices", "expected a non-empty list of devices")
    devices = [_parse_entry(entry, index) for index, entry in enumerate(entries)]
    return devices, _parse_defaults(data.get("defaults"))


def _parse_defaults(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _EntryProblem("defaults", "cpu", f"expected a mapping, got {raw!r}")
    parsed: dict[str, str] = {}
    for key, value in raw.items():
        if key not in ("cpu", "gpu"):
            raise _EntryProblem("defaults", str(key), "unknown field; expected 'cpu' or 'gpu'")
        if not isinstance(value, str):
            raise _EntryProblem("defaults", key, f"expected a device id, got {value!r}")
        parsed[key] = value
    return parsed


def _parse_entry(entry: object, index: int) -> DeviceType:
    where = f"device #{index + 1}"
    if not isinstance(entry, dict):
        raise _EntryProblem(where, "id", f"expected a mapping of fields, got {entry!r}", index)
    raw_id = entry.get("id")
    if isinstance(raw_id, str) and raw_id.strip():
        where = f"device '{raw_id}'"
    unknown = [str(key) for key in entry if key not in (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS)]
    for field in _REQUIRED_FIELDS:
        if field not in entry:
            typo = f" (is the unknown field '{unknown[0]}' a typo?)" if unknown else ""
            raise _EntryProblem(where, field, f"missing{typo}", index)
    if unknown:
        raise _EntryProblem(where, unknown[0], "unknown field", index)
    field_reader = _FieldReader(entry, where, index)
    kind = field_reader.text("kind")
    if kind not in KINDS:
        raise _EntryProblem(
            where, "kind", f"expected one of {', '.join(KINDS)}, got {kind!r}", index
        )
    unit = field_reader.text("unit")
    if unit not in ("core", "device"):
        raise _EntryProblem(where, "unit", f"expected 'core' or 'device', got {unit!r}", index)
    try:
        return DeviceType(
            id=field_reader.text("id"),
            name=field_reader.text("name"),
            kind=_KIND_OF[kind],
            vendor=field_reader.text("vendor"),
            family=field_reader.text("family"),
            unit=_UNIT_OF[unit],
            memory_gb=field_reader.number("memory_gb"),
            fp64=field_reader.optional_number("fp64"),
            fp32=field_reader.number("fp32"),
            fp16=field_reader.optional_number("fp16"),
            int8=field_reader.optional_number("int8"),
            tdp_w=field_reader.number("tdp_w"),
            aliases=field_reader.names("aliases"),
            source=field_reader.text("source"),
            assumption=field_reader.optional_text("assumption"),
            notes=field_reader.optional_text("notes"),
        )
    except _EntryProblem as problem:
        raise _EntryProblem(problem.where, problem.field, problem.detail, index) from None


_KIND_OF: Final[Mapping[str, DeviceKind]] = {"cpu": "cpu", "gpu": "gpu", "npu": "npu"}
_UNIT_OF: Final[Mapping[str, DeviceUnit]] = {"core": "core", "device": "device"}


class _FieldReader:
    """Typed access to one YAML entry that names the entry and field in every complaint."""

    def __init__(self, entry: Mapping[Any, Any], where: str, index: int) -> None:
        self._entry = entry
        self._where = where
        self._index = index

    def _bad(self, field: str, expected: str) -> _EntryProblem:
        got = self._entry.get(field)
        return _EntryProblem(self._where, field, f"expected {expected}, got {got!r}", self._index)

    def text(self, field: str) -> str:
        value = self._entry.get(field)
        if not isinstance(value, str) or not value.strip():
            raise self._bad(field, "a non-empty string")
        return value.strip()

    def optional_text(self, field: str) -> str | None:
        value = self._entry.get(field)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self._bad(field, "a non-empty string or null")
        return value.strip()

    def number(self, field: str) -> float:
        value = self._entry.get(field)
        # bool is an int in Python, but `fp32: yes` is a mistake, not 1 TFLOPS.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(field, "a number")
        return float(value)

    def optional_number(self, field: str) -> float | None:
        if self._entry.get(field) is None:
            return None
        if isinstance(self._entry[field], bool) or not isinstance(self._entry[field], int | float):
            raise self._bad(field, "a number or null")
        return float(self._entry[field])

    def names(self, field: str) -> tuple[str, ...]:
        value = self._entry.get(field)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._bad(field, "a list of names (use [] for none)")
        return tuple(item.strip() for item in value)


def _field_lines(root: yaml.Node | None) -> dict[tuple[int, str], int]:
    """1-based line of each field of each entry, keyed (entry index, field); "" = the entry.

    PyYAML's plain loader forgets positions, so the node tree is composed separately to point
    messages at the line a user has to edit.
    """
    lines: dict[tuple[int, str], int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key_node, value_node in root.value:
        section: str = getattr(key_node, "value", "")
        if section == "defaults":
            _record_mapping(lines, _DEFAULTS_SECTION, value_node)
        elif section == "devices" and isinstance(value_node, yaml.SequenceNode):
            for index, item in enumerate(value_node.value):
                _record_mapping(lines, index, item)
    return lines


def _record_mapping(lines: dict[tuple[int, str], int], section: int, node: yaml.Node) -> None:
    lines[(section, "")] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            lines[(section, str(key_node.value))] = key_node.start_mark.line + 1
