# Shared helpers for scripts/demo, scripts/test and the benchmarks.
# shellcheck shell=bash

PG_BIN=/usr/lib/postgresql/15/bin

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Install, from Debian's packages, whatever the build and the tests need and
# this machine lacks. Nothing is installed when everything is present.
ensure_packages() {
    local missing=()
    command -v protoc >/dev/null || missing+=(protobuf-compiler)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v etcdctl >/dev/null || missing+=(etcd-client)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v curl >/dev/null || missing+=(curl)
    # tests/dcs_abandoned.rs and scripts/bench-partition cut a node off with it.
    command -v iptables >/dev/null || missing+=(iptables)
    # tests/dcs_conformance.rs (zookeeper) starts a standalone server from its jar.
    [ -f /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
    [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=120 install -y -qq "${missing[@]}" >/dev/null
    fi
    # tests/metrics.rs: promtool checks GET /metrics and a real Prometheus
    # scrapes a cluster. Without its recommends (node exporter and friends).
    if ! command -v promtool >/dev/null; then
        log "installing prometheus"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
            --no-install-recommends prometheus >/dev/null
    fi
}

# Patroni's own patronictl, for the compatibility test (tests/patronictl.rs):
# a venv outside /root (mode 0700 there) with the exact release the test
# expects. Nothing happens when it is already installed.
PATRONI_VENV=/opt/patroni
PATRONI_VERSION=4.1.5
ensure_patronictl() {
    # kazoo: the zookeeper extra (tests/zookeeper_cluster.rs runs patronictl on ZooKeeper);
    # consul: the consul extra (py-consul).
    if [ -x "$PATRONI_VENV/bin/patronictl" ] &&
        "$PATRONI_VENV/bin/patronictl" version 2>/dev/null | grep -qx "patronictl version $PATRONI_VERSION" &&
        "$PATRONI_VENV/bin/python" -c 'import kazoo, consul' 2>/dev/null; then
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        log "installing python3-venv"
        $sudo apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=120 install -y -qq python3-venv >/dev/null
    fi
    log "installing patronictl $PATRONI_VERSION into $PATRONI_VENV"
    [ -x "$PATRONI_VENV/bin/pip" ] || $sudo python3 -m venv "$PATRONI_VENV"
    $sudo "$PATRONI_VENV/bin/pip" install -q --disable-pip-version-check \
        "patroni[etcd3,zookeeper,consul]==$PATRONI_VERSION" psycopg2-binary
}

# Patroni's daemon runs as the PostgreSQL user, and starts PostgreSQL from a
# child that multiprocessing re-executes with the venv's interpreter: that
# interpreter must be executable by that user. The patronictl venv above
# may be built on a python under /root (e.g. pyenv), where the child cannot
# start and Patroni waits for it forever; then the daemon runs from a second
# venv on Debian's python3. Sets PATRONI to the daemon's path. Used by
# scripts/bench-footprint, by tests/consul_emulator_fidelity.rs (Patroni
# on the Consul emulator: the consul extra), by tests/etcd2_cluster.rs (a
# mixed Patroni + pgpilot cluster on etcd v2: python-etcd, which the etcd3
# extra brings) and by the benchmarks' --dcs zookeeper (kazoo, the
# zookeeper extra).
PATRONI_DAEMON_VENV=/opt/patroni-daemon
ensure_patroni_daemon() {
    local venv
    for venv in "$PATRONI_VENV" "$PATRONI_DAEMON_VENV"; do
        # Through a shell: the check must exec the interpreter as the user
        # itself, as the child does (setpriv's own exec still may not).
        if "${AS_PG_USER[@]}" sh -c '"$0" --version' "$venv/bin/patroni" 2>/dev/null |
            grep -qx "patroni $PATRONI_VERSION" &&
            "$venv/bin/python" -c 'import consul, etcd, kazoo' 2>/dev/null; then
            PATRONI=$venv/bin/patroni
            return 0
        fi
    done
    log "installing Patroni $PATRONI_VERSION for the postgres user into $PATRONI_DAEMON_VENV"
    [ -x "$PATRONI_DAEMON_VENV/bin/pip" ] || /usr/bin/python3 -m venv "$PATRONI_DAEMON_VENV"
    "$PATRONI_DAEMON_VENV/bin/pip" install -q --disable-pip-version-check \
        "patroni[etcd3,consul,zookeeper]==$PATRONI_VERSION" psycopg2-binary
    PATRONI=$PATRONI_DAEMON_VENV/bin/patroni
}

# Prefix that runs a command as the unprivileged user PostgreSQL needs when
# we are root. setpriv execs the command itself (no wrapper process), so `$!`
# is the daemon's own pid and signals reach it.
if [ "$(id -u)" -eq 0 ]; then
    AS_PG_USER=(setpriv --reuid=postgres --regid=postgres --init-groups --)
else
    AS_PG_USER=()
fi

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}

# clean_orphan_shm USER: remove USER's System V shared memory segments that
# no process is attached to. A postmaster killed with SIGKILL leaves its
# small segment behind when the test then deletes its data directory (the
# next postmaster on that directory would have removed it); thousands of
# test runs on one machine exhaust the kernel's SHMMNI (4096) and every
# initdb then fails with "could not create shared memory segment: No space
# left on device". A running postmaster stays attached to its segment, so it
# is never removed.
clean_orphan_shm() {
    local user=$1 ids n
    command -v ipcs >/dev/null 2>&1 || return 0
    ids=$(ipcs -m | awk -v u="$user" 'NR > 3 && $3 == u && $6 == 0 { print $2 }')
    n=$(printf '%s\n' "$ids" | grep -c . || true)
    [ "$n" -gt 0 ] || return 0
    log "removing $n orphaned shared memory segments of $user (of SIGKILLed postmasters)"
    for id in $ids; do ipcrm -m "$id" 2>/dev/null || true; done
}
