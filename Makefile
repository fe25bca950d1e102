# Quick start:  make demo   (main job on the bundled data)   |   make test   (the test suite)
# Both create the virtual environment first; everything they need installs from PyPI.
VENV ?= $(HOME)/.cache/logdistill/venv
PY := $(VENV)/bin/python
# The editable install points at one checkout: the stamp holds which one (and which pyproject), so a
# new pyproject, or another checkout having installed itself since, reinstalls.
STAMP := $(VENV)/.logdistill-installed
INSTALL_ID := $(shell (cat pyproject.toml; echo $(CURDIR)) | sha256sum | cut -c1-16)
EXTRAS ?= train,operator,demo,test,dashboards
K8S_BIN ?= $(HOME)/.cache/logdistill/k8s-1.35.4/bin
export K8S_BIN
# The repo root holds operator/, which would shadow the standard library's `operator` for
# `python -m ...` run from here (cwd goes first on sys.path). Safe-path mode turns that off.
export PYTHONSAFEPATH := 1

.PHONY: lock venv demo test test-fast e2e e2e-prepare cluster-bin prometheus-bin bench clean-venv

venv:
	@if [ "$$(cat $(STAMP) 2>/dev/null)" != "$(INSTALL_ID)" ]; then \
	  set -e; test -x $(PY) || python3 -m venv $(VENV); \
	  $(PY) -m pip install --quiet --upgrade pip; \
	  $(PY) -m pip install --quiet -e ".[$(EXTRAS)]"; \
	  echo $(INSTALL_ID) > $(STAMP); \
	fi

# The hash-pinned lock files the images install (locks/*.txt), regenerated from pyproject.toml; run after changing
# its dependencies (tests/test_locks.py fails until then). UPGRADE=1 moves every pin to the newest allowed version.
lock:
	bash hack/lock.sh

demo: venv
	$(VENV)/bin/logdistill demo

cluster-bin:
	bash hack/build-k8s.sh

# A real Prometheus (Debian package) for the scrape and alert-rule tests.
prometheus-bin:
	bash hack/install-prometheus.sh

# The whole suite, cluster tests included (they build the control plane binaries once, cached).
test: venv cluster-bin prometheus-bin
	$(VENV)/bin/pytest -m "not slow and not realnode" $(PYTEST_ARGS)

# The user's journey on a real node (root): packages, kubelet/kube-proxy/CoreDNS, the images from the
# Dockerfile (layer cache kept), then the README's cluster commands against real containers.
e2e-prepare: cluster-bin prometheus-bin
	bash hack/e2e-prepare.sh

e2e: venv e2e-prepare
	PYTHONUNBUFFERED=1 $(VENV)/bin/pytest -m realnode -s tests/test_realnode_e2e.py $(PYTEST_ARGS)

# No cluster, no torch-heavy tests: the inner loop.
test-fast: venv
	$(VENV)/bin/pytest -m "not slow and not cluster and not realnode" $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/logdistill bench distill
	$(VENV)/bin/logdistill bench classify

clean-venv:
	rm -rf $(VENV)
