#!/usr/bin/env bash
# A REAL Kubernetes node for the test control plane (scripts/k8s-controlplane.sh):
# the upstream kubelet of the pinned release (built from the Go module proxy,
# k8s/realnode/go.mod), Debian's containerd and runc, the CNI bridge and
# host-local plugins, and a tiny local image made from the host's busybox (no
# image pulls: there is no registry).  The groundwork for the node daemon's
# real-cluster mode; see docs/k8s-realnode.md.
#
#   scripts/k8s-realnode.sh build    build (or find cached) the kubelet
#   scripts/k8s-realnode.sh up       start containerd + kubelet; wait for the Node to be Ready
#   scripts/k8s-realnode.sh down     stop them; remove pods, netns, bridge, mounts, cgroups, state
#   scripts/k8s-realnode.sh status   what runs (exit 0 = up and Ready, 3 = down)
#   scripts/k8s-realnode.sh env      shell assignments (node name, image names, state dir)
#
# Idempotent.  `up` and `down` belong to a session of the test control plane:
# the caller holds its flock (/run/lock/mycedrive-k8s.lock) for the whole
# session, and `up` needs the control plane up.  E.g.
#   flock /run/lock/mycedrive-k8s.lock bash -c 'scripts/k8s-controlplane.sh up &&
#       scripts/k8s-realnode.sh up && ...; scripts/k8s-realnode.sh down; scripts/k8s-controlplane.sh down'
#
# Everything is its own: state in /run/mycedrive-k8s-node (containerd's root,
# state and socket, the kubelet's root dir, pod logs, CNI config and IPAM
# state), the bridge mycrn0 with 10.79.0.0/24, the cgroup subtree
# /mycedrive-k8s-node in every hierarchy.  It does not use /run/containerd's
# socket or /var/lib/kubelet.  The Node is tainted mycedrive.io/realnode so
# that other tests' pods are not scheduled onto it.
#
# Environment:
#   MYCE_CACHE_DIR          cache root (default /var/cache/mycedrive)
#   MYCE_GO                 the go command (default: `go` in PATH, else /usr/local/go/bin/go)
#   MYCE_K8S_NODE_STATE_DIR state directory (default /run/mycedrive-k8s-node)
#   MYCE_K8S_NODE_NAME      the Node's name (default realnode1)
#   MYCE_K8S_LOCK           the control plane's session lock (default /run/lock/mycedrive-k8s.lock)
#   MYCE_K8S_TIMEOUT        seconds to wait for readiness (default 120)
#   MYCE_K8S_NODE_RUNC      the OCI runtime binary (default: runc in PATH)
#   MYCE_K8S_NODE_LAST_LOGS where `down` leaves the logs (default /tmp/mycedrive-k8s-node-last-logs)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_DIR=$REPO/k8s/realnode
CP=$REPO/scripts/k8s-controlplane.sh
CACHE_DIR=${MYCE_CACHE_DIR:-/var/cache/mycedrive}
STATE=${MYCE_K8S_NODE_STATE_DIR:-/run/mycedrive-k8s-node}
NODE=${MYCE_K8S_NODE_NAME:-realnode1}
LOCK=${MYCE_K8S_LOCK:-/run/lock/mycedrive-k8s.lock}
TIMEOUT=${MYCE_K8S_TIMEOUT:-120}
LAST_LOGS=${MYCE_K8S_NODE_LAST_LOGS:-/tmp/mycedrive-k8s-node-last-logs}
RUNC=${MYCE_K8S_NODE_RUNC:-$(command -v runc || echo /usr/sbin/runc)}

BRIDGE=mycrn0
POD_CIDR=10.79.0.0/24
NODE_IP=10.79.0.1                # the bridge's address: the Node's InternalIP
KUBELET_PORT=16250               # clear of the default 10250
KUBELET_HEALTHZ_PORT=16248       # clear of the default 10248
CGROUP_ROOT=/mycedrive-k8s-node
IMAGE=mycedrive.local/busybox:1  # busybox from the host (Debian's busybox-static)
PAUSE_IMAGE=mycedrive.local/pause:1
TAINT_KEY=mycedrive.io/realnode
# The sysctls the kubelet sets when protectKernelDefaults is false; saved by
# `up` and restored by `down`, so the machine is left as it was.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

say() { echo "k8s-realnode: $*"; }
die() { echo "k8s-realnode: ERROR: $*" >&2; exit 1; }
# shellcheck source=k8s-procs.sh
. "$(dirname "${BASH_SOURCE[0]}")/k8s-procs.sh"

# --- build -------------------------------------------------------------------

k8s_version() {
    local v
    v=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3; exit }
             $1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$MODULE_DIR/go.mod")
    [[ $v =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read the k8s.io/kubernetes version from $MODULE_DIR/go.mod"
    echo "$v"
}

init_paths() {
    K8S_VERSION=$(k8s_version)
    VERSION_DIR=$CACHE_DIR/k8s/$K8S_VERSION/realnode
    BIN_DIR=$VERSION_DIR/bin
    STAMP=$VERSION_DIR/stamp
    KUBECTL=$CACHE_DIR/k8s/$K8S_VERSION/bin/kubectl
}

find_go() {
    if [[ -n ${MYCE_GO:-} ]]; then GO=$MYCE_GO
    elif command -v go >/dev/null 2>&1; then GO=$(command -v go)
    elif [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go
    else die "no Go toolchain (>= $(awk '$1 == "go" { print $2; exit }' "$MODULE_DIR/go.mod")): put it in PATH or set MYCE_GO"
    fi
}

ldflags() {
    local v=${K8S_VERSION#v} pkg flags="-s -w"
    local major=${v%%.*} rest=${v#*.}
    local minor=${rest%%.*}
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
    done
    echo "$flags"
}

inputs_digest() {
    {
        echo "k8s $K8S_VERSION"
        GOTOOLCHAIN=local "$GO" env GOVERSION
        echo "flags CGO_ENABLED=0 -trimpath -mod=readonly -ldflags=$(ldflags)"
        sha256sum "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum" | awk '{ print $1 }'
    } | sha256sum | awk '{ print $1 }'
}

stamp_ok() {
    [[ -f $STAMP && -x $BIN_DIR/kubelet ]] && [[ $(cat "$STAMP") == "$(inputs_digest)" ]]
}

BUILD_NOTE=
cmd_build() {
    find_go
    local t0 log tmp digest
    t0=$(now)
    if stamp_ok; then
        BUILD_NOTE="cached kubelet $K8S_VERSION"
        return 0
    fi
    mkdir -p "$VERSION_DIR" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build" "$CACHE_DIR/logs"
    exec 8>"$VERSION_DIR/build.lock"
    flock 8
    if stamp_ok; then
        BUILD_NOTE="cached kubelet $K8S_VERSION"
        exec 8>&-
        return 0
    fi
    digest=$(inputs_digest)
    log=$CACHE_DIR/logs/kubelet-build-$K8S_VERSION.log
    tmp=$VERSION_DIR/bin.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    say "building kubelet $K8S_VERSION with $("$GO" env GOVERSION); log: $log"
    if ! (cd "$MODULE_DIR" &&
          GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS='' \
          GOMODCACHE=$CACHE_DIR/go/mod GOCACHE=$CACHE_DIR/go/build \
          nice -n 10 "$GO" build -trimpath -mod=readonly -buildvcs=false -ldflags="$(ldflags)" -o "$tmp/" \
              k8s.io/kubernetes/cmd/kubelet) >"$log" 2>&1; then
        echo "k8s-realnode: ERROR: go build failed; last lines of $log:" >&2
        tail -n 30 "$log" >&2
        rm -rf "$tmp"
        exit 1
    fi
    rm -rf "$BIN_DIR"
    mv "$tmp" "$BIN_DIR"
    echo "$digest" >"$STAMP.tmp"
    mv "$STAMP.tmp" "$STAMP"
    exec 8>&-
    BUILD_NOTE="built kubelet $K8S_VERSION in $(elapsed "$t0") s"
    say "$BUILD_NOTE"
}

# --- prerequisites -------------------------------------------------------------

check_prereqs() {
    local missing=() c
    for c in containerd ctr runc busybox ip nft; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    for c in bridge host-local loopback; do
        [[ -x /usr/lib/cni/$c ]] || missing+=("/usr/lib/cni/$c")
    done
    ((${#missing[@]} == 0)) ||
        die "missing: ${missing[*]} (apt-get install containerd runc containernetworking-plugins busybox-static); nothing started"
    [[ $(file -b "$(command -v busybox)") == *"statically linked"* ]] ||
        die "busybox is not statically linked (install busybox-static); nothing started"
}

# --- the session lock (the control plane's) ------------------------------------


require_lock() {
    lock_held_by_caller ||
        die "hold an exclusive flock on $LOCK (the control plane's session lock) for the whole session"
}

# --- processes -----------------------------------------------------------------





# wait_for NAME WHAT CMD...: poll CMD until it succeeds; fail early when the
# process NAME exits.
wait_for() {
    local name=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s) + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ! pid_alive "$name" >/dev/null; then
            echo "k8s-realnode: ERROR: $what: $name exited; last lines of its log:" >&2
            grep -E '^E|level=(error|fatal)' "$STATE/logs/$name.log" | tail -n 10 >&2 || true
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            echo "k8s-realnode: ERROR: $what: not after $TIMEOUT s" >&2
            return 1
        fi
        sleep 0.2
    done
}

# --- the local image -------------------------------------------------------------

# An OCI image layout (one uncompressed layer: the host's static busybox and
# its applet links) in a tar, imported under both image names.
make_image() {
    local dir=$STATE/image root layer cfg man a
    root=$dir/rootfs
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/www" "$root/proc" "$root/sys" "$root/dev" \
        "$dir/oci/blobs/sha256"
    cp "$(command -v busybox)" "$root/bin/busybox"
    for a in $(busybox --list); do
        [[ $a == busybox ]] || ln -sf busybox "$root/bin/$a"
    done
    echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    echo "mycedrive real node" >"$root/www/index.html"
    chmod 1777 "$root/tmp"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$dir/layer.tar" .
    layer=$(sha256sum "$dir/layer.tar" | awk '{ print $1 }')
    mv "$dir/layer.tar" "$dir/oci/blobs/sha256/$layer"
    printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sleep","2147483647"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$layer" >"$dir/config.json"
    cfg=$(sha256sum "$dir/config.json" | awk '{ print $1 }')
    mv "$dir/config.json" "$dir/oci/blobs/sha256/$cfg"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
        "$cfg" "$(stat -c %s "$dir/oci/blobs/sha256/$cfg")" "$layer" "$(stat -c %s "$dir/oci/blobs/sha256/$layer")" \
        >"$dir/manifest.json"
    man=$(sha256sum "$dir/manifest.json" | awk '{ print $1 }')
    local msize
    msize=$(stat -c %s "$dir/manifest.json")
    mv "$dir/manifest.json" "$dir/oci/blobs/sha256/$man"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci/oci-layout"
    printf '{"schemaVersion":2,"manifests":[%s,%s]}' \
        "$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"1"}}' "$man" "$msize" "$IMAGE")" \
        "$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"1"}}' "$man" "$msize" "$PAUSE_IMAGE")" \
        >"$dir/oci/index.json"
    tar -C "$dir/oci" -cf "$dir/image.tar" .
    ctr_ images import "$dir/image.tar" >/dev/null
    rm -rf "$root" "$dir/oci"
}

ctr_() { ctr --address "$STATE/containerd/containerd.sock" -n k8s.io "$@"; }

# --- configuration ---------------------------------------------------------------

write_configs() {
    # Whether lowering oom_score_adj is allowed here (CAP_SYS_RESOURCE).
    local capeff
    capeff=$(awk '/^CapEff/ { print $2 }' /proc/self/status)
    if (( (16#$capeff >> 24) & 1 )); then RESTRICT_OOM=false; else RESTRICT_OOM=true; fi
    mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/kubelet" "$STATE/pod-logs"
    cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$STATE/containerd/containerd.sock"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[debug]
  address = "$STATE/containerd/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE (not in the bounding set), so
  # no process may lower its oom_score_adj: the kubelet asks -998 for every
  # sandbox and runc's init fails.  Clamp to containerd's own score instead.
  restrict_oom_score_adj = $RESTRICT_OOM
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$RUNC"
        Root = "$STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1
EOF
    cat >"$STATE/cni/net.d/10-mycedrive-realnode.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "mycedrive-realnode",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]]
      }
    },
    { "type": "loopback" }
  ]
}
EOF
    cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $STATE/kubelet/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
podLogsDir: $STATE/pod-logs
resolvConf: /etc/resolv.conf
registerNode: true
registerWithTaints:
- key: $TAINT_KEY
  value: "true"
  effect: NoSchedule
maxPods: 16
podCIDR: $POD_CIDR
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
makeIPTablesUtilChains: false
EOF
}

# --- up / down / status ------------------------------------------------------------

node_ready() {
    [[ -x $KUBECTL ]] || return 1
    [[ $("$KUBECTL" --kubeconfig "$(cp_env KUBECONFIG)" get node "$NODE" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

cp_env() { bash "$CP" env | sed -n "s/^$1=//p"; }

all_up() {
    pid_alive containerd >/dev/null && pid_alive kubelet >/dev/null && node_ready
}

save_sysctls() {
    local s
    [[ -f $STATE/sysctls ]] && return 0
    for s in "${SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$STATE/sysctls"
}

restore_sysctls() {
    [[ -f $STATE/sysctls ]] || return 0
    local kv
    while read -r kv; do sysctl -q -w "$kv" >/dev/null || say "could not restore $kv"; done <"$STATE/sysctls"
}

cmd_up() {
    require_lock
    local t_all t0 kc
    t_all=$(now)
    check_prereqs
    cmd_build
    bash "$CP" status >/dev/null 2>&1 || die "the test control plane is not up and ready (scripts/k8s-controlplane.sh up); nothing started"
    if [[ -d $STATE ]] && all_up; then
        say "already up; Node $NODE Ready"
        return 0
    fi
    if [[ -d $STATE ]]; then
        say "found a partial real node in $STATE: stopping it first"
        stop_all
    fi
    ip link show "$BRIDGE" >/dev/null 2>&1 && die "a link $BRIDGE exists but no state in $STATE: not ours; nothing started"
    ss -Htln "sport = :$KUBELET_PORT or sport = :$KUBELET_HEALTHZ_PORT" | grep -q . &&
        die "port $KUBELET_PORT or $KUBELET_HEALTHZ_PORT is in use; nothing started"
    t0=$(now)
    mkdir -p "$STATE/pids" "$STATE/logs"
    chmod 700 "$STATE"
    trap 'rc=$?; stop_all; [[ $rc == 0 ]] || say "up failed (exit $rc): stopped what was started; logs in $LAST_LOGS"' EXIT
    trap 'say "interrupted: stopping what was started"; exit 130' INT TERM
    save_sysctls
    record_host
    write_configs
    # The bridge with the Node's address exists before the kubelet starts
    # (its --node-ip); the CNI bridge plugin adopts it.
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up

    make_cgroups
    start_proc containerd "$(command -v containerd)" --config "$STATE/containerd/config.toml"
    wait_for containerd "containerd answers on $STATE/containerd/containerd.sock" ctr_ version
    local t_img
    t_img=$(now)
    make_image
    IMG_NOTE="image import $(elapsed "$t_img") s"

    kc=$(bash "$CP" kubeconfig "system:node:$NODE" system:nodes)
    cp "$kc" "$STATE/kubelet/kubeconfig"
    cp "$(cp_env MYCE_K8S_STATE_DIR)/pki/ca.crt" "$STATE/kubelet/ca.crt"
    start_proc kubelet "$BIN_DIR/kubelet" --config="$STATE/kubelet/config.yaml" \
        --kubeconfig="$STATE/kubelet/kubeconfig" --root-dir="$STATE/kubelet/root" \
        --cert-dir="$STATE/kubelet/pki" --hostname-override="$NODE" --node-ip="$NODE_IP" \
        --node-labels=mycedrive.io/realnode=true --v=1
    wait_for kubelet "kubelet healthz on 127.0.0.1:$KUBELET_HEALTHZ_PORT" \
        curl -fsS --max-time 2 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
    wait_for kubelet "Node $NODE Ready" node_ready
    trap - EXIT INT TERM
    say "up in $(elapsed "$t_all") s (build: $BUILD_NOTE; $IMG_NOTE; start to Node Ready: $(elapsed "$t0") s); node $NODE ($NODE_IP), images $IMAGE $PAUSE_IMAGE"
}

# Every container and sandbox of our containerd: tasks killed, network
# namespaces (made by the CRI plugin under /run/netns) unmounted and removed.
remove_pods() {
    [[ -S $STATE/containerd/containerd.sock ]] && pid_alive containerd >/dev/null || return 0
    local id ns
    for id in $(ctr_ containers list -q 2>/dev/null); do
        ns=$(ctr_ containers info "$id" 2>/dev/null |
            python3 -c 'import json,sys
for n in json.load(sys.stdin)["Spec"]["linux"].get("namespaces", []):
    if n.get("type") == "network" and n.get("path", "").startswith("/var/run/netns/"): print(n["path"])' 2>/dev/null || true)
        ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        for _ in $(seq 50); do
            ctr_ tasks delete "$id" >/dev/null 2>&1 && break
            ctr_ tasks list -q 2>/dev/null | grep -qx "$id" || break
            sleep 0.1
        done
        ctr_ containers delete "$id" >/dev/null 2>&1 || true
        if [[ -n $ns ]]; then
            umount "$ns" 2>/dev/null || true
            rm -f "$ns"
        fi
    done
}

# The containerd shims of our containerd (they outlive it by design).
kill_shims() {
    local p
    for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $STATE/containerd/containerd.sock" || true); do
        kill -KILL "$p" 2>/dev/null || true
    done
}

# The kubelet's --cgroup-root must exist in every hierarchy (cgroup v1 here:
# a cpuset cgroup is usable only once its cpus and mems are set).
make_cgroups() {
    local h d
    for h in /sys/fs/cgroup/*/; do
        d=$h${CGROUP_ROOT#/}
        mkdir -p "$d"
        if [[ -f $d/cpuset.cpus ]]; then
            cat "$h/cpuset.cpus" >"$d/cpuset.cpus"
            cat "$h/cpuset.mems" >"$d/cpuset.mems"
        fi
    done
}

# What the kubelet and containerd put outside the state whatever they are
# told: the kubelet's device-plugin socket dir, the shims' socket dir, and
# the kubelet's iptables chains (KUBE-FIREWALL, the canaries).  `up` records
# what existed before; `down` removes only what was not there.
HOST_DIRS=(/var/lib/kubelet /var/lib/kubelet/device-plugins /run/containerd /run/containerd/s)
KUBE_CHAINS=(KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY)

record_host() {
    local d
    [[ -f $STATE/host-before ]] && return 0
    {
        for d in "${HOST_DIRS[@]}"; do [[ -e $d ]] && echo "dir $d"; done
        nft list tables 2>/dev/null | awk '{ print "table", $2, $3 }'
    } >"$STATE/host-before"
}

existed_before() { grep -qxF "$1" "$STATE/host-before" 2>/dev/null; }

clean_host() {
    local i fam t c h
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock
    for ((i = ${#HOST_DIRS[@]} - 1; i >= 0; i--)); do
        existed_before "dir ${HOST_DIRS[i]}" || rmdir "${HOST_DIRS[i]}" 2>/dev/null || true
    done
    for fam in ip ip6; do
        for t in filter mangle nat; do
            nft list table "$fam" "$t" >/dev/null 2>&1 || continue
            # Rules that jump to the kubelet's chains, then the chains.
            for c in $(nft list table "$fam" "$t" | awk '$1 == "chain" { print $2 }'); do
                for h in $(nft -a list chain "$fam" "$t" "$c" 2>/dev/null |
                    awk '/jump KUBE-(FIREWALL|KUBELET-CANARY|IPTABLES-HINT)/ { print $NF }'); do
                    nft delete rule "$fam" "$t" "$c" handle "$h" 2>/dev/null || true
                done
            done
            for c in "${KUBE_CHAINS[@]}"; do
                if nft list chain "$fam" "$t" "$c" >/dev/null 2>&1; then
                    nft flush chain "$fam" "$t" "$c" || true
                    nft delete chain "$fam" "$t" "$c" || true
                fi
            done
            # A table the kubelet made (iptables-nft) goes if nothing is left in it.
            if ! existed_before "table $fam $t" &&
                ! nft -a list table "$fam" "$t" | grep '# handle' | grep -qvE '^\s*(table|chain) '; then
                nft delete table "$fam" "$t" || true
            fi
        done
    done
}

remove_cgroups() {
    local h
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        [[ -d $h${CGROUP_ROOT#/} ]] || continue
        find "$h${CGROUP_ROOT#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

stop_all() {
    [[ -d $STATE ]] || return 0
    stop_proc kubelet
    remove_pods
    stop_proc containerd
    kill_shims
    ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
    # Mounts under the state (the kubelet's volumes, containerd's rootfs and shm).
    local m
    for m in $(findmnt -rn -o TARGET | grep "^$STATE/" | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
    done
    remove_cgroups
    clean_host
    restore_sysctls
    remove_state
}

cmd_down() {
    local t0
    t0=$(now)
    if [[ ! -d $STATE ]]; then
        say "down (nothing was up)"
        return 0
    fi
    require_lock
    # The Node object goes with the node (the control plane may be down already).
    if [[ -x $KUBECTL ]] && bash "$CP" status >/dev/null 2>&1; then
        "$KUBECTL" --kubeconfig "$(cp_env KUBECONFIG)" delete node "$NODE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    fi
    stop_all
    say "down in $(elapsed "$t0") s"
}

cmd_status() {
    local c pid rc=0
    if (find_go && stamp_ok) 2>/dev/null; then
        echo "kubelet: $K8S_VERSION cached in $BIN_DIR"
    else
        echo "kubelet: $K8S_VERSION not built (scripts/k8s-realnode.sh build)"
    fi
    if [[ ! -d $STATE ]]; then
        echo "real node: down"
        return 3
    fi
    for c in containerd kubelet; do
        if pid=$(pid_alive "$c"); then echo "$c: running (pid $pid)"; else echo "$c: not running"; rc=1; fi
    done
    if node_ready; then echo "node $NODE: Ready"; else echo "node $NODE: NOT Ready"; rc=1; fi
    return $rc
}

cmd_env() {
    echo "MYCE_K8S_NODE_NAME=$NODE"
    echo "MYCE_K8S_NODE_IP=$NODE_IP"
    echo "MYCE_K8S_NODE_IMAGE=$IMAGE"
    echo "MYCE_K8S_NODE_TAINT=$TAINT_KEY"
    echo "MYCE_K8S_NODE_STATE_DIR=$STATE"
    echo "MYCE_K8S_NODE_KUBELET=$BIN_DIR/kubelet"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root"
    init_paths
    case ${1:-} in
    build) cmd_build && say "kubelet $K8S_VERSION: $BIN_DIR/kubelet (${BUILD_NOTE})" ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 build|up|down|status|env" >&2
        exit 2
        ;;
    esac
}

main "$@"
