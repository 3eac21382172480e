"""The site refuses to unpickle calls made under another Python minor version or another
cloudpickle: `VersionMismatchError` names both values, and nothing runs.

Only this process's record of its own versions is altered (what the executor writes into each
task); the site's runner, interpreter and cloudpickle are the real ones."""

from __future__ import annotations

import pytest

from computility.sdk import Client, VersionMismatchError, remote


def loud(x: int) -> int:
    print(f"ran with {x}")  # on the task's stdout, were it ever to run
    return x


def site_runtime(client: Client) -> dict[str, str]:
    """The versions the site really has, asked of it by a call that runs there."""
    with client.executor() as executor:
        found: dict[str, str] = executor.submit(remote.runtime).result(timeout=60)
    return found


def test_another_python_minor_version_is_refused(client: Client) -> None:
    there = site_runtime(client)
    executor = client.executor()
    executor._here = {**there, "python": "3.99"}  # the payload claims another Python

    future = executor.submit(loud, 1)
    with pytest.raises(VersionMismatchError) as raised:
        future.result(timeout=60)
    executor.shutdown()

    error = raised.value
    assert (error.what, error.here, error.there) == ("python", "3.99", there["python"])
    assert "3.99" in str(error) and there["python"] in str(error)
    (task,) = client.tasks(name=executor.name)
    assert error.site == task.site
    assert task.state == "failed" and task.exit_code == remote.MISMATCH_EXIT
    assert client.logs(task.id) == b""  # nothing ran
    assert b"nothing run" in client.logs(task.id, "stderr")  # the site's runner said why


def test_another_cloudpickle_version_is_refused(client: Client,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    there = site_runtime(client)
    monkeypatch.setattr(remote, "runtime", lambda: {**there, "cloudpickle": "0.0.1"})

    with client.executor() as executor, pytest.raises(VersionMismatchError) as raised:
        list(executor.map(loud, range(3)))

    error = raised.value
    assert (error.what, error.here, error.there) == ("cloudpickle", "0.0.1",
                                                     there["cloudpickle"])
    message = str(error)
    assert "cloudpickle 0.0.1" in message and f"cloudpickle {there['cloudpickle']}" in message
    (task,) = client.tasks(name=executor.name)
    assert client.logs(task.id) == b""
