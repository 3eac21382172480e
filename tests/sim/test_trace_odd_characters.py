"""Trace records holding characters no number has: a located one-line error, never a crash.

numpy's fast text parser (which reads clean SWF chunks) can crash the whole process on a
character beyond U+FFFF, so such a record is read in a child process here: a regression shows
as the child dying by a signal rather than taking the test run down with it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from computility.domain.errors import FieldError
from computility.sim.traces import read_trace

GOOD = "1 0 -1 10 4 -1 -1 -1 -1 -1 1 -1 -1 -1 0 -1 -1 -1\n"
READ = """
import sys
from computility.domain.errors import FieldError
from computility.sim.traces import read_trace
try:
    read_trace(sys.argv[1])
except FieldError as error:
    print(error)
"""


@pytest.mark.parametrize("odd", ["\U000d4449", "\U0001f600", "\u00e9", "\x04"])
def test_a_swf_record_with_a_non_ascii_or_control_character_names_its_line_and_field(
    tmp_path: Path, odd: str
) -> None:
    path = tmp_path / "t.swf"
    bad = f"2 0 -1 10 4 -1 -1 {odd} -1 -1 1 -1 -1 -1 0 -1 -1 -1\n"
    path.write_text(GOOD * 3 + bad + GOOD, encoding="utf-8")
    for _ in range(3):  # the crash it guards against is not certain on any one read
        done = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True,
                              text=True, encoding="utf-8", timeout=120)
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
        assert done.stdout.strip() == (
            f"{path}:4: field 8 (requested processors): expected a number, got '{odd}'")
    with pytest.raises(FieldError, match=r":4: field 8 \(requested processors\)"):
        read_trace(path)
