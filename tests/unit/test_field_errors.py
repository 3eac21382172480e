"""A `FieldError` is one line naming the field, whatever the file it quotes holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from computility.domain.errors import FieldError
from computility.sim.traces import read_trace


def test_line_breaks_in_any_part_are_shown_escaped_on_one_line() -> None:
    error = FieldError("t.csv", 3, 2, "a\nb", "one\r\nthing", "x\ny")
    assert str(error) == "t.csv:3: field 2 (a\\nb): expected one\\r\\nthing, got 'x\\ny'"
    assert (error.field_name, error.expected, error.got) == ("a\\nb", "one\\r\\nthing", "x\\ny")


def test_a_blank_field_name_is_shown_quoted_and_a_long_one_cut() -> None:
    assert str(FieldError("t.csv", 1, 1, "", "a column", "")).startswith("t.csv:1: field 1 (''):")
    assert str(FieldError("t.csv", 1, 1, " ", "a column", "")).startswith("t.csv:1: field 1 (' '):")
    long = str(FieldError("t.csv", 1, 1, "n" * 200, "a column", ""))
    assert "(" + "n" * 77 + "...)" in long


def test_a_lone_surrogate_quoted_from_input_is_escaped_so_the_message_encodes() -> None:
    error = FieldError("t.yaml", 1, "task", "run\ud800", "text", "x\udc00")
    assert str(error) == "t.yaml:1: field task (run\\ud800): expected text, got 'x\\udc00'"
    str(error).encode("utf-8")


def test_a_trace_header_with_an_unclosed_quote_or_an_empty_column_is_one_line(
    tmp_path: Path,
) -> None:
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('",submit_s,run_s\n1,0,10\n2,5,10\n')
    with pytest.raises(FieldError) as caught:
        read_trace(quoted, "csv")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{quoted}:1: field 1 (,submit_s,run_s\\n1,0,10\\n")
    empty = tmp_path / "empty.csv"
    empty.write_text(",submit_s,run_s\n1,0,10\n")
    with pytest.raises(FieldError) as caught:
        read_trace(empty, "csv")
    assert str(caught.value).startswith(f"{empty}:1: field 1 (''): expected only the columns")
