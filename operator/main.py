"""``logdistill operator``: run the DistilledModel operator (kopf), or one of its helpers.

    logdistill operator [--namespace NS ...] [--all-namespaces] [--liveness URL] [--job-image IMG]
                        [--edge-image IMG] [--image-pull-policy P] [--edge-image-pull-policy P] [--peering NAME | --standalone]
                        [--priority N] [--metrics-port 9401] [--default-claim NAME] [--[no-]create-claims]
                        [--artifacts-size Q] [--artifacts-storage-class SC] [--artifacts-access-mode M ...]
                        [--artifacts-host-path DIR] [--pod-pending-deadline 300]
                        [--allowed-image-prefix P ...] [--allowed-log-root DIR ...] [--[no-]https-only-endpoints]
                        [--[no-]allow-unkeyed-exists-tolerations] [--[no-]allow-custom-service-accounts]
    logdistill operator crd [--peering]      # print the CRD (and kopf's peering CRDs)
    logdistill operator rbac                 # print the least-privilege RBAC rules
    logdistill operator job-run ...          # the distillation Job's entrypoint

Credentials come from the in-cluster ServiceAccount, else ``KUBECONFIG`` (or ``--kubeconfig``).
No torch anywhere in this package.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import threading
from typing import Sequence

from logdistill import __version__
from logdistill.kube import load_kube_config
from logdistill.policy import EDGE_REPOSITORY, JOB_REPOSITORY, AdmissionPolicy

DEFAULT_JOB_IMAGE = f"{JOB_REPOSITORY}:{__version__}"
DEFAULT_EDGE_IMAGE = f"{EDGE_REPOSITORY}:{__version__}"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
DEFAULT_PEERING = "logdistill"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", action="append", default=[], metavar="NS",
                        help="watch this namespace (repeatable; globs like 'team-*' work); default: all namespaces")
    parser.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (cluster-wide)")
    parser.add_argument("--liveness", default=DEFAULT_LIVENESS, metavar="URL",
                        help=f"liveness endpoint to serve (default {DEFAULT_LIVENESS}); 'none' disables it")
    parser.add_argument("--job-image", default=DEFAULT_JOB_IMAGE, metavar="IMG",
                        help="image of distillation Jobs when spec.job.image is unset")
    parser.add_argument("--edge-image", default=DEFAULT_EDGE_IMAGE, metavar="IMG",
                        help="image of the classifier DaemonSet when spec.rollout.image is unset")
    parser.add_argument("--image-pull-policy", default="IfNotPresent", choices=("Always", "IfNotPresent", "Never"),
                        help="pull policy of the Job and teacher pods whose spec sets none (default IfNotPresent)")
    parser.add_argument("--edge-image-pull-policy", default="IfNotPresent", choices=("Always", "IfNotPresent", "Never"),
                        help="pull policy of the classifier pods (default IfNotPresent)")
    storage = parser.add_argument_group("artifacts storage", "the PersistentVolumeClaim each DistilledModel mounts")
    storage.add_argument("--default-claim", default="logdistill-artifacts", metavar="NAME",
                         help="claim used when spec.storage.persistentVolumeClaim.claimName is unset")
    storage.add_argument("--create-claims", action=argparse.BooleanOptionalAction, default=True,
                         help="create a missing claim in the CR's namespace (default: on); it is not owned by the CR")
    storage.add_argument("--artifacts-size", default="10Gi", metavar="QUANTITY", help="size of created claims")
    storage.add_argument("--artifacts-storage-class", default="", metavar="NAME",
                         help="storageClassName of created claims (default: the cluster's default class)")
    storage.add_argument("--artifacts-access-mode", action="append", default=[], metavar="MODE",
                         help="access mode of created claims (repeatable; default ReadWriteOnce)")
    storage.add_argument("--artifacts-host-path", default="", metavar="DIR",
                         help="no dynamic provisioner: back each created claim with a hostPath PersistentVolume "
                              "logdistill-<namespace>-<claim> at DIR/<namespace>/<claim> (single-node clusters)")
    policy = parser.add_argument_group(
        "admission policy", "what a DistilledModel may ask for (src/logdistill/policy.py; chart values admissionPolicy.*)")
    policy.add_argument("--allowed-image-prefix", action="append", default=[], metavar="PREFIX",
                        help="images a CR may set: a repository (any tag or digest) or a prefix ending in '/' "
                             f"(repeatable; default {' and '.join(AdmissionPolicy().image_prefixes)})")
    policy.add_argument("--allowed-log-root", action="append", default=[], metavar="DIR",
                        help="host folder spec.rollout.logPaths must stay under (repeatable; default "
                             f"{' and '.join(AdmissionPolicy().log_roots)})")
    policy.add_argument("--allow-unkeyed-exists-tolerations", action=argparse.BooleanOptionalAction, default=False,
                        help="allow 'operator: Exists' tolerations without a key (default: refused)")
    policy.add_argument("--allow-custom-service-accounts", action=argparse.BooleanOptionalAction, default=False,
                        help="allow spec.job.serviceAccountName (default: refused)")
    policy.add_argument("--https-only-endpoints", action=argparse.BooleanOptionalAction, default=True,
                        help="spec.teacher.endpoint.url must be https (default: on; a secretRef always needs https)")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--peering", default=None, metavar="NAME",
                         help="kopf peering object: of several replicas only the highest priority acts; the "
                              "operator refuses to start when kopf's peering CRDs are missing (default: peering "
                              f"{DEFAULT_PEERING!r} if they are installed, else standalone)")
    peering.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (default: random, so two replicas never tie and both pause)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    parser.add_argument("--metrics-port", type=int, default=9401, metavar="PORT",
                        help="serve Prometheus metrics (logdistill_operator_*) on this port (default 9401; 0 = off)")
    parser.add_argument("--pod-pending-deadline", type=float, default=300.0, metavar="SECONDS",
                        help="report a pod of a model still Pending after this long as PendingTooLong (default 300)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="operator_command", metavar="[crd|rbac|job-run]")
    crd = sub.add_parser("crd", help="print the generated DistilledModel CRD")
    crd.add_argument("--peering", dest="with_peering", action="store_true",
                     help="print kopf's peering CRDs (kopf.dev/v1) instead")
    sub.add_parser("rbac", help="print the RBAC rules the operator and its Jobs need")
    from logdistill.operator import jobrun

    jobrun.add_arguments(sub.add_parser("job-run", help="distillation Job entrypoint (runs logdistill distill)"))


def storage_settings(args: argparse.Namespace):
    """The operator's artifacts-storage flags as :class:`~logdistill.operator.manifests.claims.StorageSettings`."""
    from logdistill.operator.manifests.claims import StorageSettings

    return StorageSettings(
        default_claim=args.default_claim, create=args.create_claims, size=args.artifacts_size,
        storage_class=args.artifacts_storage_class,
        access_modes=tuple(args.artifacts_access_mode or ("ReadWriteOnce",)),
        host_path=args.artifacts_host_path,
    )


def admission_policy(args: argparse.Namespace) -> AdmissionPolicy:
    """The operator's admission-policy flags as :class:`~logdistill.policy.AdmissionPolicy` (ValueError if bad)."""
    defaults = AdmissionPolicy()
    return AdmissionPolicy(
        image_prefixes=tuple(args.allowed_image_prefix) or defaults.image_prefixes,
        log_roots=tuple(args.allowed_log_root) or defaults.log_roots,
        allow_unkeyed_exists_tolerations=args.allow_unkeyed_exists_tolerations,
        allow_custom_service_accounts=args.allow_custom_service_accounts,
        https_only_endpoints=args.https_only_endpoints,
    )


def operator_kwargs(args: argparse.Namespace) -> dict:
    """kopf.operator() keyword arguments from the command line."""
    clusterwide = args.all_namespaces or not args.namespace
    return {
        "clusterwide": clusterwide,
        "namespaces": [] if clusterwide else list(args.namespace),
        "liveness_endpoint": None if args.liveness == "none" else args.liveness,
        "standalone": True if args.standalone else None,
        "peering_name": None if args.standalone else (args.peering or DEFAULT_PEERING),
        "priority": args.priority if args.priority is not None else random.randint(1, 2**31 - 1),
    }


class OperatorThread:
    """The operator in a background thread with its own event loop (tests, benchmarks).

    ``start()`` returns once kopf is ready; ``stop()`` asks it to exit and joins it."""

    def __init__(self, namespaces: Sequence[str] = (), images=None, api_client=None, standalone: bool = True,
                 peering_name: str | None = None, priority: int = 0, retrain_time_scale: float = 1.0,
                 resync_seconds: float = 30.0, storage=None, pending_deadline: float = 300.0,
                 policy: AdmissionPolicy | None = None):
        from kubernetes import client

        from logdistill.operator import handlers  # noqa: F401 - registers the kopf handlers
        from logdistill.operator.context import Context
        from logdistill.operator.manifests.claims import StorageSettings
        from logdistill.operator.manifests.common import Images

        self.ctx = Context(
            api=api_client or client.ApiClient(),
            images=images or Images(job=DEFAULT_JOB_IMAGE, edge=DEFAULT_EDGE_IMAGE),
            namespaces=tuple(namespaces),
            retrain_time_scale=retrain_time_scale,
            resync_seconds=resync_seconds,
            storage=storage or StorageSettings(),
            pending_deadline=pending_deadline,
            policy=policy or AdmissionPolicy(),
        )
        self.kwargs = {
            "clusterwide": not namespaces,
            "namespaces": list(namespaces),
            "standalone": standalone,
            "peering_name": peering_name,
            "priority": priority,
        }
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)

    def _run(self) -> None:
        import kopf

        try:
            asyncio.run(kopf.operator(memo=kopf.Memo(ctx=self.ctx), stop_flag=self._stop, ready_flag=self._ready,
                                      **self.kwargs))
        except BaseException as err:  # noqa: BLE001 - surfaced by start()/stop()
            self.error = err
            self._ready.set()

    def start(self, timeout: float = 30) -> "OperatorThread":
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"the operator did not start: {self.error!r}")
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the operator thread did not stop")

    def __enter__(self) -> "OperatorThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_peering(api_client, name: str, clusterwide: bool, namespaces: Sequence[str]) -> bool:
    """Create the kopf peering object(s) if missing (kopf waits for them otherwise).

    Returns False when kopf's peering CRDs are not installed: the caller then runs standalone."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api_client)
    try:
        if clusterwide:
            custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
                "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}})
        else:
            for ns in namespaces:
                if any(ch in ns for ch in "*?[!"):
                    continue  # a pattern: the peering objects of matching namespaces come from elsewhere
                try:
                    custom.create_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", {
                        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}})
                except ApiException as err:
                    if err.status != 409:
                        raise
    except ApiException as err:
        if err.status == 409:
            return True
        if err.status == 404:
            return False
        if err.status == 403:
            logging.getLogger("logdistill.operator").warning(
                "no permission to create the kopf peering object %r: create it, or kopf waits for it", name)
            return True
        raise
    return True


def run(args: argparse.Namespace) -> int:
    import kopf

    from logdistill.operator import handlers  # noqa: F401 - registers the kopf handlers
    from logdistill.operator.context import Context
    from logdistill.operator.manifests.common import Images

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_kube_config(args.kubeconfig)
    from kubernetes import client

    kwargs = operator_kwargs(args)
    log = logging.getLogger("logdistill.operator")
    if not args.standalone and not ensure_peering(client.ApiClient(), kwargs["peering_name"], kwargs["clusterwide"],
                                                  kwargs["namespaces"]):
        if args.peering:  # asked for: two replicas acting at once is worse than not starting
            log.error("--peering %s: kopf's peering CRDs (kopf.dev/v1) are not installed; apply "
                      "`logdistill operator crd --peering`, or run a single replica with --standalone", args.peering)
            return 2
        log.warning("kopf peering CRDs are not installed (logdistill operator crd --peering): running standalone;"
                    " do not run two replicas")
        kwargs.update(standalone=True, peering_name=None)
        args.standalone = True
    try:
        storage = storage_settings(args)
        policy = admission_policy(args)
    except ValueError as err:
        log.error("%s", err)
        return 2
    images = Images(job=args.job_image, edge=args.edge_image, pull_policy=args.image_pull_policy,
                    edge_pull_policy=args.edge_image_pull_policy)
    ctx = Context(api=client.ApiClient(), images=images, storage=storage, policy=policy,
                  namespaces=tuple(kwargs["namespaces"]), peering=kwargs["peering_name"],
                  priority=kwargs["priority"], pending_deadline=args.pod_pending_deadline)
    if args.metrics_port:
        try:
            ctx.metrics.serve(args.metrics_port)
        except OSError as err:  # metrics are an aid: a taken port must not stop the operator
            log.warning("cannot serve metrics on port %d (%s): metrics disabled", args.metrics_port, err)
    log.info(
        "watching %s; peering %s", "all namespaces" if kwargs["clusterwide"] else ", ".join(kwargs["namespaces"]),
        "off" if args.standalone else f"{kwargs['peering_name']} (priority {kwargs['priority']})")
    asyncio.run(kopf.operator(memo=kopf.Memo(ctx=ctx), **kwargs))
    return 0


def main(args: argparse.Namespace) -> int:
    command = getattr(args, "operator_command", None)
    if command == "crd":
        from logdistill.operator.crd import render_crd, render_peering_crds

        sys.stdout.write(render_peering_crds() if args.with_peering else render_crd())
        return 0
    if command == "rbac":
        from logdistill.operator.rbac import render_rbac

        sys.stdout.write(render_rbac())
        return 0
    if command == "job-run":
        from logdistill.operator import jobrun

        return jobrun.main(args)
    return run(args)
