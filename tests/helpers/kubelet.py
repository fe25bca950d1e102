"""A fake kubelet for pods on kwok nodes: runs a pod's container command as a local process.

kwok only fakes pod status (its pod-ready stage marks a scheduled pod Running). Where a test needs
the real work of a pod, :class:`LocalKubelet` reads the pod spec, runs the container's command and
args with its env (literal values, fieldRef, configMapKeyRef, secretKeyRef, envFrom), maps each
volumeMount to a local directory (rewriting the mount paths that appear in command, args, env and
workingDir), and writes the outcome into the pod's status as a kubelet would: phase
Succeeded/Failed and ``state.terminated`` with the exit code and the termination message.

Typical use, with the ``control_plane`` and ``namespace`` fixtures::

    with LocalKubelet(control_plane.api_client(), namespace, volume_map={"artifacts": tmp_path}) as kubelet:
        pod_name, exit_code = kubelet.run_job("distill-x")   # the Job's pod, run to completion
    # the Job controller then marks the Job Complete/Failed (within about a second)

Init containers run first, in order, as local processes too (a failing one fails the pod, recorded in
``initContainerStatuses``), except those in ``skip_init`` (default: the operator's ``prepare-storage``
and ``prepare-state``, which only chown a folder as root: nothing to do for a local process).

What it does not do: pull or run images (the command must exist here: the running Python's venv
``bin`` comes first on PATH, so ``logdistill`` and ``python`` are this venv's), restart containers,
probes, resource limits, or give the process in-cluster API credentials (a process that must talk to
the API gets ``KUBECONFIG`` through ``env_overrides``).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .controlplane import die_with_parent, free_ports, wait_for

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# The kubelet's limits: the *last* 4096 bytes of the message file; for FallbackToLogsOnError the
# last 80 log lines, at most 2048 bytes.
MAX_TERMINATION_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
# Init containers that only hand a folder to the pod's user as root: skipped locally.
SKIPPED_INIT_CONTAINERS = frozenset({"prepare-storage", "prepare-state"})


class KubeletError(RuntimeError):
    """The pod cannot be run locally (a missing volume mapping, an unknown env source, ...)."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_tail(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read()
    except FileNotFoundError:
        return b""


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, ``$$`` escapes, others stay."""

    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, value)


class _PathRewriter:
    """Rewrites container paths (mount points, the termination message path) to local ones."""

    def __init__(self, mapping: dict[str, Path]) -> None:
        self.mapping = {src.rstrip("/") or "/": str(dst) for src, dst in mapping.items()}
        # Longest first, so /data/out wins over /data; whole path components only.
        alternatives = "|".join(re.escape(src) for src in sorted(self.mapping, key=len, reverse=True))
        self.pattern = re.compile(rf"(?<![\w.\-/])({alternatives})(?=/|$|[^\w.\-])") if self.mapping else None

    def __call__(self, text: str) -> str:
        if self.pattern is None:
            return text
        return self.pattern.sub(lambda m: self.mapping[m.group(1)], text)

    def path(self, container_path: str) -> Path:
        return Path(self(container_path))


def _port_rewriter(ports: dict[int, int]):
    """Rewrites a container port that is a whole value or follows ':' or '=' (``:9090``, ``--port=9090``)."""
    if not ports:
        return lambda text: text
    pattern = re.compile(r"(?:^|(?<=[:=]))(" + "|".join(str(p) for p in ports) + r")(?!\d)")
    return lambda text: pattern.sub(lambda m: str(ports[int(m.group(1))]), text)


@dataclass
class PreparedContainer:
    """Everything needed to run one container locally."""

    pod: client.V1Pod
    container: client.V1Container
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mounts: dict[str, Path]
    termination_message_path: Path
    log_path: Path
    ports: dict[int, int] = field(default_factory=dict)


class RunningPod:
    """A long-running container started by :meth:`LocalKubelet.start_pod`."""

    def __init__(self, prepared: PreparedContainer, process: subprocess.Popen) -> None:
        self.prepared = prepared
        self.process = process
        self.pod_name: str = prepared.pod.metadata.name
        self.container: str = prepared.container.name
        self.ports = prepared.ports  # container port -> local port on 127.0.0.1

    def url(self, container_port: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[container_port]}{path}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def logs(self) -> str:
        return self.prepared.log_path.read_text(errors="replace") if self.prepared.log_path.exists() else ""

    def wait_http(self, container_port: int, path: str = "/", timeout: float = 30) -> bytes:
        """Polls the local port until it answers 200; fails early, with logs, if the process exited."""
        url = self.url(container_port, path)

        def answer() -> bytes | None:
            if not self.alive():
                raise KubeletError(f"{self.pod_name}/{self.container} exited with {self.process.returncode} "
                                   f"before serving {url}; logs:\n{self.logs()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return resp.read() if resp.status == 200 else None
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return None

        return wait_for(answer, timeout, 0.1, f"{url} ({self.pod_name}/{self.container})")

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM to its process group, SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return _exit_code(self.process.returncode)


def _exit_code(returncode: int) -> int:
    # A container killed by a signal reports 128 + signal, as in a shell or a container runtime.
    return 128 - returncode if returncode < 0 else returncode


class LocalKubelet:
    """Runs the containers of pods in ``namespace`` as local processes (a context manager)."""

    def __init__(self, api_client: client.ApiClient, namespace: str, volume_map: dict[str, Path] | None = None,
                 env_overrides: dict[str, str] | None = None,
                 skip_init: frozenset[str] | set[str] = SKIPPED_INIT_CONTAINERS) -> None:
        self.skip_init = frozenset(skip_init)
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.volume_map = {name: Path(path) for name, path in (volume_map or {}).items()}
        self.env_overrides = dict(env_overrides or {})
        self.dir = Path(tempfile.mkdtemp(prefix="logdistill-kubelet-"))
        self.running: list[RunningPod] = []

    def __enter__(self) -> "LocalKubelet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for handle in self.running:
            handle.stop()
        self.running.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- finding pods ----------------------------------------------------------------------

    def find_pod(self, label_selector: str, timeout: float = 30) -> str:
        """Name of the first pod matching ``label_selector`` (e.g. ``job-name=x``), once one exists."""

        def first() -> str | None:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=label_selector).items
            return sorted(p.metadata.name for p in pods)[0] if pods else None

        return wait_for(first, timeout, 0.1, f"a pod matching {label_selector!r} in {self.namespace}")

    def run_job(self, job_name: str, container: str | None = None, timeout: float = 600) -> tuple[str, int]:
        """Runs the (first) pod of a Job; returns its name and exit code. With backoffLimit > 0 a
        failure makes the Job controller create another pod, which the test runs in turn."""
        pod_name = self.find_pod(f"batch.kubernetes.io/job-name={job_name}")
        return pod_name, self.run_pod(pod_name, container, timeout)

    def wait_running(self, pod_name: str, timeout: float = 30) -> client.V1Pod:
        """Waits until kwok's pod-ready stage has marked the pod Running (scheduled, podIP set).

        Patching a terminal status before that would be overwritten by kwok, which marks every
        scheduled pod without a podIP as Running.
        """
        pod: client.V1Pod | None = None

        def running() -> client.V1Pod | None:
            nonlocal pod
            pod = self.core.read_namespaced_pod(pod_name, self.namespace)
            if pod.status.phase in ("Succeeded", "Failed"):
                raise KubeletError(f"pod {self.namespace}/{pod_name} is already {pod.status.phase}")
            return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

        try:
            return wait_for(running, timeout, 0.05, f"pod {self.namespace}/{pod_name} to be Running on a kwok node")
        except TimeoutError as exc:
            state = self.api.sanitize_for_serialization(pod.status) if pod else "not found"
            raise TimeoutError(f"{exc}; its status: {state}") from None

    # ---- running ---------------------------------------------------------------------------

    def run_init_containers(self, pod_name: str, timeout: float = 600) -> int:
        """Runs the pod's init containers in order (but those in ``skip_init``); returns 0, or the exit
        code of the first that failed, recorded in ``initContainerStatuses`` with the pod Failed."""
        pod = self.wait_running(pod_name)
        for init in pod.spec.init_containers or []:
            if init.name in self.skip_init:
                continue
            prepared = self.prepare(pod_name, init.name)
            started_at = _now()
            with open(prepared.log_path, "wb") as log:
                process = subprocess.Popen(prepared.argv, env=prepared.env, cwd=prepared.cwd, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True, preexec_fn=die_with_parent)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                self.write_init_failed(prepared, 137, started_at, _now())
                raise TimeoutError(f"pod {self.namespace}/{pod_name} init container {init.name} ran past "
                                   f"{timeout} s; logs:\n{self.logs_of(prepared)[-4000:]}") from None
            code = _exit_code(process.returncode)
            if code != 0:
                self.write_init_failed(prepared, code, started_at, _now())
                return code
        return 0

    def run_pod(self, pod_name: str, container: str | None = None, timeout: float = 600) -> int:
        """Runs the container to completion (its init containers first, for the whole pod), writes its
        terminated state into the pod status, and returns its exit code. Raises TimeoutError (after
        recording the failure) on timeout."""
        if container is None:
            code = self.run_init_containers(pod_name, timeout)
            if code != 0:
                return code
        prepared = self.prepare(pod_name, container)
        started_at = _now()
        with open(prepared.log_path, "wb") as log:
            process = subprocess.Popen(prepared.argv, env=prepared.env, cwd=prepared.cwd, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=die_with_parent)
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        code = _exit_code(process.returncode)
        self.write_terminated(prepared, code, started_at, _now())
        if timed_out:
            raise TimeoutError(f"pod {self.namespace}/{pod_name} container {prepared.container.name} ran past "
                               f"{timeout} s; logs:\n{self.logs_of(prepared)[-4000:]}")
        return code

    def start_pod(self, pod_name: str, container: str | None = None,
                  ports: dict[int, int] | None = None) -> RunningPod:
        """Starts a long-running container (a DaemonSet's server, say) and returns its handle.

        Each ``containerPort`` gets a free local port (or the one given in ``ports``), rewritten
        where it appears in args and env (``9090``, ``:9090``, ``--port=9090``). Stopped by
        :meth:`RunningPod.stop` or when the kubelet closes. The pod status stays as kwok set it.
        """
        if container is None:
            code = self.run_init_containers(pod_name)
            if code != 0:
                raise KubeletError(f"pod {self.namespace}/{pod_name}: an init container exited with {code}")
        pod = self.core.read_namespaced_pod(pod_name, self.namespace)
        spec_container = self._container(pod, container)
        declared = [p.container_port for p in spec_container.ports or []]
        chosen = dict(ports or {})
        missing = [p for p in declared if p not in chosen]
        chosen.update(zip(missing, free_ports(len(missing))))
        prepared = self.prepare(pod_name, container, chosen)
        with open(prepared.log_path, "wb") as log:
            process = subprocess.Popen(prepared.argv, env=prepared.env, cwd=prepared.cwd, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                       preexec_fn=die_with_parent)
        handle = RunningPod(prepared, process)
        self.running.append(handle)
        return handle

    def logs_of(self, prepared: PreparedContainer) -> str:
        return prepared.log_path.read_text(errors="replace") if prepared.log_path.exists() else ""

    def logs(self, pod_name: str, container: str | None = None) -> str:
        """The output of the last local run of that pod's container."""
        matches = sorted(self.dir.glob(f"{pod_name}/*{container or ''}.log"))
        return matches[-1].read_text(errors="replace") if matches else ""

    # ---- preparing -------------------------------------------------------------------------

    def _container(self, pod: client.V1Pod, name: str | None) -> client.V1Container:
        containers = pod.spec.containers
        if name is None:
            if len(containers) != 1:
                raise KubeletError(f"pod {pod.metadata.name} has {len(containers)} containers; name one of "
                                   f"{[c.name for c in containers]}")
            return containers[0]
        for c in [*containers, *(pod.spec.init_containers or [])]:
            if c.name == name:
                return c
        raise KubeletError(f"pod {pod.metadata.name} has no container {name!r}; it has {[c.name for c in containers]}")

    def prepare(self, pod_name: str, container: str | None = None,
                ports: dict[int, int] | None = None) -> PreparedContainer:
        pod = self.wait_running(pod_name)
        spec = self._container(pod, container)
        where = f"pod {self.namespace}/{pod_name} container {spec.name}"
        if not spec.command:
            raise KubeletError(f"{where} has no command: LocalKubelet cannot know the image's entrypoint")
        base = self.dir / pod_name
        base.mkdir(parents=True, exist_ok=True)
        mounts = self._mounts(pod, spec, base / "volumes")
        term_path = spec.termination_message_path or DEFAULT_TERMINATION_MESSAGE_PATH
        mapping: dict[str, Path] = dict(mounts)
        if _PathRewriter(mounts)(term_path) == term_path:
            # Not inside a mounted volume: the kubelet mounts a file of its own there.
            mapping[term_path] = base / f"{spec.name}.termination-log"
        rewrite_paths = _PathRewriter(mapping)
        local_term = rewrite_paths.path(term_path)
        local_term.parent.mkdir(parents=True, exist_ok=True)
        local_term.write_bytes(b"")
        rewrite_ports = _port_rewriter(ports or {})

        def rewrite(text: str) -> str:
            return rewrite_ports(rewrite_paths(text))

        env = self._base_env(pod)
        container_env = self._container_env(pod, spec, where)
        env.update({k: rewrite(v) for k, v in container_env.items()})
        env.update(self.env_overrides)
        expandable = {**container_env, **self.env_overrides}
        argv = [rewrite(_expand(a, expandable)) for a in [*spec.command, *(spec.args or [])]]
        resolved = shutil.which(argv[0], path=env["PATH"]) if "/" not in argv[0] else argv[0]
        if resolved is None:
            raise KubeletError(f"{where}: command {argv[0]!r} not found on PATH {env['PATH']}")
        argv[0] = resolved
        cwd = Path(rewrite(spec.working_dir)) if spec.working_dir else base / "cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        return PreparedContainer(pod=pod, container=spec, argv=argv, env=env, cwd=cwd, mounts=mounts,
                                 termination_message_path=local_term, log_path=base / f"{spec.name}.log",
                                 ports=dict(ports or {}))

    def _base_env(self, pod: client.V1Pod) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)  # a pod has no kubeconfig; env_overrides can give it one
        # This venv's console scripts (logdistill) and python come first, as they would in the image.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["HOSTNAME"] = pod.metadata.name
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _field(self, pod: client.V1Pod, path: str, where: str) -> str:
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            return (getattr(pod.metadata, m.group(1)) or {}).get(m.group(2), "")
        fields = {
            "metadata.name": pod.metadata.name,
            "metadata.namespace": pod.metadata.namespace,
            "metadata.uid": pod.metadata.uid,
            "spec.nodeName": pod.spec.node_name,
            "spec.serviceAccountName": pod.spec.service_account_name,
            "status.podIP": pod.status.pod_ip,
            "status.hostIP": pod.status.host_ip,
        }
        if path not in fields:
            raise KubeletError(f"{where}: fieldRef {path!r} is not supported by LocalKubelet")
        return fields[path] or ""

    def _config_map(self, name: str, optional: bool | None, where: str) -> dict[str, bytes] | None:
        try:
            cm = self.core.read_namespaced_config_map(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            raise KubeletError(f"{where}: configMap {self.namespace}/{name}: {exc.reason}") from exc
        data = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return data

    def _secret(self, name: str, optional: bool | None, where: str) -> dict[str, bytes] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            raise KubeletError(f"{where}: secret {self.namespace}/{name}: {exc.reason}") from exc
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def _container_env(self, pod: client.V1Pod, spec: client.V1Container, where: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in spec.env_from or []:
            if source.config_map_ref:
                data = self._config_map(source.config_map_ref.name, source.config_map_ref.optional, where)
            elif source.secret_ref:
                data = self._secret(source.secret_ref.name, source.secret_ref.optional, where)
            else:
                raise KubeletError(f"{where}: unsupported envFrom source {source}")
            env.update({f"{source.prefix or ''}{k}": v.decode() for k, v in (data or {}).items()})
        for var in spec.env or []:
            if var.value_from is None:
                env[var.name] = _expand(var.value or "", env)
                continue
            ref = var.value_from
            if ref.field_ref:
                env[var.name] = self._field(pod, ref.field_ref.field_path, where)
            elif ref.config_map_key_ref or ref.secret_key_ref:
                key_ref = ref.config_map_key_ref or ref.secret_key_ref
                read = self._config_map if ref.config_map_key_ref else self._secret
                data = read(key_ref.name, key_ref.optional, f"{where} env {var.name}")
                if data is None or key_ref.key not in data:
                    if key_ref.optional:
                        continue
                    raise KubeletError(f"{where} env {var.name}: key {key_ref.key!r} not in {key_ref.name}")
                env[var.name] = data[key_ref.key].decode()
            else:
                raise KubeletError(f"{where} env {var.name}: unsupported valueFrom {ref}")
        return env

    def _mounts(self, pod: client.V1Pod, spec: client.V1Container, root: Path) -> dict[str, Path]:
        """Container mount path -> local directory, one per volumeMount."""
        volumes = {v.name: v for v in pod.spec.volumes or []}
        local: dict[str, Path] = {}
        mounts: dict[str, Path] = {}
        for mount in spec.volume_mounts or []:
            where = f"pod {self.namespace}/{pod.metadata.name} volume {mount.name}"
            if mount.name not in local:
                if mount.name not in volumes:
                    raise KubeletError(f"{where}: mounted but not declared in spec.volumes")
                local[mount.name] = self._materialise(pod, volumes[mount.name], root / mount.name, where)
            path = local[mount.name] / mount.sub_path if mount.sub_path else local[mount.name]
            if mount.sub_path and not path.exists():
                path.mkdir(parents=True)
            mounts[mount.mount_path] = path
        return mounts

    def _materialise(self, pod: client.V1Pod, volume: client.V1Volume, target: Path, where: str) -> Path:
        if volume.name in self.volume_map:
            path = self.volume_map[volume.name]
            path.mkdir(parents=True, exist_ok=True)
            return path
        target.mkdir(parents=True, exist_ok=True)
        if volume.empty_dir is not None:
            return target
        if volume.config_map is not None:
            src = volume.config_map
            self._write_files(target, self._config_map(src.name, src.optional, where), src.items, where)
            return target
        if volume.secret is not None:
            src = volume.secret
            self._write_files(target, self._secret(src.secret_name, src.optional, where), src.items, where)
            return target
        if volume.projected is not None:
            for source in volume.projected.sources or []:
                if source.config_map:
                    data = self._config_map(source.config_map.name, source.config_map.optional, where)
                    self._write_files(target, data, source.config_map.items, where)
                elif source.secret:
                    data = self._secret(source.secret.name, source.secret.optional, where)
                    self._write_files(target, data, source.secret.items, where)
                elif source.downward_api:
                    for item in source.downward_api.items or []:
                        if item.field_ref:
                            (target / item.path).write_text(self._field(pod, item.field_ref.field_path, where))
                elif source.service_account_token:
                    token = self.core.create_namespaced_service_account_token(
                        pod.spec.service_account_name or "default", self.namespace,
                        {"spec": {"audiences": [source.service_account_token.audience] if
                                  source.service_account_token.audience else None,
                                  "expirationSeconds": source.service_account_token.expiration_seconds or 3600}},
                    )
                    (target / source.service_account_token.path).write_text(token.status.token)
            return target
        kind = next((k for k, v in volume.to_dict().items() if k != "name" and v is not None), "unknown")
        raise KubeletError(f"{where} ({kind}) has no local directory: pass it in volume_map")

    @staticmethod
    def _write_files(target: Path, data: dict[str, bytes] | None, items, where: str) -> None:
        if data is None:
            return
        paths = {item.key: item.path for item in items} if items else {k: k for k in data}
        for key, rel in paths.items():
            if key not in data:
                raise KubeletError(f"{where}: key {key!r} not found")
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data[key])

    # ---- status ----------------------------------------------------------------------------

    def termination_message(self, prepared: PreparedContainer, exit_code: int) -> str:
        message = _read_tail(prepared.termination_message_path, MAX_TERMINATION_MESSAGE_BYTES)
        policy = prepared.container.termination_message_policy or "File"
        if not message.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
            lines = _read_tail(prepared.log_path, 1 << 20).splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
            message = b"".join(lines)[-FALLBACK_LOG_BYTES:]
        return message.decode("utf-8", "replace")

    def write_init_failed(self, prepared: PreparedContainer, exit_code: int, started_at: str,
                          finished_at: str) -> None:
        """Records a failed init container: the pod is Failed (restartPolicy Never), its containers never ran."""
        pod = prepared.pod
        status = {
            "phase": "Failed",
            "initContainerStatuses": [{
                "name": prepared.container.name, "image": prepared.container.image or "", "imageID": "",
                "restartCount": 0, "ready": False, "started": False,
                "state": {"terminated": {
                    "exitCode": exit_code, "reason": "Error",
                    "message": self.termination_message(prepared, exit_code),
                    "startedAt": started_at, "finishedAt": finished_at,
                }},
            }],
            "conditions": [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished_at}
                           for t in ("Ready", "ContainersReady")],
        }
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})

    def write_terminated(self, prepared: PreparedContainer, exit_code: int, started_at: str,
                         finished_at: str) -> None:
        """Records the container as terminated; the pod turns Succeeded/Failed once all its containers are."""
        name = prepared.container.name
        pod = self.core.read_namespaced_pod(prepared.pod.metadata.name, self.namespace)
        current = {s.name: self.api.sanitize_for_serialization(s) for s in pod.status.container_statuses or []}
        previous = current.get(name, {})
        current[name] = {
            **{k: v for k, v in previous.items() if k in ("image", "imageID", "containerID", "restartCount")},
            "name": name,
            "image": previous.get("image", prepared.container.image or ""),
            "imageID": previous.get("imageID", ""),
            "restartCount": previous.get("restartCount", 0),
            "ready": False,
            "started": False,
            "state": {"running": None, "waiting": None, "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "message": self.termination_message(prepared, exit_code),
                "startedAt": started_at,
                "finishedAt": finished_at,
            }},
        }
        # containerStatuses is an atomic list: the patch carries all of them, in spec order.
        statuses = [current[c.name] for c in pod.spec.containers if c.name in current]
        status: dict[str, Any] = {"containerStatuses": statuses}
        terminated = [s["state"].get("terminated") for s in statuses]
        if len(statuses) == len(pod.spec.containers) and all(terminated):
            status["phase"] = "Succeeded" if all(t["exitCode"] == 0 for t in terminated) else "Failed"
            status["conditions"] = [
                {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished_at}
                for t in ("Ready", "ContainersReady")
            ]
        self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})
