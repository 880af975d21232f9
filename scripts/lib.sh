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
    [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=120 install -y -qq "${missing[@]}" >/dev/null
    fi
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
