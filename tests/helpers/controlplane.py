"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes), all local processes on free 127.0.0.1 ports.

The binaries come from ``hack/build-k8s.sh`` (``make cluster-bin``) in ``$K8S_BIN``. kwok only
fakes node and pod *status*; see :mod:`tests.helpers.kubelet` to run a pod's command for real.

    with ControlPlane() as cp:
        cp.add_node("edge-1", labels={"node-role.kubernetes.io/edge": ""})
        cp.kubectl("get", "nodes")
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

T = TypeVar("T")

DEFAULT_BIN = Path.home() / ".cache" / "logdistill" / "k8s-1.35.4" / "bin"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
REQUIRED_FILES = (*COMPONENTS, "kubectl", "helm", "kwok-stages.yaml")
# Nodes carrying this annotation are the ones kwok manages (and only those).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
STARTUP_TIMEOUT_S = 60.0
LOG_TAIL_BYTES = 4000


class ControlPlaneError(RuntimeError):
    """The control plane could not start, or one of its components died."""


class CommandError(subprocess.CalledProcessError):
    """A kubectl or helm call failed; the message carries its stderr."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited with {self.returncode}:\n{self.stderr or self.stdout}"


def bin_dir() -> Path:
    return Path(os.environ.get("K8S_BIN") or DEFAULT_BIN)


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Polls ``predicate`` until it returns something truthy, and returns that.

    Exceptions of the types in ``ignore`` count as "not yet". Raises TimeoutError naming ``what``.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ignore as exc:  # noqa: PERF203 - polling
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}{detail}")
        time.sleep(interval)


def default_route_ip() -> str:
    """The IPv4 address of the interface that holds the default route (what a node's pods can reach)."""
    routes = subprocess.run(["ip", "-4", "-o", "route", "show", "default"], capture_output=True, text=True,
                            check=True).stdout.split()
    if "dev" not in routes:
        raise ControlPlaneError("no IPv4 default route: pass advertise=<IP> explicitly")
    dev = routes[routes.index("dev") + 1]
    addr = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True,
                          check=True).stdout.split()
    return addr[addr.index("inet") + 1].split("/")[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open while choosing, so no repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGKILL when the thread that started it dies (Linux), so a
    killed test run leaves no apiserver behind. Start children from a long-lived thread."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


class ControlPlane:
    """Starts a fresh control plane in a temp dir; a context manager that always tears it down."""

    def __init__(self, bin_path: Path | None = None, keep_dir: bool = False,
                 extra_args: dict[str, list[str]] | None = None, advertise: str | None = None) -> None:
        """``extra_args``: more flags per component, e.g. ``{"kube-apiserver": ["--feature-gates=..."]}``.

        ``advertise``: None keeps the apiserver on loopback (enough for kwok nodes). A real node's pods reach
        the API through the ``kubernetes`` Service, whose endpoint is the advertised address: "auto" (the IPv4
        address of the default-route interface) or an IP makes the apiserver listen on 0.0.0.0 and advertise it.
        """
        self.bin = Path(bin_path) if bin_path else bin_dir()
        self.advertise = default_route_ip() if advertise == "auto" else advertise
        self.keep_dir = keep_dir
        self.extra_args = {name: list(args) for name, args in (extra_args or {}).items()}
        unknown = set(self.extra_args) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"extra_args for unknown components {sorted(unknown)}; known: {COMPONENTS}")
        self.dir: Path | None = None
        self.token = ""
        self.server = ""
        self.kubeconfig: Path | None = None
        self.ca_file: Path | None = None
        self.startup_seconds = 0.0
        self._procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Path] = {}
        self._args: dict[str, tuple[str, ...]] = {}
        self._ssl = ssl.create_default_context()
        self._api_client = None

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "ControlPlane":
        try:
            self.start()
        except BaseException:
            self.print_logs()
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.print_logs()
        self.stop()

    def check_binaries(self) -> None:
        missing = [name for name in REQUIRED_FILES if not (self.bin / name).is_file()]
        if missing:
            raise ControlPlaneError(
                f"control plane binaries missing in {self.bin}: {', '.join(missing)}. "
                "Run `make cluster-bin` (hack/build-k8s.sh) first, or set K8S_BIN to where they are."
            )

    def start(self) -> None:
        self.check_binaries()
        started = time.monotonic()
        self.dir = Path(tempfile.mkdtemp(prefix="logdistill-k8s-"))
        atexit.register(self.stop)
        d = self.dir
        self.token = secrets.token_hex(16)
        (d / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        subprocess.run(["openssl", "genrsa", "-out", d / "sa.key", "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", d / "sa.key", "-pubout", "-out", d / "sa.pub"], check=True, capture_output=True
        )
        etcd_port, peer_port, api_port, cm_port, sched_port = free_ports(5)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        # The self-signed serving cert names the advertised address (not loopback) when one is given.
        self.server = f"https://{self.advertise or '127.0.0.1'}:{api_port}"
        certs = d / "certs"

        self._spawn(
            "etcd",
            f"--data-dir={d / 'etcd'}",
            "--name=default",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        )
        self._wait_http("etcd", f"{etcd_url}/health", lambda body: b'"health":"true"' in body)

        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--bind-address={'0.0.0.0' if self.advertise else '127.0.0.1'}",
            f"--advertise-address={self.advertise or '127.0.0.1'}",
            f"--secure-port={api_port}",
            f"--cert-dir={certs}",
            f"--token-auth-file={d / 'tokens.csv'}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--profiling=false",
        )
        self.ca_file = certs / "apiserver.crt"
        self.wait_for(lambda: self.ca_file.is_file() and self.ca_file.stat().st_size > 0, STARTUP_TIMEOUT_S, 0.05,
                      "kube-apiserver's self-signed certificate")
        # The cert file holds the serving cert and its self-signed CA; trust exactly that.
        self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        self._wait_http("kube-apiserver", f"{self.server}/readyz", lambda body: body.strip() == b"ok", auth=True)
        self.kubeconfig = d / "kubeconfig"
        self._write_kubeconfig(self.kubeconfig)

        common = [f"--kubeconfig={self.kubeconfig}", f"--authentication-kubeconfig={self.kubeconfig}",
                  f"--authorization-kubeconfig={self.kubeconfig}", "--bind-address=127.0.0.1", "--leader-elect=false"]
        self._spawn(
            "kube-controller-manager",
            *common,
            f"--secure-port={cm_port}",
            f"--cert-dir={d / 'cm-certs'}",
            "--use-service-account-credentials",
            f"--service-account-private-key-file={d / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--controllers=*",
        )
        self._spawn("kube-scheduler", *common, f"--secure-port={sched_port}", f"--cert-dir={d / 'sched-certs'}")
        self._spawn(
            "kwok",
            f"--config={self.bin / 'kwok-stages.yaml'}",
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION[0]}={KWOK_NODE_ANNOTATION[1]}",
            "--cidr=10.0.0.1/24",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # their serving certs are self-signed, in their own cert dirs
        self._wait_http("kube-controller-manager", f"https://127.0.0.1:{cm_port}/healthz",
                        lambda body: body.strip() == b"ok", context=insecure)
        self._wait_http("kube-scheduler", f"https://127.0.0.1:{sched_port}/healthz",
                        lambda body: body.strip() == b"ok", context=insecure)
        # Pods are refused until their namespace's ServiceAccount exists: wait for the controller.
        self.wait_for(lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default",
                                           check=False).returncode == 0,
                      STARTUP_TIMEOUT_S, 0.1, "the default ServiceAccount (kube-controller-manager running)")
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Kills every component's process group (kwok first, etcd last) and removes the temp dir."""
        for name in reversed(list(self._procs)):
            self._kill(name)
        if self._api_client is not None:
            self._api_client.close()
            self._api_client = None
        if self.dir is not None and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # ---- processes and logs ----------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> None:
        assert self.dir is not None
        log = self.dir / f"{name}.log"
        self._logs[name] = log
        self._args[name] = args
        with open(log, "ab") as out:
            self._procs[name] = subprocess.Popen(
                [str(self.bin / name), *map(str, args), *self.extra_args.get(name, [])],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                start_new_session=True,  # its own process group, killed as one
                preexec_fn=die_with_parent,
            )

    def _kill(self, name: str) -> None:
        proc = self._procs.pop(name)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def restart_apiserver(self) -> float:
        """Stops kube-apiserver (SIGTERM) and starts it again with the same flags, certificates and
        etcd data; returns once it is ready again, with the seconds it was unavailable."""
        began = time.monotonic()
        self._kill("kube-apiserver")
        self._spawn("kube-apiserver", *self._args["kube-apiserver"])
        self._wait_http("kube-apiserver", f"{self.server}/readyz", lambda body: body.strip() == b"ok", auth=True)
        return time.monotonic() - began

    def check_alive(self) -> None:
        """Raises ControlPlaneError naming any component that exited, with its log tail."""
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                raise ControlPlaneError(f"{name} exited with {code}; last log lines:\n{_tail(self._logs[name])}")

    def _wait_http(self, name: str, url: str, ok: Callable[[bytes], bool], auth: bool = False,
                   context: ssl.SSLContext | None = None) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}

        def ready() -> bool:
            self.check_alive()
            try:
                req = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(req, timeout=2, context=context or self._ssl) as resp:
                    return ok(resp.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
                return False

        wait_for(ready, STARTUP_TIMEOUT_S, 0.05, f"{name} at {url}")

    def log_path(self, name: str) -> Path:
        return self._logs[name]

    def logs(self, limit: int = LOG_TAIL_BYTES) -> str:
        """The tail of each component's log, for failure messages."""
        return "\n".join(f"===== {name} ({path}) =====\n{_tail(path, limit)}" for name, path in self._logs.items())

    def print_logs(self) -> None:
        if self._logs:
            print(self.logs(), file=sys.stderr)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each component, from /proc (Linux)."""
        rss = {}
        for name, pid in self.pids().items():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss[name] = int(line.split()[1]) * 1024
            except OSError:
                rss[name] = 0
        return rss

    # ---- clients ---------------------------------------------------------------------------

    def _write_kubeconfig(self, path: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "logdistill-test", "cluster": {"server": self.server,
                                                                 "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "logdistill-test", "context": {"cluster": "logdistill-test", "user": "admin"}}],
            "current-context": "logdistill-test",
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        path.chmod(0o600)

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should talk to this cluster (kubectl, helm, kopf)."""
        assert self.dir is not None
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        # helm keeps its caches and repositories under the cluster's temp dir, not $HOME.
        for var, sub in (("HELM_CACHE_HOME", "helm/cache"), ("HELM_CONFIG_HOME", "helm/config"),
                         ("HELM_DATA_HOME", "helm/data")):
            env[var] = str(self.dir / sub)
        return env

    def _run(self, tool: str, args: Iterable[Any], input: str | None, check: bool, timeout: float):
        cmd = [str(self.bin / tool), *map(str, args)]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def kubectl(self, *args: Any, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        return self._run("kubectl", args, input, check, timeout)

    def helm(self, *args: Any, input: str | None = None, check: bool = True,
             timeout: float = 300) -> subprocess.CompletedProcess:
        return self._run("helm", args, input, check, timeout)

    def api_client(self):
        """A ``kubernetes.client.ApiClient`` for this cluster (shared; closed on stop)."""
        if self._api_client is None:
            from kubernetes import client

            config = client.Configuration()
            config.host = self.server
            config.ssl_ca_cert = str(self.ca_file)
            config.api_key = {"BearerToken": self.token}
            config.api_key_prefix = {"BearerToken": "Bearer"}
            self._api_client = client.ApiClient(config)
        return self._api_client

    def wait_for(self, predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition",
                 ignore: tuple[type[BaseException], ...] = ()) -> T:
        """:func:`wait_for` that also fails at once, with logs, when a component died."""

        def checked() -> T:
            self.check_alive()
            return predicate()

        return wait_for(checked, timeout, interval, what, ignore)

    # ---- objects ---------------------------------------------------------------------------

    def add_node(self, name: str, labels: dict[str, str] | None = None, cpu: str = "2", memory: str = "1Gi",
                 pods: str = "110", timeout: float = 30) -> None:
        """Creates a kwok-managed Node and waits until it is Ready."""
        from kubernetes import client

        resources = {"cpu": cpu, "memory": memory, "pods": pods}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "kubernetes.io/arch": "amd64", "type": "kwok", **(labels or {})},
                         "annotations": {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]}},
            "status": {"allocatable": resources, "capacity": resources},
        }
        core = client.CoreV1Api(self.api_client())
        core.create_node(node)

        def ready() -> bool:
            conditions = core.read_node_status(name).status.conditions or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        self.wait_for(ready, timeout, 0.1, f"node {name} to be Ready")

    def create_namespace(self, name: str, labels: dict[str, str] | None = None, timeout: float = 30) -> None:
        """Creates a namespace and waits for its default ServiceAccount (pods are refused before it)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api_client())
        core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
        self.wait_for(lambda: core.read_namespaced_service_account("default", name), timeout, 0.05,
                      f"the default ServiceAccount of namespace {name}", ignore=(ApiException,))

    def delete_namespace(self, name: str) -> None:
        """Deletes a namespace without waiting for its finalisation."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            client.CoreV1Api(self.api_client()).delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def main() -> int:
    """Benchmark: start a control plane with three kwok nodes; print the timings and memory."""
    began = time.monotonic()
    with ControlPlane() as cp:
        ready = time.monotonic()
        for name in ("edge-1", "edge-2", "core-1"):
            cp.add_node(name, labels={"node-role.kubernetes.io/edge": ""} if name.startswith("edge") else None)
        nodes = time.monotonic()
        rss = cp.rss_bytes()
        print(f"control plane ready in {cp.startup_seconds:.2f} s (apiserver, controllers, scheduler, kwok)")
        print(f"3 kwok nodes Ready in {nodes - ready:.2f} s")
        for name, value in rss.items():
            print(f"  {name:24s} {value / 2**20:7.1f} MiB RSS")
        print(f"  {'total':24s} {sum(rss.values()) / 2**20:7.1f} MiB RSS")
    print(f"stopped; whole run {time.monotonic() - began:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
