"""Building an agent's sites from the command line and the site config, and running them.

One process can serve several sites (each with its own key, pools, backend and state directory),
which is how one machine emulates a network of sites with real processes.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import signal
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from computility.agent.allocation import Pools, resolve_pools
from computility.agent.backends import make_backend
from computility.agent.config import AgentConfig, SiteConfig
from computility.agent.hardware import detect
from computility.agent.rundir import check_enterable, default_tasks_root
from computility.agent.site import SiteAgent
from computility.domain.errors import BadInput
from computility.wire.tls import client_verify

log = logging.getLogger("computility.agent")
DEFAULT_REGION = "ZJK"


def agent_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "computility" / "agent"


def default_site_id() -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0]) or "local"
    return name if name[0].isalnum() else f"site-{name}"[:64]


@dataclass(frozen=True)
class Overrides:
    """What the command line says, over the config file."""

    site: str | None = None
    region: str | None = None
    backend: str | None = None
    tasks_root: Path | None = None
    state_dir: Path | None = None
    run_as: str | None = None
    keep_rundirs: bool = False
    ca_cert: Path | None = None
    verify: ssl.SSLContext | None = None
    """A prepared context for the control plane's certificate, over `ca_cert` and the config
    (the local site of ``computility up`` trusts exactly the certificate its service serves)."""


def task_user(name: str) -> tuple[tuple[int, int] | None, str | None]:
    """Who local tasks run as: `name` when the agent is root, else the agent's own user."""
    if os.geteuid() != 0:
        return None, pwd.getpwuid(os.geteuid()).pw_name
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise BadInput(f"run_as: expected an existing user, got '{name}'") from None
    if entry.pw_uid == 0:
        raise BadInput("run_as: tasks never run as root; name an unprivileged user")
    return (entry.pw_uid, entry.pw_gid), entry.pw_name


def build_sites(server: str, provider_key: str, config: AgentConfig,
                over: Overrides) -> list[SiteAgent]:
    sites = list(config.sites) or [SiteConfig(id=over.site or default_site_id(),
                                              region=over.region or DEFAULT_REGION)]
    if over.site and config.sites:
        sites = [s for s in sites if s.id == over.site]
        if not sites:
            raise BadInput(f"--site: expected a site of the config, got '{over.site}'")
    if over.region and config.sites:
        sites = [s.model_copy(update={"region": over.region}) for s in sites]
    hardware = detect()
    for note in hardware.notes:
        log.info("hardware: %s", note)
    verify: ssl.SSLContext | bool = over.verify if over.verify is not None else \
        client_verify(over.ca_cert, "--ca-cert") if over.ca_cert is not None else \
        client_verify(config.ca_cert, "ca_cert")
    tasks_root = over.tasks_root or config.tasks_root or default_tasks_root()
    owner, user = task_user(over.run_as or config.run_as)
    try:
        check_enterable(tasks_root, owner)
    except ValueError as e:
        raise BadInput(str(e)) from None
    agents = []
    for site in sites:
        backend_name = over.backend or site.backend or config.backend
        options: dict[str, Any] = dict(config.backend_options)
        options.update(site.backend_options or {})
        if backend_name == "local" and owner is not None:
            options.setdefault("run_as", owner)
        backend = make_backend(backend_name, options)
        discovered = None
        if backend_name == "slurm" and not site.pools:
            from computility.agent.backends.slurm import discover_pools

            discovered = list(discover_pools())
        pools = Pools(resolve_pools(site, hardware, discovered))
        state_dir = (over.state_dir or agent_home()) / site.id
        agents.append(SiteAgent(
            server=server, provider_key=provider_key, site=site, pools=pools, backend=backend,
            state_dir=state_dir, tasks_root=tasks_root,
            run_as=owner if backend_name == "local" else None, user=user,
            keep_rundirs=over.keep_rundirs, verify=verify))
    return agents


def serve(agents: list[SiteAgent]) -> None:
    """Run the sites until SIGINT or SIGTERM; then stop their tasks, report them and leave."""
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for agent in agents:
            agent.start()
        while not done.wait(1.0):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for agent in agents:
            agent.stop(cancel_tasks=True)
