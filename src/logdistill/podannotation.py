"""Publish a small JSON document into an annotation of the pod this process runs in.

How a pod reports to the operator without the operator reading storage or scraping pods: the
distillation Job's progress (``logdistill.io/progress``) and the teacher service's online agreement
(``logdistill.io/agreement``). The pod is named by ``POD_NAME``/``POD_NAMESPACE`` (downward API);
its ServiceAccount needs ``get, patch`` on pods. Best effort: a failed publication never fails the
work, and a 401/403 stops further tries.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from logdistill.contracts import MAX_ANNOTATION_BYTES
from logdistill.kube import load_kube_config

__all__ = ["PodAnnotationPublisher", "MAX_ANNOTATION_BYTES"]

log = logging.getLogger(__name__)


class PodAnnotationPublisher:
    """Patches ``key`` on the pod named by ``pod``/``namespace`` (default: the downward-API env)."""

    def __init__(self, key: str, pod: str | None = None, namespace: str | None = None) -> None:
        self.key = key
        self.pod = pod if pod is not None else os.environ.get("POD_NAME")
        self.namespace = namespace if namespace is not None else os.environ.get("POD_NAMESPACE")
        self.core = None
        self.last: str | None = None
        if not (self.pod and self.namespace):
            log.warning("POD_NAME/POD_NAMESPACE not set: %s is not published", key)
            return
        try:
            from kubernetes import client
        except ImportError as err:  # an install without the `operator` extra (the slim edge image)
            log.warning("the Kubernetes client is not installed (the 'operator' extra: %s): %s is not published",
                        err, key)
            return
        try:
            load_kube_config()
            self.core = client.CoreV1Api()
        except Exception as err:  # noqa: BLE001 - any config problem only disables publishing
            log.warning("no Kubernetes API access (%s): %s is not published", err, key)

    @property
    def enabled(self) -> bool:
        return self.core is not None

    def publish(self, data: dict[str, Any]) -> None:
        """Write ``data`` as compact JSON (truncated to the annotation budget); skipped when unchanged."""
        if self.core is None:
            return
        value = json.dumps(data, separators=(",", ":"), sort_keys=True)[:MAX_ANNOTATION_BYTES]
        if value == self.last:
            return
        try:
            self.core.patch_namespaced_pod(self.pod, self.namespace, {"metadata": {"annotations": {self.key: value}}})
            self.last = value
        except Exception as err:  # noqa: BLE001 - a failed publication never fails the work
            log.warning("cannot publish %s to pod %s/%s: %s", self.key, self.namespace, self.pod, err)
            if getattr(err, "status", None) in (401, 403):
                self.core = None  # no permission: stop trying
