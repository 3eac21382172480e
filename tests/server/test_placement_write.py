"""The scheduling cycle hands PostgreSQL its placements as array literals: every value must come
back exactly as it went in, whatever a site or pool is called."""

from __future__ import annotations

import os

import pytest

from computility.server.placements import array_literal as _array_literal

PG_SERVER = os.environ.get("COMPUTILITY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")

AWKWARD_NAMES = ["NULL", "null", "", 'say "hi"', "back\\slash", "a,b", "{braces}", " padded ",
                 "电算-东数西算", "end\\"]


def _round_trip(literal: str, cast: str) -> list[object]:
    import psycopg

    try:
        conn = psycopg.connect(PG_SERVER.replace("postgresql+psycopg", "postgresql") + "/postgres",
                               connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}: {error}")
    with conn:
        row = conn.execute(f"SELECT CAST(%s AS {cast})", (literal,)).fetchone()
    assert row is not None
    return list(row[0])


def test_names_come_back_exactly_as_written() -> None:
    assert _round_trip(_array_literal(AWKWARD_NAMES, quoted=True), "text[]") == AWKWARD_NAMES


def test_numbers_come_back_exactly_as_written() -> None:
    import numpy as np

    floats = [0.1, 1 / 3, 1e-300, 12345.678901234567, float(np.float64(2.5e-7))]
    assert _round_trip(_array_literal(floats), "float8[]") == floats
    ints = [0, 1, 2**62, int(np.int64(-7))]
    assert _round_trip(_array_literal(np.asarray(ints, np.int64)), "bigint[]") == ints


def test_nothing_makes_an_empty_array() -> None:
    assert _array_literal([]) == "{}"
    assert _round_trip(_array_literal([], quoted=True), "text[]") == []
