"""``helm install --wait`` of the chart on the real control plane (kube-apiserver, etcd, controllers, kwok
nodes) into a namespace that enforces Pod Security "restricted"; the operator's RBAC checked with
``kubectl auth can-i --as=system:serviceaccount:…`` for what it must and must not do."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from chart_helpers import CHART

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}


def _can(cp, sa: str, verb: str, resource: str, namespace: str | None, *extra: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={sa}", *extra]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    proc = cp.kubectl(*args, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stdout + proc.stderr
    return answer == "yes"


@pytest.fixture
def restricted_namespace(control_plane):
    name = f"logdistill-sys-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name, labels=RESTRICTED)
    yield name
    control_plane.delete_namespace(name)


@pytest.fixture
def workload_namespaces(control_plane):
    names = [f"team-{c}-{uuid.uuid4().hex[:6]}" for c in "ab"]
    for name in names:
        control_plane.create_namespace(name)
    yield names
    for name in names:
        control_plane.delete_namespace(name)


def _peering_crds(cp) -> None:
    """kopf's peering CRDs as the operator prints them (a multi-replica install needs them; the RBAC
    grants them, and `kubectl auth can-i` only answers for resources the API server knows)."""
    crds = subprocess.run([str(Path(sys.executable).with_name("logdistill")), "operator", "crd", "--peering"],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    cp.kubectl("apply", "-f", "-", input=crds)


def _install(cp, release: str, namespace: str, *args: str):
    proc = cp.helm("install", release, CHART, "--namespace", namespace, "--wait", "--timeout", "120s", *args,
                   check=False, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_helm_install_into_restricted_namespace_and_rbac(control_plane, restricted_namespace, workload_namespaces):
    cp, ns = control_plane, restricted_namespace
    release = f"logdistill-{uuid.uuid4().hex[:6]}"
    # Pod Security "restricted" is enforced here: a plain pod is refused.
    refused = cp.kubectl("run", "plain", "--image=busybox", "-n", ns, check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

    _peering_crds(cp)
    installed = _install(cp, release, ns)
    assert "kubectl get dm -w" in installed.stdout  # NOTES.txt: what to run next
    try:
        deployment = json.loads(cp.kubectl("get", "deployment", release, "-n", ns, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
        assert conditions.get("Available") == "True", deployment["status"]
        assert deployment["status"]["readyReplicas"] == 1
        pods = json.loads(cp.kubectl("get", "pods", "-n", ns, "-l", "app.kubernetes.io/component=operator",
                                     "-o", "json").stdout)["items"]
        assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
        assert pods[0]["spec"]["securityContext"]["runAsNonRoot"] is True
        cp.kubectl("get", "crd", "distilledmodels.logdistill.io")

        sa = f"system:serviceaccount:{ns}:{release}"
        other = workload_namespaces[0]
        must = [
            ("create", "jobs.batch", other), ("delete", "jobs.batch", other), ("watch", "jobs.batch", None),
            ("watch", "distilledmodels.logdistill.io", None), ("patch", "distilledmodels.logdistill.io", other),
            ("get", "pods", other), ("list", "pods", None), ("get", "pods/log", other), ("create", "configmaps", other),
            ("create", "daemonsets.apps", other), ("update", "daemonsets.apps", other),
            ("create", "services", other), ("list", "services", other), ("create", "events", other),
            ("list", "events", other), ("list", "deployments.apps", other),
            ("patch", "clusterkopfpeerings.kopf.dev", None),
            # the artifacts claim, and (no StorageClass here: artifacts.hostPath auto) its hostPath PV
            ("get", "persistentvolumeclaims", other), ("create", "persistentvolumeclaims", other),
            ("create", "persistentvolumes", None),
            # each model's API token Secret (created, never read) and its teacher's NetworkPolicy
            ("create", "secrets", other), ("create", "networkpolicies.networking.k8s.io", other),
            ("update", "networkpolicies.networking.k8s.io", other), ("delete", "networkpolicies.networking.k8s.io", other),
        ]
        must_not = [
            ("get", "secrets", other), ("list", "secrets", None), ("get", "secrets", ns), ("watch", "secrets", None),
            ("update", "secrets", other), ("patch", "secrets", other), ("delete", "secrets", other),
            ("delete", "nodes", None), ("create", "pods", other), ("delete", "pods", other),
            ("create", "leases.coordination.k8s.io", ns), ("create", "clusterroles.rbac.authorization.k8s.io", None),
            ("patch", "daemonsets.apps", other), ("list", "namespaces", None),
            ("create", "rolebindings.rbac.authorization.k8s.io", other), ("create", "serviceaccounts", other),
            ("delete", "namespaces", None), ("update", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("impersonate", "users", None), ("delete", "persistentvolumeclaims", other),
            ("delete", "persistentvolumes", None), ("update", "persistentvolumes", None),
        ]
        wrong = [f"cannot {v} {r} in {n or 'all namespaces'}" for v, r, n in must if not _can(cp, sa, v, r, n)]
        wrong += [f"CAN {v} {r} in {n or 'all namespaces'}" for v, r, n in must_not if _can(cp, sa, v, r, n)]
        # The status subresource is granted on its own.
        if not _can(cp, sa, "patch", "distilledmodels.logdistill.io", other, "--subresource=status"):
            wrong.append("cannot patch distilledmodels/status")
        assert not wrong, "\n".join(wrong)
    finally:
        cp.helm("uninstall", release, "--namespace", ns, "--wait", check=False)


def test_namespaced_install_grants_only_the_watched_namespaces(control_plane, restricted_namespace,
                                                                workload_namespaces):
    cp, ns = control_plane, restricted_namespace
    watched, unwatched = workload_namespaces
    release = f"logdistill-{uuid.uuid4().hex[:6]}"
    _install(cp, release, ns, "--set-json", f'operator.watchNamespaces=["{watched}"]')
    try:
        deployment = json.loads(cp.kubectl("get", "deployment", release, "-n", ns, "-o", "json").stdout)
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--namespace={watched}" in args
        sa = f"system:serviceaccount:{ns}:{release}"
        assert _can(cp, sa, "create", "jobs.batch", watched)
        assert _can(cp, sa, "patch", "distilledmodels.logdistill.io", watched, "--subresource=status")
        assert not _can(cp, sa, "create", "jobs.batch", unwatched)
        assert not _can(cp, sa, "list", "distilledmodels.logdistill.io", None)
        assert not _can(cp, sa, "list", "namespaces", None)
        assert not _can(cp, sa, "get", "secrets", watched)
    finally:
        cp.helm("uninstall", release, "--namespace", ns, "--wait", check=False)


def test_plain_manifests_are_accepted_by_the_api_server(control_plane):
    """deploy/logdistill.yaml (for users without Helm) passes the API server's validation and admission,
    Pod Security "restricted" on its namespace included (server-side dry run: nothing is persisted
    except the namespace it needs)."""
    cp = control_plane
    manifests = (CHART.parent.parent / "deploy" / "logdistill.yaml").read_text()
    namespace = next(d for d in manifests.split("\n---\n") if "kind: Namespace" in d)
    cp.kubectl("apply", "--server-side", "-f", "-", input=namespace)
    proc = cp.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=manifests, check=False)
    assert proc.returncode == 0, proc.stderr
    for kind in ("customresourcedefinition.apiextensions.k8s.io/distilledmodels.logdistill.io", "deployment.apps/",
                 "clusterrole.rbac.authorization.k8s.io/", "serviceaccount/", "configmap/"):
        assert kind in proc.stdout, proc.stdout


def _service_account_kubeconfig(cp, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a bound token), as in-cluster credentials would."""
    token = cp.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa, "namespace": namespace}}],
    }))
    return path


def test_the_operator_works_with_exactly_the_chart_rbac(control_plane, restricted_namespace, workload_namespaces,
                                                        tmp_path):
    """The operator pod's own command (from the installed Deployment), run locally with the ServiceAccount's
    token: it reconciles a DistilledModel (Job created, status patched) and is never refused by RBAC."""
    from helpers.kubelet import LocalKubelet

    cp, ns = control_plane, restricted_namespace
    workload = workload_namespaces[0]
    release = f"logdistill-{uuid.uuid4().hex[:6]}"
    _install(cp, release, ns)
    kubeconfig = _service_account_kubeconfig(cp, ns, release, tmp_path / "sa.kubeconfig")
    try:
        with LocalKubelet(cp.api_client(), ns, env_overrides={"KUBECONFIG": str(kubeconfig)}) as kubelet:
            pod = kubelet.find_pod("app.kubernetes.io/component=operator")
            operator = kubelet.start_pod(pod)
            operator.wait_http(8080, "/healthz", timeout=60)  # the probes' endpoint answers
            example = (CHART.parent.parent / "examples" / "distilledmodel.yaml").read_text()
            cp.kubectl("apply", "-n", workload, "-f", "-", input=example)
            name = next(line.split(":", 1)[1].strip() for line in example.splitlines() if line.startswith("  name:"))

            def reconciled() -> dict | None:
                assert operator.alive(), operator.logs()[-4000:]
                jobs = json.loads(cp.kubectl("get", "jobs", "-n", workload, "-o", "json").stdout)["items"]
                dm = json.loads(cp.kubectl("get", "dm", name, "-n", workload, "-o", "json").stdout)
                status = dm.get("status") or {}
                return dm if jobs and status.get("phase") and status.get("observedGeneration") else None

            try:
                dm = cp.wait_for(reconciled, 60, 0.2, "the operator to create the Job and patch the status")
            except TimeoutError as err:
                raise AssertionError(f"{err}; operator logs:\n{operator.logs()[-4000:]}") from None
            jobs = json.loads(cp.kubectl("get", "jobs", "-n", workload, "-o", "json").stdout)["items"]
            assert jobs[0]["metadata"]["ownerReferences"][0]["uid"] == dm["metadata"]["uid"]
            # no StorageClass on this control plane: the claim is created on an operator-made hostPath PV
            claim = json.loads(cp.kubectl("get", "pvc", "logdistill-artifacts", "-n", workload, "-o", "json").stdout)
            pv = claim["spec"]["volumeName"]
            assert pv == f"logdistill-{workload}-logdistill-artifacts" and "ownerReferences" not in claim["metadata"]
            cp.kubectl("get", "pv", pv)
            pod = jobs[0]["spec"]["template"]["spec"]
            assert [c["name"] for c in pod["initContainers"]] == ["prepare-storage", "teacher"]
            logs = operator.logs()
            for refusal in ("Forbidden", "forbidden", " 403"):
                assert refusal not in logs, logs[-4000:]
            cp.kubectl("delete", "dm", name, "-n", workload, "--wait=false")
    finally:
        cp.helm("uninstall", release, "--namespace", ns, "--wait", check=False)
        cp.kubectl("delete", "pv", f"logdistill-{workload}-logdistill-artifacts", "--wait=false", check=False)


def test_artifacts_host_path_auto_follows_the_clusters_default_storage_class(control_plane):
    """artifacts.hostPath=auto looks the StorageClasses up at install time (helm's lookup, here through
    `helm template --dry-run=server`): hostPath volumes only while no class is annotated as the default."""
    cp = control_plane

    def operator_args() -> list[str]:
        out = cp.helm("template", "probe", CHART, "--namespace", "logdistill-system", "--dry-run=server",
                      "--show-only", "templates/deployment.yaml").stdout
        import yaml

        (deployment,) = [d for d in yaml.safe_load_all(out) if d]
        return deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    assert "--artifacts-host-path=/var/lib/logdistill/artifacts" in operator_args()
    name = f"default-{uuid.uuid4().hex[:6]}"
    cp.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/none"}))
    try:
        args = operator_args()
        assert not any(a.startswith("--artifacts-host-path") for a in args), args
        assert "--create-claims" in args
    finally:
        cp.kubectl("delete", "storageclass", name, "--wait=false")
