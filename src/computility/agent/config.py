"""The site config (``--config site.yaml``): one or more sites an agent runs, and how.

```yaml
backend: local                 # local | slurm | ray | kubernetes (each site may override)
backend_options: {}            # passed to the backend (e.g. ray: {address: http://head:8265})
tasks_root: /tmp/computility-tasks   # run directories; outside the agent's data directory
run_as: nobody                 # the user local tasks run as when the agent runs as root
ca_cert: /etc/computility/ca.pem   # verify an https:// control plane against this CA (or
                               # self-signed certificate) instead of the system's authorities
sites:
  - id: lab-gpu
    region: ZJK                # a region of the network
    pue: 1.2
    electricity_price_per_kwh: 0.45
    carbon_kg_per_kwh: 0.6
    tenants: [physics]         # who may use it (default: every tenant)
    emulated: false            # true: virtual capacity (several sites on one machine)
    pools:
      - {id: cpu, device: XEON-8380, count: 64, price_per_cu_hour: 0.4}
      - {id: a100, device: A100-80GB, count: 8, devices_per_node: 8,
         price_per_cu_hour: 0.6, devices: ["0", "1", "2", "3", "4", "5", "6", "7"]}
    datasets:                  # data the site holds: tasks' `inputs:` name them
      - {id: imagenet-mini, size: 150GB, path: /data/imagenet}
```

A pool without ``count`` takes what the backend finds (the machine's cores and GPUs; Slurm's
nodes). An emulated site declares virtual capacity: its tasks are not pinned to cores (there may
be more declared than exist) and its GPU ids are handed out as declared, so the demo network's
sites are real processes without real hardware behind each. Errors name the file, line and field.

A dataset's ``size`` is read like a task spec's sizes (``150GB``, ``1.5TiB``, a bare number of
GB). The control plane learns its id and size at registration, never its ``path``: the path is
where this agent points a task that reads the dataset (``COMPUTILITY_INPUT_<ID>``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from computility.domain.errors import BadInput
from computility.domain.units import parse_size_gb
from computility.wire.spec import yaml_lines

SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
BackendName = Literal["local", "slurm", "ray", "kubernetes"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolConfig(_Strict):
    id: str = Field(pattern=SLUG)
    device: str = Field(min_length=1, max_length=64)
    count: int | None = Field(default=None, ge=1, le=10_000_000)
    devices_per_node: int = Field(default=1, ge=1)
    price_per_cu_hour: float = Field(default=0.5, ge=0, le=1e6, allow_inf_nan=False)
    devices: tuple[str, ...] | None = None  # ids for CUDA_VISIBLE_DEVICES, one per device

    @model_validator(mode="after")
    def _ids_match_count(self) -> PoolConfig:
        if self.devices is not None and self.count is not None and len(self.devices) != self.count:
            raise ValueError(f"devices: {self.count} ids (one per device), got "
                             f"{len(self.devices)}")
        return self


class DatasetConfig(_Strict):
    """A dataset the site holds a full copy of."""

    id: str = Field(pattern=SLUG)
    size: float = Field(gt=0, le=1e9, allow_inf_nan=False)
    """GB (10^9 bytes)."""
    path: Path | None = None

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: object) -> float:
        size = parse_size_gb(value)  # its ValueError says what a size looks like
        if size <= 0:
            raise ValueError("a size greater than 0, such as 150GB")
        return size

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_absolute():
            raise ValueError("an absolute path (tasks run in their own work directory)")
        return path

    def wire(self) -> dict[str, object]:
        """What registration sends: the id and size; the path stays on this machine."""
        return {"id": self.id, "size_gb": self.size}


class SiteConfig(_Strict):
    id: str = Field(pattern=SLUG)
    region: str = Field(min_length=1, max_length=64)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    pue: float = Field(default=1.3, ge=1.0, le=5.0)
    electricity_price_per_kwh: float | None = Field(default=None, ge=0, le=1e3)
    carbon_kg_per_kwh: float | None = Field(default=None, ge=0, le=5)
    tenants: tuple[str, ...] | None = None
    emulated: bool = False
    backend: BackendName | None = None
    backend_options: dict[str, Any] | None = None
    pools: tuple[PoolConfig, ...] = ()
    datasets: tuple[DatasetConfig, ...] = Field(default=(), max_length=10_000)

    @field_validator("datasets")
    @classmethod
    def _unique_datasets(cls, datasets: tuple[DatasetConfig, ...]) -> tuple[DatasetConfig, ...]:
        seen: set[str] = set()
        for d in datasets:
            if d.id in seen:
                raise ValueError(f"dataset ids used once each, got '{d.id}' twice")
            seen.add(d.id)
        return datasets

    def dataset_paths(self) -> dict[str, str]:
        """Where each dataset that has a path lies on this machine, by id."""
        return {d.id: str(d.path) for d in self.datasets if d.path is not None}


class AgentConfig(_Strict):
    backend: BackendName = "local"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    tasks_root: Path | None = None
    run_as: str = "nobody"
    ca_cert: Path | None = None
    """A PEM file the control plane's certificate is verified against (``--ca-cert`` and
    ``COMPUTILITY_CA_CERT`` say the same; the option wins, then this, then the variable)."""
    sites: tuple[SiteConfig, ...] = Field(default=(), max_length=256)

    @model_validator(mode="after")
    def _unique_ids(self) -> AgentConfig:
        seen: set[str] = set()
        for site in self.sites:
            if site.id in seen:
                raise ValueError(f"sites: site ids used once each, got '{site.id}' twice")
            seen.add(site.id)
            pools = [p.id for p in site.pools]
            if len(set(pools)) != len(pools):
                raise ValueError(f"sites: pool ids used once per site, site '{site.id}' repeats "
                                 "one")
        return self


def load_config(path: Path) -> AgentConfig:
    """Read and check a site config; `BadInput` names ``PATH:LINE`` and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInput(f"{path}: cannot read the site config: {e.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}{at}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput(f"{path}:1: expected a mapping of config fields, got {type(data).__name__}")
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as e:
        raise BadInput(_located(path, root, e)) from None


def _located(path: Path, root: yaml.Node | None, error: ValidationError) -> str:
    first = error.errors()[0]
    loc = tuple(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    lines = yaml_lines(root)
    line = next((lines[loc[:cut]] for cut in range(len(loc), -1, -1) if loc[:cut] in lines), 1)
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) else f", got {got!r}"
    if first["type"] == "extra_forbidden":
        return f"{path}:{line}: field {field}: unknown field"
    if first["type"] == "missing":
        return f"{path}:{line}: field {field}: required{shown if got else ''}"
    return f"{path}:{line}: field {field or 'config'}: {_expected(message)}{shown}"


def _expected(message: str) -> str:
    message = re.sub(r"^Input should be ", "expected ", message)
    return message if message.startswith("expected") else f"expected {message}"
