"""Session-wide fixtures: one real Kubernetes control plane per test session (cluster tests only)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

# tests/ (not the repo root: its operator/ would shadow the stdlib) so that `helpers` imports.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from helpers.controlplane import ControlPlane  # noqa: E402

EDGE_LABEL = "node-role.kubernetes.io/edge"
EDGE_NODES = ("edge-1", "edge-2")
OTHER_NODES = ("core-1",)


@pytest.fixture(scope="session")
def control_plane():
    """etcd + kube-apiserver + controller-manager + scheduler + kwok, with nodes edge-1 and edge-2
    (labelled ``node-role.kubernetes.io/edge: ""``) and core-1 (unlabelled). Fails, not skips,
    when the binaries are missing: run ``make cluster-bin``."""
    with ControlPlane() as cp:
        for name in EDGE_NODES:
            cp.add_node(name, labels={EDGE_LABEL: ""})
        for name in OTHER_NODES:
            cp.add_node(name)
        yield cp


@pytest.fixture
def namespace(control_plane, request):
    """A fresh namespace per test (ServiceAccount ready), deleted afterwards."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.delete_namespace(name)


def pytest_collection_modifyitems(items):
    # Every test that uses the control plane (directly or through another fixture) is a cluster test.
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)
