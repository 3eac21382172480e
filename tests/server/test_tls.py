"""`computility up --tls-cert --tls-key` serves HTTPS; agents, the CLI and the SDK verify its
certificate (against the system's authorities, or the CA given), and a bad file is refused
before anything starts, naming the option."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from security_harness import clean_env, cli, self_signed, stop

from computility.domain.errors import UsageError
from computility.sdk.client import Client
from computility.sdk.errors import Unreachable
from computility.server.tls import check_server_files, pinned_context
from computility.testing.controlplane import free_port, new_tenant, wait_until


@dataclass
class TlsService:
    url: str
    port: int
    cert: Path
    key: Path
    admin_key: str
    env: dict[str, str]
    tmp: Path
    log: Path


def _answers(url: str, verify: ssl.SSLContext) -> bool:
    try:
        return httpx.get(f"{url}/readyz", verify=verify, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsService]:
    """One service over HTTPS with its local site, for every test of the module."""
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(tmp)
    port = free_port()
    env = clean_env(tmp, COMPUTILITY_LOCAL_SITE="local-tls")
    log = tmp / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "computility", "up", "--port", str(port), "--tls-cert",
             str(cert), "--tls-key", str(key), "--log-format", "json"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        profile = tmp / "config" / "computility" / "config.toml"
        wait_until(profile.exists, timeout=60)
        section = tomllib.loads(profile.read_text())["default"]
        url = f"https://127.0.0.1:{port}"
        assert section["server"] == url
        wait_until(lambda: _answers(url, ssl.create_default_context(cafile=str(cert))),
                   timeout=60)
        yield TlsService(url, port, cert, key, section["api_key"], env, tmp, log)
    finally:
        stop(proc)


def test_an_agent_given_the_ca_and_the_local_site_join_and_a_task_runs_end_to_end(
    tls: TlsService,
) -> None:
    with Client(tls.url, tls.admin_key, ca_cert=tls.cert) as client:
        token = tls.tmp / "provider.key"
        with httpx.Client(base_url=tls.url, verify=ssl.create_default_context(
                cafile=str(tls.cert)), headers={"Authorization": f"Bearer {tls.admin_key}"}) \
                as admin:
            token.write_text(new_tenant(admin, "tls-owner", role="provider"))
        token.chmod(0o600)
        agent = subprocess.Popen(
            [sys.executable, "-m", "computility", "agent", "--server", tls.url, "--token-file",
             str(token), "--site", "tls-agent", "--ca-cert", str(tls.cert), "--state-dir",
             str(tls.tmp / "agent")], env=tls.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        try:
            wait_until(lambda: sorted(s.id for s in client.sites() if s.online)
                       == ["local-tls", "tls-agent"], timeout=90)
            # The CLI with the CA in the environment, end to end through the profile's https URL.
            run = cli({**tls.env, "COMPUTILITY_CA_CERT": str(tls.cert)},
                      "run", "--", "echo", "over-tls")
            assert run.returncode == 0, run.stderr
            assert run.stdout == "over-tls\n"
            task = client.submit({"run": "echo from-sdk"})
            assert task.wait(timeout=120).state == "succeeded"
            assert task.logs() == "from-sdk\n"
        finally:
            stop(agent)  # type: ignore[arg-type]
    up_log = tls.log.read_text()
    assert f'"message": "serving {tls.url}"' in up_log
    assert tls.admin_key not in up_log


def test_without_the_ca_clients_refuse_the_certificate_in_one_line_and_run_nothing(
    tls: TlsService,
) -> None:
    with Client(tls.url, tls.admin_key, ca_cert=tls.cert) as client:
        before = len(list(client.tasks()))
    run = cli(tls.env, "run", "--", "echo", "must-not-run")
    assert run.returncode == 1 and run.stdout == ""
    (line,) = run.stderr.splitlines()
    assert f"cannot reach {tls.url}: its TLS certificate is not trusted" in line
    assert "self-signed certificate" in line and "COMPUTILITY_CA_CERT=FILE" in line
    with pytest.raises(Unreachable, match="TLS certificate is not trusted"), \
            Client(tls.url, tls.admin_key, retries=4) as untrusting:
        untrusting.sites()
    with Client(tls.url, tls.admin_key, ca_cert=tls.cert) as client:
        assert len(list(client.tasks())) == before
    token = tls.tmp / "untrusting.key"
    token.write_text(tls.admin_key)
    token.chmod(0o600)
    agent = cli(tls.env, "agent", "--server", tls.url, "--token-file", str(token), "--site",
                "untrusting", "--state-dir", str(tls.tmp / "untrusting"), timeout=60)
    assert agent.returncode == 1
    assert "Traceback" not in agent.stderr
    assert "its TLS certificate is not trusted" in agent.stderr.splitlines()[-1]
    assert "--ca-cert FILE" in agent.stderr.splitlines()[-1]


def test_plain_http_to_the_https_port_gets_no_answer(tls: TlsService) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls.port}/readyz", timeout=10)


def test_a_ca_file_that_is_not_there_is_named(tls: TlsService, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    run = cli({**tls.env, "COMPUTILITY_CA_CERT": str(missing)}, "status")
    assert run.returncode == 2
    assert run.stderr.strip() == f"COMPUTILITY_CA_CERT: no such file: {missing}"
    token = tmp_path / "t.key"
    token.write_text(tls.admin_key)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    agent = cli(tls.env, "agent", "--server", tls.url, "--token-file", str(token),
                "--ca-cert", str(not_pem), "--state-dir", str(tmp_path / "a"), timeout=60)
    assert agent.returncode == 2
    assert agent.stderr.strip().endswith(
        f"--ca-cert: cannot use {not_pem} as a CA certificate: no PEM certificate in it "
        "(-----BEGIN CERTIFICATE-----)")


def _bad_files(tmp: Path) -> list[tuple[list[str], str]]:
    cert, key = self_signed(tmp)
    other_cert, other_key = self_signed(tmp, "other")
    garbage = tmp / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                       "-----END CERTIFICATE-----\n")
    encrypted = tmp / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-out", str(encrypted), "-aes256",
                    "-passout", "pass:secret"], check=True, capture_output=True)
    missing = tmp / "missing.pem"
    return [
        (["--tls-cert", str(missing), "--tls-key", str(key)],
         f"--tls-cert: no such file: {missing}"),
        (["--tls-cert", str(cert), "--tls-key", str(missing)],
         f"--tls-key: no such file: {missing}"),
        (["--tls-cert", str(cert)], "--tls-key: needed with --tls-cert"),
        (["--tls-key", str(key)], "--tls-cert: needed with --tls-key"),
        (["--tls-cert", str(key), "--tls-key", str(key)],
         f"--tls-cert: expected a PEM certificate (-----BEGIN CERTIFICATE-----) in {key}"),
        (["--tls-cert", str(garbage), "--tls-key", str(key)],
         f"--tls-cert: {garbage} holds no valid PEM certificate"),
        (["--tls-cert", str(cert), "--tls-key", str(cert)],
         f"--tls-key: expected a PEM private key (-----BEGIN PRIVATE KEY-----) in {cert}"),
        (["--tls-cert", str(cert), "--tls-key", str(other_key)],
         f"--tls-key: {other_key} is not the private key of the certificate in {cert}"),
        (["--tls-cert", str(other_cert), "--tls-key", str(encrypted)],
         f"--tls-key: {encrypted} is encrypted with a passphrase"),
        (["--tls-cert", str(tmp), "--tls-key", str(key)],
         f"--tls-cert: expected a PEM file, got a directory: {tmp}"),
    ]


def test_each_bad_certificate_or_key_file_is_named(tmp_path: Path) -> None:
    for args, message in _bad_files(tmp_path):
        given = dict(zip(args[::2], args[1::2], strict=True))
        cert, key = given.get("--tls-cert"), given.get("--tls-key")
        with pytest.raises(UsageError) as refused:
            check_server_files(Path(cert) if cert else None, Path(key) if key else None)
        assert str(refused.value).startswith(message), (args, str(refused.value))


def test_bad_files_exit_2_naming_the_option_before_anything_starts(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    cases = _bad_files(tmp_path)
    for args, message in (cases[0], cases[7]):  # a missing certificate; another's key
        run = cli(env, "up", "--port", str(free_port()), "--no-local-site", *args, timeout=60)
        assert run.returncode == 2, (args, run.stderr)
        (line,) = run.stderr.splitlines()
        assert line.startswith(message), (args, line)
    assert not (tmp_path / "data" / "computility").exists()  # no database was made
    assert not (tmp_path / "config").exists()  # no profile was written


def _handshake(cert: Path, key: Path, client: ssl.SSLContext) -> str | None:
    """Serve one TLS handshake on loopback with `cert`; None if `client` accepted it, else
    why not."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server_ctx.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    client.wrap_socket(raw, server_hostname="127.0.0.1"):
                return None
        except ssl.SSLCertVerificationError as e:
            return str(e.verify_message)
        finally:
            thread.join(timeout=10)


def test_the_local_site_trusts_exactly_its_services_certificate_whatever_name_it_bears(
    tmp_path: Path,
) -> None:
    """`up`'s own site reaches https://127.0.0.1 even with a certificate for another name, and
    trusts no other certificate."""
    cert, key = tmp_path / "named.crt", tmp_path / "named.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj",
         "/CN=cp.example.org", "-addext", "subjectAltName=DNS:cp.example.org"],
        check=True, capture_output=True)
    other_cert, other_key = self_signed(tmp_path, "other")
    assert _handshake(cert, key, pinned_context(cert)) is None
    assert _handshake(other_cert, other_key, pinned_context(cert)) is not None
    # A client given the certificate as its CA checks the name, as it should.
    named = ssl.create_default_context(cafile=str(cert))
    assert "mismatch" in str(_handshake(cert, key, named))
