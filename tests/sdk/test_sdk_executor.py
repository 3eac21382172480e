"""`client.executor()`: a `concurrent.futures.Executor` whose calls run as tasks on the demo
network's sites."""

from __future__ import annotations

import functools
import math
import os
import time
from concurrent.futures import CancelledError, Future, as_completed

import pytest

from computility.domain.errors import UsageError
from computility.sdk import Client, NetworkExecutor

INPUTS = 1000
LIMIT_S = 60.0


def square(x: int) -> int:
    return x * x


def where(_: int) -> tuple[str, str]:
    return os.environ["COMPUTILITY_SITE"], os.environ["COMPUTILITY_TASK_ID"]


class OddInput(Exception):
    """An exception class of the caller's own, defined where the site cannot import it."""


def picky(x: int) -> int:
    if x % 2:
        raise OddInput(f"{x} is odd")
    return x


def task_count(client: Client, executor: NetworkExecutor) -> int:
    return len(list(client.tasks(name=executor.name)))


def test_map_over_a_thousand_inputs_is_correct_and_quick(client: Client) -> None:
    with client.executor() as executor:
        started = time.perf_counter()
        results = list(executor.map(square, range(INPUTS)))
        elapsed = time.perf_counter() - started

    print(f"executor.map over {INPUTS} inputs: {elapsed:.2f} s")
    assert results == [x * x for x in range(INPUTS)]
    assert elapsed <= LIMIT_S
    assert task_count(client, executor) == math.ceil(INPUTS / 50)  # the default chunksize


@pytest.mark.parametrize(("inputs", "chunksize"), [(25, 7), (10, 10), (3, 50)])
def test_each_chunk_of_a_map_is_one_task(client: Client, inputs: int, chunksize: int) -> None:
    with client.executor() as executor:
        placed = list(executor.map(where, range(inputs), chunksize=chunksize))

    assert task_count(client, executor) == math.ceil(inputs / chunksize)
    # The calls of one chunk share a task: the chunk boundaries fall where they should.
    ids = [task for _, task in placed]
    assert ids == [ids[i - i % chunksize] for i in range(inputs)]


def test_the_executors_own_chunksize_is_the_default(client: Client) -> None:
    with client.executor(chunksize=4) as executor:
        assert list(executor.map(square, range(9))) == [x * x for x in range(9)]
    assert task_count(client, executor) == 3


def test_map_zips_several_iterables(client: Client) -> None:
    with client.executor() as executor:
        assert list(executor.map(pow, [2, 3, 4], [5, 2])) == [32, 9]


def test_a_partial_of_a_local_function_travels_by_value(client: Client) -> None:
    with client.executor() as executor:
        assert list(executor.map(functools.partial(pow, 2), range(4))) == [1, 2, 4, 8]
        assert executor.submit(functools.partial(picky, 6)).result(timeout=60) == 6


def test_submit_returns_a_future_per_call(client: Client) -> None:
    with client.executor(cpus=1, memory="1GB", timeout="5m") as executor:
        futures = {executor.submit(divmod, n, 7): n for n in (10, 20, 30)}
        keyword = executor.submit(int, "ff", base=16)
        done = {futures[f]: f.result() for f in as_completed(futures, timeout=60)}

    assert done == {10: (1, 3), 20: (2, 6), 30: (4, 2)}
    assert keyword.result() == 255
    assert task_count(client, executor) == 4


def test_a_remote_exception_is_raised_here_with_its_type(client: Client) -> None:
    with client.executor() as executor:
        results = executor.map(picky, range(4), chunksize=4)
        assert next(results) == 0
        with pytest.raises(OddInput, match="1 is odd") as raised:
            next(results)
        builtin = executor.submit(int, "not a number")
        with pytest.raises(ValueError, match="invalid literal"):
            builtin.result(timeout=60)

    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "raised on site" in notes and "Traceback" in notes


def test_a_call_whose_task_fails_raises_task_failed(client: Client) -> None:
    from computility.sdk import TaskFailed

    with client.executor() as executor:
        future = executor.submit(os._exit, 5)  # the runner dies: no result at all
        with pytest.raises(TaskFailed, match="exit 5"):
            future.result(timeout=60)


def test_shutdown_with_cancel_futures_cancels_the_calls_and_their_tasks(client: Client) -> None:
    executor = client.executor()
    futures = [executor.submit(time.sleep, 60) for _ in range(3)]
    deadline = time.monotonic() + 30
    while {t.state for t in client.tasks(name=executor.name)} != {"running"}:
        assert time.monotonic() < deadline, "the tasks did not start"
        time.sleep(0.1)

    started = time.monotonic()
    executor.shutdown(wait=True, cancel_futures=True)

    assert time.monotonic() - started < 10
    assert all(f.cancelled() for f in futures)
    with pytest.raises(CancelledError):
        futures[0].result()
    deadline = time.monotonic() + 30
    while {t.state for t in client.tasks(name=executor.name)} != {"cancelled"}:
        assert time.monotonic() < deadline, "the tasks were not cancelled"
        time.sleep(0.1)
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(square, 2)


def test_cancelling_every_future_of_a_task_cancels_the_task(client: Client) -> None:
    with client.executor() as executor:
        doomed: Future[None] = executor.submit(time.sleep, 60)
        kept = executor.submit(square, 12)
        assert doomed.cancel()
        assert kept.result(timeout=60) == 144
        deadline = time.monotonic() + 30
        while sorted(t.state for t in client.tasks(name=executor.name)) != [
                "cancelled", "succeeded"]:
            assert time.monotonic() < deadline, "the cancelled call's task still runs"
            time.sleep(0.1)


def test_bad_options_are_refused_at_once(client: Client) -> None:
    with pytest.raises(UsageError, match="chunksize"):
        client.executor(chunksize=0)
    with pytest.raises(UsageError, match="gpus"):
        client.executor(gpus=2)
