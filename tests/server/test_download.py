"""`computility download ID` unpacks a task's outputs, uploaded by its site's agent."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from computility.cli.main import main
from computility.server.blobs import BlobStore
from computility.testing.controlplane import FakeAgent, LocalControlPlane, new_tenant, wait_until


def test_download_unpacks_the_outputs_an_agent_uploaded(
    service: LocalControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = service.client()
    provider = new_tenant(admin, "acme", "provider")
    user = new_tenant(admin, "alice", "user")
    agent = FakeAgent(service.url, provider, "east", {"cpu": ("EPYC-7763", 8)}).register()
    task = service.client(user).post("/api/v1/tasks", json={"run": "make"}).json()
    with agent.client() as c:
        lease: list[dict[str, object]] = []

        def leased() -> bool:
            lease.extend(c.post("/api/v1/agent/lease",
                                json={"free": {"cpu": 8}, "wait_s": 1}).json()["leases"])
            return bool(lease)

        wait_until(leased, timeout=20)
        attempt, token = lease[0]["attempt"], lease[0]["token"]
        results = tmp_path / "results"
        (results / "sub").mkdir(parents=True)
        (results / "sub" / "metrics.json").write_text('{"acc": 0.9}')
        r = c.put(f"/api/v1/agent/attempts/{attempt}/files/outputs",
                  content=BlobStore.pack(results), headers={"X-Attempt-Token": str(token)})
        assert r.status_code == 204, r.text
        r = c.put(f"/api/v1/agent/attempts/{attempt}/files/stdout", content=b"hello\n",
                  headers={"X-Attempt-Token": str(token)})
        assert r.status_code == 204, r.text
        r = c.post(f"/api/v1/agent/attempts/{attempt}/report",
                   json={"token": token, "state": "exited", "exit_code": 0, "run_s": 5})
        assert r.status_code == 200, r.text
    assert service.client(user).get(f"/api/v1/tasks/{task['id']}/logs").text == "hello\n"

    monkeypatch.setenv("COMPUTILITY_SERVER", service.url)
    monkeypatch.setenv("COMPUTILITY_API_KEY", user)
    out = tmp_path / "got"
    with pytest.raises(SystemExit) as done:
        main(["download", str(task["id"]), "--out", str(out)])
    assert done.value.code == 0
    assert (out / "sub" / "metrics.json").read_text() == '{"acc": 0.9}'


def test_download_of_another_tenants_task_is_refused_in_one_line(
    service: LocalControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = service.client()
    alice = new_tenant(admin, "alice", "user")
    bob = new_tenant(admin, "bob", "user")
    task = service.client(alice).post("/api/v1/tasks", json={"run": "make"}).json()
    monkeypatch.setenv("COMPUTILITY_SERVER", service.url)
    monkeypatch.setenv("COMPUTILITY_API_KEY", bob)
    with pytest.raises(SystemExit) as done:
        main(["download", str(task["id"]), "--out", str(tmp_path / "x")])
    assert done.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no task '{task['id']}'" in err[0]


def test_a_tar_member_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    store = BlobStore(tmp_path / "store")
    digest, _ = store.put([buf.getvalue()])
    from computility.wire.archives import BadArchive

    with pytest.raises(BadArchive):
        store.unpack(digest, tmp_path / "dest")
    assert not (tmp_path / "evil").exists()
