"""One home for the operator's names: the DistilledModel's API group/version/kind/plural and the
label and annotation keys its children carry. Torch-free and kopf-free (data only), shared by the
manifest builders, status, views, observe, handlers, crd and rbac.

The keys a pod publishes for the operator (``logdistill.io/progress``, ``logdistill.io/agreement``)
are wire contracts: they live in :mod:`logdistill.contracts`.
"""

from __future__ import annotations


GROUP = "logdistill.io"
VERSION = "v1alpha1"
KIND = "DistilledModel"
PLURAL = "distilledmodels"

MANAGED_BY = "logdistill-operator"
# Labels (app.kubernetes.io/* and our own prefix).
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MODEL_LABEL = f"{GROUP}/model"
GENERATION_LABEL = f"{GROUP}/generation"
RUN_LABEL = f"{GROUP}/run"
# The label Kubernetes puts on a Job's pods (batch.kubernetes.io/job-name since 1.27, job-name before).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
# Annotations: what a classifier DaemonSet serves, the hash of what was applied.
VERSION_ANNOTATION = f"{GROUP}/version"
ARTIFACT_ANNOTATION = f"{GROUP}/artifact"
SHA256_ANNOTATION = f"{GROUP}/sha256"
APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"
# On an operator-made artifacts claim and its PersistentVolume: the host folder behind it.
HOST_PATH_ANNOTATION = f"{GROUP}/host-path"
# Set on the CR by a user: each new value starts one re-distillation.
RETRAIN_REQUEST_ANNOTATION = f"{GROUP}/retrain-request"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
