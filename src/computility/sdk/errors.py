"""What the SDK raises: one class per thing a caller may want to handle differently.

Every error is a `ComputilityError`, so the CLI renders each as one line; a refusal of the
caller's own input (400, 413, 422) is also a `BadInput`, so the CLI exits 2 on it.
"""

from __future__ import annotations

from typing import Any

from computility.domain.errors import BadInput, ComputilityError


class ApiError(ComputilityError):
    """The service answered with an error status; `detail` is its RFC 9457 explanation."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, str]] | None = None,
                 title: str = "") -> None:
        self.status = status
        self.detail = detail
        self.title = title
        self.errors = errors or []
        super().__init__(detail)


class InvalidRequest(ApiError, BadInput):
    """The service refused the request's content (400, 413, 422): `errors` names each field."""


class Unauthorized(ApiError):
    """No key, a wrong key, or a key whose role may not do this (401, 403)."""


class NotFound(ApiError):
    """No such task, site or tenant visible to this key (404)."""


class Refused(ApiError):
    """A well-formed request the service will not do now (402 over budget, 409 conflict)."""


class Unreachable(ComputilityError):
    """The service did not answer, after every retry."""


class TaskFailed(ComputilityError):
    """A task ended in a state other than `succeeded` where a result was expected; `detail`
    (the end of its stderr, where the SDK fetched it) says why without another request."""

    def __init__(self, task: Any, detail: str = "") -> None:
        self.task, self.detail = task, detail
        why = f": {task.reason}" if getattr(task, "reason", None) else ""
        code = f" (exit {task.exit_code})" if getattr(task, "exit_code", None) else ""
        more = f"\n{detail}" if detail else ""
        super().__init__(f"task {task.id} {task.state}{code}{why}{more}")


class VersionMismatchError(ComputilityError):
    """The site's Python or cloudpickle differs from the caller's, so a pickled function
    cannot be trusted to load there: nothing was run."""

    def __init__(self, what: str, here: str, there: str, site: str | None = None) -> None:
        self.what, self.here, self.there, self.site = what, here, there, site
        at = f"site {site}" if site else "the site"
        super().__init__(f"{what} version mismatch: this client has {what} {here}, "
                         f"{at} has {what} {there}")


class RemoteError(ComputilityError):
    """A function run by an executor raised on the site; `remote_type` and `remote_traceback`
    say what and where."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str) -> None:
        self.remote_type, self.remote_traceback = remote_type, remote_traceback
        super().__init__(f"{remote_type}: {message}")


def error_for(status: int, body: Any, fallback: str) -> ApiError:
    """The error class and message for one error response (problem details when given)."""
    detail, errors, title = fallback, [], ""
    if isinstance(body, dict):
        raw = body.get("detail")
        if isinstance(raw, str):
            detail = raw
        elif raw is not None:
            detail = str(raw)
        title = str(body.get("title") or "")
        found = body.get("errors")
        if isinstance(found, list):
            errors = [e for e in found if isinstance(e, dict)]
    kind: type[ApiError]
    if status in (400, 413, 422):
        kind = InvalidRequest
    elif status in (401, 403):
        kind = Unauthorized
    elif status == 404:
        kind = NotFound
    elif status in (402, 409):
        kind = Refused
    else:
        kind = ApiError
    return kind(status, detail, errors, title)
