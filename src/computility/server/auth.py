"""API keys: ``cu_<id>_<secret>``, 256 random bits of secret, shown once and stored as SHA-256.

A key is looked up by its id and its secret compared with `hmac.compare_digest`, so neither the
database nor response timing reveals a secret. Each key acts as one role in one tenant: ``user``
(submits and reads its tenant's tasks), ``provider`` (registers and manages its tenant's sites),
``operator`` (everything, including creating tenants), or ``agent`` (one site's agent only).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "cu_"


@dataclass(frozen=True, slots=True)
class Identity:
    key_id: str
    tenant: str
    role: str
    user_id: int | None = None
    site: str | None = None

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    def may_submit(self) -> bool:
        return self.role in ("user", "operator")

    def may_provide(self) -> bool:
        return self.role in ("provider", "operator")


def new_key() -> tuple[str, str, str]:
    """(key id, full key shown once, SHA-256 hex of the secret stored)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)  # 256 bits
    return key_id, f"{PREFIX}{key_id}_{secret}", digest(secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    if not key.startswith(PREFIX):
        return None
    rest = key[len(PREFIX):]
    key_id, sep, secret = rest.partition("_")
    if not sep or not key_id or not secret or len(key) > 200:
        return None
    return key_id, secret


def secret_matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def revoked(revoked_at: float | None, now: float) -> bool:
    """Whether a key stopped working by `now` (UNIX seconds): a rotated key's ``revoked_at``
    lies in the future until its grace period ends, and it works until then."""
    return revoked_at is not None and revoked_at <= now
