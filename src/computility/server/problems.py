"""Errors the API answers with: RFC 9457 problem details naming the field at fault.

Every failure a client can cause is an `ApiError` (or a validation error turned into one), so a
client always gets a 4xx with a body it can act on, never a 500 with a traceback.
"""

from __future__ import annotations

from computility.domain.errors import ComputilityError


class ApiError(ComputilityError):
    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None,
        *, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        """Sent with the answer (a 429's ``Retry-After``)."""


def not_found(what: str, key: object) -> ApiError:
    # The same answer whether it does not exist or belongs to someone else: no probing.
    return ApiError(404, "Not Found", f"no {what} '{key}'")


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "Forbidden", detail)


def conflict(detail: str) -> ApiError:
    return ApiError(409, "Conflict", detail)


def invalid(field: str, message: str, status: int = 422) -> ApiError:
    title = "Bad Request" if status == 400 else "Unprocessable Content"
    return ApiError(status, title, f"{field}: {message}",
                    [{"field": field, "message": message}])
