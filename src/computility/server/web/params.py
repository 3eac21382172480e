"""Reading ids from paths and query strings: ASCII digits only, at most 18 of them.

`str.isdigit` is not enough: it accepts ``"²"`` (which `int` refuses) and strings of thousands
of digits (which `int` refuses past 4,300, and the database past 2^63): both would be a 500
instead of a clear answer.
"""

from __future__ import annotations

import re

ID = re.compile(r"[0-9]{1,18}")


def positive_id(raw: str | None) -> int | None:
    """The id `raw` names, or None when it is not one (the caller answers 400 or 404)."""
    if raw is None or not ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value >= 1 else None
