"""``computility up`` (the service, in the foreground) and ``computility db`` (``upgrade``,
``backup``, ``restore``: `computility.server.db.backup`).

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
from typing import TYPE_CHECKING, Annotated, Any

import typer

from computility.domain.errors import UsageError
from computility.sdk.profile import Profile, save_profile

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from computility.server.settings import Settings

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
    tls_cert: Annotated[str | None, typer.Option(
        "--tls-cert", metavar="FILE",
        help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.")]
    = None,
    tls_key: Annotated[str | None, typer.Option(
        "--tls-key", metavar="FILE",
        help="The certificate's PEM private key, unencrypted.")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="Processes answering on the port, each a replica of the service "
        "(more than one needs PostgreSQL): one per core to spare.")] = 1,
    worker: Annotated[bool, typer.Option("--worker", hidden=True,
                                         help="Run as one of the first's workers.")] = False,
) -> None:
    """Run the control plane in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    from computility.server.app import begin_shutdown, create_app, local_provider_key
    from computility.server.observability.logging import configure
    from computility.server.settings import KEEP_ALIVE_S, from_environment
    from computility.server.tls import check_server_files, pinned_context

    if not 0 < port < 65536:
        raise UsageError(f"--port: expected 1-65535, got {port}")
    from pathlib import Path

    tls = check_server_files(Path(tls_cert) if tls_cert is not None else None,
                             Path(tls_key) if tls_key is not None else None)
    from computility.cli.workers import (
        Workers,
        check_workers,
        shared_metrics,
        shared_port_socket,
    )

    check_workers(workers, db)
    fmt = resolve_log_format(log_format)
    configure(fmt)
    settings = from_environment(db_url=db, network=network, tune_heap=True)
    # Several workers share the port: each binds it with SO_REUSEPORT (before the database is
    # opened, so a port in use is refused at once).
    shared = shared_port_socket(host, port, first=not worker) if workers > 1 or worker \
        else None
    with shared_metrics(workers, worker):  # before the app makes its metrics
        no_local_site = no_local_site or worker
        app = create_app(settings)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        url = f"{'https' if tls else 'http'}://{shown}:{port}"
        key = app.state.first_key
        if key and not worker:
            try:
                written = save_profile(Profile(url, key), replace=False)
            except UsageError as error:  # an unreadable profile: the key must not be lost with it
                log.warning("profile not written (%s)", error)
                written = None
            if written is not None:
                log.info("admin key written to %s", written)
            else:  # never in the log (a log store is no place for a key): a private file
                kept = settings.data_dir / "admin-key"
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.unlink(missing_ok=True)
                with os.fdopen(os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                               encoding="utf-8") as f:
                    f.write(key + "\n")
                log.warning("profile not written: the admin key is in %s (readable by this user "
                            "only; shown nowhere else)", kept)
        log.info("serving %s", url)
        local: LocalSite | None = None
        others: Workers | None = None
        if workers > 1:
            assert db is not None  # check_workers
            argv = ["--db", db, "--host", host, "--port", str(port), "--network", network,
                    "--log-format", fmt, "--no-local-site"]
            if tls:
                argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
            others = Workers(workers, argv)

        class Server(uvicorn.Server):
            """On SIGINT/SIGTERM the local site stops first (its tasks stopped and reported while
            the service still answers), then the service; a second signal stops at once."""

            stopping_site = False

            def handle_exit(self, sig: int, frame: Any) -> None:
                if others is not None:
                    others.stopping()
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
                                       timeout_graceful_shutdown=5,
                                       timeout_keep_alive=KEEP_ALIVE_S,
                                       ssl_certfile=tls[0] if tls else None,
                                       ssl_keyfile=tls[1] if tls else None))
        if not no_local_site:
            local = LocalSite(url, local_provider_key(app.state.plane), server)
            local.verify = pinned_context(tls[0]) if tls else None
            local.start()
        if others is not None:
            others.start(ready=lambda: bool(server.started))
        try:
            server.run(sockets=[shared] if shared is not None else None)
        finally:
            if others is not None:
                others.stop()
            if local is not None:
                local.stop()


class LocalSite:
    """The agent `up` runs for this machine: one site, the local backend, in this process.

    It starts once the service answers and stops (cancelling and reporting its tasks) when the
    service is asked to stop, before the service goes away.
    """

    def __init__(self, url: str, key: str, server: Any) -> None:
        self.url, self.key, self.server = url, key, server
        self.verify: Any = None
        """With HTTPS, a context trusting exactly the service's own certificate."""
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
                                   Overrides(site=site, region=region, verify=self.verify))
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


def _database_engine(db: str | None, must_exist: bool) -> tuple[Engine, Settings]:
    """The engine for ``--db`` (default: the SQLite file `up` uses), not migrated."""
    from pathlib import Path

    from computility.server.db.engine import make_engine, sqlite_url
    from computility.server.settings import from_environment

    settings = from_environment(db_url=db)
    url = settings.db_url
    if url is None:
        if must_exist and not (settings.data_dir / "computility.db").is_file():
            raise UsageError(f"--db: no database at {settings.data_dir / 'computility.db'} "
                             "(the default; pass --db URL)")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = sqlite_url(settings.data_dir)
    engine = make_engine(url)
    name = engine.url.database if engine.dialect.name == "sqlite" else None
    if name and name != ":memory:" and not Path(name).parent.is_dir():
        raise UsageError(f"--db: directory {Path(name).parent} does not exist")
    return engine, settings


def _print_rows(rows: dict[str, int]) -> None:
    width = max((len(name) for name in rows), default=0)
    for name, n in rows.items():
        print(f"{name:<{width}}  {n}")


@db_app.command("backup")
def db_backup(
    path: Annotated[str, typer.Argument(help="The backup file to write (an SQLite database).")],
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: SQLite under "
                                           "$XDG_DATA_HOME/computility).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
) -> None:
    """Copy every row of the database, as of one instant, into the file PATH.

    Safe while the service runs. Blobs are files under the data directory: copy them apart.
    """
    from pathlib import Path

    from sqlalchemy.exc import OperationalError

    from computility.server.db.backup import backup, connect_error

    engine, _ = _database_engine(db, must_exist=True)
    try:
        summary = backup(engine, Path(path), force=force)
    except OperationalError as error:
        raise connect_error(error) from None
    finally:
        engine.dispose()
    _print_rows(summary.rows)
    print(f"backed up {summary.total} rows of {len(summary.rows)} tables at revision "
          f"{summary.revision} to {path}", file=sys.stderr)


@db_app.command("restore")
def db_restore(
    path: Annotated[str, typer.Argument(help="A file written by `computility db backup`.")],
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: SQLite under "
                                           "$XDG_DATA_HOME/computility).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Delete every row of a non-empty database first.")] = False,
) -> None:
    """Copy every row of the backup PATH into an empty database, in one transaction.

    The database is migrated to this version first; refused while a control plane runs on it.
    """
    from pathlib import Path

    from sqlalchemy.exc import OperationalError

    from computility.server.db.backup import connect_error, read_info, restore

    info = read_info(Path(path))  # a bad file is refused before the target is even opened
    engine, settings = _database_engine(db, must_exist=False)
    try:
        summary = restore(Path(path), engine, force=force, stale_s=settings.leader_stale_s,
                          info=info)
    except OperationalError as error:
        raise connect_error(error) from None
    finally:
        engine.dispose()
    _print_rows(summary.rows)
    print(f"restored {summary.total} rows of {len(summary.rows)} tables at revision "
          f"{summary.revision} from {path}", file=sys.stderr)
