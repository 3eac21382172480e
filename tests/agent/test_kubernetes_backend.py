"""The Kubernetes backend, mostly without a cluster (none can run on the CI machines).

Manifests are checked against the Kubernetes API schema (``kubernetes_validate``, strict) and field
by field; the container's script is run here with /bin/sh, as the pod would run it. States are
read from Job and pod documents in ``tests/data/kubernetes`` (see its PROVENANCE.md). The backend's
client calls are checked against a fake API. One test, marked ``kubernetes`` and deselected in CI,
runs real Jobs on the cluster of $KUBECONFIG.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from computility.agent.backends import make_backend
from computility.agent.backends.base import (
    Allocation,
    BackendError,
    ExitRecord,
    Status,
    TaskRun,
)
from computility.agent.backends.kubernetes import (
    DEFAULT_IMAGE,
    LABEL_JOB,
    WRAPPER_MARK,
    KubernetesBackend,
    job_manifest,
    job_name,
    status_from_job,
)
from computility.agent.rundir import make_rundir

DATA = Path(__file__).parents[1] / "data" / "kubernetes"
VERSIONS = ("1.29", "1.33")  # schemas shipped by kubernetes_validate; 1.29 is the oldest we claim
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
GiB = 1 << 30
NewRun = Callable[..., TaskRun]


def doc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return data


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def valid(manifest: dict[str, Any]) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.fixture
def new_run(tmp_path: Path) -> NewRun:
    def make(run: str = "echo hello", *, key: str = "a17", setup: str | None = None,
             envs: dict[str, str] | None = None, alloc: Allocation | None = None,
             timeout_s: float = 60.0, files: dict[str, str] | None = None) -> TaskRun:
        rundir, workdir = make_rundir(tmp_path / "tasks", "site", key, run, setup, None)
        for name, text in (files or {}).items():
            (workdir / name).write_text(text, encoding="utf-8")
        return TaskRun(key=key, attempt=17, task=5, rundir=rundir, workdir=workdir,
                       envs=envs if envs is not None else {"PATH": "/usr/bin:/bin",
                                                           "HOME": str(workdir)},
                       allocation=alloc or Allocation(cpus=1), timeout_s=timeout_s,
                       name="train")
    return make


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# ---------------------------------------------------------------- manifests


def test_a_cpu_only_task_is_a_valid_job_with_exactly_these_fields(new_run: NewRun) -> None:
    run = new_run(envs={"PATH": "/usr/bin:/bin", "SEED": "7"}, timeout_s=90.5)
    manifest = job_manifest(run, namespace="tasks")
    valid(manifest)
    labels = {LABEL_JOB: "cu-a17", "computility.io/attempt": "17", "computility.io/task": "5",
              "app.kubernetes.io/managed-by": "computility-agent"}
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    assert manifest["metadata"] == {
        "name": "cu-a17", "namespace": "tasks", "labels": labels,
        "annotations": {"computility.io/key": "a17", "computility.io/name": "train"}}
    spec = manifest["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) \
        == (0, 91, 3600)
    assert spec["template"]["metadata"]["labels"] == labels
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65534,
                                      "runAsGroup": 65534,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["volumes"] == [{"name": "work", "emptyDir": {}}]
    c = container(manifest)
    assert c["image"] == DEFAULT_IMAGE == "python:3.11-slim"
    assert c["command"][:2] == ["/bin/sh", "-c"]
    assert c["env"] == [{"name": "PATH", "value": "/usr/bin:/bin"},
                        {"name": "SEED", "value": "7"}]
    assert c["resources"] == {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["volumeMounts"] == [{"name": "work", "mountPath": str(run.workdir)}]


def test_a_gpu_task_asks_for_its_devices_on_nodes_of_their_type(new_run: NewRun) -> None:
    run = new_run(alloc=Allocation(cpus=8, memory_bytes=64 * GiB, accelerator="A100-80GB",
                                   accelerators=2))
    manifest = job_manifest(run)
    valid(manifest)
    assert container(manifest)["resources"] == {
        "requests": {"cpu": "8", "memory": str(64 * GiB)},
        "limits": {"cpu": "8", "memory": str(64 * GiB), "nvidia.com/gpu": "2"}}
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}


def test_a_memory_limit_is_also_the_request_so_the_pod_is_guaranteed(new_run: NewRun) -> None:
    manifest = job_manifest(new_run(alloc=Allocation(cpus=2, memory_bytes=3 * GiB // 2)))
    valid(manifest)
    resources = container(manifest)["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "2", "memory": "1610612736"}


def test_the_site_can_override_image_selectors_gpu_resource_and_security(
    new_run: NewRun
) -> None:
    run = new_run(alloc=Allocation(cpus=4, accelerator="MI300X", accelerators=1))
    toleration = {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    manifest = job_manifest(
        run, image="registry.example/tasks:1", gpu_resource="amd.com/gpu",
        node_selector_by_device={"MI300X": {"amd.com/gpu.device-id": "74a1"}},
        node_selector={"pool": "batch"}, tolerations=[toleration], run_as_user=1000,
        run_as_group=100, ttl_s=60, grace_s=2)
    valid(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "batch", "amd.com/gpu.device-id": "74a1"}
    assert pod["tolerations"] == [toleration]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) \
        == (1000, 100)
    assert pod["terminationGracePeriodSeconds"] == 2
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 60
    assert container(manifest)["image"] == "registry.example/tasks:1"
    assert container(manifest)["resources"]["limits"]["amd.com/gpu"] == "1"


def test_a_device_type_without_a_selector_gets_none(new_run: NewRun) -> None:
    run = new_run(alloc=Allocation(cpus=1, accelerator="MI300X", accelerators=1))
    assert "nodeSelector" not in job_manifest(run)["spec"]["template"]["spec"]


def test_the_deadline_is_the_timeout_rounded_up_and_at_least_one_second(
    new_run: NewRun
) -> None:
    assert job_manifest(new_run(timeout_s=0.2))["spec"]["activeDeadlineSeconds"] == 1
    assert job_manifest(new_run(timeout_s=3600))["spec"]["activeDeadlineSeconds"] == 3600


@pytest.mark.parametrize("key", ["a17", "c123-4", "A17", "task_9/attempt 2", "-x-", "", "é",
                                 "k" * 200])
def test_job_names_are_dns_labels_of_at_most_63_characters(key: str) -> None:
    name = job_name(key)
    assert DNS_LABEL.fullmatch(name) and len(name) <= 63, name
    assert job_name(key) == name


def test_keys_that_fold_alike_still_name_distinct_jobs() -> None:
    names = {job_name(k) for k in ["a17", "A17", "a_17", "a-17", "a.17", "k" * 80, "k" * 81]}
    assert len(names) == 7
    assert job_name("a17") == "cu-a17"


def test_a_shared_tasks_volume_is_mounted_where_the_agent_sees_it(new_run: NewRun) -> None:
    run = new_run(files={"input.txt": "uploaded\n"})
    source = {"persistentVolumeClaim": {"claimName": "computility-tasks"}}
    manifest = job_manifest(run, tasks_volume=source)
    valid(manifest)
    pod = manifest["spec"]["template"]["spec"]
    root = str(run.rundir.parent.parent)
    assert pod["volumes"] == [{"name": "tasks", **source}]
    assert container(manifest)["volumeMounts"] == [{"name": "tasks", "mountPath": root}]
    assert "base64" not in container(manifest)["command"][2]  # nothing to unpack
    other = job_manifest(run, tasks_volume=source, tasks_root="/srv/tasks")
    assert container(other)["volumeMounts"][0]["mountPath"] == "/srv/tasks"


def test_a_work_directory_too_large_to_inline_is_refused(new_run: NewRun) -> None:
    run = new_run(files={"big.bin": os.urandom(4096).hex()})
    with pytest.raises(BackendError, match="tasks_volume"):
        job_manifest(run, inline_limit=1024)


def run_like_the_pod(manifest: dict[str, Any], run: TaskRun,
                     extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the container's command here: the workdir an empty directory (the emptyDir), the
    environment the container's env plus what the image and kubelet add."""
    for path in run.workdir.iterdir():
        path.unlink()
    env = {e["name"]: e["value"] for e in container(manifest)["env"]}
    return subprocess.run(container(manifest)["command"], env={**env, **extra_env},
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_script_unpacks_the_work_directory_and_runs_setup_then_run(
    new_run: NewRun
) -> None:
    run = new_run("cat made-by-setup input.txt; pwd", setup="echo from-setup > made-by-setup",
                  files={"input.txt": "uploaded\n"})
    done = run_like_the_pod(job_manifest(run), run, {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["from-setup", "uploaded", str(run.workdir)]


def test_the_task_sees_exactly_its_environment(new_run: NewRun) -> None:
    envs = {"PATH": "/usr/bin:/bin", "SEED": "7", "QUOTE": "it's \"x\" $HOME `id`"}
    run = new_run('echo "seed=$SEED quote=$QUOTE leak=${KUBERNETES_SERVICE_HOST:-none}"; env | '
                  "sort", envs=envs)
    done = run_like_the_pod(job_manifest(run), run,
                            {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOSTNAME": "cu-a17-x"})
    assert done.returncode == 0, done.stderr
    first, *env_lines = done.stdout.splitlines()
    assert first == "seed=7 quote=it's \"x\" $HOME `id` leak=none"
    seen = dict(line.split("=", 1) for line in env_lines)
    for own in ("PWD", "OLDPWD", "SHLVL", "_"):  # the shell's own
        seen.pop(own, None)
    assert seen == envs


def test_variables_the_shell_cannot_name_are_passed_literally(new_run: NewRun) -> None:
    run = new_run("true", envs={"PATH": "/bin", "A.B": "it's"})
    script = container(job_manifest(run))["command"][2]
    assert "env -i PATH=\"$PATH\" 'A.B=it'\"'\"'s' /bin/sh -c" in script


def test_the_task_s_exit_code_is_the_container_s(new_run: NewRun) -> None:
    run = new_run("exit 3", files={"x": "y"})
    assert run_like_the_pod(job_manifest(run), run, {}).returncode == 3


# ---------------------------------------------------------------- states from documents


@pytest.mark.parametrize("name", sorted(p.stem for p in DATA.glob("*.json")))
def test_every_document_is_a_valid_api_object(name: str) -> None:
    valid(doc(name))


def test_an_active_job_with_a_running_pod_is_running() -> None:
    status = status_from_job(doc("job-active"), doc("pod-running"))
    assert status == Status("running", started_at=ts("2022-06-15T08:40:17Z"))


def test_an_active_job_with_a_ready_pod_is_running_even_without_the_pod() -> None:
    assert status_from_job(doc("job-active")).phase == "running"
    job = doc("job-active")
    job["status"] = {"active": 1, "ready": 0, "startTime": "2022-06-15T08:40:15Z"}
    assert status_from_job(job, now=ts("2022-06-15T08:41:00Z")).phase == "queued"


def test_a_complete_job_exited_zero_with_the_container_s_times() -> None:
    status = status_from_job(doc("job-complete"), doc("pod-succeeded"))
    assert (status.phase, status.exit_code, status.signal, status.timed_out) \
        == ("exited", 0, None, False)
    assert (status.started_at, status.ended_at) == (ts("2022-06-15T08:40:17Z"),
                                                    ts("2022-06-15T08:41:18Z"))
    assert status.usage.wall_s == 61.0 and status.reason is None


def test_a_complete_job_whose_pod_is_gone_exited_zero_by_the_job_s_times() -> None:
    status = status_from_job(doc("job-complete"))
    assert (status.phase, status.exit_code) == ("exited", 0)
    assert status.usage.wall_s == ts("2022-06-15T08:41:20Z") - ts("2022-06-15T08:40:15Z")


def test_a_failed_pod_gives_its_exit_code_and_the_job_s_reason() -> None:
    status = status_from_job(doc("job-failed-backoff"), doc("pod-exit-1"))
    assert (status.phase, status.exit_code, status.timed_out, status.out_of_memory) \
        == ("exited", 1, False, False)
    assert status.reason == "BackoffLimitExceeded: Job has reached the specified backoff limit"


def test_an_oom_killed_container_is_out_of_memory() -> None:
    status = status_from_job(doc("job-failed-backoff"), doc("pod-oomkilled"))
    assert (status.phase, status.exit_code, status.out_of_memory) == ("exited", 137, True)
    assert status.started_at == ts("2022-06-15T08:40:15Z")  # startedAt null: the Job's start


def test_a_job_past_its_deadline_timed_out() -> None:
    status = status_from_job(doc("job-failed-deadline"))
    assert (status.phase, status.timed_out, status.exit_code) == ("exited", True, None)
    assert status.ended_at == ts("2022-06-15T08:40:47Z")
    assert status.reason == "DeadlineExceeded: Job was active longer than specified deadline"


def test_a_pod_stopped_at_the_deadline_gives_its_exit_code_too() -> None:
    pod = doc("pod-exit-1")
    pod["status"]["containerStatuses"][0]["state"]["terminated"].update(
        exitCode=143, reason="Error")
    status = status_from_job(doc("job-failed-deadline"), pod)
    assert (status.phase, status.timed_out, status.exit_code) == ("exited", True, 143)


def test_a_deadline_before_any_pod_ran_is_a_failure_to_start() -> None:
    job = doc("job-failed-deadline")
    job["status"]["failed"] = 0
    assert status_from_job(job).phase == "failed_to_start"
    status = status_from_job(doc("job-failed-deadline"), doc("pod-image-pull-backoff"))
    assert status.phase == "failed_to_start"
    assert "ImagePullBackOff: Back-off pulling image" in (status.reason or "")


def test_an_image_that_cannot_be_pulled_is_given_the_grace_period_first() -> None:
    pod = doc("pod-image-pull-backoff")
    created = ts(pod["metadata"]["creationTimestamp"])
    soon = status_from_job(doc("job-active"), pod, now=created + 60)
    assert soon.phase == "queued" and (soon.reason or "").startswith("ImagePullBackOff")
    late = status_from_job(doc("job-active"), pod, now=created + 601)
    assert late.phase == "failed_to_start" and "ImagePullBackOff" in (late.reason or "")
    shorter = status_from_job(doc("job-active"), pod, now=created + 61, pending_grace_s=60)
    assert shorter.phase == "failed_to_start"


def test_an_unschedulable_pod_is_given_the_grace_period_first() -> None:
    pod = doc("pod-unschedulable")
    created = ts(pod["metadata"]["creationTimestamp"])
    soon = status_from_job(doc("job-active"), pod, now=created + 60)
    assert soon.phase == "queued" and "Insufficient memory" in (soon.reason or "")
    assert status_from_job(doc("job-active"), pod, now=created + 601).phase == "failed_to_start"


def test_a_waiting_reason_that_cannot_clear_fails_at_once() -> None:
    pod = doc("pod-image-pull-backoff")
    pod["status"]["containerStatuses"][0]["state"]["waiting"] = {
        "reason": "InvalidImageName", "message": 'invalid reference format: "Bad:Image"'}
    created = ts(pod["metadata"]["creationTimestamp"])
    status = status_from_job(doc("job-active"), pod, now=created + 1)
    assert status.phase == "failed_to_start" and "InvalidImageName" in (status.reason or "")


def test_a_container_being_created_is_queued() -> None:
    pod = doc("pod-image-pull-backoff")
    pod["status"]["containerStatuses"][0]["state"]["waiting"] = {"reason": "ContainerCreating"}
    status = status_from_job(doc("job-active"), pod, now=ts("2022-06-16T00:00:00Z"))
    assert status == Status("queued", reason="ContainerCreating")


def test_a_container_the_runtime_could_not_start_failed_to_start() -> None:
    pod = doc("pod-exit-1")
    pod["status"]["containerStatuses"][0]["state"]["terminated"].update(
        exitCode=128, reason="StartError", message='exec: "/bin/sh": no such file or directory')
    status = status_from_job(doc("job-failed-backoff"), pod)
    assert status.phase == "failed_to_start" and "/bin/sh" in (status.reason or "")
    pod["status"]["containerStatuses"][0]["state"]["terminated"].update(
        exitCode=126, reason="Error", message=f"{WRAPPER_MARK} could not unpack the work directory")
    assert status_from_job(doc("job-failed-backoff"), pod).phase == "failed_to_start"


def test_interim_conditions_do_not_end_the_attempt() -> None:
    for final, interim in (("job-complete", "SuccessCriteriaMet"),
                           ("job-failed-backoff", "FailureTarget")):
        job = doc(final)
        job["status"]["conditions"] = [c for c in job["status"]["conditions"]
                                       if c["type"] == interim]
        assert status_from_job(job, doc("pod-succeeded")).phase == "running"


def test_a_suspended_job_is_queued_and_a_missing_one_gone() -> None:
    job = doc("job-active")
    job["status"] = {"conditions": [{"type": "Suspended", "status": "True",
                                     "reason": "JobSuspended", "message": "Job suspended"}]}
    assert status_from_job(job).phase == "queued"
    assert status_from_job(None).phase == "gone"


def test_a_job_that_never_gets_a_pod_fails_to_start_after_the_grace_period() -> None:
    job = doc("job-active")
    job["status"] = {}
    created = ts(job["metadata"]["creationTimestamp"])
    assert status_from_job(job, now=created + 5).phase == "queued"
    assert status_from_job(job, now=created + 601).phase == "failed_to_start"


def test_an_evicted_pod_says_so() -> None:
    pod = doc("pod-exit-1")
    pod["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    pod["status"]["containerStatuses"][0]["state"]["terminated"].update(exitCode=137)
    status = status_from_job(doc("job-failed-backoff"), pod)
    assert (status.phase, status.exit_code) == ("exited", 137)
    assert "Evicted: The node was low on resource: memory." in (status.reason or "")


# ---------------------------------------------------------------- the backend, on a fake API


class FakeApiError(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"({status})")
        self.status = status
        self.body = json.dumps({"kind": "Status", "message": message or f"error {status}"})


class FakeCluster:
    """BatchV1Api and CoreV1Api in one, for the calls the backend makes (raw JSON answers)."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[str, bytes] = {}
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail: dict[str, FakeApiError] = {}

    def _record(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append((method, args, kwargs))
        assert kwargs.get("_request_timeout") == 30.0
        if method in self.fail:
            raise self.fail[method]

    def create_namespaced_job(self, namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        self._record("create_namespaced_job", (namespace, body), kw)
        key = (namespace, body["metadata"]["name"])
        if key in self.jobs:
            raise FakeApiError(409, "already exists")
        self.jobs[key] = copy.deepcopy(body)
        return body

    def read_namespaced_job(self, name: str, namespace: str, **kw: Any) -> Any:
        self._record("read_namespaced_job", (name, namespace), kw)
        assert kw["_preload_content"] is False
        if (namespace, name) not in self.jobs:
            raise FakeApiError(404, f'jobs.batch "{name}" not found')
        return SimpleNamespace(data=json.dumps(self.jobs[namespace, name]).encode())

    def delete_namespaced_job(self, name: str, namespace: str, **kw: Any) -> None:
        self._record("delete_namespaced_job", (name, namespace), kw)
        if self.jobs.pop((namespace, name), None) is None:
            raise FakeApiError(404)

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        self._record("list_namespaced_pod", (namespace,), kw)
        label, _, value = kw["label_selector"].partition("=")
        items = [p for (ns, _), p in self.pods.items()
                 if ns == namespace and p["metadata"]["labels"].get(label) == value]
        return SimpleNamespace(data=json.dumps({"kind": "PodList", "items": items}).encode())

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> Any:
        self._record("read_namespaced_pod_log", (name, namespace), kw)
        assert kw["container"] == "task"
        if name not in self.logs:
            raise FakeApiError(400, "container is waiting to start")
        return SimpleNamespace(data=self.logs[name][: kw["limit_bytes"]])

    def delete_collection_namespaced_pod(self, namespace: str, **kw: Any) -> None:
        self._record("delete_collection_namespaced_pod", (namespace,), kw)
        label, _, value = kw["label_selector"].partition("=")
        for key in [k for k, p in self.pods.items() if p["metadata"]["labels"].get(label) == value]:
            del self.pods[key]

    def add_pod(self, job: str, document: str, *, log: bytes | None = None,
                namespace: str = "default") -> dict[str, Any]:
        pod = doc(document)
        pod["metadata"]["labels"][LABEL_JOB] = job
        pod["metadata"]["name"] = f"{job}-x7k2p"
        self.pods[namespace, pod["metadata"]["name"]] = pod
        if log is not None:
            self.logs[pod["metadata"]["name"]] = log
        return pod

    def set_status(self, job: str, document: str, namespace: str = "default") -> None:
        self.jobs[namespace, job]["status"] = doc(document)["status"]


def backend_on(cluster: FakeCluster, **options: Any) -> KubernetesBackend:
    backend = KubernetesBackend(**options)
    backend._batch = backend._core = cluster
    return backend


def test_submit_creates_the_job_and_a_retried_submit_adopts_it(new_run: NewRun) -> None:
    cluster = FakeCluster()
    backend = backend_on(cluster, namespace="tasks", image="busybox:1.36")
    run = new_run()
    assert backend.submit(run) == "tasks/cu-a17"
    assert cluster.jobs["tasks", "cu-a17"] == job_manifest(run, namespace="tasks",
                                                            image="busybox:1.36")
    assert backend.submit(run) == "tasks/cu-a17"  # 409, adopted


def test_a_job_is_polled_to_its_end_and_its_log_and_status_are_kept(new_run: NewRun) -> None:
    cluster = FakeCluster()
    backend = backend_on(cluster)
    run = new_run()
    handle = backend.submit(run)
    assert backend.poll(handle, run).phase == "queued"
    cluster.add_pod("cu-a17", "pod-running", log=b"hello\nwarn\n")
    assert backend.poll(handle, run).phase == "running"
    assert backend.output(handle, run, "stdout", 1 << 20) == b"hello\nwarn\n"
    assert backend.output(handle, run, "stdout", 3) == b"hel"
    assert backend.output(handle, run, "stderr", 1 << 20) == b""
    cluster.set_status("cu-a17", "job-complete")
    cluster.add_pod("cu-a17", "pod-succeeded", log=b"hello\nwarn\n")
    status = backend.poll(handle, run)
    assert (status.phase, status.exit_code) == ("exited", 0)
    assert (run.rundir / "stdout").read_bytes() == b"hello\nwarn\n"
    assert ExitRecord.read(run.rundir) is not None
    # The Job expires (TTL); a restarted agent, with no cluster at all, still knows the end.
    cluster.jobs.clear()
    cluster.pods.clear()
    fresh = backend_on(FakeCluster())
    fresh._batch = fresh._core = None  # would need the real client: must not be reached
    again = fresh.poll(handle, run)
    assert (again.phase, again.exit_code, again.usage.wall_s) == ("exited", 0, 61.0)
    assert fresh.output(handle, run, "stdout", 1 << 20) == b"hello\nwarn\n"


def test_an_unknown_handle_is_gone(new_run: NewRun) -> None:
    backend = backend_on(FakeCluster())
    assert backend.poll("999999999", new_run()).phase == "gone"


def test_cancel_deletes_the_job_and_its_pods_at_once_and_records_a_kill(
    new_run: NewRun
) -> None:
    cluster = FakeCluster()
    backend = backend_on(cluster)
    run = new_run("sleep 300")
    handle = backend.submit(run)
    cluster.add_pod("cu-a17", "pod-running", log=b"started\n")
    backend.cancel(handle, run)
    assert not cluster.jobs and not cluster.pods
    deletes = {m: kw for m, _, kw in cluster.calls if m.startswith("delete")}
    assert deletes["delete_namespaced_job"]["propagation_policy"] == "Foreground"
    assert deletes["delete_namespaced_job"]["grace_period_seconds"] == 0
    assert deletes["delete_collection_namespaced_pod"] == {
        "label_selector": f"{LABEL_JOB}=cu-a17", "grace_period_seconds": 0,
        "_request_timeout": 30.0}
    status = backend.poll(handle, run)
    assert (status.phase, status.signal, status.exit_code) == ("exited", 9, None)
    assert status.started_at == ts("2022-06-15T08:40:17Z")
    assert backend.output(handle, run, "stdout", 100) == b"started\n"


def test_cancel_after_the_end_keeps_the_real_outcome(new_run: NewRun) -> None:
    cluster = FakeCluster()
    backend = backend_on(cluster)
    run = new_run()
    handle = backend.submit(run)
    cluster.set_status("cu-a17", "job-failed-backoff")
    cluster.add_pod("cu-a17", "pod-exit-1", log=b"")
    backend.cancel(handle, run)
    assert (backend.poll(handle, run).exit_code, backend.poll(handle, run).signal) == (1, None)


def test_a_job_that_fails_to_start_is_deleted_so_it_cannot_start_later(
    new_run: NewRun
) -> None:
    cluster = FakeCluster()
    backend = backend_on(cluster, pending_grace_s=0)
    run = new_run()
    handle = backend.submit(run)
    cluster.add_pod("cu-a17", "pod-unschedulable")
    status = backend.poll(handle, run)
    assert status.phase == "failed_to_start" and "Unschedulable" in (status.reason or "")
    assert not cluster.jobs
    assert ExitRecord.read(run.rundir) is None
    assert backend.poll(handle, run).phase == "gone"


def test_release_deletes_the_job_and_forgives_errors(new_run: NewRun) -> None:
    cluster = FakeCluster()
    backend = backend_on(cluster)
    run = new_run()
    handle = backend.submit(run)
    backend.release(handle, run)
    assert not cluster.jobs
    cluster.fail["delete_namespaced_job"] = FakeApiError(503)
    backend.release(handle, run)  # the TTL will do it


def test_api_errors_become_backend_errors_with_the_server_s_message(new_run: NewRun) -> None:
    cluster = FakeCluster()
    backend = backend_on(cluster)
    run = new_run()
    cluster.fail["create_namespaced_job"] = FakeApiError(403, 'jobs.batch is forbidden: User '
                                                         '"agent" cannot create resource')
    with pytest.raises(BackendError, match=r"Job default/cu-a17: jobs\.batch is forbidden"):
        backend.submit(run)
    cluster.fail.clear()
    handle = backend.submit(run)
    cluster.fail["list_namespaced_pod"] = FakeApiError(500, "etcdserver: request timed out")
    with pytest.raises(BackendError, match="etcdserver"):
        backend.poll(handle, run)


def test_the_registry_makes_it_without_the_client_until_it_is_used() -> None:
    backend = make_backend("kubernetes", {"namespace": "tasks", "image": "busybox:1.36",
                                          "ttl_s": 60})
    assert isinstance(backend, KubernetesBackend) and backend.namespace == "tasks"
    caps = backend.capabilities()
    assert caps.accelerators and caps.measures == ("wall_s",)
    backend.close()


@pytest.mark.skipif(importlib.util.find_spec("kubernetes") is not None,
                    reason="the kubernetes client is installed")
def test_without_the_client_using_it_says_how_to_install_it(new_run: NewRun) -> None:
    with pytest.raises(BackendError, match="pip install"):
        KubernetesBackend().submit(new_run())


# ---------------------------------------------------------------- a real cluster


def _cluster_or_skip() -> None:
    if importlib.util.find_spec("kubernetes") is None:
        pytest.skip("the kubernetes client is not installed (pip install kubernetes)")
    config = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
    if not any(Path(p).is_file() for p in config.split(os.pathsep)):
        pytest.skip(f"no kubeconfig at {config}")


@pytest.mark.kubernetes
def test_real_jobs_run_fail_and_time_out_on_the_cluster(new_run: NewRun) -> None:
    """Against $KUBECONFIG's cluster, in $COMPUTILITY_K8S_NAMESPACE (default "default")."""
    _cluster_or_skip()
    backend = KubernetesBackend(namespace=os.environ.get("COMPUTILITY_K8S_NAMESPACE", "default"),
                                image=os.environ.get("COMPUTILITY_K8S_IMAGE", DEFAULT_IMAGE))
    suffix = f"{os.getpid()}-{time.time_ns() % 10**8}"

    def wait(run: TaskRun, handle: str, timeout: float = 300.0) -> Status:
        deadline = time.monotonic() + timeout
        while not (status := backend.poll(handle, run)).done:
            assert time.monotonic() < deadline, f"still {status}"
            time.sleep(1)
        return status

    runs = {
        "ok": new_run("cat input.txt; echo seed=$SEED", key=f"ok-{suffix}",
                      files={"input.txt": "uploaded\n"},
                      envs={"PATH": "/usr/local/bin:/usr/bin:/bin", "SEED": "7"}),
        "fail": new_run("exit 3", key=f"fail-{suffix}"),
        "slow": new_run("sleep 300", key=f"slow-{suffix}", timeout_s=5),
    }
    handles = {name: backend.submit(run) for name, run in runs.items()}
    try:
        ok = wait(runs["ok"], handles["ok"])
        assert (ok.phase, ok.exit_code) == ("exited", 0), ok
        assert backend.output(handles["ok"], runs["ok"], "stdout", 1 << 20) \
            == b"uploaded\nseed=7\n"
        fail = wait(runs["fail"], handles["fail"])
        assert (fail.phase, fail.exit_code) == ("exited", 3), fail
        slow = wait(runs["slow"], handles["slow"])
        assert slow.timed_out, slow
    finally:
        for name, run in runs.items():
            backend.release(handles[name], run)
        backend.close()
