#!/usr/bin/env python3
"""Reconcile latency of the DistilledModel operator on a real local control plane.

Measures, per round, (a) CR created -> its Job exists, and (b) the Job's Complete condition
visible -> the classifier DaemonSet exists with the new version, and (c) Job complete -> phase
Ready (DaemonSet pods scheduled on the kwok edge nodes and reported available). The Job's pod is
completed the way a kubelet would: its status gets a terminated container whose termination
message is a valid distillation summary (no training here: this measures the operator, not the
engine). The operator runs in-process (kopf in a thread), as in the integration tests.

    python -P hack/bench_operator.py [--rounds 10]        (needs `make cluster-bin`)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers.controlplane import ControlPlane, wait_for  # noqa: E402

SUMMARY = {
    "version": "bench", "sha256": "0" * 64, "artifact": "/artifacts/x",
    "teacher": {"accuracy": 0.9, "macroF1": 0.8, "latencyMsP50": 5.0},
    "student": {"accuracy": 0.9, "macroF1": 0.75, "latencyMsP50": 0.3, "latencyMsP99": 1.0,
                "parameters": 1000, "sizeBytes": 1000},
    "retention": 0.94, "gatePassed": True,
}


def complete_pod(core, namespace: str, pod_name: str, message: str) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.patch_namespaced_pod_status(pod_name, namespace, {"status": {
        "phase": "Succeeded",
        "containerStatuses": [{"name": "distill", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message,
                                                        "startedAt": now, "finishedAt": now}}}],
        "conditions": [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
                       for t in ("Ready", "ContainersReady")],
    }})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    from kubernetes import client, config

    from logdistill.operator import names
    from logdistill.operator.crd import CRD_NAME, CRD_PATH
    from logdistill.operator.main import OperatorThread
    from logdistill.operator.manifests import common
    from logdistill.operator.names import GROUP, PLURAL, VERSION

    ns = "bench"
    with ControlPlane() as cp:
        for node in ("edge-1", "edge-2"):
            cp.add_node(node, labels={"node-role.kubernetes.io/edge": ""})
        cp.add_node("core-1")
        cp.kubectl("apply", "-f", ROOT / CRD_PATH)
        ext = client.ApiextensionsV1Api(cp.api_client())
        wait_for(lambda: any(c.type == "Established" and c.status == "True"
                             for c in ext.read_custom_resource_definition(CRD_NAME).status.conditions or []),
                 30, 0.05, "the CRD Established")
        cp.create_namespace(ns)
        os.environ["KUBECONFIG"] = str(cp.kubeconfig)
        config.load_kube_config(config_file=str(cp.kubeconfig))
        api = cp.api_client()
        core, batch, apps = client.CoreV1Api(api), client.BatchV1Api(api), client.AppsV1Api(api)
        custom = client.CustomObjectsApi(api)
        core.create_persistent_volume({"metadata": {"name": "bench-pv"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual",
            "hostPath": {"path": "/tmp/bench-pv"}, "claimRef": {"namespace": ns, "name": "logdistill-artifacts"}}})
        core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "logdistill-artifacts"}, "spec": {
            "accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": "bench-pv",
            "resources": {"requests": {"storage": "1Gi"}}}})
        op = OperatorThread(namespaces=[ns], api_client=config.new_client_from_config(str(cp.kubeconfig))).start()
        to_job, to_ds, to_ready = [], [], []
        try:
            for i in range(args.rounds):
                name = f"bench-{i}"
                body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DistilledModel", "metadata": {"name": name},
                        "spec": {"teacher": {"checkpoint": "/artifacts/t"}}}
                t0 = time.perf_counter()
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
                job = common.job_name(name, 1)
                wait_for(lambda: batch.list_namespaced_job(ns, field_selector=f"metadata.name={job}").items, 30,
                         0.005, f"Job {job}")
                to_job.append(time.perf_counter() - t0)
                pod = wait_for(lambda: [p for p in core.list_namespaced_pod(ns, label_selector=f"job-name={job}").items
                                        if p.status.phase == "Running" and p.status.pod_ip], 30, 0.02,
                               f"pod of {job} Running")[0].metadata.name
                complete_pod(core, ns, pod, json.dumps({**SUMMARY, "version": f"v{i}"}))
                wait_for(lambda: any(c.type == "Complete" and c.status == "True"
                                     for c in batch.read_namespaced_job(job, ns).status.conditions or []),
                         30, 0.005, f"Job {job} Complete")
                t1 = time.perf_counter()

                def ds_has_version():
                    try:
                        ds = apps.read_namespaced_daemon_set(common.daemonset_name(name), ns)
                    except client.ApiException:
                        return False
                    return ds.spec.template.metadata.annotations.get(names.VERSION_ANNOTATION) == f"v{i}"

                wait_for(ds_has_version, 30, 0.005, "DaemonSet with the new version")
                to_ds.append(time.perf_counter() - t1)
                wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
                                  .get("status") or {}).get("phase") == "Ready", 60, 0.01, f"{name} Ready")
                to_ready.append(time.perf_counter() - t1)
                print(f"round {i + 1}/{args.rounds}: CR->Job {to_job[-1]:.3f} s, Job complete->DaemonSet "
                      f"{to_ds[-1]:.3f} s, Job complete->Ready {to_ready[-1]:.3f} s", flush=True)
        finally:
            op.stop()

    def line(label, xs):
        return (f"{label:32} median {statistics.median(xs):.3f} s  p90 {sorted(xs)[int(0.9 * (len(xs) - 1))]:.3f} s"
                f"  max {max(xs):.3f} s")

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"control plane startup {cp.startup_seconds:.1f} s; {args.rounds} rounds")
    print(line("CR created -> Job exists", to_job))
    print(line("Job complete -> DaemonSet updated", to_ds))
    print(line("Job complete -> phase Ready", to_ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
