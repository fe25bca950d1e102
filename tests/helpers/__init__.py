"""Shared test helpers: a real Kubernetes control plane (controlplane.py) and a local kubelet
for pods on its kwok nodes (kubelet.py). Importable as ``helpers`` (tests/conftest.py puts
``tests/`` on sys.path; never the repo root, whose operator/ would shadow the stdlib)."""
