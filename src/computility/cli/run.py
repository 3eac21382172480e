"""``computility run [options] -- ARGV...``: run one command on the network as if it ran here.

Exactly as the contract has it: the task is ``shlex.join(ARGV)`` with ``retries: 0``; its stdout
and stderr are copied byte for byte to ours while it runs; our own lines (where it runs, its
quote, its cost) go to stderr; the exit code is the task's (128+N if a signal N killed it, 124 on
timeout), 1 if it was cancelled or lost, 2 only for our own bad input. Ctrl-C (or SIGTERM,
SIGHUP) cancels the task and exits 128+N as an interrupted local command would; so does any
other way `run` stops early (its reader gone, the service unreachable for minutes).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from computility.cli.session import connect, money, note, span
from computility.domain.errors import FieldError, UsageError
from computility.sdk import calls
from computility.sdk.calls import Call
from computility.sdk.client import Client
from computility.sdk.errors import Unreachable
from computility.sdk.logs import LogCursor
from computility.sdk.task import FIRST_POLL_S, next_poll_s
from computility.wire.api import TERMINAL_TASK_STATES, TaskOut
from computility.wire.spec import task_spec_from_mapping

T = TypeVar("T")


class Policy(StrEnum):
    balanced = "balanced"
    cheapest = "cheapest"
    fastest = "fastest"
    greenest = "greenest"


WAITING_STATES = ("pending", "held", "queued")
"""States in which a task has not started writing yet: a follower need not ask for its logs."""

FLAG_OF = {"cpus": "--cpus", "memory": "--memory", "accelerators": "--gpus",
           "policy": "--policy", "deadline": "--deadline", "timeout": "--timeout",
           "regions": "--region", "envs": "--env", "name": "--name"}


def exit_code_of(task: TaskOut) -> int:
    """The exit code `run` ends with for a finished task (see the module docstring)."""
    if task.state in ("cancelled", "lost"):
        return 1
    if task.signal:
        return 128 + task.signal
    if task.exit_code is not None:
        return task.exit_code if 0 <= task.exit_code < 256 else 1
    return 0 if task.state == "succeeded" else 1


def build_spec(argv: list[str], *, cpus: str | None, memory: str | None, gpus: str | None,
               policy: Policy | None, deadline: str | None, timeout: str | None,
               name: str | None, regions: list[str] | None, envs: list[str] | None,
               workdir: Path | None) -> dict[str, Any]:
    """The task spec of a `run`, checked; a bad option is reported by its flag."""
    if not argv:
        raise UsageError("run: expected a command after '--', e.g. computility run -- "
                         "python3 -c \"print(6*7)\"")
    resources: dict[str, Any] = {}
    if cpus is not None:
        # ASCII digits only: str.isdigit() also admits "²", which int() refuses; anything else
        # goes to the spec's own check, which names the flag.
        resources["cpus"] = int(cpus) if cpus.isascii() and cpus.isdigit() else cpus
    if memory is not None:
        resources["memory"] = memory
    if gpus is not None:
        resources["accelerators"] = gpus
    placement: dict[str, Any] = {}
    if policy is not None:
        placement["policy"] = policy.value
    if deadline is not None:
        placement["deadline"] = deadline
    if regions:
        placement["regions"] = regions
    spec: dict[str, Any] = {"name": name or Path(argv[0]).name[:64] or "run",
                            "run": shlex.join(argv), "retries": 0}
    if resources:
        spec["resources"] = resources
    if placement:
        spec["placement"] = placement
    if timeout is not None:
        spec["timeout"] = timeout
    if workdir is not None:
        spec["workdir"] = str(workdir)
    if envs:
        pairs = {}
        for pair in envs:
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise UsageError(f"--env: expected KEY=VALUE, got '{pair}'")
            pairs[key] = value
        spec["envs"] = pairs
    try:
        task_spec_from_mapping(spec, "run")
    except FieldError as error:
        flag = FLAG_OF.get(error.field_name, error.field_name)
        raise UsageError(f"{flag}: expected {error.expected}, got '{error.got}'") from None
    return spec


def run_command(
    argv: Annotated[list[str] | None, typer.Argument(help="The command and its arguments "
                                                     "(after --).", show_default=False)] = None,
    cpus: Annotated[str | None, typer.Option(help="CPU cores (N, or N+ for at least N).")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory, e.g. 4GB.")] = None,
    gpus: Annotated[str | None, typer.Option(help="Accelerators TYPE:N, e.g. A100:1.")] = None,
    policy: Annotated[Policy | None, typer.Option(help="Placement policy.")] = None,
    deadline: Annotated[str | None, typer.Option(help="Finish by: a duration (6h) or an "
                                                 "ISO-8601 time.")] = None,
    timeout: Annotated[str | None, typer.Option(help="Stop it after this long (e.g. 30m).")]
    = None,
    name: Annotated[str | None, typer.Option(help="Task name (default: the command).")] = None,
    region: Annotated[list[str] | None, typer.Option(help="Allowed region (repeatable).")]
    = None,
    env: Annotated[list[str] | None, typer.Option(help="KEY=VALUE in the task's environment "
                                                  "(repeatable).")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Directory uploaded as the task's "
                                                 "working directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No lines of our own on "
                                        "stderr.")] = False,
) -> None:
    """Run a command on the network; its output and exit code are the command's."""
    spec = build_spec(list(argv or []), cpus=cpus, memory=memory, gpus=gpus, policy=policy,
                      deadline=deadline, timeout=timeout, name=name, regions=region, envs=env,
                      workdir=workdir)
    key = uuid.uuid4().hex  # a submission repeated after an interruption finds the same task
    with connect() as client, signals_as_interrupts():
        task_id: int | None = None
        record: TaskOut | None = None
        try:
            task = client.submit(spec, idempotency_key=key)
            task_id, record = task.id, task.record
            note(f"task {task.id} submitted (at most "
                 f"{money(record.quote_max, record.currency)})", quiet)
            record = stream(client, record, quiet)
        except BaseException as error:
            # However we stop (Ctrl-C, SIGTERM or SIGHUP, a reader gone, the service away for
            # good), the task must not run on without us.
            stopped = stop_task(client, spec, key, task_id, record)
            if isinstance(error, Interrupted):
                if stopped is not None:
                    note(f"task {stopped} cancelled", quiet)
                raise typer.Exit(128 + error.signum) from None
            raise
    where = f" on {record.site}" if record.site else ""
    ran = span(record.finished_at - record.submitted_at) if record.finished_at else "—"
    note(f"task {record.id} {record.state}{where} in {ran}; cost "
         f"{money(record.cost, record.currency)}" + (f" ({record.reason})" if record.reason
                                                     and record.state != "succeeded" else ""),
         quiet)
    raise typer.Exit(exit_code_of(record))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, or SIGTERM/SIGHUP, while `run` waits: `signum` gives the exit code 128+N."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = int(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise `Interrupted` in the main thread while inside."""
    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, interrupt) for s in wanted}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_task(client: Client, spec: dict[str, Any], key: str, task_id: int | None,
              record: TaskOut | None) -> int | None:
    """Cancel the task of this `run` unless it has ended; its id, or None if there is none to
    stop. Interrupted while submitting, the same submission (same Idempotency-Key) finds the
    task if the service made one. Never raises: we are already on the way out."""
    with contextlib.suppress(Exception, KeyboardInterrupt):
        if record is not None and record.state in TERMINAL_TASK_STATES:
            return None
        if task_id is None:
            task_id = client.submit(spec, idempotency_key=key).id
        client.cancel(task_id)
        return task_id
    return None


def stream(client: Client, record: TaskOut, quiet: bool) -> TaskOut:
    """Copy the task's output to ours as it grows, saying where it runs, until it has ended and
    all is copied; its final record."""
    announced: tuple[str, str | None] | None = None

    def announce(r: TaskOut) -> None:
        nonlocal announced
        if r.state in ("queued", "running") and (r.state, r.site) != announced:
            announced = (r.state, r.site)
            note(f"task {r.id} {r.state} on site {r.site} (pool {r.pool})" if r.site
                 else f"task {r.id} {r.state}", quiet)
        elif r.state in ("pending", "held") and announced is None:
            announced = (r.state, None)
            note(f"task {r.id} {r.state}" + (f": {r.reason}" if r.reason else ""), quiet)

    return copy_output(client, record, ("stdout", "stderr"), follow=True, seen=announce)


def copy_output(client: Client, record: TaskOut, names: Sequence[str], *, follow: bool,
                seen: Callable[[TaskOut], None] | None = None) -> TaskOut:
    """Copy the task's streams `names` byte for byte to ours (its stdout to our stdout, its
    stderr to our stderr): what there is now, or with `follow` all of it as it grows, until the
    task has ended and nothing is left. `seen` is shown each fresh record. The last record.

    When a retry or a re-placement starts a new log, it is copied from its first byte, after a
    line on stderr saying so. While following, a service that stops answering is waited for
    (`OUTAGE_S`), with a line on stderr, rather than given up on."""
    cursor = LogCursor(record.id)
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    pause = FIRST_POLL_S
    patient = Patience(follow)
    while True:
        if seen is not None:
            seen(record)
        ended = record.state in TERMINAL_TASK_STATES
        got = False
        if not (follow and record.state in WAITING_STATES):  # nothing written yet
            for name in names:
                chunk = patient.call(client, cursor.next(name))
                if chunk is None:
                    continue
                if chunk.restarted:
                    note(f"task {record.id}: attempt {chunk.attempt} started over; its "
                         f"{name} follows from the beginning")
                data = cursor.take(name, chunk)
                if data:
                    got = True
                    sinks[name].write(data)
                    sinks[name].flush()
        if not follow or (ended and not got):
            return record
        if got:
            pause = FIRST_POLL_S
        else:
            time.sleep(pause)
            pause = next_poll_s(pause)
        if not ended:
            record = patient.call(client, calls.get_task(record.id)) or record


OUTAGE_S = 600.0


class Patience:
    """Calls that, while following a task, wait out a service that does not answer: a restart
    of the service must not end a `run` (nor, with it, the task)."""

    def __init__(self, follow: bool) -> None:
        self.follow = follow
        self.since: float | None = None

    def call(self, client: Client, call: Call[T]) -> T | None:
        try:
            result = client.call(call)
        except Unreachable:
            if not self.follow:
                raise
            now = time.monotonic()
            if self.since is None:
                self.since = now
                note(f"the service does not answer; waiting up to {OUTAGE_S / 60:.0f} min")
            elif now - self.since > OUTAGE_S:
                raise
            time.sleep(1.0)
            return None
        if self.since is not None:
            note("the service answers again")
            self.since = None
        return result
