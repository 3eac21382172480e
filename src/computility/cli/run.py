"""``computility run [options] -- ARGV...``: run one command on the network as if it ran here.

Exactly as the contract has it: the task is ``shlex.join(ARGV)`` with ``retries: 0``; its stdout
and stderr are copied byte for byte to ours while it runs; our own lines (where it runs, its
quote, its cost) go to stderr; the exit code is the task's (128+N if a signal N killed it, 124 on
timeout), 1 if it was cancelled or lost, 2 only for our own bad input. Ctrl-C cancels the task.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from computility.cli.session import connect, money, note, span
from computility.domain.errors import FieldError, UsageError
from computility.sdk.client import Client
from computility.sdk.task import FIRST_POLL_S, next_poll_s
from computility.wire.api import TERMINAL_TASK_STATES, TaskOut
from computility.wire.spec import task_spec_from_mapping


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
        resources["cpus"] = int(cpus) if cpus.isdigit() else cpus
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
    with connect() as client:
        task = client.submit(spec)
        quoted = money(task.record.quote_max, task.record.currency)
        note(f"task {task.id} submitted (at most {quoted})", quiet)
        try:
            record = stream(client, task.record, quiet)
        except KeyboardInterrupt:
            client.cancel(task.id)
            note(f"task {task.id} cancelled", quiet)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # our reader has gone (`| head`): a local command would die
            client.cancel(task.id)
            raise
    where = f" on {record.site}" if record.site else ""
    ran = span(record.finished_at - record.submitted_at) if record.finished_at else "—"
    note(f"task {record.id} {record.state}{where} in {ran}; cost "
         f"{money(record.cost, record.currency)}" + (f" ({record.reason})" if record.reason
                                                     and record.state != "succeeded" else ""),
         quiet)
    raise typer.Exit(exit_code_of(record))


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
    task has ended and nothing is left. `seen` is shown each fresh record. The last record."""
    offsets = dict.fromkeys(names, 0)
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    pause = FIRST_POLL_S
    while True:
        if seen is not None:
            seen(record)
        ended = record.state in TERMINAL_TASK_STATES
        got = False
        if not (follow and record.state in WAITING_STATES):  # nothing written yet
            for name in names:
                chunk = client.logs(record.id, name, offsets[name])
                if chunk:
                    got = True
                    offsets[name] += len(chunk)
                    sinks[name].write(chunk)
                    sinks[name].flush()
        if not follow or (ended and not got):
            return record
        if got:
            pause = FIRST_POLL_S
        else:
            time.sleep(pause)
            pause = next_poll_s(pause)
        if not ended:
            record = client.get(record.id)
