"""How a client of the control plane checks the service's TLS certificate.

Every HTTP client the project makes to the control plane (the SDK, the CLI, the agent) verifies
the certificate of an ``https://`` service: against the system's trusted authorities by default,
or, when a CA certificate is given (``COMPUTILITY_CA_CERT``, the agent's ``--ca-cert`` or its
config's ``ca_cert``), against that certificate only: a private CA's, or a self-signed server
certificate itself. There is no switch that turns verification off.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from computility.domain.errors import BadInput

CA_CERT_ENV = "COMPUTILITY_CA_CERT"


def ca_context(path: str | Path, source: str) -> ssl.SSLContext:
    """A client context that trusts the certificates in the PEM file `path` and nothing else;
    `source` (the option, field or variable that named it) leads a `BadInput`."""
    try:
        return ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        raise BadInput(f"{source}: no such file: {path}") from None
    except IsADirectoryError:
        raise BadInput(f"{source}: expected a PEM certificate file, got a directory: "
                       f"{path}") from None
    except OSError as e:
        reason = e.strerror or str(e)
        if isinstance(e, ssl.SSLError):
            reason = "no PEM certificate in it (-----BEGIN CERTIFICATE-----)"
        raise BadInput(f"{source}: cannot use {path} as a CA certificate: {reason}") from None


def client_verify(ca_cert: str | Path | None = None,
                  source: str = "--ca-cert") -> ssl.SSLContext | bool:
    """What an httpx client's ``verify`` should be: the context of `ca_cert` when given, else of
    ``COMPUTILITY_CA_CERT`` when set, else True (the system's authorities)."""
    if ca_cert is not None and str(ca_cert):
        return ca_context(ca_cert, source)
    from_env = os.environ.get(CA_CERT_ENV, "").strip()
    if from_env:
        return ca_context(from_env, CA_CERT_ENV)
    return True


def certificate_problem(error: BaseException) -> str | None:
    """Why the service's certificate was refused, when that is what `error` (an httpx transport
    error) comes down to; None for any other failure."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or current)
        if isinstance(current, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            text = str(current)
            if "CERTIFICATE_VERIFY_FAILED" in text:
                return text.split("] ", 1)[-1].split(" (_ssl.c", 1)[0]
        current = current.__cause__ or current.__context__
    return None


def untrusted(server: str, problem: str) -> str:
    """The one line that says a service's certificate was refused, and what to do about it."""
    return (f"cannot reach {server}: its TLS certificate is not trusted ({problem}); give the "
            f"CA certificate that signed it (or the self-signed certificate itself) with "
            f"{CA_CERT_ENV}=FILE (the agent: --ca-cert FILE)")
