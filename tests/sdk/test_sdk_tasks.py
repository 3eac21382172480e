"""Tasks through the SDK on the demo network: submit, wait, logs, cancel, download, YAML files
with a local working directory, batches, and idempotent resubmission."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from computility.domain.errors import BadInput
from computility.sdk import Client, Task


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for_state(task: Task, states: tuple[str, ...], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while task.refresh().state not in states:
        assert time.monotonic() < deadline, f"task {task.id} still {task.state}"
        time.sleep(0.05)


def test_submit_waits_for_the_end_and_reads_both_streams(client: Client) -> None:
    task = client.submit({"name": unique("streams"),
                          "run": "echo to-stdout; echo to-stderr >&2; exit 3"})

    record = task.wait(timeout=30)

    assert record.state == "failed" and record.exit_code == 3
    assert task.logs() == "to-stdout\n"
    assert task.logs("stderr") == "to-stderr\n"
    assert b"".join(task.follow()) == b"to-stdout\n"


def test_a_running_task_is_cancelled(client: Client) -> None:
    task = client.submit({"name": unique("cancel"), "run": "echo started; sleep 60"})
    wait_for_state(task, ("running",))

    started = time.monotonic()
    task.cancel()
    record = task.wait(timeout=20)

    assert record.state == "cancelled"
    assert time.monotonic() - started < 20
    assert task.logs() == "started\n"


def test_download_unpacks_the_declared_outputs(client: Client, tmp_path: Path) -> None:
    task = client.submit({
        "name": unique("outputs"),
        "run": "mkdir -p results && echo 42 > results/answer.txt && echo skip > other.txt",
        "outputs": ["results/"],
    })
    task.wait(timeout=30, check=True)

    names = task.download(tmp_path / "out")

    assert (tmp_path / "out" / "results" / "answer.txt").read_text() == "42\n"
    assert "results/answer.txt" in names
    assert not (tmp_path / "out" / "other.txt").exists()


def test_a_yaml_file_uploads_its_relative_workdir(client: Client, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "data.txt").write_text("from the caller's disk\n")
    name = unique("yaml")
    spec = project / "task.yaml"
    spec.write_text(f"name: {name}\nrun: cat data.txt\nworkdir: src\n"
                    "resources:\n  cpus: 1\n  memory: 1GB\n")

    task = client.submit(spec)  # relative to the file, not to the current directory
    task.wait(timeout=30, check=True)

    assert task.logs() == "from the caller's disk\n"
    assert task.refresh().spec is not None
    assert str(task.record.spec["workdir"]).startswith("sha256:")


def test_a_mapping_may_name_its_workdir_with_a_path(client: Client, tmp_path: Path) -> None:
    (tmp_path / "greeting.txt").write_text("hi from a Path\n")

    task = client.submit({"name": unique("path"), "run": "cat greeting.txt",
                          "workdir": tmp_path})
    task.wait(timeout=30, check=True)

    assert task.logs() == "hi from a Path\n"


def test_a_bad_spec_file_is_located_and_nothing_is_submitted(client: Client,
                                                             tmp_path: Path) -> None:
    name = unique("bad")
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"name: {name}\nrun: echo never\nresources:\n  cpus: many\n")

    with pytest.raises(BadInput) as raised:
        client.submit(spec)

    assert str(raised.value).startswith(f"{spec}:4:")
    assert "cpus" in str(raised.value) and "'many'" in str(raised.value)
    assert list(client.tasks(name=name)) == []


def test_a_missing_local_workdir_is_refused_before_anything_is_sent(client: Client,
                                                                     tmp_path: Path) -> None:
    name = unique("nowork")
    with pytest.raises(BadInput, match="workdir"):
        client.submit({"name": name, "run": "true", "workdir": str(tmp_path / "absent")})
    assert list(client.tasks(name=name)) == []


def test_submit_many_submits_every_task(client: Client) -> None:
    name = unique("many")
    specs = [{"name": name, "run": f"echo {i}"} for i in range(3)]

    tasks = client.submit_many(specs)
    for task in tasks:
        task.wait(timeout=30, check=True)

    assert len({t.id for t in tasks}) == 3
    assert [t.logs() for t in tasks] == ["0\n", "1\n", "2\n"]
    assert {t.id for t in client.tasks(name=name)} == {t.id for t in tasks}


def test_submit_many_is_all_or_nothing(client: Client) -> None:
    name = unique("batch-bad")
    specs = [{"name": name, "run": "true"}, {"name": name, "run": "true", "timeout": "soon"}]

    with pytest.raises(BadInput, match="timeout"):
        client.submit_many(specs)

    assert list(client.tasks(name=name)) == []


def test_the_same_idempotency_key_returns_the_same_task(client: Client) -> None:
    name, key = unique("idem"), uuid.uuid4().hex
    spec = {"name": name, "run": "true"}

    first = client.submit(spec, idempotency_key=key)
    again = client.submit(spec, idempotency_key=key)
    batch = client.submit_many([spec, spec], idempotency_key=key + "-batch")
    batch_again = client.submit_many([spec, spec], idempotency_key=key + "-batch")

    assert again.id == first.id
    assert [t.id for t in batch_again] == [t.id for t in batch]
    assert len(list(client.tasks(name=name))) == 3
