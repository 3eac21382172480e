"""The task spec (CONTRACT.md, "Task spec"): what a user asks for, read and checked in one place.

The CLI, the SDK and the REST API all accept the same YAML (or its JSON equivalent), so it is
parsed here into typed, normalised values — sizes in GB, durations in seconds, money in
micro-units, device names checked against the catalogue — and every mistake is reported once, in
one format: ``PATH:LINE: field resources (cpus): expected ..., got '...'``. Nothing here imports
a web framework or a database, so the agent and the SDK use it without the server.

Forms the contract allows and how they are normalised:

- ``resources.cpus``: ``4`` (exactly) or ``"4+"`` (at least 4: ``cpus_at_least``).
- ``resources.accelerators``: ``A100:2`` (one choice), ``[A100:2, H100:1]`` (preference order) or
  ``{A100: 2, L40S: 4}`` (any of them): `Accelerators` keeps the choices and which form it was.
  Names are catalogue ids, aliases or families (``A100`` matches every A100 variant).
- sizes (``memory``, ``disk``): ``16GB``, ``1.5TiB`` or a bare number of GB.
- durations (``estimate``, ``timeout``, a relative ``deadline``): ``90s``, ``30m``, ``2h``,
  ``1d``, combinations such as ``1h30m``, or a bare number of seconds.
- ``placement.deadline``: a duration from submission, or an ISO-8601 time with a UTC offset.
- ``placement.max_price``: a decimal amount of the network's currency, kept in micro-units.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from computility.domain.devices import default_catalogue
from computility.domain.errors import BadInput, FieldError, UnknownDeviceType
from computility.domain.money import MICRO
from computility.domain.units import parse_size_gb

PRECISIONS = ("fp64", "fp32", "fp16", "int8")
MAX_DURATION_S = 366 * 24 * 3600.0
"""Longest timeout, estimate or relative deadline a spec may state."""
MAX_PRICE = Decimal(10**12)
SPEC_POLICIES = ("cheapest", "fastest", "greenest", "balanced")
MAX_ACCELERATORS = 100_000

_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)d)?(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?"
                       r"(?:(\d+(?:\.\d*)?)s)?")
_ACCEL = re.compile(r"^\s*([^:\s]+)\s*(?::\s*(\d+)\s*)?$")


def parse_duration_s(value: object) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1h30m`` or a bare number of seconds, in seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30m, 2h or 90s")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0 or value > MAX_DURATION_S:
            raise ValueError("a non-negative duration of at most a year")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a duration such as 30m, 2h or 90s")
    text = value.strip().lower()
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        raise ValueError("a duration such as 30m, 2h or 90s")
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds > MAX_DURATION_S:
        raise ValueError("a duration of at most a year")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcceleratorChoice(_Strict):
    """``count`` devices matching ``device`` (an id, alias or family)."""

    device: str = Field(max_length=64)
    count: int = Field(ge=1, le=MAX_ACCELERATORS)


class Accelerators(_Strict):
    """The accelerators a task accepts: one choice, choices in preference order, or any of them."""

    form: Literal["one", "preference", "any"]
    choices: tuple[AcceleratorChoice, ...]


def _choice(text: str) -> AcceleratorChoice:
    match = _ACCEL.match(text)
    if match is None:
        raise ValueError("TYPE:N such as A100:2")
    return _accelerator(match.group(1), int(match.group(2) or 1))


def _accelerator(device: str, count: int) -> AcceleratorChoice:
    if not 1 <= count <= MAX_ACCELERATORS:
        raise ValueError(f"from 1 to {MAX_ACCELERATORS} {device} devices")
    if len(device) > 64:
        raise ValueError("a device name of at most 64 characters")
    return AcceleratorChoice(device=device, count=count)


class Resources(_Strict):
    """What one attempt needs (sizes in GB, durations in seconds)."""

    cpus: int = Field(default=1, ge=1, le=1_000_000)
    cpus_at_least: bool = False
    memory_gb: float | None = Field(default=None, ge=0, le=1e9)
    accelerators: Accelerators | None = None
    nodes: int = 1
    disk_gb: float | None = Field(default=None, ge=0, le=1e12)
    estimate_s: float | None = Field(default=None, gt=0)
    estimate_on: str | None = None
    precision: Literal["fp64", "fp32", "fp16", "int8"] = "fp32"
    profile: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        if "cpus" in out:
            cpus = out["cpus"]
            if isinstance(cpus, str) and cpus.strip().endswith("+"):
                out["cpus"] = cpus.strip()[:-1]
                out["cpus_at_least"] = True
        for field, target in (("memory", "memory_gb"), ("disk", "disk_gb")):
            if field in out:
                out[target] = _convert(parse_size_gb, out.pop(field), field)
        if "estimate" in out:
            out["estimate_s"] = _convert(parse_duration_s, out.pop("estimate"), "estimate")
        if "accelerators" in out and out["accelerators"] is not None:
            out["accelerators"] = _convert(_accelerators, out["accelerators"], "accelerators")
        return out

    @field_validator("nodes")
    @classmethod
    def _one_node(cls, nodes: int) -> int:
        if nodes != 1:
            raise ValueError("1 (multi-node tasks are reserved for a later version)")
        return nodes

    @model_validator(mode="after")
    def _known_devices(self) -> Resources:
        catalogue = default_catalogue()
        names = [("accelerators", c.device) for c in self.accelerators.choices] if (
            self.accelerators
        ) else []
        if self.estimate_on is not None:
            names.append(("estimate_on", self.estimate_on))
        for field, name in names:
            try:
                catalogue.match(name)
            except UnknownDeviceType:
                raise ValueError(
                    f"{field}: a device type of the catalogue (an id, alias or family such as "
                    f"A100)"
                ) from None
        return self


def _accelerators(raw: object) -> Accelerators:
    if isinstance(raw, str):
        return Accelerators(form="one", choices=(_choice(raw),))
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return Accelerators(form="preference", choices=tuple(_choice(x) for x in raw))
    if isinstance(raw, dict) and raw:
        choices = []
        for device, count in raw.items():
            if isinstance(count, bool) or not isinstance(count, int):
                raise ValueError(f"a whole number of {device} devices")
            choices.append(_accelerator(str(device), count))
        return Accelerators(form="any", choices=tuple(choices))
    raise ValueError("TYPE:N, a list of TYPE:N in preference order, or a mapping TYPE: N")


def _convert(parse: Any, value: object, field: str) -> Any:
    try:
        return parse(value)
    except ValidationError as error:
        # A nested model's own check: its first complaint, not pydantic's multi-line report.
        first = error.errors()[0]
        raise ValueError(f"{field}: {str(first['msg']).removeprefix('Value error, ')}") from None
    except ValueError as error:
        raise ValueError(f"{field}: {error}") from None


class Input(_Strict):
    """A dataset the task reads; ``local`` residency means the data may not move."""

    dataset: str = Field(min_length=1)
    residency: Literal["any", "local"] = "any"


class Placement(_Strict):
    """Where and when the task may run (money in micro-units, latency in ms)."""

    policy: Literal["cheapest", "fastest", "greenest", "balanced"] = "balanced"
    regions: tuple[str, ...] | None = None
    sites: tuple[str, ...] | None = None
    owners: tuple[str, ...] | None = None
    exclude_sites: tuple[str, ...] = ()
    deadline_in_s: float | None = Field(default=None, gt=0)
    deadline_at: datetime | None = None
    max_price_micro: int | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0, le=1e6, allow_inf_nan=False)
    user_location: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        if "deadline" in out:
            deadline = out.pop("deadline")
            if isinstance(deadline, datetime):
                out["deadline_at"] = deadline
            elif isinstance(deadline, str) and "T" in deadline:
                out["deadline_at"] = _iso_time(deadline)
            else:
                out["deadline_in_s"] = _convert(parse_duration_s, deadline, "deadline")
        if "max_price" in out:
            out["max_price_micro"] = _money(out.pop("max_price"))
        return out


def _iso_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("deadline: a duration (6h) or an ISO-8601 time") from None
    if when.tzinfo is None:
        raise ValueError("deadline: an ISO-8601 time with a UTC offset")
    return when


def _money(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("max_price: an amount such as 50 or 12.5")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("max_price: an amount such as 50 or 12.5") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_PRICE:
        raise ValueError(f"max_price: a non-negative amount of at most {MAX_PRICE}")
    return int((amount * MICRO).to_integral_value(rounding=ROUND_HALF_UP))


class TaskSpec(_Strict):
    """One task request, normalised."""

    name: str | None = Field(default=None, max_length=256, pattern=r"^[^\x00]*$")
    run: str = Field(min_length=1, max_length=100_000)
    setup: str | None = None
    workdir: str | None = None
    image: None = None
    envs: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    inputs: tuple[Input, ...] = ()
    outputs: tuple[str, ...] = ()
    placement: Placement = Field(default_factory=Placement)
    retries: int = Field(default=0, ge=0, le=100)
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        if "timeout" in out:
            out["timeout_s"] = _convert(parse_duration_s, out.pop("timeout"), "timeout")
        return out

    @field_validator("run")
    @classmethod
    def _command(cls, run: str) -> str:
        if not run.strip():
            raise ValueError("a shell command")
        return run


def parse_task_spec(text: str, source: str = "task.yaml") -> TaskSpec:
    """Read a task spec from YAML (or JSON) text.

    Raises:
        BadInput: not YAML, not a mapping, or nested too deeply to be a task spec.
        FieldError: a field is unknown, missing or malformed; the message names the line and
            the field (``resources (cpus)``) and what was expected.
    """
    try:
        return _parse_task_spec(text, source)
    except RecursionError:
        raise too_deep(source) from None


def too_deep(source: str) -> BadInput:
    """Lists or mappings nested past what the parsers recurse through: no spec is that deep."""
    return BadInput(f"{source}: lists or mappings nested too deeply to be a task spec")


def _parse_task_spec(text: str, source: str) -> TaskSpec:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise BadInput(f"{source}{at}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise FieldError(source, 1, "task", "task", "a mapping of task fields", str(data))
    lines = yaml_lines(root)
    data = _characters(data, (), lines, source)
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as error:
        raise _located(error, lines, source, data) from None


def task_spec_from_mapping(data: object, source: str = "task") -> TaskSpec:
    """Check an already-parsed spec (a JSON body); errors name the field, with line 1."""
    if not isinstance(data, dict):
        raise FieldError(source, 1, "task", "task", "a mapping of task fields", str(data))
    try:
        checked: dict[str, Any] = _characters(data, (), {}, source)
        return TaskSpec.model_validate(checked)
    except ValidationError as error:
        raise _located(error, {}, source, checked) from None
    except RecursionError:
        raise too_deep(source) from None


def _paired(text: str) -> str:
    """`text` with each UTF-16 surrogate pair joined into its character (lone ones stay)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        return text


def _characters(
    value: Any, loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int], source: str
) -> Any:
    """`value` with every string made of whole characters.

    YAML reads a JSON escape of a character beyond U+FFFF (``"\\ud83d\\ude00"``) as two lone
    UTF-16 surrogates, which no later step can encode: each pair is joined into its character.
    A lone surrogate (JSON allows ``"\\ud800"``) is no character at all and is refused, located.
    """
    if isinstance(value, str):
        value = _paired(value)
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            line = next((lines[loc[:cut]] for cut in range(len(loc), -1, -1)
                         if loc[:cut] in lines), 1)
            parent = ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc[:-1])
            raise FieldError(source, line, parent.replace(".[", "[") or "task",
                             str(loc[-1]) if loc else "task",
                             "text (a lone UTF-16 surrogate is not a character)",
                             value) from None
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key = _characters(key, loc, lines, source)
            out[key] = _characters(item, (*loc, key if isinstance(key, str) else str(key)),
                                   lines, source)
        return out
    if isinstance(value, list):
        return [_characters(item, (*loc, i), lines, source) for i, item in enumerate(value)]
    return value


def yaml_lines(root: yaml.Node | None) -> dict[tuple[str | int, ...], int]:
    """1-based line of every key and list item, by its path of keys and indices."""
    out: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        out[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*path, str(key.value))
                out[here] = key.start_mark.line + 1
                walk(value, here)
                out[here] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return out


_RENAMED = {"memory_gb": "memory", "disk_gb": "disk", "estimate_s": "estimate",
            "timeout_s": "timeout", "max_price_micro": "max_price", "deadline_in_s": "deadline",
            "deadline_at": "deadline", "cpus_at_least": "cpus"}


def _located(
    error: ValidationError,
    lines: dict[tuple[str | int, ...], int],
    source: str,
    data: dict[str, Any],
) -> FieldError:
    first = error.errors()[0]
    loc = tuple(_RENAMED.get(str(p), p) if isinstance(p, str) else p for p in first["loc"])
    # A model-level check names no field; its message starts with the field it is about.
    message = str(first["msg"]).removeprefix("Value error, ")
    if ": " in message and message.split(": ", 1)[0].isidentifier():
        field, message = message.split(": ", 1)
        loc = (*loc, field)
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
    line = 1
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            line = lines[loc[:cut]]
            break
    parent = ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc[:-1]).replace(".[", "[")
    name = str(loc[-1]) if loc else "task"
    kind = first["type"]
    if message.startswith("Input should be "):
        message = message.removeprefix("Input should be ").split(", unable")[0]
    expected = {
        "missing": "this required field",
        "extra_forbidden": "no such field (check the spelling against the task spec)",
    }.get(kind, message)
    value = _value_at(data, loc)
    got = "" if kind == "missing" else _shown(first.get("input") if value is _NONE else value)
    return FieldError(source, line, parent or "task", name, expected, got)


_NONE = object()


def _value_at(data: object, loc: tuple[str | int, ...]) -> object:
    """The value the user wrote at `loc`, or `_NONE` if the path is not in their document."""
    here = data
    for part in loc:
        in_mapping = isinstance(here, dict) and part in here
        in_list = isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here)
        if not (in_mapping or in_list):
            return _NONE
        here = here[part]  # type: ignore[index]
    return here


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def json_safe(value: Any) -> Any:
    """YAML's own types (an unquoted time is a datetime) as the JSON the spec is stored as, and
    its escaped surrogate pairs as the characters they stand for."""
    if isinstance(value, str):
        return _paired(value)
    if isinstance(value, dict):
        return {_paired(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
