"""``computility agent``: join this machine or cluster to the network as one or more sites.

The provider's key comes from ``--token-file`` or the ``COMPUTILITY_AGENT_TOKEN`` environment
variable, never from the command line (where every user of the machine could read it in ps).

An ``https://`` control plane's certificate is verified against ``--ca-cert``, else the config's
``ca_cert``, else ``COMPUTILITY_CA_CERT``, else the system's authorities
(`computility.wire.tls`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from computility.domain.errors import UsageError

BACKENDS = ("local", "slurm", "ray", "kubernetes")


def read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UsageError(f"--token-file: cannot read {token_file}: {e.strerror}") from None
        if not token:
            raise UsageError(f"--token-file: {token_file} is empty")
        return token
    token = os.environ.get("COMPUTILITY_AGENT_TOKEN", "").strip()
    if not token:
        raise UsageError("a provider key is needed: --token-file PATH or "
                         "COMPUTILITY_AGENT_TOKEN")
    return token


def agent_command(
    server: Annotated[str | None, typer.Option(help="Control plane URL (default: "
                                               "COMPUTILITY_SERVER, else the profile).")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File holding the provider key (else COMPUTILITY_AGENT_TOKEN).")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Site id (default: the host name; with "
                                             "--config, run only this site).")] = None,
    region: Annotated[str | None, typer.Option(help="Region of the network (default ZJK).")]
    = None,
    backend: Annotated[str | None, typer.Option(help="local | slurm | ray | kubernetes.")] = None,
    config: Annotated[Path | None, typer.Option(help="Site config YAML (docs/agent.md).")]
    = None,
    state_dir: Annotated[Path | None, typer.Option(
        help="Keys and held attempts (default $XDG_DATA_HOME/computility/agent).")] = None,
    tasks_root: Annotated[Path | None, typer.Option(
        help="Run directories (default: computility-tasks under the temporary directory).")]
    = None,
    run_as: Annotated[str | None, typer.Option(help="User local tasks run as when the agent "
                                               "is root (default nobody).")] = None,
    keep_rundirs: Annotated[bool, typer.Option(help="Keep run directories after reporting.")]
    = False,
    ca_cert: Annotated[Path | None, typer.Option(
        "--ca-cert", metavar="FILE",
        help="PEM file to verify an https:// control plane's certificate against (a private "
        "CA, or the self-signed certificate itself; default: the config's ca_cert, else "
        "COMPUTILITY_CA_CERT, else the system's authorities).")] = None,
) -> None:
    """Run a site agent in the foreground until SIGINT/SIGTERM (which stops its tasks)."""
    from computility.agent.config import AgentConfig, load_config
    from computility.agent.runner import Overrides, build_sites, serve
    from computility.sdk.profile import load_profile

    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"--backend: expected one of {', '.join(BACKENDS)}, got '{backend}'")
    token = read_token(token_file)
    url = server or os.environ.get("COMPUTILITY_SERVER") or load_profile().server
    if not url:
        raise UsageError("--server: no control plane URL (nor COMPUTILITY_SERVER, nor a profile)")
    cfg = load_config(config) if config is not None else AgentConfig()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per heartbeat
    agents = build_sites(url, token, cfg, Overrides(
        site=site, region=region, backend=backend, tasks_root=tasks_root,
        state_dir=state_dir, run_as=run_as, keep_rundirs=keep_rundirs, ca_cert=ca_cert))
    serve(agents)
