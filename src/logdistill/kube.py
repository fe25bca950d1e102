"""Kubernetes client configuration, one way for every process that talks to the API server."""

from __future__ import annotations

__all__ = ["load_kube_config"]


def load_kube_config(kubeconfig: str | None = None) -> None:
    """``kubeconfig`` if given, else in-cluster credentials, else ``KUBECONFIG`` or ``~/.kube/config``.

    Needs the Kubernetes client (the ``operator`` extra); raises what it raises when nothing is found.
    """
    from kubernetes import config

    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
        return
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
