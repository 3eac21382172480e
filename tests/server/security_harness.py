"""What the TLS, rate-limit and secret-logging tests share: clients bound to another loopback
address, dashboard sign-ins, self-signed certificates and `computility up` as a process."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
WRONG_KEY = "cu_0000000000000000_not-the-secret"


def client_from(url: str, address: str = "127.0.0.1", key: str | None = None,
                verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """A client whose connections leave from `address` (any 127.x.y.z works on Linux), so a
    test can be two clients at two addresses."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.HTTPTransport(local_address=address, verify=verify)
    return httpx.Client(base_url=url, headers=headers, timeout=30, transport=transport)


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    """One sign-in through the dashboard's form, as a browser posts it (no redirect followed)."""
    form = client.get("/login")
    found = CSRF_FIELD.search(form.text)
    assert found is not None, "no CSRF field in the sign-in form"
    return client.post("/login", data={"api_key": key, "csrf": found.group(1), "next": "/"})


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
         "/CN=computility-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True)
    return cert, key


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI process with its own profile and data, and no service, key or
    CA from the developer's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPUTILITY_")}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "computility", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT, as at a terminal; killed if it does not stop within a minute."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
