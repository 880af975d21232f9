# Shared cluster plumbing for the benchmarks (scripts/bench-*): a private
# store (etcd by default) + 3 pgpilot nodes (release build) in a scratch
# directory, configured from conf/postgres{0,1,2}.yml with other ports and
# other dcs timing.
# shellcheck shell=bash
#
# A benchmark sources scripts/lib.sh and this file, then sets
#   BENCH                          scratch dir (deleted on exit unless BENCH_KEEP=1)
#   ETCD_CLIENT ETCD_PEER          host:port of its etcd (ZooKeeper serves on
#                                  ETCD_CLIENT's address instead, with --dcs zookeeper)
#   PG_PORT REST_PORT              arrays, one port per node
#   TTL LOOP_WAIT RETRY_TIMEOUT    bootstrap.dcs timing
# and optionally
#   DCS_EXTRA                      lines appended to bootstrap.dcs (indented by 4)
#   CONF_SED CONF_WANT             arrays: more sed expressions for each
#                                  postgres.yml, and strings that must then be in it
#   STATEMENT_TIMEOUT_MS [2000]    for psql_at; 0 = none
#   bench_cleanup_hook             a function; cleanup runs it first
#   NODE_USER                      array: run node i's daemon (and PostgreSQL) as
#                                  OS user NODE_USER[i] (root only; else AS_PG_USER)
#   BENCH_BUILD [1]                0 = no cargo build, use the binaries as they are
#   BENCH_PROFILE [release]        debug = the debug binaries (target/debug), e.g. on
#                                  a machine where a release build is not wanted;
#                                  daemon CPU and RSS figures then are not pgpilot's
#   DCS [etcd]                     the store, from `--dcs` (bench_parse_dcs "$@"):
#                                  etcd (v3, the nodes' etcd3 section), etcd2 (etcd's
#                                  v2 API, Patroni's `etcd` section; etcd runs with
#                                  --enable-v2) or zookeeper (Debian's ZooKeeper,
#                                  standalone; the nodes get a `zookeeper` section)
# then calls, in order:
#   bench_setup       packages, release build, free ports, scratch dir, traps,
#                     configs, PG_PASSWORD
#   bench_start_dcs   (bench_start_etcd for scripts that only run on etcd)
#   bench_start_nodes SECONDS      starts the daemons, waits for a healthy cluster

ROOT=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
NODES=(0 1 2)
DCS_EXTRA=${DCS_EXTRA:-}
STATEMENT_TIMEOUT_MS=${STATEMENT_TIMEOUT_MS:-2000}
CONF_SED=()
CONF_WANT=()
NODE_USER=()
DCS=${DCS:-etcd}
BENCH_PROFILE=${BENCH_PROFILE:-release}

# bench_parse_dcs "$@": `--dcs etcd|etcd2|zookeeper` (the only argument the
# benchmarks take); sets DCS.
bench_parse_dcs() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dcs) [ $# -ge 2 ] || die "--dcs needs etcd, etcd2 or zookeeper"; DCS=$2; shift 2 ;;
            --dcs=*) DCS=${1#--dcs=}; shift ;;
            *) die "usage: $0 [--dcs etcd|etcd2|zookeeper]" ;;
        esac
    done
    case "$DCS" in
        etcd3) DCS=etcd ;;
        etcd|etcd2|zookeeper) ;;
        *) die "--dcs $DCS: etcd, etcd2 or zookeeper" ;;
    esac
}

# The store's name for messages.
dcs_name() {
    case "$DCS" in
        etcd) echo etcd ;;
        etcd2) echo "etcd (v2 API)" ;;
        zookeeper) echo ZooKeeper ;;
    esac
}

node_dir() { echo "$BENCH/postgresql$1"; }
data_dir() { echo "$BENCH/postgresql$1/data"; }

now() { date +%s.%N; }
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# --- processes ---------------------------------------------------------------

pid_alive() { kill -0 "$1" 2>/dev/null; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_pid PID SIGNAL SECONDS: send SIGNAL, SIGKILL if still alive after SECONDS.
stop_pid() {
    local pid=$1 sig=$2 secs=$3
    pid_alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    local deadline=$(( $(date +%s) + secs ))
    while pid_alive "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

postmaster_pid() {
    local f; f="$(data_dir "$1")/postmaster.pid"
    [ -f "$f" ] && head -n 1 "$f"
}

daemon_pid() { cat "$BENCH/pgpilot$1.pid"; }

rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# The command prefix that runs node $1's daemon: its own OS user when
# NODE_USER is set (needs root), else scripts/lib.sh's AS_PG_USER.
as_node_user() {
    if [ ${#NODE_USER[@]} -gt 0 ]; then
        echo setpriv "--reuid=${NODE_USER[$1]}" "--regid=${NODE_USER[$1]}" --init-groups --
    else
        echo "${AS_PG_USER[@]}"
    fi
}

start_node() {
    local i=$1 dir prefix; dir=$(node_dir "$i")
    read -r -a prefix <<<"$(as_node_user "$i")"
    ( cd "$dir" && exec "${prefix[@]}" "$BENCH/bin/pgpilot" "$dir/postgres.yml" \
        </dev/null >>"$dir/pgpilot.log" 2>&1 ) &
    echo $! >"$BENCH/pgpilot$i.pid"
    disown $! 2>/dev/null || true # no "Killed" job notice when we kill -9 it
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    # A signal can fire inside a command whose output goes to /dev/null.
    exec 2>&3
    log "cleaning up"
    if declare -F bench_cleanup_hook >/dev/null; then bench_cleanup_hook; fi
    # Daemons first (they stop their PostgreSQL on SIGTERM), in parallel.
    local i pid pids=()
    for i in "${NODES[@]}"; do
        [ -f "$BENCH/pgpilot$i.pid" ] && pids+=("$(cat "$BENCH/pgpilot$i.pid")")
    done
    for pid in "${pids[@]}"; do pid_alive "$pid" && kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do stop_pid "$pid" TERM 60; done
    # Whatever postmaster is left over (daemon killed, or it did not stop it):
    # immediate shutdown, then SIGKILL.
    for i in "${NODES[@]}"; do
        local pm; pm=$(postmaster_pid "$i" 2>/dev/null)
        if [ -n "$pm" ] && [ "$(ps -o comm= -p "$pm" 2>/dev/null)" = postgres ]; then
            stop_pid "$pm" QUIT 20
        fi
    done
    # A fence whose daemon was killed and never adopted it again would
    # otherwise wait out its orphan timeout (max(60 s, 10 x ttl)).
    for i in "${NODES[@]}"; do
        local fp; fp=$(cat "$(data_dir "$i").fence/fence.pid" 2>/dev/null)
        if [ -n "$fp" ] && [ "$(ps -o comm= -p "$fp" 2>/dev/null)" = pgpilot ]; then
            stop_pid "$fp" TERM 5
        fi
    done
    [ -f "$BENCH/etcd.pid" ] && stop_pid "$(cat "$BENCH/etcd.pid")" TERM 20
    [ -f "$BENCH/zookeeper.pid" ] && stop_pid "$(cat "$BENCH/zookeeper.pid")" TERM 20
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $BENCH (logs: $BENCH/postgresql*/pgpilot.log)"
    else
        rm -rf "$BENCH"
    fi
    exit "$rc"
}

# --- cluster state -----------------------------------------------------------

# The bench ports lie below Linux's ephemeral range (32768-60999): a port in
# that range can be taken as the source port of an outgoing connection (a
# daemon's etcd connection, or a probe that connects the socket to itself)
# and then kept from the server about to bind it. Still, connect only to
# ports that have a listener (from /proc/net/tcp, state 0A = LISTEN; and
# tcp6: Java's sockets, ZooKeeper's among them, are IPv6 ones even on
# 127.0.0.1).
port_listening() {
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk -v p="$(printf ':%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }'
}

http_code() {
    if port_listening "$1"; then
        curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/$2" 2>/dev/null || true
    else
        echo 000
    fi
}

# GET /patroni of node $1 (empty when it does not answer).
patroni_json() {
    port_listening "${REST_PORT[$1]}" || return 1
    curl -s -m 2 "http://127.0.0.1:${REST_PORT[$1]}/patroni" 2>/dev/null
}

# Index of the node answering 200 on /primary (first one; empty if none).
primary_index() {
    local i
    for i in "${NODES[@]}"; do
        if [ "$(http_code "${REST_PORT[i]}" primary)" = 200 ]; then echo "$i"; return 0; fi
    done
    return 1
}

# One primary and two streaming replicas. Plain /replica answers 200 for any
# running replica; the replication_state filter requires it to stream.
cluster_healthy() {
    local i np=0 nr=0
    for i in "${NODES[@]}"; do
        if [ "$(http_code "${REST_PORT[i]}" primary)" = 200 ]; then np=$((np + 1)); fi
        if [ "$(http_code "${REST_PORT[i]}" 'replica?replication_state=streaming')" = 200 ]; then
            nr=$((nr + 1))
        fi
    done
    [ "$np" -eq 1 ] && [ "$nr" -eq 2 ]
}

# Node $1 reports itself a running replica that streams.
streaming_replica() {
    patroni_json "$1" |
        jq -e '.role == "replica" and .state == "running" and .replication_state == "streaming"' >/dev/null
}

# For wait_for: true once the cluster is healthy or a daemon has exited (then
# DIED names it), so a daemon that refuses its configuration fails fast.
DIED=""
healthy_or_died() {
    local i
    for i in "${NODES[@]}"; do
        if pid_gone "$(daemon_pid "$i")"; then DIED=$i; return 0; fi
    done
    cluster_healthy
}

# wait_healthy SECONDS WHAT
wait_healthy() {
    wait_for "$1" "$2 (logs: $BENCH/postgresql*/pgpilot.log)" healthy_or_died
    if [ -n "$DIED" ]; then
        tail -n 5 "$(node_dir "$DIED")/pgpilot.log" >&2
        die "daemon postgresql$DIED exited while waiting for $2"
    fi
}

# psql_at PORT SQL
psql_at() {
    port_listening "$1" || return 1
    local opts=""
    [ "$STATEMENT_TIMEOUT_MS" = 0 ] || opts="-c statement_timeout=$STATEMENT_TIMEOUT_MS"
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=1 PGOPTIONS=$opts \
        psql -X -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atqc "$2"
}

# pgbench_at PORT ARGS...: pgbench as the superuser against PORT.
pgbench_at() {
    local port=$1; shift
    PGPASSWORD=$PG_PASSWORD pgbench -h 127.0.0.1 -p "$port" -U postgres "$@" postgres
}

# crash_failover TABLE TAG: kill -9 the primary's daemon and postmaster
# together, then try `INSERT INTO TABLE VALUES (TAG)` on the other nodes
# until one accepts. Sets FAILOVER_SECS (kill -> accepted write), FAILOVER_OLD
# and FAILOVER_NEW (node indexes); waits until the killed processes are gone.
crash_failover() {
    local table=$1 tag=$2 p dpid pm i t0 t1 deadline others=()
    p=$(primary_index) || die "no primary before failover $tag"
    dpid=$(daemon_pid "$p")
    pm=$(postmaster_pid "$p") || die "no postmaster.pid for postgresql$p"
    for i in "${NODES[@]}"; do [ "$i" = "$p" ] || others+=("$i"); done

    log "failover $tag: kill -9 postgresql$p (daemon $dpid, postmaster $pm)"
    t0=$(now)
    kill -9 "$dpid" "$pm" 2>/dev/null || true
    deadline=$(( $(date +%s) + 3 * TTL + 120 ))
    FAILOVER_NEW=""
    while [ -z "$FAILOVER_NEW" ]; do
        for i in "${others[@]}"; do
            if psql_at "${PG_PORT[i]}" "INSERT INTO $table VALUES ($tag)" >/dev/null 2>&1; then
                t1=$(now)
                FAILOVER_NEW=$i
                break
            fi
        done
        if [ -z "$FAILOVER_NEW" ]; then
            [ "$(date +%s)" -lt "$deadline" ] || die "failover $tag: no node accepted a write in time"
            sleep 0.05
        fi
    done
    FAILOVER_OLD=$p
    FAILOVER_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    log "failover $tag: postgresql$FAILOVER_NEW accepted a write after $FAILOVER_SECS s"
    wait_for 30 "the killed daemon to exit" pid_gone "$dpid"
    wait_for 30 "the killed postmaster to exit" pid_gone "$pm"
}

# --- per-node writers ----------------------------------------------------------
# One writer per node, connected straight to that node's port, inserts
# (n, node, clock_timestamp()) into ACK_TABLE every ~50 ms and appends each
# acknowledged n with the local time of the acknowledgement to $BENCH/acks<node>.
# A replica refuses the insert, so only a writable primary acknowledges.

ACK_TABLE=acked_writes
WRITER_PIDS=()

create_ack_table() {
    psql_at "${PG_PORT[$1]}" "CREATE TABLE $ACK_TABLE(n bigint, node int, ts timestamptz, PRIMARY KEY (node, n))" \
        >/dev/null
}

writer() {
    local i=$1 n=0
    while :; do
        n=$((n + 1))
        if psql_at "${PG_PORT[i]}" "INSERT INTO $ACK_TABLE VALUES ($n, $i, clock_timestamp())" \
            >/dev/null 2>&1; then
            echo "$n $(now)" >>"$BENCH/acks$i"
        fi
        sleep 0.05
    done
}

start_writers() {
    local i
    for i in "${NODES[@]}"; do
        : >"$BENCH/acks$i"
        writer "$i" &
        WRITER_PIDS+=($!)
    done
}

stop_writers() {
    local pid
    for pid in "${WRITER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    WRITER_PIDS=()
}

acks_since() { awk -v t="$2" '$2 >= t' "$BENCH/acks$1" 2>/dev/null | wc -l; }

# wait_acks_on I SINCE: true once node I's writer has an ack after SINCE.
wait_acks_on() { [ "$(acks_since "$1" "$2")" -gt 0 ]; }

# analyse_acks LABEL T_START OLD: once the cluster is healthy again and the
# new primary's writer has acknowledged more writes, compare the writes
# acknowledged since T_START with the rows on the (new) primary. Appends
# lines to REPORT and sets
#   ACK_NEW     the primary at the end
#   ACK_TOTAL   writes acknowledged since T_START (all nodes)
#   ACK_LOST    of those, missing on the primary at the end
#   ACK_WINDOW  longest time two nodes both acknowledged writes: the largest
#               overlap of [first ack, last ack] of any two nodes (0.00 if none)
#   ACK_GAP     longest time without any acknowledged write
REPORT=()
analyse_acks() {
    local label=$1 ts=$2 old=$3 t_healthy te rows i acks summary
    wait_healthy 180 "a healthy cluster after $label"
    ACK_NEW=$(primary_index) || die "no primary after $label"
    t_healthy=$(now)
    wait_for 30 "writes on the new primary" wait_acks_on "$ACK_NEW" "$t_healthy"
    sleep 1
    te=$(now)
    rows="$BENCH/rows-$label" acks="$BENCH/acks-$label"
    psql_at "${PG_PORT[ACK_NEW]}" "SELECT node || ' ' || n FROM $ACK_TABLE" >"$rows" ||
        die "could not read $ACK_TABLE on postgresql$ACK_NEW"
    for i in "${NODES[@]}"; do
        awk -v i="$i" -v ts="$ts" -v te="$te" '$2 >= ts && $2 <= te { print i, $1, $2 }' \
            "$BENCH/acks$i" 2>/dev/null || true
    done | sort -k3,3n >"$acks"
    ACK_TOTAL=$(wc -l <"$acks")
    ACK_LOST=$(awk 'NR == FNR { have[$1 " " $2] = 1; next } !(($1 " " $2) in have)' "$rows" "$acks" | wc -l)
    ACK_WINDOW=$(awk '
        { if (!($1 in first)) first[$1] = $3; last[$1] = $3 }
        END {
            w = 0
            for (a in first) for (b in first) if (a < b) {
                lo = first[a] > first[b] ? first[a] : first[b]
                hi = last[a] < last[b] ? last[a] : last[b]
                if (hi - lo > w) w = hi - lo
            }
            printf "%.2f", w
        }' "$acks")
    ACK_GAP=$(awk -v ts="$ts" 'BEGIN { p = ts } { if ($3 - p > g) g = $3 - p; p = $3 } END { printf "%.2f", g }' "$acks")
    summary=$(awk -v ts="$ts" '
        { if (!($1 in first)) first[$1] = $3; last[$1] = $3; n[$1]++ }
        END { for (k in n) printf "postgresql%s %d acks at +%.2f..+%.2f s; ", k, n[k], first[k] - ts, last[k] - ts }' \
        "$acks")
    REPORT+=("  $label: old primary postgresql$old, new primary postgresql$ACK_NEW")
    REPORT+=("      acknowledged writes: $ACK_TOTAL, lost: $ACK_LOST   (target 0)")
    REPORT+=("      two nodes acknowledging writes: $ACK_WINDOW s   (target 0 s)")
    REPORT+=("      longest time without an acknowledged write: $ACK_GAP s")
    REPORT+=("      (${summary%; })")
    log "$label: $ACK_TOTAL acked, $ACK_LOST lost, window $ACK_WINDOW s, gap $ACK_GAP s (${summary%; })"
}

# --- setup -------------------------------------------------------------------

# BENCH_BUILD=0 skips `cargo build` and uses the binaries already in
# $TARGET_DIR/$BENCH_PROFILE (e.g. while the work tree does not build).
bench_build() {
    local profile_flag=(--release)
    case "$BENCH_PROFILE" in
        release) ;;
        debug) profile_flag=() ;;
        *) die "BENCH_PROFILE=$BENCH_PROFILE: release or debug" ;;
    esac
    if [ "${BENCH_BUILD:-1}" = 0 ]; then
        log "using the existing $BENCH_PROFILE binaries in $TARGET_DIR (BENCH_BUILD=0)"
    else
        log "building $BENCH_PROFILE binaries (target dir $TARGET_DIR)"
        cargo build "${profile_flag[@]}" --bins
    fi
    [ "$BENCH_PROFILE" = release ] ||
        log "note: debug binaries (BENCH_PROFILE=debug): pgpilot's CPU and memory figures are a debug build's"
    local b
    for b in pgpilot pgpilotctl; do
        [ -x "$TARGET_DIR/$BENCH_PROFILE/$b" ] || die "no $TARGET_DIR/$BENCH_PROFILE/$b after the build"
    done
}

# ZooKeeper's four-letter command $1 on ETCD_CLIENT's address (its answer;
# false when nothing listens).
zk_cmd() {
    local fd out
    port_listening "${ETCD_CLIENT#*:}" || return 1
    exec {fd}<>"/dev/tcp/${ETCD_CLIENT%:*}/${ETCD_CLIENT#*:}" || return 1
    printf '%s' "$1" >&"$fd"
    out=$(timeout 2 cat <&"$fd") || true
    exec {fd}>&-
    printf '%s\n' "$out"
}
# Serving: `srvr` shows its mode (`ruok` says imok before it serves).
zk_ok() { zk_cmd srvr 2>/dev/null | grep -q '^Mode: '; }

# The store answers on ETCD_CLIENT.
dcs_ok() {
    case "$DCS" in
        zookeeper) zk_ok ;;
        *) etcdctl --endpoints="$ETCD_CLIENT" endpoint health >/dev/null 2>&1 ;;
    esac
}

bench_check_free() {
    if dcs_ok; then
        die "something already serves $(dcs_name) on $ETCD_CLIENT (an earlier benchmark still running?)"
    fi
    local port
    for port in "${REST_PORT[@]}" "${PG_PORT[@]}" "${ETCD_CLIENT#*:}" "${ETCD_PEER#*:}"; do
        ! port_listening "$port" || die "port $port is already in use"
    done
}

# Node configs from conf/postgres$i.yml: bench ports, the store, timing, paths.
bench_write_configs() {
    local i dir want dcs_sed=() dcs_want=()
    case "$DCS" in
        etcd) dcs_want=("etcd3:" "host: $ETCD_CLIENT") ;;
        # Patroni's v2 section is `etcd`, with the same keys.
        etcd2)
            dcs_sed=(-e 's|^etcd3:$|etcd:|')
            dcs_want=("etcd:" "host: $ETCD_CLIENT")
            ;;
        zookeeper)
            dcs_sed=(-e 's|^etcd3:$|zookeeper:|' -e "s|^  host: $ETCD_CLIENT\$|  hosts: [$ETCD_CLIENT]|")
            dcs_want=("zookeeper:" "hosts: [$ETCD_CLIENT]")
            ;;
    esac
    for i in "${NODES[@]}"; do
        dir=$(node_dir "$i")
        install -d -m 755 "$dir"
        sed -e "s|127\.0\.0\.1:$((8008 + i))|127.0.0.1:${REST_PORT[i]}|g" \
            -e "s|127\.0\.0\.1:$((5432 + i))|127.0.0.1:${PG_PORT[i]}|g" \
            -e "s|^\(  host:\) 127\.0\.0\.1:2379\$|\1 $ETCD_CLIENT|" \
            -e "s|^\(    ttl:\) .*|\1 $TTL|" \
            -e "s|^\(    loop_wait:\) .*|\1 $LOOP_WAIT|" \
            -e "s|^\(    retry_timeout:\) .*|\1 $RETRY_TIMEOUT|" \
            -e "s|^\(  data_dir:\) .*|\1 $(data_dir "$i")|" \
            -e "s|^\(  pgpass:\) .*|\1 $dir/pgpass|" \
            -e "s|^\(    unix_socket_directories:\) .*|\1 '$dir'|" \
            "${CONF_SED[@]/#/-e}" \
            "conf/postgres$i.yml" | sed "${dcs_sed[@]}" -e '' >"$dir/postgres.yml"
        if [ -n "$DCS_EXTRA" ]; then
            # After the retry_timeout line, i.e. inside bootstrap.dcs.
            DCS_EXTRA=$DCS_EXTRA awk '{ print } /^    retry_timeout:/ { print ENVIRON["DCS_EXTRA"] }' \
                "$dir/postgres.yml" >"$dir/postgres.yml.new"
            mv "$dir/postgres.yml.new" "$dir/postgres.yml"
        fi
        chmod 644 "$dir/postgres.yml"
        # Every substitution must have happened.
        for want in "127.0.0.1:${REST_PORT[i]}" "127.0.0.1:${PG_PORT[i]}" "${dcs_want[@]}" \
            "ttl: $TTL" "loop_wait: $LOOP_WAIT" "retry_timeout: $RETRY_TIMEOUT" \
            "data_dir: $(data_dir "$i")" "pgpass: $dir/pgpass" "unix_socket_directories: '$dir'" \
            "${CONF_WANT[@]}"; do
            grep -qF "$want" "$dir/postgres.yml" || die "conf/postgres$i.yml: could not set '$want'"
        done
    done
    # The superuser password, from the YAML (postgresql.authentication.superuser).
    PG_PASSWORD=$(awk '/^    superuser:/ { s = 1; next } s && /^      password:/ { print $2; exit }' \
        "$(node_dir 0)/postgres.yml")
    [ -n "$PG_PASSWORD" ] || die "no superuser password in conf/postgres0.yml"
}

bench_setup() {
    ensure_packages
    command -v jq >/dev/null || die "jq is needed"
    bench_build
    bench_check_free
    rm -rf "$BENCH"
    install -d -m 755 "$BENCH" "$BENCH/bin"
    exec 3>&2
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    install -m 755 "$TARGET_DIR/$BENCH_PROFILE/pgpilot" "$TARGET_DIR/$BENCH_PROFILE/pgpilotctl" "$BENCH/bin/"
    bench_write_configs
    if [ ${#NODE_USER[@]} -gt 0 ]; then
        local i
        chown root:root "$BENCH"
        for i in "${NODES[@]}"; do chown -R "${NODE_USER[i]}:${NODE_USER[i]}" "$(node_dir "$i")"; done
    elif [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$BENCH"
    fi
}

bench_start_etcd() {
    local v2=()
    [ "$DCS" != etcd2 ] || v2=(--enable-v2=true)
    log "starting etcd on $ETCD_CLIENT${v2:+ (with the v2 API)}"
    etcd --name bench --data-dir "$BENCH/etcd" --logger=zap --log-outputs="$BENCH/etcd.log" \
        --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
        --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
        --initial-cluster "bench=http://$ETCD_PEER" --initial-cluster-state new "${v2[@]}" \
        </dev/null >"$BENCH/etcd.out" 2>&1 &
    echo $! >"$BENCH/etcd.pid"
    disown $! 2>/dev/null || true
    wait_for 30 "etcd" etcdctl --endpoints="$ETCD_CLIENT" endpoint health
}

# A standalone ZooKeeper from Debian's package on ETCD_CLIENT's address.
# tickTime 2 s: sessions of 4 to 40 s are granted (the benchmarks' ttl is
# 20 or 30 s). `mntr` and `srvr` answer for scripts/bench-footprint (packets
# received, the last zxid); no admin server.
bench_start_zookeeper() {
    log "starting ZooKeeper on $ETCD_CLIENT"
    install -d -m 755 "$BENCH/zookeeper/data"
    cat >"$BENCH/zookeeper/zoo.cfg" <<CFG
tickTime=2000
dataDir=$BENCH/zookeeper/data
clientPort=${ETCD_CLIENT#*:}
clientPortAddress=${ETCD_CLIENT%:*}
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,cons
CFG
    # The jar's manifest names no logging binding, so the server logs nothing;
    # slf4j-simple (libslf4j-java, installed with the package) gives its INFO
    # lines with their time, among them "Expiring session 0x..., timeout of
    # ...ms exceeded" (scripts/bench-partition reads it).
    local cp=/etc/zookeeper/conf:/usr/share/java/zookeeper.jar logopts=()
    if [ -f /usr/share/java/slf4j-simple.jar ]; then
        cp=$cp:/usr/share/java/slf4j-simple.jar
        logopts=(-Dorg.slf4j.simpleLogger.showDateTime=true
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ")
    fi
    java -Xmx256m -XX:+UseSerialGC -cp "$cp" "${logopts[@]}" \
        -Dzookeeper.log.dir="$BENCH/zookeeper" org.apache.zookeeper.server.ZooKeeperServerMain \
        "$BENCH/zookeeper/zoo.cfg" </dev/null >"$BENCH/zookeeper.out" 2>&1 &
    echo $! >"$BENCH/zookeeper.pid"
    disown $! 2>/dev/null || true
    wait_for 60 "ZooKeeper" zk_ok
}

# The store DCS names, fresh.
bench_start_dcs() {
    case "$DCS" in
        zookeeper) bench_start_zookeeper ;;
        *) bench_start_etcd ;;
    esac
}

# The store's pid file.
dcs_pidfile() {
    case "$DCS" in
        zookeeper) echo "$BENCH/zookeeper.pid" ;;
        *) echo "$BENCH/etcd.pid" ;;
    esac
}

# bench_start_nodes SECONDS: start the 3 daemons, wait for one primary and two
# streaming replicas and for psql on the primary; sets P to the primary.
bench_start_nodes() {
    local i
    log "starting 3 pgpilot nodes (ttl=$TTL loop_wait=$LOOP_WAIT retry_timeout=$RETRY_TIMEOUT)"
    for i in "${NODES[@]}"; do start_node "$i"; done
    wait_healthy "$1" "one primary and two streaming replicas"
    P=$(primary_index) || die "no primary"
    wait_for 30 "psql on the primary" psql_at "${PG_PORT[P]}" "SELECT 1"
}
