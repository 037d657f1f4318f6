#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for mycedrive's Kubernetes-mode
# tests: etcd, kube-apiserver, kube-controller-manager and kube-scheduler of
# the release pinned in k8s/controlplane/go.mod, built from the Go module proxy
# and cached outside the repository.  See docs/k8s-controlplane.md.
#
#   scripts/k8s-controlplane.sh build    build (or find cached) binaries
#   scripts/k8s-controlplane.sh up       build, then start everything; wait ready
#   scripts/k8s-controlplane.sh down     stop what `up` started; remove its state
#   scripts/k8s-controlplane.sh status   what runs, and whether it is ready
#   scripts/k8s-controlplane.sh env      print shell assignments (KUBECONFIG, bin dir)
#   scripts/k8s-controlplane.sh kubeconfig USER [GROUP...]
#                                        a client-certificate kubeconfig; prints its path
#
# Every command is idempotent.  `up` and `down` must run while the caller holds
# an exclusive flock on /run/lock/mycedrive-k8s.lock for its whole session, e.g.
#   flock /run/lock/mycedrive-k8s.lock bash -c \
#       'scripts/k8s-controlplane.sh up && ... ; scripts/k8s-controlplane.sh down'
# (tests/k8s/conftest.py takes it itself).  `up` refuses to run without it.
#
# Nothing here touches the embedded cluster (/run/mycedrive, myce0): state is
# in /run/mycedrive-k8s, processes listen on 127.0.0.1 only.
#
# Environment:
#   MYCE_CACHE_DIR      cache root (default /var/cache/mycedrive): binaries in
#                       $MYCE_CACHE_DIR/k8s/<version>/bin, Go caches in .../go
#   MYCE_GO             the go command (default: `go` in PATH, else /usr/local/go/bin/go)
#   MYCE_K8S_STATE_DIR  state directory (default /run/mycedrive-k8s)
#   MYCE_K8S_LOCK       the session lock (default /run/lock/mycedrive-k8s.lock)
#   MYCE_K8S_TIMEOUT    seconds to wait for each component to be ready (default 120)
#   MYCE_K8S_LAST_LOGS  where `down` (or a failed `up`) leaves the components' logs
#                       (default /tmp/mycedrive-k8s-last-logs)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE_DIR=$REPO/k8s/controlplane
CACHE_DIR=${MYCE_CACHE_DIR:-/var/cache/mycedrive}
STATE=${MYCE_K8S_STATE_DIR:-/run/mycedrive-k8s}
LOCK=${MYCE_K8S_LOCK:-/run/lock/mycedrive-k8s.lock}
TIMEOUT=${MYCE_K8S_TIMEOUT:-120}
LAST_LOGS=${MYCE_K8S_LAST_LOGS:-/tmp/mycedrive-k8s-last-logs}

# Loopback addresses and ports of this project (clear of the defaults 2379,
# 6443, 10257, 10259, so a real cluster on the machine does not collide).
HOST=127.0.0.1
ETCD_CLIENT_PORT=12379
ETCD_PEER_PORT=12380
APISERVER_PORT=16443
KCM_PORT=16257
SCHEDULER_PORT=16259
SERVICE_CIDR=10.96.0.0/24       # mycedrive's service range
SERVICE_APISERVER_IP=10.96.0.1  # first address of it: the `kubernetes` Service
# The address published for the `kubernetes` Service.  Endpoint validation
# rejects loopback addresses, so a documentation address (RFC 5737) that no
# one routes to is published; every client here talks to 127.0.0.1 directly.
ADVERTISE_ADDRESS=192.0.2.254

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
BINARIES=("${COMPONENTS[@]}" kubectl)

say() { echo "k8s-controlplane: $*"; }
die() { echo "k8s-controlplane: ERROR: $*" >&2; exit 1; }
# shellcheck source=k8s-procs.sh
. "$(dirname "${BASH_SOURCE[0]}")/k8s-procs.sh"
# A component of the control plane: its binary is $BIN_DIR/<name>.
start_component() { local name=$1; shift; start_proc "$name" "$BIN_DIR/$name" "$@"; }
stop_component() { stop_proc "$1"; }

# --- the pinned inputs -------------------------------------------------------

k8s_version() {
    local v
    v=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }
             $1 == "require" && $2 == "k8s.io/kubernetes" { print $3; exit }' "$MODULE_DIR/go.mod")
    [[ $v =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "cannot read the k8s.io/kubernetes version from $MODULE_DIR/go.mod"
    echo "$v"
}

BIN_DIR=
init_paths() {
    K8S_VERSION=$(k8s_version)
    VERSION_DIR=$CACHE_DIR/k8s/$K8S_VERSION
    BIN_DIR=$VERSION_DIR/bin
    STAMP=$VERSION_DIR/stamp
}

find_go() {
    if [[ -n ${MYCE_GO:-} ]]; then
        GO=$MYCE_GO
    elif command -v go >/dev/null 2>&1; then
        GO=$(command -v go)
    elif [[ -x /usr/local/go/bin/go ]]; then
        GO=/usr/local/go/bin/go
    else
        die "no Go toolchain: install Go >= $(go_needed) (Debian 12's golang package, 1.19, is too old) and put it in PATH or set MYCE_GO"
    fi
}

go_needed() { awk '$1 == "go" { print $2; exit }' "$MODULE_DIR/go.mod"; }

check_go_version() {
    local have need
    # GOTOOLCHAIN=local: report this toolchain, never fetch another one.
    have=$(GOTOOLCHAIN=local "$GO" env GOVERSION 2>/dev/null) || die "$GO does not run"
    have=${have#go}
    need=$(go_needed)
    dpkg --compare-versions "$have" ge "$need" ||
        die "$GO is Go $have; building Kubernetes $K8S_VERSION needs Go >= $need (Debian 12's golang package is too old: install a newer Go, e.g. in /usr/local/go)"
}

# The stamp: everything that decides what the binaries are.
inputs_digest() {
    {
        echo "k8s $K8S_VERSION"
        GOTOOLCHAIN=local "$GO" env GOVERSION
        echo "flags $(build_flags_text)"
        sha256sum "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum" | awk '{ print $1 }'
        find "$MODULE_DIR/cmd" -type f -name '*.go' -print0 | sort -z | xargs -0 sha256sum | awk '{ print $1 }'
    } | sha256sum | awk '{ print $1 }'
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

build_flags_text() { echo "CGO_ENABLED=0 -trimpath -mod=readonly -ldflags=$(ldflags)"; }

stamp_ok() {
    [[ -f $STAMP ]] || return 1
    [[ $(cat "$STAMP") == "$(inputs_digest)" ]] || return 1
    local b
    for b in "${BINARIES[@]}"; do [[ -x $BIN_DIR/$b ]] || return 1; done
}

# --- build -------------------------------------------------------------------

BUILD_NOTE=
cmd_build() {
    init_paths
    find_go
    check_go_version
    local t0 digest log tmp
    t0=$(now)
    if stamp_ok; then
        BUILD_NOTE="cached $K8S_VERSION"
        say "binaries of Kubernetes $K8S_VERSION are cached in $BIN_DIR (${BUILD_NOTE}, $(elapsed "$t0") s)"
        return 0
    fi
    mkdir -p "$VERSION_DIR" "$CACHE_DIR/go/mod" "$CACHE_DIR/go/build" "$CACHE_DIR/logs"
    # One build at a time per cache; a second caller waits, then finds it done.
    exec 8>"$VERSION_DIR/build.lock"
    flock 8
    if stamp_ok; then
        BUILD_NOTE="cached $K8S_VERSION"
        say "binaries of Kubernetes $K8S_VERSION were built meanwhile ($(elapsed "$t0") s)"
        exec 8>&-
        return 0
    fi
    digest=$(inputs_digest)
    log=$CACHE_DIR/logs/k8s-build-$K8S_VERSION.log
    tmp=$VERSION_DIR/bin.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp"
    say "building Kubernetes $K8S_VERSION and etcd with $("$GO" env GOVERSION) (GOPROXY=$("$GO" env GOPROXY)); log: $log"
    say "a cold build takes tens of minutes on 2 cores; later runs use the cache"
    # The module proxy and checksum database are those of `go env` (the
    # machine's configuration); only the caches are the project's own.
    # -mod=readonly: the committed go.sum is the pin, never rewritten here.
    if ! (cd "$MODULE_DIR" &&
          GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS='' \
          GOMODCACHE=$CACHE_DIR/go/mod GOCACHE=$CACHE_DIR/go/build \
          "$GO" build -trimpath -mod=readonly -buildvcs=false -ldflags="$(ldflags)" -o "$tmp/" \
              k8s.io/kubernetes/cmd/kube-apiserver \
              k8s.io/kubernetes/cmd/kube-controller-manager \
              k8s.io/kubernetes/cmd/kube-scheduler \
              k8s.io/kubernetes/cmd/kubectl \
              ./cmd/etcd) >"$log" 2>&1; then
        echo "k8s-controlplane: ERROR: go build failed; last lines of $log:" >&2
        tail -n 30 "$log" >&2
        rm -rf "$tmp"
        exit 1
    fi
    rm -rf "$BIN_DIR"
    mv "$tmp" "$BIN_DIR"
    echo "$digest" >"$STAMP.tmp"
    mv "$STAMP.tmp" "$STAMP"
    exec 8>&-
    BUILD_NOTE="built $K8S_VERSION in $(elapsed "$t0") s"
    say "$BUILD_NOTE: $(du -sh "$BIN_DIR" | cut -f1) in $BIN_DIR"
}

# --- the session lock --------------------------------------------------------

# Succeeds when a process holding an exclusive flock on $LOCK is this process
# or one of its ancestors (the caller's session), per /proc/locks.

require_lock() {
    lock_held_by_caller ||
        die "hold an exclusive flock on $LOCK for the whole session, e.g.: flock $LOCK bash -c '$0 up && <tests>; $0 down'"
}

# --- processes ---------------------------------------------------------------


# pid_alive NAME: the recorded process of NAME still runs (same PID, same
# start time, same executable), so a recycled PID is never taken for it.

# Field 22 of /proc/PID/stat (after the parenthesised command name).



# --- health ------------------------------------------------------------------

# probe URL CAFILE [TOKEN]: the endpoint answers 200 "ok".
probe() {
    local url=$1 ca=$2 token=${3:-}
    local args=(-sS --max-time 2 -o /dev/null -w '%{http_code}')
    [[ -n $ca ]] && args+=(--cacert "$ca")
    [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
    [[ $(curl "${args[@]}" "$url" 2>/dev/null) == 200 ]]
}

component_urls() {
    case $1 in
    etcd) echo "http://$HOST:$ETCD_CLIENT_PORT/livez http://$HOST:$ETCD_CLIENT_PORT/readyz" ;;
    kube-apiserver) echo "https://$HOST:$APISERVER_PORT/livez https://$HOST:$APISERVER_PORT/readyz" ;;
    kube-controller-manager) echo "https://$HOST:$KCM_PORT/healthz" ;;
    kube-scheduler) echo "https://$HOST:$SCHEDULER_PORT/livez https://$HOST:$SCHEDULER_PORT/readyz" ;;
    esac
}

component_ready() {
    local name=$1 url token=
    [[ -f $STATE/admin.token ]] && token=$(cat "$STATE/admin.token")
    for url in $(component_urls "$name"); do
        probe "$url" "$STATE/pki/ca.crt" "$token" || return 1
    done
}

# wait_ready NAME: poll its health endpoints until all answer ok; fail early
# if the process exits.
wait_ready() {
    local name=$1 deadline
    deadline=$(($(date +%s) + TIMEOUT))
    until component_ready "$name"; do
        if ! pid_alive "$name" >/dev/null; then
            echo "k8s-controlplane: ERROR: $name exited; last lines of $STATE/logs/$name.log:" >&2
            tail -n 30 "$STATE/logs/$name.log" >&2 || true
            return 1
        fi
        if (($(date +%s) >= deadline)); then
            echo "k8s-controlplane: ERROR: $name not ready after $TIMEOUT s ($(component_urls "$name")); last lines of its log:" >&2
            tail -n 30 "$STATE/logs/$name.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}

# --- certificates and kubeconfigs ----------------------------------------------

# cert NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA
# (by $CA_NAME.crt when CA_NAME is set, else ca.crt).
cert() {
    local name=$1 subj=$2 ext=$3 pki=$STATE/pki ca=${CA_NAME:-ca}
    openssl ecparam -genkey -name prime256v1 -noout -out "$pki/$name.key" 2>/dev/null
    openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
    printf '%b' "$ext" >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -CAcreateserial \
        -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
    local pki=$STATE/pki serving client
    mkdir -p "$pki"
    chmod 700 "$pki"
    openssl ecparam -genkey -name prime256v1 -noout -out "$pki/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=mycedrive-k8s-ca" -days 30 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$pki/ca.crt" 2>/dev/null
    serving='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n'
    client='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
    cert apiserver "/CN=kube-apiserver" \
        "${serving}subjectAltName=IP:$HOST,IP:$SERVICE_APISERVER_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    cert kube-controller-manager-serving "/CN=kube-controller-manager" "${serving}subjectAltName=IP:$HOST,DNS:localhost\n"
    cert kube-scheduler-serving "/CN=kube-scheduler" "${serving}subjectAltName=IP:$HOST,DNS:localhost\n"
    # The client identities RBAC's bootstrap policy knows.
    cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
    cert kube-scheduler "/CN=system:kube-scheduler" "$client"
    # The apiserver's client identity towards kubelets (logs, exec,
    # port-forward on a real node: scripts/k8s-realnode.sh).
    cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" "$client"
    # The aggregation layer's request-header authentication (front proxy):
    # its own CA, as kubeadm does.  The apiserver publishes it in
    # kube-system/extension-apiserver-authentication, where the
    # controller-manager and scheduler look for it.
    openssl ecparam -genkey -name prime256v1 -noout -out "$pki/front-proxy-ca.key" 2>/dev/null
    openssl req -x509 -new -key "$pki/front-proxy-ca.key" -subj "/CN=mycedrive-k8s-front-proxy-ca" -days 30 \
        -sha256 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$pki/front-proxy-ca.crt" 2>/dev/null
    CA_NAME=front-proxy-ca cert front-proxy-client "/CN=front-proxy-client" "$client"
    # Service-account tokens are signed with this key (RSA, what every
    # component and client library accepts).
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    # The admin: a static bearer token in system:masters.
    openssl rand -hex 32 >"$STATE/admin.token"
    chmod 600 "$STATE/admin.token"
    echo "$(cat "$STATE/admin.token"),mycedrive-admin,mycedrive-admin,system:masters" >"$pki/tokens.csv"
    chmod 600 "$pki/tokens.csv"
}

# kubeconfig FILE USER CREDENTIALS-YAML: CA data embedded, one context.
kubeconfig() {
    local file=$1 user=$2 creds=$3
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mycedrive-k8s
  cluster:
    server: https://$HOST:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$STATE/pki/ca.crt")
users:
- name: $user
  user:
$creds
contexts:
- name: $user@mycedrive-k8s
  context:
    cluster: mycedrive-k8s
    user: $user
current-context: $user@mycedrive-k8s
EOF
    chmod 600 "$file"
}

make_kubeconfigs() {
    local c
    kubeconfig "$STATE/admin.kubeconfig" mycedrive-admin "    token: $(cat "$STATE/admin.token")"
    for c in kube-controller-manager kube-scheduler; do
        kubeconfig "$STATE/$c.kubeconfig" "system:$c" \
            "    client-certificate-data: $(base64 -w0 "$STATE/pki/$c.crt")
    client-key-data: $(base64 -w0 "$STATE/pki/$c.key")"
    done
}

# --- up / down / status --------------------------------------------------------

all_ready() {
    local c
    for c in "${COMPONENTS[@]}"; do
        pid_alive "$c" >/dev/null || return 1
        component_ready "$c" || return 1
    done
}

ports_free() {
    local port busy=
    for port in $ETCD_CLIENT_PORT $ETCD_PEER_PORT $APISERVER_PORT $KCM_PORT $SCHEDULER_PORT; do
        if ss -Htln "sport = :$port" | grep -q .; then busy+=" $port"; fi
    done
    [[ -z $busy ]] || die "ports in use on this machine:$busy (another control plane? 'ss -tlnp' tells whose); nothing started"
}

cmd_up() {
    require_lock
    local t_all t0
    t_all=$(now)
    cmd_build
    if [[ -d $STATE ]] && all_ready; then
        say "already up and ready (build: $BUILD_NOTE); kubeconfig $STATE/admin.kubeconfig"
        return 0
    fi
    if [[ -d $STATE ]]; then
        say "found a partial control plane in $STATE: stopping it first"
        stop_all
    fi
    ports_free
    t0=$(now)
    mkdir -p "$STATE/pids" "$STATE/logs"
    chmod 700 "$STATE"
    # From here any failure (or a signal) stops whatever was started and
    # removes the state: nothing is left half up.
    trap 'rc=$?; stop_all; [[ $rc == 0 ]] || say "up failed (exit $rc): stopped what was started; logs in $LAST_LOGS"' EXIT
    trap 'say "interrupted: stopping what was started"; exit 130' INT TERM
    make_pki
    make_kubeconfigs
    local pki=$STATE/pki
    local k8s_common=(--v=1)

    start_component etcd \
        --name=mycedrive-k8s --data-dir="$STATE/etcd" \
        --listen-client-urls="http://$HOST:$ETCD_CLIENT_PORT" \
        --advertise-client-urls="http://$HOST:$ETCD_CLIENT_PORT" \
        --listen-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
        --initial-cluster="mycedrive-k8s=http://$HOST:$ETCD_PEER_PORT" \
        --initial-cluster-state=new --log-level=warn
    wait_ready etcd

    start_component kube-apiserver "${k8s_common[@]}" \
        --etcd-servers="http://$HOST:$ETCD_CLIENT_PORT" \
        --bind-address=$HOST --secure-port=$APISERVER_PORT --advertise-address=$ADVERTISE_ADDRESS \
        --cert-dir="$STATE/pki" \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --api-audiences=https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range=$SERVICE_CIDR \
        --authorization-mode=Node,RBAC --allow-privileged=true --profiling=false \
        --enable-admission-plugins=NodeRestriction \
        --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
        --requestheader-allowed-names=front-proxy-client \
        --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
        --requestheader-extra-headers-prefix=X-Remote-Extra- \
        --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key" \
        --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP,Hostname
    wait_ready kube-apiserver

    start_component kube-controller-manager "${k8s_common[@]}" \
        --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
        --bind-address=$HOST --secure-port=$KCM_PORT \
        --tls-cert-file="$pki/kube-controller-manager-serving.crt" \
        --tls-private-key-file="$pki/kube-controller-manager-serving.key" \
        --controllers='*' --use-service-account-credentials=true \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --service-cluster-ip-range=$SERVICE_CIDR \
        --flex-volume-plugin-dir="$STATE/flexvolume" \
        --leader-elect=false --profiling=false
    start_component kube-scheduler "${k8s_common[@]}" \
        --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
        --bind-address=$HOST --secure-port=$SCHEDULER_PORT \
        --tls-cert-file="$pki/kube-scheduler-serving.crt" \
        --tls-private-key-file="$pki/kube-scheduler-serving.key" \
        --leader-elect=false --profiling=false
    wait_ready kube-controller-manager
    wait_ready kube-scheduler
    trap - EXIT INT TERM
    say "up in $(elapsed "$t_all") s (build: $BUILD_NOTE; start to ready: $(elapsed "$t0") s); apiserver https://$HOST:$APISERVER_PORT; KUBECONFIG=$STATE/admin.kubeconfig"
}

stop_all() {
    local i
    [[ -d $STATE ]] || return 0
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        stop_component "${COMPONENTS[i]}"
    done
    remove_state
}

cmd_down() {
    local t0
    t0=$(now)
    if [[ ! -d $STATE ]]; then
        say "down (nothing was up)"
        return 0
    fi
    # Another session's control plane is not ours to stop.
    require_lock
    stop_all
    say "down in $(elapsed "$t0") s"
}

cmd_status() {
    init_paths
    local c pid rc=0
    if (find_go && stamp_ok) 2>/dev/null; then
        echo "binaries: Kubernetes $K8S_VERSION cached in $BIN_DIR"
    else
        echo "binaries: Kubernetes $K8S_VERSION not built (scripts/k8s-controlplane.sh build)"
    fi
    if [[ ! -d $STATE ]]; then
        echo "control plane: down"
        return 3
    fi
    for c in "${COMPONENTS[@]}"; do
        if pid=$(pid_alive "$c"); then
            if component_ready "$c"; then
                echo "$c: running (pid $pid), ready"
            else
                echo "$c: running (pid $pid), NOT ready"
                rc=1
            fi
        else
            echo "$c: not running"
            rc=1
        fi
    done
    echo "kubeconfig: $STATE/admin.kubeconfig"
    return $rc
}

cmd_env() {
    init_paths
    echo "KUBECONFIG=$STATE/admin.kubeconfig"
    echo "MYCE_K8S_BIN_DIR=$BIN_DIR"
    echo "MYCE_K8S_VERSION=$K8S_VERSION"
    echo "MYCE_K8S_STATE_DIR=$STATE"
}

# kubeconfig USER [GROUP...]: a client certificate for USER in GROUPs, signed
# by the control plane's CA, in a kubeconfig; prints its path.  For the
# Kubernetes-mode components under test, e.g. a node daemon as
# `system:node:node1` in `system:nodes` (then the Node authorizer and the
# NodeRestriction admission plugin treat it as that node's kubelet).
cmd_kubeconfig() {
    local user=${1:-} g subj file
    [[ $user =~ ^[A-Za-z0-9][A-Za-z0-9:._@-]{0,127}$ ]] ||
        die "kubeconfig: USER must be 1-128 of [A-Za-z0-9:._@-] (got '${user}'); usage: $0 kubeconfig USER [GROUP...]"
    shift
    subj="/CN=$user"
    for g in "$@"; do
        [[ $g =~ ^[A-Za-z0-9][A-Za-z0-9:._@-]{0,127}$ ]] || die "kubeconfig: GROUP must be 1-128 of [A-Za-z0-9:._@-] (got '$g')"
        subj+="/O=$g"
    done
    [[ -f $STATE/pki/ca.key ]] || die "kubeconfig: the control plane is not up ($STATE)"
    require_lock
    mkdir -p "$STATE/users"
    file=$STATE/users/${user//:/_}.kubeconfig
    (
        umask 077
        cert "users-${user//:/_}" "$subj" \
            'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
        kubeconfig "$file" "$user" \
            "    client-certificate-data: $(base64 -w0 "$STATE/pki/users-${user//:/_}.crt")
    client-key-data: $(base64 -w0 "$STATE/pki/users-${user//:/_}.key")"
    )
    echo "$file"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (state in /run, cache in /var/cache)"
    case ${1:-} in
    build) init_paths && cmd_build ;;
    up) init_paths && cmd_up ;;
    down) init_paths && cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    kubeconfig) shift && cmd_kubeconfig "$@" ;;
    *)
        echo "usage: $0 build|up|down|status|env|kubeconfig USER [GROUP...]" >&2
        exit 2
        ;;
    esac
}

main "$@"
