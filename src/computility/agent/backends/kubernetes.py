"""Run each attempt as a Kubernetes Job: one pod, one container, no retries, a hard deadline.

The Job is built by `job_manifest` and read back by `status_from_job`, both pure so that they can
be checked without a cluster (against the API schema and against status documents). The backend
class only moves those documents through the official ``kubernetes`` client, imported when a
backend first talks to a cluster, so this module and its pure functions work without it.

Choices, and why:

* The container runs ``/bin/sh -c`` with ``task.sh`` inlined (no ConfigMap): one object to create
  and delete, nothing to garbage-collect. The wrapper ``exec env -i``s the task so that it sees
  exactly ``TaskRun.envs``, not the image's variables nor the kubelet's ``KUBERNETES_*`` ones.
* The pod cannot see the agent's disk. With ``tasks_volume`` (a volume source holding the agent's
  tasks root: hostPath on a one-node cluster, an RWX claim or NFS otherwise) it is mounted at the
  same path, so the work directory and its outputs are shared. Without it the work directory is
  an ``emptyDir`` into which the uploaded files are unpacked from a base64 tar inlined in the
  script, up to ``inline_limit`` bytes (one argv string may not exceed 128 KiB); outputs are lost.
* Kubernetes keeps one log per container, stdout and stderr interleaved: `output` returns it as
  stdout and nothing as stderr. When `poll` first sees the end it saves the log to the run
  directory, then ``status.json``, so the outcome outlives the Job's TTL and the agent.
* ``shareProcessNamespace`` keeps the task's shell from being PID 1 (which ignores SIGTERM), so a
  deadline or a delete stops it gracefully within ``grace_s``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import math
import os
import re
import shlex
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from computility.agent.backends.base import (
    SCRIPT_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    Backend,
    BackendError,
    Capabilities,
    ExitRecord,
    Status,
    TaskRun,
    Usage,
    read_tail,
)
from computility.wire.archives import pack

CONTAINER = "task"
LABEL_JOB = "computility.io/job"
DEFAULT_IMAGE = "python:3.11-slim"  # has /bin/sh, env, base64, tar and gzip
DEFAULT_UID = 65534  # "nobody", numeric so that the kubelet can check runAsNonRoot
GPU_PRODUCT = "nvidia.com/gpu.product"
# What NVIDIA GPU feature discovery writes in `nvidia.com/gpu.product`: the NVML device name with
# dashes for spaces. NVIDIA only: AMD and Huawei nodes carry other labels, and MIG or shared GPUs
# get suffixes; such sites pass `node_selector_by_device`.
DEFAULT_NODE_SELECTORS: Mapping[str, Mapping[str, str]] = {d: {GPU_PRODUCT: p} for d, p in {
    "K80": "Tesla-K80", "P100-16GB": "Tesla-P100-PCIE-16GB", "T4": "Tesla-T4",
    "V100-16GB": "Tesla-V100-SXM2-16GB", "V100-32GB": "Tesla-V100-SXM2-32GB",
    "A10": "NVIDIA-A10", "A100-40GB": "NVIDIA-A100-SXM4-40GB",
    "A100-80GB": "NVIDIA-A100-SXM4-80GB", "H100-SXM": "NVIDIA-H100-80GB-HBM3",
    "H200-SXM": "NVIDIA-H200", "L40S": "NVIDIA-L40S", "RTX-4090": "NVIDIA-GeForce-RTX-4090",
    "RTX-6000": "Quadro-RTX-6000", "RTX-2080TI": "NVIDIA-GeForce-RTX-2080-Ti",
}.items()}
# Written to the termination log when the wrapper, not the task, failed: the task never ran.
WRAPPER_MARK = "computility:"
# Waiting reasons that never clear by themselves, and ones that may (a registry outage, a node an
# autoscaler is adding) and so are given `pending_grace_s` first.
_NEVER_STARTS = frozenset({"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"})
_STUCK = frozenset({"ImagePullBackOff", "ErrImagePull", "CreateContainerError",
                    "RunContainerError", "Unschedulable"})
# Terminated reasons of a container the runtime could not start (no /bin/sh in the image, ...).
_START_FAILURES = frozenset({"StartError", "ContainerCannotRun"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def job_name(key: str) -> str:
    """A DNS-1123 label of at most 63 characters (the controller copies it into a pod label).
    A key that had to be changed gets a digest of itself, so that distinct keys folding to the
    same characters still name distinct Jobs."""
    base = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    name = f"cu-{base}" if base else "cu"
    if base != key or len(name) > 63:
        name = f"{name[:52].rstrip('-')}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    return name


def container_script(run: TaskRun, *, shared_workdir: bool, inline_limit: int = 65536) -> str:
    """The container's ``/bin/sh -c`` argument: unpack the work directory unless it is shared,
    then run ``task.sh`` under ``env -i`` with exactly ``run.envs`` (taken from the container's
    env by name where the name is a shell identifier, written literally otherwise)."""
    task = (run.rundir / SCRIPT_FILE).read_text(encoding="utf-8")
    lines = []
    if not shared_workdir and any(run.workdir.iterdir()):
        payload = base64.b64encode(pack(run.workdir)).decode("ascii")
        if len(payload) > inline_limit:
            raise BackendError(f"the work directory packs to {len(payload)} base64 bytes, over "
                               f"inline_limit={inline_limit}; give the backend a tasks_volume")
        note = f"{WRAPPER_MARK} could not unpack the work directory"
        lines.append(f"cd {shlex.quote(str(run.workdir))} && printf %s {payload} | base64 -d"
                     f" | tar -xzf - || {{ {{ echo '{note}' >/dev/termination-log; }} 2>/dev/null;"
                     " exit 126; }")
    keep = [f'{k}="${k}"' if _IDENTIFIER.fullmatch(k) else shlex.quote(f"{k}={v}")
            for k, v in run.envs.items()]
    lines.append(f"exec env -i {' '.join(keep)} /bin/sh -c {shlex.quote(task)}")
    return "\n".join(lines) + "\n"


def job_manifest(
    run: TaskRun, *, namespace: str = "default", image: str = DEFAULT_IMAGE,
    node_selector_by_device: Mapping[str, Mapping[str, str]] | None = None,
    gpu_resource: str = "nvidia.com/gpu", node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (), run_as_user: int = DEFAULT_UID,
    run_as_group: int | None = None, ttl_s: int = 3600, grace_s: int = 5,
    tasks_volume: Mapping[str, Any] | None = None, tasks_root: str | None = None,
    inline_limit: int = 65536,
) -> dict[str, Any]:
    """The ``batch/v1`` Job that runs `run` once: backoffLimit 0 (a retry is the network's call,
    not the cluster's), the timeout as activeDeadlineSeconds (counted from the Job's start, so it
    includes scheduling and the image pull), requests equal to limits (Guaranteed QoS when memory
    is set) and a node selector for the allocation's device type (unknown types get none).
    `tasks_volume` is mounted at `tasks_root`, by default the run directory's grandparent."""
    name, alloc = job_name(run.key), run.allocation
    labels = {LABEL_JOB: name, "computility.io/attempt": str(run.attempt),
              "computility.io/task": str(run.task),
              "app.kubernetes.io/managed-by": "computility-agent"}
    annotations = {"computility.io/key": run.key, **({"computility.io/name": run.name}
                                                       if run.name else {})}
    limits = {"cpu": str(alloc.cpus)} if alloc.cpus > 0 else {}
    if alloc.memory_bytes:
        limits["memory"] = str(alloc.memory_bytes)
    requests = dict(limits)  # a GPU's request defaults to its limit
    selector = dict(node_selector or {})
    if alloc.accelerators > 0:
        limits[gpu_resource] = str(alloc.accelerators)
        by_device = DEFAULT_NODE_SELECTORS if node_selector_by_device is None \
            else node_selector_by_device
        selector.update(by_device.get(alloc.accelerator or "", {}))
    if tasks_volume is not None:
        volume = {"name": "tasks", **tasks_volume}
        mount = {"name": "tasks", "mountPath": tasks_root or str(run.rundir.parent.parent)}
    else:
        volume, mount = {"name": "work", "emptyDir": {}}, {"name": "work",
                                                           "mountPath": str(run.workdir)}
    script = container_script(run, shared_workdir=tasks_volume is not None,
                              inline_limit=inline_limit)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # the task gets no credentials for the cluster
        "enableServiceLinks": False,
        "shareProcessNamespace": True,
        "terminationGracePeriodSeconds": grace_s,
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": run_as_user,
            "runAsGroup": run_as_user if run_as_group is None else run_as_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", script],
            "env": [{"name": k, "value": v} for k, v in run.envs.items()],
            "resources": {"requests": requests, "limits": limits},
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [mount],
        }],
        "volumes": [volume],
    }
    if selector:
        pod_spec["nodeSelector"] = selector
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": annotations},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(run.timeout_s)),
            "ttlSecondsAfterFinished": ttl_s,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def status_from_job(
    job: Mapping[str, Any] | None, pod: Mapping[str, Any] | None = None, *,
    now: float | None = None, pending_grace_s: float = 600.0,
) -> Status:
    """How the attempt stands, from its Job (None: the API answered 404) and its newest pod.

    Only the Job's ``Complete`` and ``Failed`` conditions end it (``FailureTarget`` and
    ``SuccessCriteriaMet`` come while pods still terminate). Exit code, signal and OOM kill come
    from the container's terminated state; ``DeadlineExceeded`` is a timeout. A container that
    never started makes ``failed_to_start``: at once for waiting reasons that cannot clear, after
    `pending_grace_s` for an unschedulable pod or a failing pull, and when the Job failed first.
    """
    if job is None:
        return Status("gone", reason="no such Job (deleted, expired by its TTL or never created)")
    st = job.get("status") or {}
    true = {c.get("type"): c for c in st.get("conditions") or () if c.get("status") == "True"}
    pod_st = (pod or {}).get("status") or {}
    state = _container_state(pod)
    term, running = state.get("terminated") or {}, state.get("running")
    started = _ts(term.get("startedAt")) or _ts((running or {}).get("startedAt"))
    done = true.get("Complete") or true.get("Failed")
    if done is not None:
        failed, why = done.get("type") == "Failed", _join(done.get("reason"), done.get("message"))
        never = None if term or running is not None else _never_ran(pod, st)
        if failed and never is not None:
            return Status("failed_to_start", reason=f"{why}: {never}")
        if term.get("reason") in _START_FAILURES or \
                str(term.get("message") or "").startswith(WRAPPER_MARK):
            return Status("failed_to_start", reason=_join(term.get("reason"), term.get("message")))
        started = started or _ts(st.get("startTime"))
        ended = (_ts(term.get("finishedAt")) or _ts(st.get("completionTime"))
                 or _ts(done.get("lastTransitionTime")))
        reasons = [why] if failed else []
        if pod_st.get("reason"):  # Evicted, NodeLost, DeadlineExceeded: the pod's own account
            reasons.append(_join(pod_st["reason"], pod_st.get("message")))
        code = term.get("exitCode")
        return Status(
            "exited", exit_code=0 if code is None and not failed else code,
            signal=term.get("signal") or None,
            timed_out=failed and done.get("reason") == "DeadlineExceeded",
            out_of_memory=term.get("reason") == "OOMKilled", started_at=started, ended_at=ended,
            usage=Usage(wall_s=ended - started if started and ended else None),
            reason="; ".join(reasons) or None)
    if "Suspended" in true:
        return Status("queued", reason="the Job is suspended")
    if running is not None or term or (pod is None and int(st.get("ready") or 0) > 0):
        return Status("running", started_at=started or _ts(st.get("startTime")))
    clock = time.time() if now is None else now
    if pod is None:
        created = _ts((job.get("metadata") or {}).get("creationTimestamp"))
        if not st.get("active") and created is not None and clock - created > pending_grace_s:
            return Status("failed_to_start", reason=f"no pod was created in {pending_grace_s:g}"
                          " s (a quota or an admission policy may refuse it)")
        return Status("queued")
    blocker = _blocker(pod)
    if blocker is None:
        return Status("queued")
    text = _join(*blocker)
    since = _ts((pod.get("metadata") or {}).get("creationTimestamp"))
    if blocker[0] in _NEVER_STARTS:
        return Status("failed_to_start", reason=text)
    if blocker[0] in _STUCK and since is not None and clock - since > pending_grace_s:
        return Status("failed_to_start", reason=f"{text} (pending over {pending_grace_s:g} s)")
    return Status("queued", reason=text)


def _container_state(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    mine = [cs for cs in statuses if cs.get("name") == CONTAINER] or statuses[:1]
    return (mine[0].get("state") or {}) if mine else {}


def _blocker(pod: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """Why a pending pod's container has not started: its waiting reason or the scheduler's."""
    waiting = _container_state(pod).get("waiting")
    if waiting and waiting.get("reason"):
        return str(waiting["reason"]), waiting.get("message")
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return str(c.get("reason") or "Unschedulable"), c.get("message")
    return None


def _never_ran(pod: Mapping[str, Any] | None, job_status: Mapping[str, Any]) -> str | None:
    """Why the container of a Job that ended never ran, or None if it may have run. With no pod
    left, a Job that counts no pod failed or succeeded never had one (a deadline counts those it
    removes)."""
    if pod is None:
        return None if job_status.get("failed") or job_status.get("succeeded") else "no pod ran"
    pod_st = pod.get("status") or {}
    return _join(*(_blocker(pod) or (pod_st.get("reason") or "the container never started",
                                     pod_st.get("message"))))


def _join(reason: Any, message: Any = None) -> str:
    return f"{reason}: {message}" if reason and message else str(reason or message or "")


def _ts(value: Any) -> float | None:
    """An RFC 3339 API timestamp as epoch seconds (None, missing or malformed: None)."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (AttributeError, TypeError, ValueError):
        return None


def _code(error: BaseException) -> int | None:
    """The HTTP status of a client error (``ApiException.status``), without importing it."""
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def _describe(error: BaseException) -> str:
    try:
        message = json.loads(getattr(error, "body", None) or "{}").get("message")
    except (ValueError, TypeError, AttributeError):
        message = None
    return str(message or error).strip()


class KubernetesBackend(Backend):
    """Jobs in one namespace of one cluster, reached by kubeconfig or by the agent pod's service
    account. Handles are ``namespace/name``, so a restarted agent finds its Jobs even after its
    namespace option changed. Options other than the connection's go to `job_manifest`."""

    name: ClassVar[str] = "kubernetes"

    def __init__(self, namespace: str = "default", *, kubeconfig: str | None = None,
                 context: str | None = None, in_cluster: bool | None = None,
                 pending_grace_s: float = 600.0, log_limit: int = 64 << 20,
                 request_timeout_s: float = 30.0, **manifest_options: Any) -> None:
        self.namespace = namespace
        self._kubeconfig, self._context, self._in_cluster = kubeconfig, context, in_cluster
        self._pending_grace_s, self._log_limit = pending_grace_s, log_limit
        self._timeout = request_timeout_s
        self._manifest_options = {"namespace": namespace, **manifest_options}
        self._api_client: Any = None
        self._batch: Any = None
        self._core: Any = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            limits_memory="scheduler", accelerators=True, measures=("wall_s",),
            notes=("stdout and stderr are interleaved in the pod log, reported as stdout",
                   "the deadline counts scheduling and the image pull; wall time does not"))

    def _apis(self) -> tuple[Any, Any]:
        if self._batch is None:
            try:
                client = importlib.import_module("kubernetes.client")
                config = importlib.import_module("kubernetes.config")
            except ImportError as e:
                raise BackendError("the kubernetes backend needs the client: "
                                   "pip install 'computility[kubernetes]'") from e
            in_cluster = self._in_cluster if self._in_cluster is not None else (
                self._kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ)
            try:
                if in_cluster:
                    configuration = client.Configuration()
                    config.load_incluster_config(client_configuration=configuration)
                    self._api_client = client.ApiClient(configuration)
                else:
                    self._api_client = config.new_client_from_config(
                        config_file=self._kubeconfig, context=self._context)
            except Exception as e:  # ConfigException, a missing or unreadable file
                raise BackendError(f"cannot configure the Kubernetes client: {e}") from e
            self._batch = client.BatchV1Api(self._api_client)
            self._core = client.CoreV1Api(self._api_client)
        return self._batch, self._core

    def _call(self, what: str, request: Callable[[Any, Any, float], Any],
              ok: tuple[int, ...] = ()) -> Any:
        """One API request given (batch, core, timeout); None if it answers a status in `ok`."""
        batch, core = self._apis()
        try:
            return request(batch, core, self._timeout)
        except Exception as e:  # ApiException, urllib3 errors: all the cluster's fault here
            if _code(e) in ok:
                return None
            raise BackendError(f"{what}: {_describe(e)}") from e

    def _split(self, handle: str) -> tuple[str, str]:
        namespace, sep, name = handle.rpartition("/")
        return (namespace if sep else self.namespace), name

    def submit(self, run: TaskRun) -> str:
        manifest = job_manifest(run, **self._manifest_options)
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        # 409: this attempt's Job exists already (a submit retried after a lost answer): adopt it.
        self._call(f"creating Job {ns}/{name}", lambda b, _, t: b.create_namespaced_job(
            ns, manifest, _request_timeout=t), ok=(409,))
        return f"{ns}/{name}"

    def poll(self, handle: str, run: TaskRun) -> Status:
        record = ExitRecord.read(run.rundir)
        if record is not None:
            return record.status()
        ns, name = self._split(handle)
        job, pod = self._job_and_pod(ns, name)
        status = status_from_job(job, pod, pending_grace_s=self._pending_grace_s)
        if status.phase == "exited":
            self._keep(run, ns, pod, status, strict=True)
        elif status.phase == "failed_to_start" and job is not None:
            self._delete_job(ns, name)  # so that it cannot start after all, once re-placed
        return status

    def cancel(self, handle: str, run: TaskRun) -> None:
        """Delete the Job and its pods at once (grace 0), recording the end as SIGKILL unless the
        Job had ended already, whose real outcome is kept."""
        if ExitRecord.read(run.rundir) is not None:
            return
        ns, name = self._split(handle)
        job, pod = self._job_and_pod(ns, name)
        status = status_from_job(job, pod, pending_grace_s=self._pending_grace_s)
        if status.phase != "exited":
            status = Status("exited", signal=int(signal.SIGKILL), started_at=status.started_at,
                            ended_at=time.time(), reason="cancelled")
        self._keep(run, ns, pod, status, strict=False)
        self._delete_job(ns, name)
        self._call(f"deleting the pods of Job {ns}/{name}",
                   lambda _, c, t: c.delete_collection_namespaced_pod(
                       ns, label_selector=f"{LABEL_JOB}={name}", grace_period_seconds=0,
                       _request_timeout=t))

    def output(self, handle: str, run: TaskRun, stream: str, limit: int) -> bytes:
        """The pod log (stdout and stderr interleaved) as stdout; stderr is always empty."""
        if stream != "stdout" or limit <= 0:
            return b""
        if (run.rundir / STDOUT_FILE).exists():
            return read_tail(run.rundir / STDOUT_FILE, limit)
        ns, name = self._split(handle)
        pod = self._newest_pod(ns, name)
        return self._log(ns, pod, limit) if pod is not None else b""

    def release(self, handle: str, run: TaskRun) -> None:
        """Delete the Job; should that fail, its ttlSecondsAfterFinished removes it later."""
        try:
            self._delete_job(*self._split(handle), propagation="Background")
        except BackendError:
            return

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
        self._api_client = self._batch = self._core = None

    def _keep(self, run: TaskRun, ns: str, pod: Mapping[str, Any] | None, status: Status, *,
              strict: bool) -> None:
        """Save the log, then ``status.json``, whose presence says the log is saved too. Not
        `strict` (a cancel), a log the API fails to give is given up rather than waited for."""
        try:
            log = self._log(ns, pod, self._log_limit) if pod is not None else b""
        except BackendError:
            if strict:
                raise
            log = b""
        try:
            (run.rundir / STDOUT_FILE).write_bytes(log)
            (run.rundir / STDERR_FILE).write_bytes(b"")
            ExitRecord(exit_code=status.exit_code, signal=status.signal,
                       timed_out=status.timed_out, out_of_memory=status.out_of_memory,
                       started_at=status.started_at, ended_at=status.ended_at,
                       reason=status.reason).write(run.rundir)
        except OSError:
            pass  # the agent removed the run directory: nothing left to keep it for

    def _job_and_pod(self, ns: str, name: str) -> tuple[Any, dict[str, Any] | None]:
        response = self._call(f"reading Job {ns}/{name}", lambda b, _, t: b.read_namespaced_job(
            name, ns, _preload_content=False, _request_timeout=t), ok=(404,))
        if response is None:
            return None, None
        return json.loads(response.data), self._newest_pod(ns, name)

    def _newest_pod(self, ns: str, name: str) -> dict[str, Any] | None:
        response = self._call(f"listing the pods of Job {ns}/{name}",
                              lambda _, c, t: c.list_namespaced_pod(
                                  ns, label_selector=f"{LABEL_JOB}={name}",
                                  _preload_content=False, _request_timeout=t))
        pods: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp")), default=None)

    def _log(self, ns: str, pod: Mapping[str, Any], limit: int) -> bytes:
        """The first `limit` bytes of the log; empty while the container waits to start (400)
        and once the pod is gone (404)."""
        pod_name = pod["metadata"]["name"]
        response = self._call(f"reading the log of pod {ns}/{pod_name}",
                              lambda _, c, t: c.read_namespaced_pod_log(
                                  pod_name, ns, container=CONTAINER, limit_bytes=limit,
                                  _preload_content=False, _request_timeout=t), ok=(400, 404))
        return bytes(response.data)[:limit] if response is not None else b""

    def _delete_job(self, ns: str, name: str, propagation: str = "Foreground") -> None:
        self._call(f"deleting Job {ns}/{name}", lambda b, _, t: b.delete_namespaced_job(
            name, ns, propagation_policy=propagation, grace_period_seconds=0,
            _request_timeout=t), ok=(404,))
