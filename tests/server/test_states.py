"""The one table of legal task and attempt state changes (`computility.server.states`).

Pure unit tests: every ordered pair of states is checked against the table, so a transition
added or removed by accident changes a test's outcome rather than a row in production.
"""

from __future__ import annotations

from collections import deque
from itertools import product

import pytest

from computility.server import states
from computility.server.states import (
    ATTEMPT_TERMINAL,
    ATTEMPT_TRANSITIONS,
    TASK_TRANSITIONS,
    TERMINAL,
    IllegalTransition,
    check_attempt,
    check_task,
    sources,
)
from computility.wire.api import ATTEMPT_STATES, TASK_STATES, TERMINAL_TASK_STATES

TASK_PAIRS = list(product(sorted(TASK_TRANSITIONS), repeat=2))
ATTEMPT_PAIRS = list(product(sorted(ATTEMPT_TRANSITIONS), repeat=2))


def reachable(table: dict[str, frozenset[str]], start: str) -> set[str]:
    """Every state reachable from `start` (itself included) by legal transitions."""
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in table[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# -- the tables describe the states the API shows -------------------------------------------------


def test_the_task_table_has_a_row_for_exactly_the_task_states_of_the_api() -> None:
    """Every state a client can see is governed by the table, and the table invents none."""
    assert set(TASK_TRANSITIONS) == set(TASK_STATES)
    assert set(TERMINAL) == set(TERMINAL_TASK_STATES)


def test_the_attempt_table_has_a_row_for_exactly_the_attempt_states_of_the_api() -> None:
    assert set(ATTEMPT_TRANSITIONS) == set(ATTEMPT_STATES)


def test_every_target_of_a_transition_is_a_known_state() -> None:
    """A typo in a target set would make a state unreachable and its rows unreadable."""
    for table in (TASK_TRANSITIONS, ATTEMPT_TRANSITIONS):
        for old, targets in table.items():
            assert targets <= set(table), f"{old} -> {sorted(targets - set(table))}"


# -- check_task / check_attempt agree with the table, pair by pair ---------------------------------


@pytest.mark.parametrize(("old", "new"), TASK_PAIRS)
def test_check_task_raises_exactly_when_the_table_forbids_the_change(old: str, new: str) -> None:
    """`check_task(a, b)` passes iff b is in TASK_TRANSITIONS[a]; otherwise it raises
    IllegalTransition naming both states."""
    if new in TASK_TRANSITIONS[old]:
        check_task(old, new)
    else:
        with pytest.raises(IllegalTransition) as raised:
            check_task(old, new)
        assert (raised.value.old, raised.value.new) == (old, new)
        assert old in str(raised.value) and new in str(raised.value)


@pytest.mark.parametrize(("old", "new"), ATTEMPT_PAIRS)
def test_check_attempt_raises_exactly_when_the_table_forbids_the_change(
    old: str, new: str
) -> None:
    if new in ATTEMPT_TRANSITIONS[old]:
        check_attempt(old, new)
    else:
        with pytest.raises(IllegalTransition) as raised:
            check_attempt(old, new)
        assert (raised.value.old, raised.value.new) == (old, new)


def test_no_state_may_change_to_itself() -> None:
    """A "change" to the same state is a lost update in disguise: the table never allows it."""
    for table in (TASK_TRANSITIONS, ATTEMPT_TRANSITIONS):
        for state, targets in table.items():
            assert state not in targets


def test_unknown_states_are_illegal_in_both_directions() -> None:
    for check in (check_task, check_attempt):
        with pytest.raises(IllegalTransition):
            check("nope", "running")
        with pytest.raises(IllegalTransition):
            check("running", "nope")


# -- terminal states ------------------------------------------------------------------------------


def test_terminal_task_states_are_exactly_those_with_no_way_out() -> None:
    assert {s for s, to in TASK_TRANSITIONS.items() if not to} == set(TERMINAL)


def test_terminal_attempt_states_are_exactly_those_with_no_way_out() -> None:
    assert {s for s, to in ATTEMPT_TRANSITIONS.items() if not to} == set(ATTEMPT_TERMINAL)


@pytest.mark.parametrize("done", sorted(TERMINAL))
def test_a_finished_task_can_never_change_state_again(done: str) -> None:
    """A succeeded (or failed, cancelled, lost) task is never moved back to running."""
    for new in TASK_TRANSITIONS:
        with pytest.raises(IllegalTransition):
            check_task(done, new)


@pytest.mark.parametrize("state", sorted(set(TASK_TRANSITIONS) - TERMINAL))
def test_every_unfinished_task_state_can_reach_a_terminal_state(state: str) -> None:
    """No task can be stuck for ever: from every state some path ends."""
    assert reachable(TASK_TRANSITIONS, state) & TERMINAL


@pytest.mark.parametrize("state", sorted(set(ATTEMPT_TRANSITIONS) - ATTEMPT_TERMINAL))
def test_every_unfinished_attempt_state_can_reach_a_terminal_state(state: str) -> None:
    assert reachable(ATTEMPT_TRANSITIONS, state) & ATTEMPT_TERMINAL


def test_every_task_state_is_reachable_from_pending() -> None:
    """Submission creates ``pending`` tasks; a state unreachable from it would be dead code."""
    assert reachable(TASK_TRANSITIONS, states.PENDING) == set(TASK_TRANSITIONS)


def test_every_attempt_state_is_reachable_from_leased() -> None:
    """A lease creates ``leased`` attempts."""
    assert reachable(ATTEMPT_TRANSITIONS, states.LEASED) == set(ATTEMPT_TRANSITIONS)


def test_every_task_can_be_cancelled_until_it_is_finished() -> None:
    """The user's cancel is honoured in every non-terminal state."""
    for state in set(TASK_TRANSITIONS) - TERMINAL:
        check_task(state, states.CANCELLED)


def test_only_tasks_holding_devices_can_be_lost_or_succeed() -> None:
    """``lost`` and ``succeeded`` need an attempt on a site, i.e. a leased or running task."""
    for end in (states.LOST, states.SUCCEEDED):
        assert set(sources(end)) == set(states.ACTIVE)


# -- sources() is the table read backwards --------------------------------------------------------


@pytest.mark.parametrize("new", sorted(TASK_TRANSITIONS))
def test_sources_lists_every_state_that_may_change_to_the_target(new: str) -> None:
    """`sources(b)` is exactly {a : check_task(a, b) passes}, sorted, for set-based updates."""
    allowed = []
    for old in TASK_TRANSITIONS:
        try:
            check_task(old, new)
        except IllegalTransition:
            continue
        allowed.append(old)
    assert sources(new) == tuple(sorted(allowed))


def test_sources_of_pending_excludes_every_terminal_state() -> None:
    assert not set(sources(states.PENDING)) & TERMINAL
    assert sources("nope") == ()
