"""A real Kubernetes node on this host for the end-to-end test: containerd + runc, bridge CNI, kubelet,
kube-proxy and CoreDNS (``hack/realnode/realnode.sh``), joined to a :class:`ControlPlane` whose apiserver
advertises a routable address. Pods really run; images come from podman (``make e2e`` builds them).

    with ControlPlane(advertise="auto") as cp, RealNode(cp.kubeconfig) as node:
        node.import_images("localhost/logdistill-edge:e2e")
        cp.kubectl("get", "node", node.name)
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "hack" / "realnode"


class RealNodeError(RuntimeError):
    """The node could not start, or a kit command failed; the message carries its output."""


def _cache() -> Path:
    return Path(os.environ.get("REALNODE_CACHE", Path.home() / ".cache" / "realnode"))


def missing_prerequisites() -> list[str]:
    """What this host lacks to run a real node (empty when ``make e2e``'s preparation has run)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the kubelet and containerd need it)")
    for tool in ("containerd", "runc", "podman", "iptables", "conntrack"):
        if shutil.which(tool) is None:
            missing.append(tool)
    cache = _cache() / "bin"
    for binary in ("kubelet", "kube-proxy", "crictl", "coredns"):
        if not (cache / binary).is_file():
            missing.append(f"{cache / binary}")
    return missing


# The state directory of the node that is up, so that a run killed before its `down` (a CI timeout, ^C) is
# taken down by the next run instead of failing it on a bridge that "exists already".
LIVE_STATE = _cache() / "live-state"


class RealNode:
    """``realnode.sh up`` on enter, ``down`` on exit (the host is left as it was; images stay cached).

    The state directory defaults to one outside pytest's temporary folders, which pytest deletes after a
    few runs: an interrupted run's state must outlive it for the next run to take that node down."""

    def __init__(self, kubeconfig: Path, state_dir: Path | None = None) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="logdistill-node-"))
        self.name = os.environ.get("NODE_NAME") or os.uname().nodename
        self.startup_seconds = 0.0

    def _kit(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(["bash", str(KIT / "realnode.sh"), *args], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RealNodeError(f"realnode.sh {' '.join(args)} exited with {proc.returncode}:\n"
                                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def __enter__(self) -> "RealNode":
        began = time.monotonic()
        self._take_down_stale()
        LIVE_STATE.parent.mkdir(parents=True, exist_ok=True)
        LIVE_STATE.write_text(str(self.state))
        try:
            self._kit("up", str(self.kubeconfig), str(self.state), timeout=300)
        except BaseException:
            self.down()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    @staticmethod
    def _take_down_stale() -> None:
        try:
            stale = Path(LIVE_STATE.read_text().strip())
        except OSError:
            return
        if (stale / "realnode.env").is_file():
            print(f"realnode: taking down the node a previous run left up ({stale})", flush=True)
            subprocess.run(["bash", str(KIT / "realnode.sh"), "down", str(stale)], capture_output=True, text=True,
                           timeout=300)
        LIVE_STATE.unlink(missing_ok=True)

    def down(self) -> None:
        if (self.state / "realnode.env").is_file():
            subprocess.run(["bash", str(KIT / "realnode.sh"), "down", str(self.state)], capture_output=True,
                           text=True, timeout=300)
        if LIVE_STATE.is_file() and LIVE_STATE.read_text().strip() == str(self.state):
            LIVE_STATE.unlink(missing_ok=True)

    def import_images(self, *images: str) -> str:
        """podman → containerd (skipped for an image containerd already holds with the same ID)."""
        return self._kit("import", str(self.state), *images, timeout=900)

    def stats_summary(self, token: str) -> dict:
        """The kubelet's /stats/summary (what evictions use), read on the host: the apiserver's node proxy
        refuses this node's loopback address."""
        env = dict(line.removeprefix("export ").split("=", 1) for line in
                   (self.state / "realnode.env").read_text().splitlines() if "=" in line)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the kubelet's self-signed serving certificate
        request = urllib.request.Request(f"https://127.0.0.1:{env.get('KUBELET_PORT', '10250')}/stats/summary",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return json.loads(response.read())

    @staticmethod
    def memory_stat(pod_uid: str) -> dict[str, int]:
        """The pod cgroup's memory.stat (cgroup v1, the kit's cgroupfs driver): where a working set comes
        from (``total_rss`` anonymous, ``total_mapped_file`` mapped libraries and models, ``total_active_file``
        page cache charged to the pod), which /stats/summary does not break down."""
        (path,) = Path("/sys/fs/cgroup/memory/kubepods").glob(f"**/pod{pod_uid}/memory.stat")
        return {key: int(value) for key, value in (line.split() for line in path.read_text().splitlines())}

    def log(self, component: str, limit: int = 4000) -> str:
        path = self.state / "logs" / f"{component}.log"
        try:
            return path.read_text(errors="replace")[-limit:]
        except OSError as exc:
            return f"<cannot read {path}: {exc}>"
