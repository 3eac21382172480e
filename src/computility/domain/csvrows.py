"""CSV records with the physical line each starts on: what every located CSV error needs.

Trace readers and the packaged throughput table read CSV the same way, so a record that spans
lines or a malformed quote is reported at the same line whichever file it is in.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from computility.domain.errors import BadInput


def csv_rows(
    path: str, lines: Iterable[str], strict: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV rows, each with the physical line on which it starts.

    ``csv.reader.line_num`` counts the lines consumed, so the line after the previous record's
    end is where the next one starts, even when a quoted field spans lines.
    """
    reader = csv.reader(lines, strict=strict)
    end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BadInput(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
        start, end = end + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield start, row
