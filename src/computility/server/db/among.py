"""`column IN (values)` as one statement whatever the number of values.

SQLAlchemy renders `column.in_(values)` with one placeholder per value, so a list of 3 ids and a
list of 4 are two statements to the database. Each distinct statement is parsed and prepared
again, and SQLite keeps up to 128 prepared statements per connection (about 12 KiB each): the
heartbeats, leases and task lists of a busy plane, each with lists of every length, filled every
connection's cache with statements run once and pushed out the ones run thousands of times.
Measured under `benchmarks/load.py` (SQLite): 291 distinct statements in 2.5 minutes, of which
about 180 were the same few queries with lists of different lengths, and SQLite's prepared
statements grew to 1.6 MiB per connection.

`among` passes the values as one parameter instead: a JSON array read by `json_each` on SQLite,
an array compared with `= ANY` on PostgreSQL. The statement's text no longer depends on the
list, so it is prepared once per connection and stays cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam, func, select
from sqlalchemy.engine import Connection


def among(conn: Connection, column: ColumnElement[Any], values: Iterable[Any],
          ) -> ColumnElement[bool]:
    """`column` is one of `values` (none when empty), as a statement of one fixed text."""
    listed = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, listed, type_=ARRAY(column.type), unique=True))
    each = func.json_each(bindparam(None, json.dumps(listed), unique=True)).table_valued("value")
    return column.in_(select(each.c.value))
