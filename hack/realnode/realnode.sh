#!/usr/bin/env bash
# realnode.sh: a REAL Kubernetes node on this host, joined to an existing apiserver:
# containerd 1.6 (Debian package, CRI) + kubelet + kube-proxy (iptables) + bridge CNI + CoreDNS on the host.
#
#   realnode.sh build                          kubelet + kube-proxy v$K8S_VERSION, crictl, coredns (CGO_ENABLED=0)
#                                              -> $REALNODE_CACHE/bin; local pause image (no registry)
#   realnode.sh up KUBECONFIG STATE_DIR        start containerd, kubelet, kube-proxy, coredns; wait until Ready
#   realnode.sh import STATE_DIR IMAGE...      copy podman images into containerd (podman save | ctr import)
#   realnode.sh status STATE_DIR               processes, node, DNS readiness
#   realnode.sh down STATE_DIR [--purge]       stop everything, remove pods/veths/bridge/cgroups/mounts, the KUBE-*
#                                              chains and CNI rules up added, restore sysctls; --purge: image store too
#
# Needs root; apt: containerd runc containernetworking-plugins iptables conntrack; podman; go for `build`.
# All settings are env vars (defaults below); `up` saves them in STATE_DIR/realnode.env for import/status/down.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

defaults() {
  K8S_VERSION=${K8S_VERSION:-1.35.4}; CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}; COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
  REALNODE_CACHE=${REALNODE_CACHE:-$HOME/.cache/realnode}
  BIN=${REALNODE_BIN:-$REALNODE_CACHE/bin}
  # Optional seed for the kubelet/kube-proxy wrapper module (go.mod/go.sum of the control plane's build).
  # logdistill: the control plane's wrapper module and kubectl come from hack/build-k8s.sh (make cluster-bin).
  K8S_BIN=${K8S_BIN:-$HOME/.cache/logdistill/k8s-$K8S_VERSION/bin}
  SEED_K8S_SRC=${SEED_K8S_SRC:-$(dirname "$K8S_BIN")/work/k8s-wrapper}
  KUBECTL=${KUBECTL:-$K8S_BIN/kubectl}; [[ -x $KUBECTL ]] || KUBECTL=$(command -v kubectl || echo kubectl)
  RUNC=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
  CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
  CTRD_ROOT=${CTRD_ROOT:-/var/lib/realnode-containerd}     # images/snapshots (kept by `down` unless --purge)
  CTRD_STATE=${CTRD_STATE:-/run/realnode-containerd}       # socket, task state, CNI IPAM
  KUBELET_ROOT=${KUBELET_ROOT:-/var/lib/realnode-kubelet}
  POD_CIDR=${POD_CIDR:-10.244.0.0/16}                      # not 10.88/16: podman's cni-podman0
  BRIDGE=${BRIDGE:-cni-rn0}; CNI_NET_NAME=realnode
  GATEWAY_IP=${GATEWAY_IP:-$(python3 -c 'import ipaddress,sys;print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$POD_CIDR")}
  DNS_IP=${DNS_IP:-$GATEWAY_IP}; DNS_READY_PORT=${DNS_READY_PORT:-8181}; CLUSTER_DOMAIN=${CLUSTER_DOMAIN:-cluster.local}
  NODE_NAME=${NODE_NAME:-$(hostname)}   # keep the hostname: the apiserver dials the node's Hostname address
  KUBELET_ADDRESS=${KUBELET_ADDRESS:-127.0.0.1}; KUBELET_PORT=${KUBELET_PORT:-10250}; HEALTHZ_PORT=${HEALTHZ_PORT:-10248}
  PROXY_HEALTHZ_PORT=${PROXY_HEALTHZ_PORT:-10256}; PROXY_METRICS_PORT=${PROXY_METRICS_PORT:-10249}
  SANDBOX_IMAGE=${SANDBOX_IMAGE:-localhost/pause:realnode}
  # Host sysctls the kubelet (protectKernelDefaults=false), kube-proxy or the bridge CNI may change; `down` restores them.
  SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys"
  SYSCTLS+=" kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max"
  SYSCTLS+=" net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait"
  SYSCTLS+=" net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables"
}
SAVED="K8S_VERSION BIN KUBECTL RUNC CNI_BIN_DIR CTRD_ROOT CTRD_STATE KUBELET_ROOT POD_CIDR BRIDGE CNI_NET_NAME GATEWAY_IP
  DNS_IP DNS_READY_PORT CLUSTER_DOMAIN NODE_NAME KUBELET_ADDRESS KUBELET_PORT HEALTHZ_PORT PROXY_HEALTHZ_PORT
  PROXY_METRICS_PORT SANDBOX_IMAGE SYSCTLS KC STATE"
P="podman --runtime runc --cgroup-manager cgroupfs"
now() { date +%s.%N; }
since() { printf '%.1fs' "$(echo "$(now) - $1" | bc)"; }
die() { echo "realnode: $*" >&2; exit 1; }
load_state() {  # load_state STATE_DIR: the settings `up` used
  [[ -f $1/realnode.env ]] || die "$1/realnode.env not found (was \`up\` run with this STATE_DIR?)"
  # shellcheck disable=SC1091
  source "$1/realnode.env"; SOCK=$CTRD_STATE/containerd.sock; CTR="ctr -a $SOCK -n k8s.io"
}

# ---------------------------------------------------------------------------------------------------------------- build
build() {
  defaults; mkdir -p "$BIN" "$REALNODE_CACHE/src"
  local t src V
  export CGO_ENABLED=0
  t=$(now); src=$REALNODE_CACHE/src/k8s; mkdir -p "$src"
  if [[ ${FORCE:-0} == 1 || ! -x $BIN/kubelet || ! -x $BIN/kube-proxy || $("$BIN/kube-proxy" --version 2>/dev/null) != "Kubernetes v$K8S_VERSION" ]]; then
    (cd "$src"
     if [[ ! -f go.mod ]]; then
       if [[ -f $SEED_K8S_SRC/go.mod ]]; then cp "$SEED_K8S_SRC/go.mod" "$SEED_K8S_SRC/go.sum" .; else go mod init local/realnode-k8s >/dev/null 2>&1; fi
     fi
     # k8s.io/kubernetes points its staging modules at ./staging/...: replace each with its published v0.X.Y.
     gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
     for m in $(sed -n 's#^\s*\(k8s.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod"); do go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"; done
     go get -tool "k8s.io/kubernetes/cmd/kubelet@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-proxy@v$K8S_VERSION"
     V="-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
     V="$V -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
     go build -trimpath -ldflags "-s -w $V" -o "$BIN/kubelet" k8s.io/kubernetes/cmd/kubelet
     echo "kubelet built ($(since "$t"))"
     go build -trimpath -ldflags "-s -w $V" -o "$BIN/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy)
  fi
  echo "kubelet + kube-proxy: $(since "$t")"
  t=$(now)
  [[ -x $BIN/crictl ]] || GOBIN=$BIN go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  echo "crictl: $(since "$t")"
  t=$(now); src=$REALNODE_CACHE/src/coredns; mkdir -p "$src"
  if [[ ${FORCE:-0} == 1 || ! -x $BIN/coredns || $("$BIN/coredns" -version 2>/dev/null | head -1) != "CoreDNS-${COREDNS_VERSION#v}" ]]; then
    (cd "$src"; cp "$HERE/coredns-main.go" main.go
     [[ -f go.mod ]] || go mod init local/realnode-coredns >/dev/null 2>&1
     go get "github.com/coredns/coredns@$COREDNS_VERSION"; go mod tidy
     go build -trimpath -ldflags "-s -w" -o "$BIN/coredns" .)
  fi
  echo "coredns: $(since "$t")"
  t=$(now); src=$REALNODE_CACHE/src/pause; mkdir -p "$src"; cp "$HERE"/pause/{main.go,go.mod,Containerfile} "$src/"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o pause . && $P build -q -t "$SANDBOX_IMAGE" . >/dev/null)
  echo "pause image $SANDBOX_IMAGE: $(since "$t")"
  "$BIN/kubelet" --version; "$BIN/kube-proxy" --version; "$BIN/crictl" --version; "$BIN/coredns" -version | sed -n 1p  # sed reads it all: head would SIGPIPE it under pipefail
}

# ------------------------------------------------------------------------------------------------------------------- up
fill() {  # template -> file
  local v args=()
  for v in CTRD_ROOT CTRD_STATE STATE SANDBOX_IMAGE RUNC CNI_BIN_DIR BRIDGE POD_CIDR GATEWAY_IP KUBELET_ADDRESS KUBELET_PORT \
           HEALTHZ_PORT DNS_IP CLUSTER_DOMAIN KC NODE_NAME PROXY_HEALTHZ_PORT PROXY_METRICS_PORT DNS_READY_PORT; do
    args+=(-e "s#@${v/#KC/KUBECONFIG}@#${!v}#g"); done
  sed "${args[@]}" "$1" > "$2"
}
save_iptables_chains() { { iptables-save; ip6tables-save; } 2>/dev/null | { grep -oE '^:(KUBE|CNI-HOSTPORT)-[A-Za-z0-9_-]*' || true; } | sort -u; }

up() {
  [[ $# == 2 ]] || die "usage: realnode.sh up KUBECONFIG STATE_DIR"
  [[ $(id -u) == 0 ]] || die "needs root"
  defaults; KC=$(readlink -f "$1"); mkdir -p "$2"; STATE=$(readlink -f "$2")
  [[ -r $KC ]] || die "kubeconfig $KC not readable"
  for b in kubelet kube-proxy crictl coredns; do [[ -x $BIN/$b ]] || die "missing $BIN/$b: run realnode.sh build"; done
  [[ -f $STATE/containerd.pid || -f $STATE/kubelet.pid ]] && die "$STATE looks in use: run realnode.sh down $STATE first"
  for p in $KUBELET_PORT $HEALTHZ_PORT $PROXY_HEALTHZ_PORT $PROXY_METRICS_PORT $DNS_READY_PORT; do
    ss -ltnH "sport = :$p" | grep -q . && die "port $p in use (see env vars in realnode.sh)"; done
  ss -lnuH "sport = :53" | grep -qE "($DNS_IP|\*|0\.0\.0\.0):53 " && die "something already serves DNS on $DNS_IP:53"
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists already (stale? run down, or set BRIDGE)"
  mkdir -p "$STATE"/{cni,pki,logs} "$CTRD_ROOT" "$CTRD_STATE" "$KUBELET_ROOT"
  for v in $SAVED; do printf 'export %s=%q\n' "$v" "${!v}"; done > "$STATE/realnode.env"
  SOCK=$CTRD_STATE/containerd.sock; CTR="ctr -a $SOCK -n k8s.io"
  fill "$HERE/containerd.toml.in" "$STATE/containerd.toml"
  fill "$HERE/cni.conflist.in" "$STATE/cni/10-realnode.conflist"
  fill "$HERE/kubelet.yaml.in" "$STATE/kubelet.yaml"
  fill "$HERE/kube-proxy.yaml.in" "$STATE/kube-proxy.yaml"
  fill "$HERE/Corefile.in" "$STATE/Corefile"
  # What the node changes on the host, so that `down` can undo exactly that: the kubelet rewrites some sysctls
  # (protectKernelDefaults=false); kubelet and kube-proxy add KUBE-* chains; the kubelet creates /var/log/pods.
  for k in $SYSCTLS; do v=$(sysctl -n "$k" 2>/dev/null) && echo "$k=$v"; done > "$STATE/sysctl.orig"
  save_iptables_chains > "$STATE/iptables.pre"
  for d in /var/log/pods /var/log/containers; do [[ -e $d ]] && echo "$d"; done > "$STATE/varlog.pre" || true
  local t0 t1 t2 t3 t4
  # The bridge is created up front with the gateway address, so CoreDNS can bind to it before the first pod exists.
  ip link add "$BRIDGE" type bridge && ip addr add "$GATEWAY_IP/${POD_CIDR#*/}" dev "$BRIDGE" && ip link set "$BRIDGE" up
  t0=$(now)
  setsid containerd --config "$STATE/containerd.toml" > "$STATE/logs/containerd.log" 2>&1 < /dev/null &
  echo $! > "$STATE/containerd.pid"
  for _ in $(seq 1 100); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done
  ctr -a "$SOCK" version >/dev/null 2>&1 || { tail -20 "$STATE/logs/containerd.log"; die "containerd did not start"; }
  t1=$(now)
  $CTR images ls -q | grep -qx "$SANDBOX_IMAGE" || import_images "$SANDBOX_IMAGE"
  # --containerd: cadvisor's containerd factory otherwise dials /run/containerd/containerd.sock.
  setsid "$BIN/kubelet" --config="$STATE/kubelet.yaml" --kubeconfig="$KC" --root-dir="$KUBELET_ROOT" \
    --cert-dir="$STATE/pki" --hostname-override="$NODE_NAME" --containerd="$SOCK" --v=2 \
    > "$STATE/logs/kubelet.log" 2>&1 < /dev/null &
  echo $! > "$STATE/kubelet.pid"
  for _ in $(seq 1 240); do
    [[ $(KUBECONFIG=$KC "$KUBECTL" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] && break
    kill -0 "$(cat "$STATE/kubelet.pid")" 2>/dev/null || { tail -30 "$STATE/logs/kubelet.log"; die "kubelet exited"; }
    sleep 0.5
  done
  [[ $(KUBECONFIG=$KC "$KUBECTL" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] \
    || { tail -30 "$STATE/logs/kubelet.log"; die "node $NODE_NAME not Ready after 120s"; }
  t2=$(now)
  setsid "$BIN/kube-proxy" --config="$STATE/kube-proxy.yaml" --v=2 > "$STATE/logs/kube-proxy.log" 2>&1 < /dev/null &
  echo $! > "$STATE/kube-proxy.pid"
  for _ in $(seq 1 120); do
    curl -sf -o /dev/null "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" && break
    kill -0 "$(cat "$STATE/kube-proxy.pid")" 2>/dev/null || { tail -30 "$STATE/logs/kube-proxy.log"; die "kube-proxy exited"; }
    sleep 0.25
  done
  curl -sf -o /dev/null "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" || { tail -30 "$STATE/logs/kube-proxy.log"; die "kube-proxy not healthy after 30s"; }
  t3=$(now)
  setsid "$BIN/coredns" -conf "$STATE/Corefile" > "$STATE/logs/coredns.log" 2>&1 < /dev/null &
  echo $! > "$STATE/coredns.pid"
  for _ in $(seq 1 120); do
    curl -sf -o /dev/null "http://127.0.0.1:$DNS_READY_PORT/ready" && break
    kill -0 "$(cat "$STATE/coredns.pid")" 2>/dev/null || { tail -30 "$STATE/logs/coredns.log"; die "coredns exited"; }
    sleep 0.25
  done
  curl -sf -o /dev/null "http://127.0.0.1:$DNS_READY_PORT/ready" || { tail -30 "$STATE/logs/coredns.log"; die "coredns not ready after 30s"; }
  t4=$(now)
  KUBECONFIG=$KC "$KUBECTL" get node "$NODE_NAME" -o wide
  local ep; ep=$(KUBECONFIG=$KC "$KUBECTL" -n default get endpointslices -l kubernetes.io/service-name=kubernetes \
    -o jsonpath='{.items[0].endpoints[0].addresses[0]}:{.items[0].ports[0].port}' 2>/dev/null || true)
  echo "kubernetes Service endpoint (what kube-proxy DNATs 10.0.0.1:443 to): $ep"
  [[ $ep == 127.* ]] && echo "WARNING: the apiserver advertises loopback; pods cannot reach it through the kubernetes" \
    "Service. Start the control plane with APISERVER_ADVERTISE=auto (see README)." >&2
  printf 'containerd %.1fs, node Ready %.1fs after kubelet start, kube-proxy healthy %.1fs, coredns ready %.1fs (total %.1fs)\n' \
    "$(echo "$t1-$t0" | bc)" "$(echo "$t2-$t1" | bc)" "$(echo "$t3-$t2" | bc)" "$(echo "$t4-$t3" | bc)" "$(echo "$t4-$t0" | bc)"
  echo "clusterDNS $DNS_IP ($CLUSTER_DOMAIN), pod CIDR $POD_CIDR on $BRIDGE, logs in $STATE/logs"
}

# --------------------------------------------------------------------------------------------------------------- import
import_images() {
  # logdistill: an image containerd already holds with the same podman image ID is not streamed again
  # (a 5 GB full image takes minutes to save and import); the ID is recorded beside the image store.
  local img t id stamp
  mkdir -p "$CTRD_ROOT/realnode-imported"
  for img in "$@"; do
    t=$(now)
    podman image exists "$img" || die "podman has no image $img"
    id=$(podman image inspect --format '{{.Id}}' "$img"); stamp=$CTRD_ROOT/realnode-imported/$(echo "$img" | tr -c 'A-Za-z0-9._\n-' '_')
    if [[ $(cat "$stamp" 2>/dev/null) == "$id" ]] && $CTR images ls -q | grep -qx "$img"; then
      echo "image $img already in containerd (id ${id:0:12})"; continue
    fi
    if ! podman save --format docker-archive "$img" | $CTR images import - >/dev/null; then
      # A snapshot chain left broken (a parent snapshot gone: an image GC under disk pressure, a killed
      # import): drop the image and its unreferenced content and snapshots (containerd's GC), import again.
      echo "import of $img failed: removing it from containerd and importing it again" >&2
      $CTR images rm "$img" >/dev/null 2>&1 || true
      $CTR content prune references >/dev/null 2>&1 || true
      podman save --format docker-archive "$img" | $CTR images import - >/dev/null \
        || die "cannot import $img into containerd; a clean image store: realnode.sh down STATE_DIR --purge"
    fi
    echo "$id" > "$stamp"
    echo "imported $img ($(since "$t"))"
  done
}

status() {
  load_state "$1"
  for c in containerd kubelet kube-proxy coredns; do
    p=$(cat "$STATE/$c.pid" 2>/dev/null || true)
    printf '%-11s %s\n' "$c" "$([[ -n $p ]] && kill -0 "$p" 2>/dev/null && echo "running pid $p" || echo stopped)"; done
  KUBECONFIG=$KC "$KUBECTL" get node "$NODE_NAME" --no-headers 2>/dev/null || true
  echo "coredns /ready: $(curl -s -m 2 "http://127.0.0.1:$DNS_READY_PORT/ready" || echo no)"
}

# ----------------------------------------------------------------------------------------------------------------- down
stop_pid() {  # stop_pid FILE [SECONDS]: TERM, wait, KILL (only the pid this script recorded)
  [[ -f $1 ]] || return 0
  local p n; p=$(cat "$1"); n=$(( ${2:-20} * 4 ))
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 "$n"); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$p" 2>/dev/null || true; rm -f "$1"
}
drop_chains() {  # drop_chains IPT CHAIN... : remove jumps from any chain, then flush, then delete
  local ipt=$1; shift; [[ $# == 0 ]] && return 0
  local t c re
  re="-j ($(IFS='|'; echo "$*"))\$"
  for t in filter nat mangle raw; do
    $ipt -t $t -S 2>/dev/null | grep -E -- "$re" | grep '^-A' | sed 's/^-A/-D/' | while read -r r; do eval "$ipt -t $t $r" 2>/dev/null; done || true
    for c in "$@"; do $ipt -t $t -F "$c" 2>/dev/null || true; done
    for c in "$@"; do $ipt -t $t -X "$c" 2>/dev/null || true; done
  done
}

down() {
  load_state "$1"; local purge=${2:-} t; t=$(now)
  set +e  # best effort from here on: one failed step must not leave the rest of the host dirty
  stop_pid "$STATE/coredns.pid" 10
  stop_pid "$STATE/kube-proxy.pid" 10
  stop_pid "$STATE/kubelet.pid" 20
  echo "$(since "$t") coredns, kube-proxy, kubelet stopped" > "$STATE/logs/down.log"
  if [[ -S $SOCK ]]; then
    # Remove every sandbox through CRI so containerd runs CNI DEL (veths, IPAM, masquerade rules).
    "$BIN/crictl" -r "unix://$SOCK" rmp -f -a >/dev/null 2>&1 || true
    for c in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
    sleep 1
    for c in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks rm -f "$c" >/dev/null 2>&1 || true; done
    for c in $($CTR containers ls -q 2>/dev/null); do $CTR containers rm "$c" >/dev/null 2>&1 || true; done
  fi
  echo "$(since "$t") pod sandboxes removed (CNI DEL)" >> "$STATE/logs/down.log"
  stop_pid "$STATE/containerd.pid" 20
  echo "$(since "$t") containerd stopped" >> "$STATE/logs/down.log"
  # Leftover mounts (projected-token tmpfs, sandbox shm, rootfs overlays), deepest first.
  awk -v a="$KUBELET_ROOT" -v b="$CTRD_STATE" -v c="$CTRD_ROOT" 'index($2,a)==1||index($2,b)==1||index($2,c)==1 {print $2}' /proc/mounts \
    | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  KUBECONFIG=$KC timeout 10 "$KUBECTL" delete node "$NODE_NAME" --wait=false >/dev/null 2>&1 || true
  # kubelet cgroups (v1: one tree per hierarchy), bottom-up; leftover veths of ours; the bridge.
  for h in /sys/fs/cgroup/*/kubepods; do [[ -d $h ]] && { find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true; }; done
  for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$v" 2>/dev/null || true; done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  # iptables: kube-proxy's own cleanup, then every KUBE-*/CNI-HOSTPORT-* chain that was not there before `up`,
  # and CNI masquerade chains of this network that a failed CNI DEL may have left.
  "$BIN/kube-proxy" --cleanup >> "$STATE/logs/kube-proxy-cleanup.log" 2>&1 || true
  for ipt in iptables ip6tables; do
    mapfile -t new < <($ipt-save 2>/dev/null | { grep -oE '^:(KUBE|CNI-HOSTPORT)-[A-Za-z0-9_-]*' || true; } | sed 's/^://' | sort -u \
      | comm -23 - <(sed 's/^://' "$STATE/iptables.pre" 2>/dev/null | sort -u))
    drop_chains $ipt "${new[@]}"
    mapfile -t cni < <($ipt -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$CNI_NET_NAME\\\"" | grep -oE -- '-j CNI-[0-9a-f]+' | cut -c4- | sort -u)
    drop_chains $ipt "${cni[@]}"
  done
  echo "$(since "$t") node object, cgroups, veths, bridge, iptables chains removed" >> "$STATE/logs/down.log"
  if [[ -f $STATE/sysctl.orig ]]; then
    while IFS== read -r k v; do [[ $(sysctl -n "$k" 2>/dev/null) == "$v" ]] || sysctl -qw "$k=$v" || true; done < "$STATE/sysctl.orig"
  fi
  if [[ -f $STATE/varlog.pre ]]; then
    for d in /var/log/pods /var/log/containers; do grep -qx "$d" "$STATE/varlog.pre" || rm -rf "$d"; done
  fi
  rm -rf "$KUBELET_ROOT" "$CTRD_STATE"
  [[ $purge == --purge ]] && rm -rf "$CTRD_ROOT"
  rm -f "$STATE/sysctl.orig" "$STATE/iptables.pre" "$STATE/varlog.pre"
  echo "realnode down ($(since "$t"))${purge:+, image store purged}"
}

case ${1:-} in
  build) build ;;
  up) shift; up "$@" ;;
  import) [[ $# -ge 3 ]] || die "usage: realnode.sh import STATE_DIR IMAGE..."; load_state "$2"; shift 2; import_images "$@" ;;
  status) load_state "${2:?STATE_DIR}" >/dev/null; status "$2" ;;
  down) [[ $# -ge 2 ]] || die "usage: realnode.sh down STATE_DIR [--purge]"; down "$2" "${3:-}" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac; exit $?   # same line: a script edited while it runs cannot resume mid-file
