"""The bearer token of a DistilledModel's APIs: its Secret and how pods mount it.

One Secret per CR (``<name>-api-token``, key ``token``), created once by the operator with a random
value and never overwritten (a user rotates it by editing the Secret; the pods re-read the mounted
file). The classifier requires it on its classify API and sends it to the teacher; the teacher
requires it on its API.
"""

from __future__ import annotations

import posixpath

from logdistill.operator.manifests.common import Owner, _metadata

TOKEN_KEY = "token"
TOKEN_MOUNT = "/var/run/secrets/logdistill/api"
TOKEN_FILE = posixpath.join(TOKEN_MOUNT, TOKEN_KEY)
VOLUME = "api-token"
# Readable by the pods' group (fsGroup) only.
FILE_MODE = 0o440


def token_secret_name(name: str) -> str:
    return f"{name}-api-token"


def build_token_secret(owner: Owner, token: str) -> dict:
    """The Secret holding ``token`` (the caller draws it: this stays pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(owner, token_secret_name(owner.name), "api-token"),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def token_volume(owner_name: str) -> dict:
    # A whole-directory mount (not subPath): kubelet swaps the file in when the Secret changes.
    return {"name": VOLUME, "secret": {"secretName": token_secret_name(owner_name), "defaultMode": FILE_MODE,
                                       "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}]}}


def token_mount() -> dict:
    return {"name": VOLUME, "mountPath": TOKEN_MOUNT, "readOnly": True}
