"""The small error hierarchy that every edge (CLI, API, file readers) turns into a clear message.

Errors carry enough structure for an edge to render them; they never carry tracebacks to users.
"""

from __future__ import annotations


class ComputilityError(Exception):
    """Base class of every error the project raises on purpose."""


class BadInput(ComputilityError):
    """Input that the user can fix: the message names where and what was expected.

    The CLI maps it to exit code 2 and prints `str(error)` as one line.
    """


class UsageError(BadInput):
    """A command-line or API argument that is malformed or inconsistent with the others."""


class FieldError(BadInput):
    """A bad value in a file, located to the physical line and field.

    Rendered as ``PATH:LINE: field N (name): expected ..., got '...'``, the format that scripts
    parse (see CONTRACT.md).
    """

    def __init__(
        self,
        path: str,
        line: int,
        field_no: int | str,
        field_name: str,
        expected: str,
        got: str,
    ) -> None:
        self.path = path
        self.line = line
        self.field_no = field_no
        self.field_name = field_name
        self.expected = expected
        self.got = got
        shown = got if len(got) <= 80 else got[:77] + "..."
        shown = shown.replace("\n", "\\n")
        super().__init__(
            f"{path}:{line}: field {field_no} ({field_name}): expected {expected}, got '{shown}'"
        )


class UnknownDeviceType(BadInput):
    """A device name that is neither a catalogue id, an alias nor a family."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f" (known: {', '.join(known[:12])}, ...)" if known else ""
        super().__init__(f"unknown device type '{name}'{hint}")
