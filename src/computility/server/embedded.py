"""The service inside another program: uvicorn on 127.0.0.1 in a background thread.

`computility demo` runs its network this way, and the tests run the real service this way, so
both talk to it over real HTTP exactly as users and agents do.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from computility.server.app import begin_shutdown, create_app
from computility.server.settings import KEEP_ALIVE_S, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedServer:
    """The service on 127.0.0.1 in this process; `stop` shuts it down cleanly."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.admin_key: str = self.app.state.first_key or ""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2,
                                timeout_keep_alive=KEEP_ALIVE_S)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="control-plane",
                                        daemon=True)

    def start(self) -> EmbeddedServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the control plane did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        begin_shutdown(self.app)
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self.app.state.plane.engine.dispose()

    @property
    def plane(self) -> Any:
        return self.app.state.plane
