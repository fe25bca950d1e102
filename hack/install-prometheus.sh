#!/usr/bin/env bash
# Installs Prometheus and promtool from Debian's packages for the Prometheus tests
# (tests/test_alerts.py, tests/test_prometheus_e2e.py). Idempotent: does nothing when both
# binaries already answer --version. The package's own service is never used: the tests run
# the binary themselves on 127.0.0.1 with their own config and data dir.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null \
   && prometheus --version >/dev/null 2>&1 && promtool --version >/dev/null 2>&1; then
  echo "install-prometheus: $(prometheus --version 2>&1 | head -n1)"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d refuses service starts, so the package's systemd/init unit does not start a
# Prometheus of its own on :9090 inside containers and CI machines.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends prometheus
echo "install-prometheus: $(prometheus --version 2>&1 | head -n1)"
