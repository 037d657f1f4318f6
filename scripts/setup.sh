#!/usr/bin/env bash
# Machine setup for mycedrive (Debian 12, run as root).
#
#   1. installs the Debian packages the build and the tests need (only the
#      missing ones; no `apt-get update` when nothing is missing);
#   2. provides CRIU >= 4.2 with libcriu under $MYCE_CRIU_PREFIX
#      (default /opt/mycedrive/criu), built from Debian sid's source package,
#      and a pkg-config file `mycedrive-criu` in $MYCE_CRIU_PREFIX/lib/pkgconfig.
#
# Idempotent: a second run downloads nothing and takes a few seconds.
# Use the result with:  . scripts/env.sh   (sets PKG_CONFIG_PATH)
#
# Environment:
#   MYCE_CRIU_PREFIX  install prefix for CRIU      (default /opt/mycedrive/criu)
#   MYCE_CACHE_DIR    downloads and build trees    (default /var/cache/mycedrive)
set -euo pipefail

APT_PACKAGES=(
    # build and tests
    build-essential meson ninja-build pkg-config
    libmicrohttpd-dev libcjson-dev libsqlite3-dev sqlite3 libzstd-dev
    libxxhash-dev libcurl4-openssl-dev libcmocka-dev libnftables-dev libyaml-dev
    nftables iproute2 redis-server redis-tools mosquitto mosquitto-clients
    libmosquitto-dev libhiredis-dev memcached python3-pytest gnuplot-nox
    python3-yaml python3-jsonschema clang
    psmisc procps ca-certificates xz-utils dpkg-dev
    # the Kubernetes-mode test control plane (scripts/k8s-controlplane.sh;
    # it also needs Go >= the version in k8s/controlplane/go.mod, not from apt)
    openssl curl
    # a real kubelet node for it (scripts/k8s-realnode.sh): CNI plugins (the
    # runtime and the static busybox are added below unless they would
    # replace what the machine has)
    containernetworking-plugins
    # CRIU build dependencies (only `make criu` + libcriu: no asciidoc/xmlto)
    libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
    libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev libaio-dev
    uuid-dev python3-protobuf libdrm-dev
)
# Packages whose install may start a daemon through `service`.
DAEMON_PACKAGES=(redis-server mosquitto memcached)

# The real kubelet node's runtime and image (scripts/k8s-realnode.sh), only
# where installing them replaces nothing: Debian's containerd conflicts with
# Docker's containerd.io, busybox-static with busybox.  Without them the
# real-node tests skip and say why.
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
pkg_installed containerd.io || APT_PACKAGES+=(containerd runc)
pkg_installed busybox || APT_PACKAGES+=(busybox-static)

CRIU_MIN_VERSION=4.2
CRIU_PREFIX=${MYCE_CRIU_PREFIX:-/opt/mycedrive/criu}
CACHE_DIR=${MYCE_CACHE_DIR:-/var/cache/mycedrive}
LOG_DIR=$CACHE_DIR/logs
PC_NAME=mycedrive-criu
SID_SOURCES_LINE='deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main'

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

# run_logged LOGNAME CMD...: run CMD with its output in $LOG_DIR/LOGNAME.log;
# on failure show the end of the log and exit.
run_logged() {
    local log=$LOG_DIR/$1.log
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "setup: ERROR: command failed: $*" >&2
        echo "setup: ---- last lines of $log ----" >&2
        tail -n 40 "$log" >&2 || true
        exit 1
    fi
}

version_ge() { dpkg --compare-versions "$1" ge "$2"; }

# criu_version BINARY: print the version reported by `BINARY --version`.
criu_version() {
    local out
    out=$("$1" --version 2>/dev/null) || return 1
    out=$(sed -n 's/^Version: *//p' <<<"$out" | head -n 1)
    [ -n "$out" ] || return 1
    echo "$out"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo bash $0)"
mkdir -p "$CACHE_DIR" "$LOG_DIR"

# Serialize concurrent runs (e.g. two shells or CI on the same machine).
exec 9>"$CACHE_DIR/setup.lock"
flock 9

###############################################################################
# 1. apt packages
###############################################################################
setup_apt_packages() {
    local -A installed=()
    local pkg status missing=()
    while read -r pkg status; do
        [ "$status" = "install ok installed" ] && installed[$pkg]=1
    done < <(dpkg-query -W -f='${Package} ${Status}\n' "${APT_PACKAGES[@]}" 2>/dev/null || true)
    for pkg in "${APT_PACKAGES[@]}"; do
        [ -n "${installed[$pkg]:-}" ] || missing+=("$pkg")
    done

    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${#missing[@]} apt package(s): ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        run_logged apt-update apt-get update
        run_logged apt-install apt-get install -y --no-install-recommends "${missing[@]}"
        # Without systemd nothing should have started, but an init script run
        # through `service` may have: stop daemons this run installed.
        local d m
        for d in "${DAEMON_PACKAGES[@]}"; do
            for m in "${missing[@]}"; do
                [ "$m" = "$d" ] || continue
                if [ -e "/etc/init.d/$d" ] && service "$d" status >/dev/null 2>&1; then
                    service "$d" stop >/dev/null 2>&1 || true
                fi
            done
        done
    fi
    say "apt packages ok"
}

###############################################################################
# 2. CRIU >= 4.2 with libcriu
###############################################################################

# Write $CRIU_PREFIX/lib/pkgconfig/mycedrive-criu.pc.  $1 = version, $2 = Libs.
write_pc() {
    local pc=$CRIU_PREFIX/lib/pkgconfig/$PC_NAME.pc
    mkdir -p "${pc%/*}"
    cat >"$pc.tmp" <<EOF
prefix=$CRIU_PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include
criu_binary=$CRIU_PREFIX/sbin/criu

Name: $PC_NAME
Description: CRIU $1 and libcriu for mycedrive (installed by scripts/setup.sh)
Version: $1
Cflags: -I\${includedir}/criu -I\${includedir}
Libs: $2
EOF
    mv -f "$pc.tmp" "$pc"
}

# Fast check: is a usable CRIU already installed in the prefix?
criu_prefix_ok() {
    local v
    [ -f "$CRIU_PREFIX/lib/pkgconfig/$PC_NAME.pc" ] || return 1
    [ -x "$CRIU_PREFIX/sbin/criu" ] || return 1
    [ -f "$CRIU_PREFIX/include/criu/criu.h" ] || return 1
    v=$(criu_version "$CRIU_PREFIX/sbin/criu") || return 1
    version_ge "$v" "$CRIU_MIN_VERSION"
}

# Check that the installed CRIU works: `criu check` and a program built
# against the .pc that calls criu_check() through libcriu.
verify_criu_prefix() {
    local tmp rc=0
    if ! "$CRIU_PREFIX/sbin/criu" check >"$LOG_DIR/criu-check.log" 2>&1; then
        echo "setup: ---- output of $CRIU_PREFIX/sbin/criu check ----" >&2
        cat "$LOG_DIR/criu-check.log" >&2
        die "'$CRIU_PREFIX/sbin/criu check' failed: this kernel/machine cannot run CRIU"
    fi
    tmp=$(mktemp -d)
    cat >"$tmp/t.c" <<'EOF'
#include <criu/criu.h>
#include <criu.h>
int main(int argc, char **argv)
{
	(void)argc;
	if (criu_init_opts() < 0)
		return 2;
	criu_set_service_binary(argv[1]);
	return criu_check() == 0 ? 0 : 3;
}
EOF
    # shellcheck disable=SC2046
    if ! gcc -o "$tmp/t" "$tmp/t.c" \
            $(PKG_CONFIG_PATH="$CRIU_PREFIX/lib/pkgconfig" pkg-config --cflags --libs "$PC_NAME") \
            >"$LOG_DIR/libcriu-test.log" 2>&1; then
        rc=1
    elif ! "$tmp/t" "$CRIU_PREFIX/sbin/criu" >>"$LOG_DIR/libcriu-test.log" 2>&1; then
        rc=2
    fi
    rm -rf "$tmp"
    if [ "$rc" -ne 0 ]; then
        cat "$LOG_DIR/libcriu-test.log" >&2
        die "libcriu test program $([ "$rc" -eq 1 ] && echo "does not build" || echo "fails") against $PC_NAME.pc"
    fi
}

# Use a system CRIU if it is recent, works, and has libcriu with headers.
# Links it into the prefix so everything else looks the same.
try_system_criu() {
    local sys v d hdr="" lib="" libs multiarch
    sys=$(command -v criu 2>/dev/null) || return 1
    [ "$(readlink -f "$sys")" != "$(readlink -f "$CRIU_PREFIX/sbin/criu" 2>/dev/null || true)" ] || return 1
    v=$(criu_version "$sys") || return 1
    version_ge "$v" "$CRIU_MIN_VERSION" || return 1
    "$sys" check >/dev/null 2>&1 || return 1
    for d in /usr/include/criu /usr/local/include/criu; do
        if [ -f "$d/criu.h" ] && [ -f "$d/version.h" ] && [ -f "$d/rpc.pb-c.h" ]; then
            hdr=$d; break
        fi
    done
    [ -n "$hdr" ] || return 1
    multiarch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
    for d in "/usr/lib/$multiarch" /usr/lib /usr/local/lib /usr/lib64; do
        if [ -f "$d/libcriu.a" ]; then lib=$d/libcriu.a; break; fi
        if [ -e "$d/libcriu.so" ]; then lib=$d/libcriu.so; break; fi
    done
    [ -n "$lib" ] || return 1

    mkdir -p "$CRIU_PREFIX/sbin" "$CRIU_PREFIX/lib" "$CRIU_PREFIX/include/criu"
    rm -f "$CRIU_PREFIX/lib/pkgconfig/$PC_NAME.pc"
    ln -sfn "$sys" "$CRIU_PREFIX/sbin/criu"
    for f in criu.h version.h rpc.pb-c.h; do ln -sfn "$hdr/$f" "$CRIU_PREFIX/include/criu/$f"; done
    if [ "${lib##*.}" = a ]; then
        ln -sfn "$lib" "$CRIU_PREFIX/lib/libcriu.a"
        libs="\${libdir}/libcriu.a -lprotobuf-c"
    else
        libs="-L${lib%/*} -lcriu"
    fi
    write_pc "$v" "$libs"
    CRIU_SOURCE="system $sys"
}

# Parse and check a downloaded .dsc; sets DSC_VERSION, UPSTREAM_VERSION, ORIG.
check_dsc() {
    local dsc=$1 dir sum name actual
    dir=$(dirname "$dsc")
    DSC_VERSION=$(sed -n 's/^Version: *//p' "$dsc" | head -n 1)
    [ -n "$DSC_VERSION" ] || { echo "no Version field in $dsc" >&2; return 1; }
    UPSTREAM_VERSION=${DSC_VERSION#*:}
    UPSTREAM_VERSION=${UPSTREAM_VERSION%-*}
    version_ge "$UPSTREAM_VERSION" "$CRIU_MIN_VERSION" || {
        echo "criu source version $DSC_VERSION is older than $CRIU_MIN_VERSION" >&2; return 1; }
    read -r sum name < <(awk '/^Checksums-Sha256:/ { f = 1; next }
                             /^[^ ]/ { f = 0 }
                             f && $3 ~ /\.orig\.tar\.(xz|gz|bz2)$/ { print $1, $3; exit }' "$dsc") || true
    [ -n "${sum:-}" ] && [ -n "${name:-}" ] || {
        echo "no .orig.tar.* in Checksums-Sha256 of $dsc" >&2; return 1; }
    ORIG=$dir/$name
    [ -f "$ORIG" ] || { echo "missing $ORIG" >&2; return 1; }
    actual=$(sha256sum "$ORIG" | cut -d' ' -f1)
    if [ "$actual" != "$sum" ]; then
        echo "SHA-256 MISMATCH for $ORIG: expected $sum (from $dsc), got $actual" >&2
        return 1
    fi
}

# Find the downloaded .dsc in DIR (exactly one expected).
find_dsc() {
    local dscs=("$1"/criu_*.dsc)
    [ -f "${dscs[0]}" ] || return 1
    [ "${#dscs[@]}" -eq 1 ] || { echo "several .dsc files in $1" >&2; return 1; }
    echo "${dscs[0]}"
}

# Download (or reuse the cached) Debian sid source package of criu.
fetch_criu_source() {
    local aptdir=$CACHE_DIR/apt-sid src=$CACHE_DIR/criu-src dsc
    if dsc=$(find_dsc "$src" 2>/dev/null) && check_dsc "$dsc" 2>/dev/null; then
        return 0
    fi
    [ ! -d "$src" ] || echo "setup: cached criu source in $src is unusable; downloading it again" >&2
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/sources.list.d"
    echo "$SID_SOURCES_LINE" >"$aptdir/sources.list"
    local apt_opts=(
        -o "Dir::Etc::SourceList=$aptdir/sources.list"
        -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
        -o "Dir::State::Lists=$aptdir/lists"
        -o "Dir::Cache=$aptdir/cache"
        -o "Dir::Cache::pkgcache="
        -o "Dir::Cache::srcpkgcache="
        -o "APT::Sandbox::User=root"
        -o "Acquire::Languages=none"
    )
    run_logged apt-sid-update apt-get "${apt_opts[@]}" update
    rm -rf "$src.tmp"
    mkdir -p "$src.tmp"
    # The .debian.tar.xz answers 404 on this mirror, so apt exits non-zero:
    # tolerate it; only the .dsc and the .orig tarball matter.
    (cd "$src.tmp" && apt-get "${apt_opts[@]}" source --download-only --only-source criu) \
        >"$LOG_DIR/apt-sid-source.log" 2>&1 || true
    if ! dsc=$(find_dsc "$src.tmp"); then
        tail -n 40 "$LOG_DIR/apt-sid-source.log" >&2
        die "could not download the criu source package from Debian sid (log: $LOG_DIR/apt-sid-source.log)"
    fi
    check_dsc "$dsc" || die "downloaded criu source package is not usable (see above)"
    # Keep only the .dsc and the verified orig tarball.
    find "$src.tmp" -maxdepth 1 -type f ! -name "${dsc##*/}" ! -name "${ORIG##*/}" -delete
    rm -rf "$src"
    mv "$src.tmp" "$src"
    dsc=$(find_dsc "$src")
    check_dsc "$dsc" || die "criu source cache $src is inconsistent"
}

# Build criu and libcriu from the verified orig tarball ($ORIG).
build_criu() {
    local bdir=$CACHE_DIR/criu-build/criu-$UPSTREAM_VERSION
    BUILD_DIR=$bdir
    if [ ! -f "$bdir/.mycedrive-extracted" ] || [ "$(cat "$bdir/.mycedrive-extracted")" != "${ORIG##*/}" ]; then
        rm -rf "$bdir"
        mkdir -p "$bdir"
        tar -xf "$ORIG" -C "$bdir" --strip-components=1 || die "cannot extract $ORIG"
        echo "${ORIG##*/}" >"$bdir/.mycedrive-extracted"
    fi
    # Outer make variables must not leak into CRIU's build.
    run_logged criu-build env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS \
        make -C "$bdir" -j"$(nproc)" criu
    # Not `make lib` (it also builds the python bindings), and -j1: with -j
    # both targets relink lib/c/built-in.o at once and libcriu.a can end up
    # holding a truncated object.
    run_logged criu-build-lib env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS \
        make -C "$bdir" -j1 lib/c/libcriu.so lib/c/libcriu.a
    local sym syms
    syms=$(nm "$bdir/lib/c/libcriu.a" 2>/dev/null || true)
    for sym in criu_init_opts criu_check criu_req__pack; do
        if ! grep -q " T $sym\$" <<<"$syms"; then
            rm -f "$bdir/lib/c/libcriu.a" "$bdir/lib/c/libcriu.so" "$bdir/lib/c/built-in.o"
            die "$bdir/lib/c/libcriu.a lacks $sym (removed it; run setup again)"
        fi
    done
}

install_criu() {
    local b=$BUILD_DIR p=$CRIU_PREFIX so_major so_minor v f
    so_major=$(sed -n 's/^CRIU_SO_VERSION_MAJOR[[:space:]]*:=[[:space:]]*//p' "$b/Makefile.versions")
    so_minor=$(sed -n 's/^CRIU_SO_VERSION_MINOR[[:space:]]*:=[[:space:]]*//p' "$b/Makefile.versions")
    [ -n "$so_major" ] && [ -n "$so_minor" ] || die "cannot read libcriu soname version from $b/Makefile.versions"
    v=$(criu_version "$b/criu/criu") || die "built $b/criu/criu does not report a version"
    version_ge "$v" "$CRIU_MIN_VERSION" || die "built criu reports version $v < $CRIU_MIN_VERSION"

    # The .pc marks a complete install: remove it first, write it last.
    rm -f "$p/lib/pkgconfig/$PC_NAME.pc"
    mkdir -p "$p/sbin" "$p/lib/pkgconfig" "$p/include/criu"
    rm -f "$p/sbin/criu" "$p/lib/libcriu.a" "$p"/lib/libcriu.so*
    install -m 755 "$b/criu/criu" "$p/sbin/criu"
    install -m 644 "$b/lib/c/libcriu.a" "$p/lib/libcriu.a"
    install -m 755 "$b/lib/c/libcriu.so" "$p/lib/libcriu.so.$so_major.$so_minor"
    ln -sfn "libcriu.so.$so_major.$so_minor" "$p/lib/libcriu.so.$so_major"
    ln -sfn "libcriu.so.$so_major.$so_minor" "$p/lib/libcriu.so"
    # criu.h includes "version.h" and "rpc.pb-c.h" (same directory).
    for f in lib/c/criu.h criu/include/version.h images/rpc.pb-c.h images/rpc.proto; do
        rm -f "$p/include/criu/${f##*/}"
        install -m 644 "$b/$f" "$p/include/criu/${f##*/}"
    done
    write_pc "$v" "\${libdir}/libcriu.a -lprotobuf-c"
    CRIU_SOURCE="built from Debian sid source $DSC_VERSION"
}

setup_criu() {
    CRIU_SOURCE="already installed"
    if ! criu_prefix_ok; then
        if ! try_system_criu; then
            fetch_criu_source
            build_criu
            install_criu
        fi
        criu_prefix_ok || die "CRIU install in $CRIU_PREFIX is incomplete"
    fi
    verify_criu_prefix
    say "criu $(criu_version "$CRIU_PREFIX/sbin/criu") at $CRIU_PREFIX ok ($CRIU_SOURCE)"
}

setup_apt_packages
setup_criu
