"""The service over HTTPS: checking ``--tls-cert``/``--tls-key`` before anything starts.

Uvicorn would only find a bad file once the database is open and the first key written, and
then with a traceback; `check_server_files` reads both files the way uvicorn will and says which
option is at fault, in one line.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from computility.domain.errors import UsageError


def _readable(option: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UsageError(f"{option}: no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{option}: expected a PEM file, got a directory: {path}") from None
    except OSError as e:
        raise UsageError(f"{option}: cannot read {path}: {e.strerror}") from None


def check_server_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """(certificate, key) paths for uvicorn when both are given and usable, None when neither
    is; `UsageError` naming the option otherwise."""
    if cert is None and key is None:
        return None
    if cert is None:
        raise UsageError("--tls-cert: needed with --tls-key (the certificate the key belongs to)")
    if key is None:
        raise UsageError("--tls-key: needed with --tls-cert (the certificate's private key)")
    text = _readable("--tls-cert", cert)
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UsageError(f"--tls-cert: expected a PEM certificate (-----BEGIN CERTIFICATE-----) "
                         f"in {cert}")
    try:
        ssl.create_default_context(cafile=str(cert))
    except ssl.SSLError:
        raise UsageError(f"--tls-cert: {cert} holds no valid PEM certificate") from None
    key_text = _readable("--tls-key", key)
    if "PRIVATE KEY-----" not in key_text:
        raise UsageError(f"--tls-key: expected a PEM private key (-----BEGIN PRIVATE KEY-----) "
                         f"in {key}")
    asked = False

    def no_passphrase() -> bytes:
        nonlocal asked
        asked = True
        return b""

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key), password=no_passphrase)
    except ssl.SSLError as e:
        if asked or "ENCRYPTED" in key_text:
            raise UsageError(f"--tls-key: {key} is encrypted with a passphrase; give an "
                             f"unencrypted key (readable by this user only)") from None
        if "KEY_VALUES_MISMATCH" in str(e) or "key values mismatch" in str(e):
            raise UsageError(f"--tls-key: {key} is not the private key of the certificate in "
                             f"{cert}") from None
        raise UsageError(f"--tls-key: {key} is not a usable private key for {cert} "
                         f"({e.reason or e})") from None
    return str(cert), str(key)


def pinned_context(cert: str | Path) -> ssl.SSLContext:
    """A client context that trusts exactly the certificate in `cert`, whatever host name it
    names: how the local site of ``computility up`` reaches its own service over loopback (a
    certificate for ``cp.example.org`` still serves ``https://127.0.0.1``). Safe because the
    certificate itself is the only trust anchor (the first of the file, never the chain's
    authorities): nothing but a server holding its key passes."""
    text = Path(cert).read_text(encoding="utf-8", errors="replace")
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    context = ssl.create_default_context(cadata=text[begin:end])
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context
