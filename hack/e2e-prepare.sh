#!/usr/bin/env bash
# Everything the real-node end-to-end test needs on this host, idempotent and cached between runs:
#   1. Debian packages: podman + runc (image builds), containerd + CNI plugins + iptables tools (the node)
#   2. kubelet, kube-proxy, crictl, CoreDNS and the pause image (hack/realnode/realnode.sh build; Go module proxy)
#   3. upstream Prometheus (hack/build-prometheus.sh: Debian's has no Kubernetes service discovery)
#   4. the images from the Dockerfile as committed: localhost/logdistill:e2e (target full) and
#      localhost/logdistill-edge:e2e (target edge), on a local Debian python base (no registry here);
#      podman's layer cache makes a rebuild after a source change take seconds (dependencies are their own layer)
# Timings go to stdout; build logs to ${REALNODE_CACHE:-~/.cache/realnode}/logs. Needs root.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KIT=$ROOT/hack/realnode
IMAGE_TAG=${E2E_IMAGE_TAG:-e2e}
log() { printf '[e2e-prepare %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
[[ $(id -u) == 0 ]] || { echo "e2e-prepare: needs root (it runs a kubelet and containerd)" >&2; exit 1; }

t=$(date +%s)
need=()
for pair in podman:podman runc:runc containerd:containerd debootstrap:debootstrap conntrack:conntrack socat:socat \
            ebtables:ebtables ethtool:ethtool iptables:iptables bc:bc curl:curl; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" uidmap fuse-overlayfs slirp4netns >/dev/null
fi
command -v go >/dev/null || { echo "e2e-prepare: go is needed to build kubelet/kube-proxy/CoreDNS" >&2; exit 1; }
log "packages ready ($(( $(date +%s) - t )) s)"

t=$(date +%s); bash "$KIT/realnode.sh" build > /tmp/logdistill-realnode-build.log 2>&1 \
  || { tail -30 /tmp/logdistill-realnode-build.log; exit 1; }
log "kubelet, kube-proxy, crictl, coredns, pause image ready ($(( $(date +%s) - t )) s)"

t=$(date +%s); bash "$ROOT/hack/build-prometheus.sh" > /tmp/logdistill-prometheus-build.log 2>&1 \
  || { tail -30 /tmp/logdistill-prometheus-build.log; exit 1; }
log "Prometheus with Kubernetes service discovery ready ($(( $(date +%s) - t )) s)"

t=$(date +%s); bash "$KIT/images.sh" base >/dev/null; log "python base image ready ($(( $(date +%s) - t )) s)"
# The stages whose layers are the next build's cache (the dependency installs: torch's is ~5 GB) get a tag,
# so that the prune below keeps them; every other dangling image is an earlier build's, superseded.
t=$(date +%s)
for stage in build-edge deps-full; do
  bash "$KIT/images.sh" build "$ROOT" "localhost/logdistill-cache:$stage" "$stage" >/dev/null
done
log "dependency stages ready ($(( $(date +%s) - t )) s)"
for target in edge full; do
  t=$(date +%s)
  case $target in edge) name=localhost/logdistill-edge:$IMAGE_TAG ;; *) name=localhost/logdistill:$IMAGE_TAG ;; esac
  bash "$KIT/images.sh" build "$ROOT" "$name" "$target"
  log "$name ready ($(( $(date +%s) - t )) s)"
done
podman image prune -f >/dev/null
log "superseded build images pruned (disk: $(df -h --output=avail / | tail -1 | tr -d ' ') free)"
