#!/usr/bin/env bash
# Builds upstream Prometheus 2.54.1 from the Go module proxy for the real-node test: Debian's package (what
# hack/install-prometheus.sh installs for the other tests) is built without Kubernetes service discovery,
# and the e2e test discovers the classifier pods with kubernetes_sd_configs, as a cluster's Prometheus does.
# Idempotent: nothing to do when the binary answers --version. About 5 minutes cold on 2 cores.
set -euo pipefail
VERSION=2.54.1   # the Go module is tagged v0.<minor>.<patch>
OUT=${PROMETHEUS_K8S_DIR:-$HOME/.cache/logdistill/prometheus-$VERSION}
BIN=$OUT/prometheus
if [[ -x $BIN ]] && "$BIN" --version 2>&1 | grep -q "version $VERSION"; then
  echo "build-prometheus: $BIN ($VERSION) present"; exit 0
fi
mkdir -p "$OUT/src" && cd "$OUT/src"
[[ -f go.mod ]] || go mod init logdistill.local/prometheus >/dev/null 2>&1
# The replace directives of Prometheus' own go.mod (go install refuses a module that has any).
go mod edit -replace=k8s.io/klog=github.com/simonpasquier/klog-gokit@v0.3.0 \
            -replace=k8s.io/klog/v2=github.com/simonpasquier/klog-gokit/v3@v3.3.0
go get "github.com/prometheus/prometheus/cmd/prometheus@v0.${VERSION#2.}"
CGO_ENABLED=0 go build -trimpath -o "$BIN" \
  -ldflags "-s -w -X github.com/prometheus/common/version.Version=$VERSION" github.com/prometheus/prometheus/cmd/prometheus
echo "build-prometheus: $("$BIN" --version 2>&1 | head -n1)"
