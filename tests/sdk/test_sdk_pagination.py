"""`Client.tasks` walks every page the service has, lazily, newest first."""

from __future__ import annotations

import itertools

from computility.sdk import Client
from computility.server.store.tasks import LIST_LIMIT_MAX
from computility.testing.controlplane import LocalControlPlane


def test_tasks_iterates_past_the_largest_page(idle_plane: LocalControlPlane,
                                              paginated_tasks: int) -> None:
    assert paginated_tasks > LIST_LIMIT_MAX  # no single page could hold them all

    with Client(idle_plane.url, idle_plane.admin_key) as admin:
        seen = list(admin.tasks(name="page"))

    ids = [t.id for t in seen]
    assert len(ids) == paginated_tasks == len(set(ids))
    assert ids == sorted(ids, reverse=True)
    assert {t.state for t in seen} == {"pending"}


def test_tasks_stops_where_the_caller_stops(idle_plane: LocalControlPlane) -> None:
    with Client(idle_plane.url, idle_plane.admin_key) as admin:
        first = list(itertools.islice(admin.tasks(state="pending"), 3))
        limited = list(admin.tasks(name="page", limit=700))

    assert len(first) == 3 and len(limited) == 700
    assert [t.id for t in limited[:3]] == [t.id for t in first]
    assert len({t.id for t in limited}) == 700
