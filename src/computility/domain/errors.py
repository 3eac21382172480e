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
        self.field_no = _one_line(field_no) if isinstance(field_no, str) else field_no
        # Parts are quoted from the user's file: one line of encodable text whatever
        # they hold (a newline, a lone surrogate), and a blank name is shown quoted.
        self.field_name = _one_line(field_name) if field_name.strip() else repr(field_name)
        self.expected = _one_line(expected)
        self.got = _one_line(got)
        shown = self.got if len(self.got) <= 80 else self.got[:77] + "..."
        name = self.field_name if len(self.field_name) <= 80 else self.field_name[:77] + "..."
        where = f"{path}:{line}: field {self.field_no} ({name})"
        super().__init__(f"{where}: expected {self.expected}, got '{shown}'")


def _one_line(text: str) -> str:
    """`text` with line breaks shown as ``\\n`` (``\\r``), and as escapes what UTF-8 cannot
    encode."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class UnknownDeviceType(BadInput):
    """A device name that is neither a catalogue id, an alias nor a family."""

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f" (known: {', '.join(known[:12])}, ...)" if known else ""
        super().__init__(f"unknown device type '{name}'{hint}")
