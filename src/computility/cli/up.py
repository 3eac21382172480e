"""``computility up`` (the service, in the foreground) and ``computility db upgrade``.

On first start the service creates tenant ``default`` and an operator key that can also submit,
and, when no profile exists yet, writes the server URL and that key into the default profile
``$XDG_CONFIG_HOME/computility/config.toml`` (mode 600) before it starts answering, so that the
CLI on the same machine needs no other step. `COMPUTILITY_SERVER` and `COMPUTILITY_API_KEY`
override the profile.

Logs go to stderr, one JSON object per line when stderr is not a terminal (a service manager, a
container, a file: what a log store ingests) and as plain text lines at a terminal;
``--log-format json|text`` chooses explicitly (`computility.server.observability.logging`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Annotated, Any

import typer

from computility.domain.errors import UsageError
from computility.sdk.profile import Profile, save_profile

DEFAULT_PORT = 8470

log = logging.getLogger("computility.up")


LOG_FORMATS = ("auto", "json", "text")


def resolve_log_format(fmt: str, stream: Any = None) -> str:
    """``json`` or ``text``: `fmt` itself, or for ``auto`` text at a terminal, JSON elsewhere."""
    if fmt not in LOG_FORMATS:
        raise UsageError(f"--log-format: expected auto, json or text, got '{fmt}'")
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    return "text" if stream.isatty() else "json"

db_app = typer.Typer(help="The control plane's database.", no_args_is_help=True)


def up_command(
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: SQLite under "
                                           "$XDG_DATA_HOME/computility).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = DEFAULT_PORT,
    no_local_site: Annotated[bool, typer.Option("--no-local-site",
                                                help="Do not run a local agent.")] = False,
    network: Annotated[str, typer.Option(help="Topology sites register into.")] = "default",
    log_format: Annotated[str, typer.Option(
        "--log-format", help="auto, json or text: log lines as JSON objects or text (auto: "
        "text at a terminal, JSON otherwise).")] = "auto",
) -> None:
    """Run the control plane in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    from computility.server.app import begin_shutdown, create_app, local_provider_key
    from computility.server.observability.logging import configure
    from computility.server.settings import from_environment

    if not 0 < port < 65536:
        raise UsageError(f"--port: expected 1-65535, got {port}")
    configure(resolve_log_format(log_format))
    settings = from_environment(db_url=db, network=network)
    app = create_app(settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    key = app.state.first_key
    if key:
        try:
            written = save_profile(Profile(url, key), replace=False)
        except UsageError as error:  # an unreadable profile: the key must not be lost with it
            log.warning("profile not written (%s)", error)
            written = None
        if written is not None:
            log.info("admin key written to %s", written)
        else:
            log.warning("admin key (shown once): %s", key)
    log.info("serving %s", url)
    local: LocalSite | None = None

    class Server(uvicorn.Server):
        """On SIGINT/SIGTERM the local site stops first (its tasks stopped and reported while
        the service still answers), then the service; a second signal stops at once."""

        stopping_site = False

        def handle_exit(self, sig: int, frame: Any) -> None:
            if local is None or self.stopping_site:
                begin_shutdown(app)
                super().handle_exit(sig, frame)
                return
            self.stopping_site = True
            log.info("stopping the local site and its tasks")
            site = local

            def then() -> None:
                site.stop()
                begin_shutdown(app)
                uvicorn.Server.handle_exit(self, sig, frame)

            threading.Thread(target=then, name="stop-local-site", daemon=True).start()

    # Uvicorn's lines go through the handler `configure` installed (log_config=None), and its
    # access log is off: the service writes its own, with request ids (`computility.access`).
    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                   log_config=None, access_log=False,
                                   timeout_graceful_shutdown=5))
    if not no_local_site:
        local = LocalSite(url, local_provider_key(app.state.plane), server)
        local.start()
    try:
        server.run()
    finally:
        if local is not None:
            local.stop()


class LocalSite:
    """The agent `up` runs for this machine: one site, the local backend, in this process.

    It starts once the service answers and stops (cancelling and reporting its tasks) when the
    service is asked to stop, before the service goes away.
    """

    def __init__(self, url: str, key: str, server: Any) -> None:
        self.url, self.key, self.server = url, key, server
        self.agent: Any = None
        self._thread = threading.Thread(target=self._run, name="local-site", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from computility.agent.config import AgentConfig
        from computility.agent.runner import Overrides, build_sites

        while not self.server.started:
            if self.server.should_exit:
                return
            time.sleep(0.05)
        site = os.environ.get("COMPUTILITY_LOCAL_SITE") or None
        region = os.environ.get("COMPUTILITY_LOCAL_REGION") or None
        try:
            (agent,) = build_sites(self.url, self.key, AgentConfig(),
                                   Overrides(site=site, region=region))
            self.agent = agent.start()
        except Exception as e:  # the service stays up without its local site
            log.error("local site not started: %s", e)
            return
        log.info("local site '%s' joined", agent.site.id)

    def stop(self) -> None:
        self._thread.join(timeout=30)
        agent, self.agent = self.agent, None
        if agent is not None:
            agent.stop(cancel_tasks=True)


@db_app.command("upgrade")
def db_upgrade(
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: SQLite under "
                                           "$XDG_DATA_HOME/computility).")] = None,
) -> None:
    """Apply every pending migration (the service also does this on start)."""
    from computility.server.app import open_database
    from computility.server.db.engine import current_revision
    from computility.server.settings import Settings

    engine = open_database(Settings(db_url=db))
    print(f"database at revision {current_revision(engine)}", file=sys.stderr)
