"""The demo network: the real service on a temporary SQLite database on a free port, and one
agent serving five emulated national clusters (``data/demo-sites.yaml``) from this machine.

Everything lives under one temporary directory; `stop` stops the sites' tasks, then the
service, and the directory goes with it. Nothing is written to the user's profile or data
directories unless the caller asks (`computility demo --keep`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from computility.agent.config import load_config
from computility.agent.runner import Overrides, build_sites
from computility.sdk.client import Client
from computility.server.embedded import EmbeddedServer
from computility.server.settings import Settings

PROVIDER_TENANT = "national-hubs"
TENANTS = ("climate-lab", "vision-startup")
ERA5_ROWS = 20_000


def sites_yaml() -> str:
    return resources.files("computility.data").joinpath("demo-sites.yaml").read_text("utf-8")


def write_era5_sample(directory: Path, rows: int = ERA5_ROWS) -> None:
    """A small real slice of the emulated 350 GB dataset: daily 2 m temperatures (°C) per
    province, a seeded smooth seasonal curve, as the data-heavy task's input."""
    import math
    import random

    provinces = ("Gansu", "Hebei", "Sichuan", "Guizhou", "Zhejiang", "Guangdong", "Shaanxi",
                 "Hubei")
    rng = random.Random(2023)
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["day,province,t2m_c"]
    for i in range(rows):
        day, province = i // len(provinces), provinces[i % len(provinces)]
        base = 12 + 14 * math.sin(2 * math.pi * (day % 365 - 105) / 365)
        lines.append(f"{day % 365 + 1},{province},{base + rng.gauss(0, 3):.2f}")
    path = directory / "t2m-daily.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o644)
    directory.chmod(0o755)


@dataclass
class DemoNetwork:
    """Start with `start()`, or use as a context manager."""

    root: Path | None = None
    keys: dict[str, str] = field(default_factory=dict)
    """API keys by tenant (users), plus ``operator`` and ``provider``."""

    def __post_init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.server: EmbeddedServer | None = None
        self.agents: list[Any] = []

    @property
    def url(self) -> str:
        assert self.server is not None, "the demo network is not started"
        return self.server.url

    def client(self, who: str = "operator", **options: Any) -> Client:
        return Client(self.url, self.keys[who], **options)

    def __enter__(self) -> DemoNetwork:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> DemoNetwork:
        """Start the service and the sites; on any failure, whatever started is stopped."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> DemoNetwork:
        if self.root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="computility-demo-")
            self.root = Path(self._tmp.name)
        self.root.chmod(0o755)  # the sites' tasks read the dataset under it
        for name in ("computility.agent", "computility.leadership", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # Supply and demand sampled every 5 s: the demo network lives minutes, not days.
        settings = Settings(data_dir=self.root / "service", cycle_s=0.5, sample_s=5.0)
        self.server = EmbeddedServer(settings).start()
        self.keys["operator"] = self.server.admin_key
        with self.client() as admin:
            for tenant in (PROVIDER_TENANT, *TENANTS):
                admin.create_tenant(tenant)
            provider = admin.create_key(PROVIDER_TENANT, "hub-ops", "provider").key
            assert provider is not None
            self.keys["provider"] = provider
            for tenant in TENANTS:
                key = admin.create_key(tenant, f"{tenant}-user").key
                assert key is not None
                self.keys[tenant] = key
        self._start_sites(provider)
        return self

    def _start_sites(self, provider_key: str) -> None:
        assert self.root is not None
        data = self.root / "data"
        write_era5_sample(data / "era5-china-2023")
        config_path = self.root / "sites.yaml"
        config_path.write_text(sites_yaml().replace("{data}", str(data)), encoding="utf-8")
        config = load_config(config_path)
        self.agents = build_sites(self.url, provider_key, config,
                                  Overrides(state_dir=self.root / "agent",
                                            tasks_root=self.root / "tasks"))
        for agent in self.agents:
            agent.start()
        want = {s.id for s in config.sites}
        deadline = time.monotonic() + 30
        with self.client() as admin:
            while {s.id for s in admin.sites() if s.online} < want:
                if time.monotonic() > deadline:
                    raise RuntimeError("the demo sites did not come online in 30 s")
                time.sleep(0.1)

    def stop(self) -> None:
        stopping = [threading.Thread(target=agent.stop, kwargs={"cancel_tasks": True})
                    for agent in self.agents]
        for t in stopping:
            t.start()
        for t in stopping:
            t.join()
        self.agents = []
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
