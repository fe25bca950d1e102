"""Who may call a DistilledModel's APIs, applied: the token Secret (created once, never overwritten:
a user may rotate it) and the teacher's NetworkPolicy (present while the teacher service is). The
manifests come from :mod:`~logdistill.operator.manifests.apitoken` and
:mod:`~logdistill.operator.manifests.network_policy`."""

from __future__ import annotations

import secrets

from kubernetes import client
from kubernetes.client.rest import ApiException

from logdistill.operator import events, kubeapi, names
from logdistill.operator.context import Context
from logdistill.operator.manifests import apitoken, common, network_policy
from logdistill.spec import DistilledModelSpec

TOKEN_BYTES = 32


def ensure_token_secret(ctx: Context, owner: common.Owner, body: dict) -> None:
    """Create the API token Secret unless it exists (a 409 leaves it, and its token, as it is).
    Every pass, like the Services: a Secret deleted by hand comes back (with a new token)."""
    manifest = apitoken.build_token_secret(owner, secrets.token_urlsafe(TOKEN_BYTES))
    if kubeapi.create(client.CoreV1Api(ctx.api).create_namespaced_secret, owner.namespace, manifest):
        events.info(ctx.api, body, reason="TokenCreated",
                    message=f"Secret {manifest['metadata']['name']} holds the bearer token of the classify and"
                            " teacher APIs")


def apply_teacher_policy(ctx: Context, owner: common.Owner, spec: DistilledModelSpec, teacher_was_on: bool) -> None:
    """The teacher's NetworkPolicy while escalation is on (updated when its ports change); deleted
    with the teacher service when escalation is turned off."""
    networking = client.NetworkingV1Api(ctx.api)
    name, namespace = common.teacher_name(owner.name), owner.namespace
    if not spec.escalation.enabled:
        if teacher_was_on:
            try:
                networking.delete_namespaced_network_policy(name, namespace)
            except ApiException as err:
                if err.status != 404:
                    raise
        return
    manifest = network_policy.build_teacher_network_policy(owner, spec)
    current = kubeapi.read(ctx, networking.read_namespaced_network_policy, name, namespace)
    if current is None:
        kubeapi.create(networking.create_namespaced_network_policy, namespace, manifest)
    elif (current["metadata"].get("annotations") or {}).get(names.APPLIED_HASH_ANNOTATION) != \
            manifest["metadata"]["annotations"][names.APPLIED_HASH_ANNOTATION]:
        manifest["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        networking.replace_namespaced_network_policy(name, namespace, manifest)
