//! Health-check status codes (docs/rest-api.md, "Health checks
//! (GET/HEAD/OPTIONS)"): the dispatcher behind every GET path without its own
//! handler (and every HEAD/OPTIONS), plus `/liveness` and `/readiness`. Pure
//! functions of the elector's and the supervisor's answers and the query
//! string.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::status::{answering, paused, role_str, state_str, tags_json};
use crate::ha::PgRole;
use crate::messages::elector::HaState;
use crate::messages::supervisor::{PgState, PgStatus};

const OK: u16 = 200;
const UNAVAILABLE: u16 = 503;

pub use crate::api::lag::parse_lag;
pub use crate::config::parse_size;

/// The `lag` parameter when it is given and Patroni's parser cannot read
/// it (then no limit applies, as in Patroni): the caller logs it.
pub fn unparsable_lag(query: &BTreeMap<String, String>) -> Option<&str> {
    query
        .get("lag")
        .map(String::as_str)
        .filter(|v| parse_lag(v).is_none())
}

fn is_answering_replica(pg: &PgStatus) -> bool {
    answering(pg) && pg.facts.role == Some(PgRole::Replica)
}

/// The WAL receiver's position (`latest_end_lsn`); 0 when not a replica.
fn receiver_lsn(pg: &PgStatus) -> u64 {
    if is_answering_replica(pg) {
        pg.receive_lsn.unwrap_or(0)
    } else {
        0
    }
}

/// `xlog.replayed_location` of the status document, 0 when absent.
fn replayed_location(pg: &PgStatus) -> u64 {
    if is_answering_replica(pg) {
        pg.replay_lsn.unwrap_or(0)
    } else {
        0
    }
}

/// `xlog.received_location` of the status document, 0 when absent.
fn received_location(pg: &PgStatus) -> u64 {
    if is_answering_replica(pg) {
        pg.receive_lsn.or(pg.replay_lsn).unwrap_or(0)
    } else {
        0
    }
}

/// `replication_state` of the status document.
fn replication_state(pg: &PgStatus) -> Option<&str> {
    if is_answering_replica(pg) {
        pg.replication_state.as_deref()
    } else {
        None
    }
}

/// The leader's WAL position as this node knows it: the larger of the DCS
/// `status.optime` and what the WAL receiver last got.
fn leader_optime(ha: &HaState, pg: &PgStatus) -> u64 {
    ha.cluster
        .as_ref()
        .and_then(|c| c.status.optime)
        .unwrap_or(0)
        .max(receiver_lsn(pg))
}

/// Status code of a health-check path (any GET path without its own
/// handler, and every HEAD/OPTIONS request). Unknown paths give 503.
pub fn health_status(
    path: &str,
    query: &BTreeMap<String, String>,
    ha: &HaState,
    pg: &PgStatus,
) -> u16 {
    health_status_paused(path, query, ha, pg, paused(ha))
}

/// [`health_status`] with the pause flag given. The elector's state does not
/// (yet) carry the pause flag when the DCS view is gone, so the
/// "no cluster view and paused" row is only reachable through here.
pub(crate) fn health_status_paused(
    path: &str,
    query: &BTreeMap<String, String>,
    ha: &HaState,
    pg: &PgStatus,
    paused: bool,
) -> u16 {
    let path = if path == "/" || path.is_empty() {
        "/primary"
    } else {
        path
    };
    let role = role_str(pg);
    let running = state_str(pg) == PgState::Running.as_str();
    let cluster = ha.cluster.as_deref();

    // Patroni: an unparsable `lag` is no limit (`sys.maxsize`).
    let max_lag = query.get("lag").and_then(|v| parse_lag(v));
    let optime = leader_optime(ha, pg);
    let lagging = match max_lag {
        Some(lag) if optime != 0 => {
            i128::from(optime) > i128::from(replayed_location(pg)).saturating_add(lag)
        }
        _ => false,
    };
    let state_matches = query
        .get("replication_state")
        .is_none_or(|want| replication_state(pg) == Some(want.as_str()));
    let mut replica_ok =
        code(!ha.tags.noloadbalance && !lagging && role == "replica" && running && state_matches);

    let (leader_ok, primary_ok, standby_leader_ok) = if cluster.is_none() && paused {
        (
            code(role == "primary" || role == "standby_leader"),
            code(role == "primary"),
            code(role == "standby_leader"),
        )
    } else if ha.is_leader && cluster.is_some_and(crate::dcs::Cluster::is_standby_cluster) {
        // The standby leader (docs/ha.md §16): a leader, never a primary,
        // and not a replica to balance reads onto.
        replica_ok = UNAVAILABLE;
        (
            OK,
            UNAVAILABLE,
            code(role == "replica" || role == "standby_leader"),
        )
    } else if ha.is_leader {
        (OK, OK, UNAVAILABLE)
    } else {
        (UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)
    };

    let has = |s: &str| path.contains(s);
    let mut ignore_tags = false;
    let status = if has("standby_leader") || has("standby-leader") {
        ignore_tags = true;
        standby_leader_ok
    } else if has("leader") {
        ignore_tags = true;
        leader_ok
    } else if has("master") || has("primary") || has("read-write") {
        ignore_tags = true;
        primary_ok
    } else if has("replica") {
        replica_ok
    } else if has("read-only") && !has("sync") && !has("quorum") {
        if primary_ok == OK || standby_leader_ok == OK {
            OK
        } else {
            replica_ok
        }
    } else if has("health") {
        code(running)
    } else if let Some(c) = cluster {
        // docs/replication-modes.md §2: a replica the sync key lists while
        // a synchronous mode is on; the key lists only standbys PostgreSQL
        // confirmed as synchronous.
        let sync_role = (role == "replica").then(|| c.sync_role(&ha.name)).flatten();
        let is_sync = sync_role == Some("sync_standby");
        let is_quorum = sync_role == Some("quorum_standby");
        match path {
            "/sync" | "/synchronous" if is_sync => replica_ok,
            "/quorum" if is_quorum => replica_ok,
            "/async" | "/asynchronous" if !is_sync && !is_quorum => replica_ok,
            "/read-only-quorum" | "/read-only-sync" | "/read-only-synchronous" => {
                let standby_ok = if path == "/read-only-quorum" {
                    is_quorum
                } else {
                    is_sync
                };
                if primary_ok == OK || standby_leader_ok == OK {
                    OK
                } else if standby_ok {
                    replica_ok
                } else {
                    UNAVAILABLE
                }
            }
            _ => UNAVAILABLE,
        }
    } else {
        UNAVAILABLE
    };

    if !ignore_tags && status == OK && !tags_match(query, ha) {
        return UNAVAILABLE;
    }
    status
}

fn code(ok: bool) -> u16 {
    if ok { OK } else { UNAVAILABLE }
}

/// Every `tag_<key>=<value>` parameter names a tag this node has with that
/// value; non-string tag values compare as lower-cased text.
fn tags_match(query: &BTreeMap<String, String>, ha: &HaState) -> bool {
    let tags = tags_json(ha);
    query.iter().all(|(k, want)| {
        let Some(key) = k.strip_prefix("tag_") else {
            return true;
        };
        match tags.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => s == want,
            Some(other) => other.to_string().to_lowercase() == *want,
        }
    })
}

/// `GET /liveness`: 200 when paused or when the HA loop's next run is not
/// overdue by more than ttl (primary) or 2*ttl (anything else). Before the
/// first cycle is scheduled the loop counts as alive.
pub fn liveness_status(ha: &HaState, pg: &PgStatus, now: Instant) -> u16 {
    if paused(ha) {
        return OK;
    }
    let Some(due) = ha.next_cycle_due else {
        return OK;
    };
    let factor = if pg.facts.is_primary() { 1.0 } else { 2.0 };
    let threshold = Duration::try_from_secs_f64(ha.ttl_secs.max(0.0) * factor).unwrap_or_default();
    code(due + threshold > now)
}

/// `GET /readiness`: 200 for the leader; otherwise PostgreSQL must run,
/// stream, know the leader's position (from the DCS or its WAL receiver)
/// and lag no more than `?lag=` (default `maximum_lag_on_failover`),
/// measured at replay (`?mode=apply`, default) or receipt (`?mode=write`).
pub fn readiness_status(query: &BTreeMap<String, String>, ha: &HaState, pg: &PgStatus) -> u16 {
    if ha.is_leader {
        return OK;
    }
    if pg.state != PgState::Running {
        return UNAVAILABLE;
    }
    if replication_state(pg) != Some("streaming") {
        return UNAVAILABLE;
    }
    if ha.cluster.is_none() && receiver_lsn(pg) == 0 && !ha.failsafe_active {
        return UNAVAILABLE;
    }
    let location = if query.get("mode").map(String::as_str) == Some("write") {
        received_location(pg)
    } else {
        replayed_location(pg)
    };
    let lag = i128::from(leader_optime(ha, pg)) - i128::from(location);
    let max_lag = query
        .get("lag")
        .and_then(|v| parse_lag(v))
        .unwrap_or(i128::from(ha.maximum_lag_on_failover));
    code(lag <= max_lag)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::status::tests::{cluster, down, ha, primary, replica, row};
    use crate::dcs::Cluster;
    use crate::ha::DataDir;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn get(path: &str, ha: &HaState, pg: &PgStatus) -> u16 {
        health_status(path, &q(&[]), ha, pg)
    }

    /// Leader with PG primary, and non-leader with PG replica (streaming,
    /// replay 900, receive 1000, status.optime 1000).
    fn leader() -> (HaState, PgStatus) {
        (ha(true), primary())
    }
    fn follower() -> (HaState, PgStatus) {
        (ha(false), replica())
    }

    #[test]
    fn size_parsing() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size(" 16MB "), Some(16 << 20));
        assert_eq!(parse_size("16 MB"), Some(16 << 20));
        assert_eq!(parse_size("1kB"), Some(1024));
        assert_eq!(parse_size("10B"), Some(10));
        assert_eq!(parse_size("2GB"), Some(2 << 30));
        assert_eq!(parse_size("1TB"), Some(1 << 40));
        assert_eq!(parse_size("-1"), Some(-1));
        assert_eq!(parse_size("+5"), Some(5));
        assert_eq!(parse_size("1KB"), None, "units are case-sensitive");
        assert_eq!(parse_size("1.5MB"), None);
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("abc"), None);
        assert_eq!(parse_size("99999999999TB"), None, "overflow");
    }

    #[test]
    fn primary_aliases() {
        let (lh, lp) = leader();
        let (fh, fp) = follower();
        for p in ["/", "", "/primary", "/master", "/read-write", "/xprimaryx"] {
            assert_eq!(get(p, &lh, &lp), 200, "{p} leader");
            assert_eq!(get(p, &fh, &fp), 503, "{p} follower");
        }
    }

    #[test]
    fn primary_ok_follows_the_lock_not_pg() {
        // Lock held while PG still answers as a replica (promotion pending).
        assert_eq!(get("/primary", &ha(true), &replica()), 200);
        // PG answers as primary but without the lock.
        assert_eq!(get("/primary", &ha(false), &primary()), 503);
    }

    #[test]
    fn leader_row() {
        assert_eq!(get("/leader", &ha(true), &replica()), 200);
        assert_eq!(get("/leader", &ha(true), &primary()), 200);
        assert_eq!(get("/leader", &ha(false), &primary()), 503);
    }

    #[test]
    fn standby_leader_row() {
        // Normal cluster: never a standby leader.
        for p in ["/standby_leader", "/standby-leader"] {
            assert_eq!(get(p, &ha(true), &primary()), 503, "{p}");
            assert_eq!(get(p, &ha(false), &replica()), 503, "{p}");
        }
    }

    #[test]
    fn a_standby_clusters_leader_answers_standby_leader_and_leader_only() {
        let mut h = ha(true);
        let mut c = std::sync::Arc::unwrap_or_clone(h.cluster.take().unwrap());
        c.config = Some(crate::dcs::Versioned {
            value: json!({"standby_cluster": {"host": "10.9.9.9"}}),
            version: crate::dcs::Version::from_int(1),
        });
        h.cluster = Some(c.clone().into());
        let mut pg = replica();
        pg.follows_remote = true;
        assert_eq!(crate::api::status::role_str(&pg), "standby_leader");
        for (p, want) in [
            ("/standby-leader", 200),
            ("/standby_leader", 200),
            ("/leader", 200),
            ("/primary", 503),
            ("/", 503),
            ("/replica", 503),
            ("/read-only", 200),
        ] {
            assert_eq!(get(p, &h, &pg), want, "{p}");
        }
        // Its replicas: replicas.
        let mut f = ha(false);
        f.cluster = Some(c.into());
        assert_eq!(get("/replica", &f, &replica()), 200);
        assert_eq!(get("/standby-leader", &f, &replica()), 503);
    }

    #[test]
    fn replica_row() {
        let (fh, fp) = follower();
        let (lh, lp) = leader();
        assert_eq!(get("/replica", &fh, &fp), 200);
        assert_eq!(get("/replica", &lh, &lp), 503);
        // not running
        let dd = DataDir::Initialized {
            sysid: "1".into(),
            was_primary: false,
        };
        assert_eq!(
            get("/replica", &fh, &down(PgState::Stopped, dd.clone())),
            503
        );
        let mut unknown = down(PgState::Running, dd);
        unknown.facts.running = true;
        assert_eq!(get("/replica", &fh, &unknown), 503);
        // noloadbalance
        let mut nolb = ha(false);
        nolb.tags.noloadbalance = true;
        assert_eq!(get("/replica", &nolb, &fp), 503);
        assert_eq!(get("/read-only", &nolb, &fp), 503);
        assert_eq!(get("/async", &nolb, &fp), 503);
        // noloadbalance does not affect the primary checks
        let mut nolb_leader = ha(true);
        nolb_leader.tags.noloadbalance = true;
        assert_eq!(get("/primary", &nolb_leader, &lp), 200);
    }

    #[test]
    fn read_only_row() {
        assert_eq!(get("/read-only", &ha(true), &primary()), 200);
        assert_eq!(get("/read-only", &ha(false), &replica()), 200);
        assert_eq!(get("/read-only", &ha(false), &primary()), 503);
    }

    #[test]
    fn health_row() {
        assert_eq!(get("/health", &ha(true), &primary()), 200);
        assert_eq!(get("/health", &ha(false), &replica()), 200);
        let stopped = down(PgState::Stopped, DataDir::Empty);
        assert_eq!(get("/health", &ha(false), &stopped), 503);
    }

    #[test]
    fn substring_order() {
        let (fh, fp) = follower();
        let (lh, lp) = leader();
        // "leader" wins over "replica"; "primary" wins over "replica".
        assert_eq!(get("/replica-leader", &fh, &fp), 503);
        assert_eq!(get("/primary-replica", &fh, &fp), 503);
        assert_eq!(get("/primary-replica", &lh, &lp), 200);
        // "replica" wins over "health".
        assert_eq!(get("/replica_health", &lh, &lp), 503);
        // "standby_leader" wins over "leader".
        assert_eq!(get("/standby_leader", &lh, &lp), 503);
        // read-only with sync/quorum is not the read-only row.
        assert_eq!(get("/read-only-syncx", &lh, &lp), 503);
    }

    #[test]
    fn exact_paths() {
        let (fh, fp) = follower();
        let (lh, lp) = leader();
        for p in ["/sync", "/synchronous", "/quorum"] {
            assert_eq!(get(p, &fh, &fp), 503, "{p}: no sync standbys yet");
            assert_eq!(get(p, &lh, &lp), 503, "{p}");
        }
        for p in ["/async", "/asynchronous"] {
            assert_eq!(get(p, &fh, &fp), 200, "{p}");
            assert_eq!(get(p, &lh, &lp), 503, "{p}");
        }
        for p in [
            "/read-only-sync",
            "/read-only-synchronous",
            "/read-only-quorum",
        ] {
            assert_eq!(get(p, &lh, &lp), 200, "{p}");
            assert_eq!(get(p, &fh, &fp), 503, "{p}");
        }
        for p in [
            "/patroni",
            "/nonsense",
            "/liveness",
            "/readiness",
            "/async/",
        ] {
            assert_eq!(get(p, &fh, &fp), 503, "{p}");
            assert_eq!(get(p, &lh, &lp), 503, "{p}");
        }
    }

    /// docs/replication-modes.md §2: `/sync` and the others follow the
    /// sync key (the standbys PostgreSQL confirmed) and the mode.
    #[test]
    fn sync_paths_follow_the_sync_key() {
        let with = |config: &str, standbys: &str| {
            let mut h = ha(false);
            h.cluster = Some(
                Cluster::from_kvs(vec![
                    row("leader", "n2"),
                    row("config", config),
                    row(
                        "sync",
                        &format!(r#"{{"leader":"n2","quorum":0,"sync_standby":"{standbys}"}}"#),
                    ),
                ])
                .into(),
            );
            h
        };
        let p = replica();
        let listed = with(r#"{"synchronous_mode":true}"#, "n1");
        for (path, code) in [
            ("/sync", 200),
            ("/synchronous", 200),
            ("/read-only-sync", 200),
            ("/async", 503),
            ("/asynchronous", 503),
            ("/quorum", 503),
            ("/read-only-quorum", 503),
        ] {
            assert_eq!(get(path, &listed, &p), code, "{path}");
        }
        let other = with(r#"{"synchronous_mode":true}"#, "n3");
        for (path, code) in [("/sync", 503), ("/read-only-sync", 503), ("/async", 200)] {
            assert_eq!(get(path, &other, &p), code, "{path}");
        }
        // Mode off: the key promises nothing.
        let off = with(r#"{"synchronous_mode":false}"#, "n1");
        assert_eq!(get("/sync", &off, &p), 503);
        assert_eq!(get("/async", &off, &p), 200);
        let quorum = with(r#"{"synchronous_mode":"quorum"}"#, "n1");
        for (path, code) in [
            ("/quorum", 200),
            ("/read-only-quorum", 200),
            ("/sync", 503),
            ("/async", 503),
        ] {
            assert_eq!(get(path, &quorum, &p), code, "{path}");
        }
        let d = crate::api::status::status_document(&listed, &p);
        assert_eq!(d["sync_standby"], true);
        assert!(
            crate::api::status::status_document(&other, &p)
                .get("sync_standby")
                .is_none()
        );
    }

    #[test]
    fn exact_paths_need_a_cluster_view() {
        let mut fh = ha(false);
        fh.cluster = None;
        assert_eq!(get("/async", &fh, &replica()), 503);
        assert_eq!(get("/read-only-sync", &fh, &replica()), 503);
        // substring rows still work
        assert_eq!(get("/replica", &fh, &replica()), 200);
    }

    #[test]
    fn lag_parameter() {
        let (fh, fp) = follower(); // optime 1000, replay 900 → 100 bytes behind
        let get_q = |qs: &[(&str, &str)], h: &HaState, p: &PgStatus| {
            health_status("/replica", &q(qs), h, p)
        };
        assert_eq!(get_q(&[("lag", "100")], &fh, &fp), 200);
        assert_eq!(get_q(&[("lag", "99")], &fh, &fp), 503);
        assert_eq!(get_q(&[("lag", "1kB")], &fh, &fp), 200);
        assert_eq!(
            get_q(&[("lag", "bogus")], &fh, &fp),
            200,
            "invalid = unlimited"
        );
        assert_eq!(get_q(&[("lag", "0")], &fh, &fp), 503);
        // the receiver's position counts when it is ahead of status.optime
        let mut ahead = replica();
        ahead.receive_lsn = Some(5000);
        assert_eq!(get_q(&[("lag", "1kB")], &fh, &ahead), 503);
        assert_eq!(get_q(&[("lag", "16MB")], &fh, &ahead), 200);
        // status.optime counts when it is ahead of the receiver
        let mut far = ha(false);
        far.cluster = Some(cluster("n2", Some(10 << 20)).into());
        assert_eq!(get_q(&[("lag", "1MB")], &far, &fp), 503);
        assert_eq!(get_q(&[("lag", "16MB")], &far, &fp), 200);
        // Patroni's forms: decimals, exponents, hex (10 MiB behind)
        assert_eq!(get_q(&[("lag", "1.5MB")], &far, &fp), 503);
        assert_eq!(get_q(&[("lag", "10.5MB")], &far, &fp), 200);
        assert_eq!(get_q(&[("lag", "1e3kB")], &far, &fp), 503);
        assert_eq!(get_q(&[("lag", "0x1000kB")], &far, &fp), 503);
        assert_eq!(get_q(&[("lag", "0x2800kB")], &far, &fp), 200);
        // no known leader position: never lagging
        let mut blind = ha(false);
        blind.cluster = Some(cluster("n2", None).into());
        let mut norecv = replica();
        norecv.receive_lsn = None;
        assert_eq!(get_q(&[("lag", "0")], &blind, &norecv), 200);
        // lag applies to /async and /read-only too
        assert_eq!(health_status("/async", &q(&[("lag", "0")]), &fh, &fp), 503);
        assert_eq!(
            health_status("/read-only", &q(&[("lag", "0")]), &fh, &fp),
            503
        );
        // but not to the primary
        let (lh, lp) = leader();
        assert_eq!(
            health_status("/primary", &q(&[("lag", "0")]), &lh, &lp),
            200
        );
    }

    #[test]
    fn replication_state_parameter() {
        let (fh, fp) = follower();
        let rs = |v: &str, p: &PgStatus| {
            health_status("/replica", &q(&[("replication_state", v)]), &fh, p)
        };
        assert_eq!(rs("streaming", &fp), 200);
        assert_eq!(rs("in archive recovery", &fp), 503);
        let mut archive = replica();
        archive.replication_state = Some("in archive recovery".into());
        assert_eq!(rs("in archive recovery", &archive), 200);
        assert_eq!(rs("streaming", &archive), 503);
        let mut none = replica();
        none.replication_state = None;
        assert_eq!(rs("streaming", &none), 503);
        assert_eq!(get("/replica", &fh, &none), 200, "no filter, no check");
    }

    #[test]
    fn tag_parameters() {
        let mut fh = ha(false);
        fh.tags.other.insert("zone".into(), json!("a"));
        fh.tags.other.insert("weight".into(), json!(1.5));
        fh.tags.other.insert("blue".into(), json!(true));
        fh.tags.nofailover = true;
        let fp = replica();
        let t = |path: &str, qs: &[(&str, &str)], h: &HaState, p: &PgStatus| {
            health_status(path, &q(qs), h, p)
        };
        assert_eq!(t("/replica", &[("tag_zone", "a")], &fh, &fp), 200);
        assert_eq!(t("/replica", &[("tag_zone", "b")], &fh, &fp), 503);
        assert_eq!(
            t("/replica", &[("tag_rack", "1")], &fh, &fp),
            503,
            "missing"
        );
        assert_eq!(t("/replica", &[("tag_weight", "1.5")], &fh, &fp), 200);
        assert_eq!(t("/replica", &[("tag_blue", "true")], &fh, &fp), 200);
        assert_eq!(t("/replica", &[("tag_blue", "True")], &fh, &fp), 503);
        assert_eq!(t("/replica", &[("tag_nofailover", "true")], &fh, &fp), 200);
        assert_eq!(
            t(
                "/replica",
                &[("tag_zone", "a"), ("tag_blue", "false")],
                &fh,
                &fp
            ),
            503
        );
        assert_eq!(t("/replica", &[("other", "x")], &fh, &fp), 200);
        // applied rows: read-only, health, async
        assert_eq!(t("/read-only", &[("tag_zone", "b")], &fh, &fp), 503);
        assert_eq!(t("/health", &[("tag_zone", "b")], &fh, &fp), 503);
        assert_eq!(t("/health", &[("tag_zone", "a")], &fh, &fp), 200);
        assert_eq!(t("/async", &[("tag_zone", "b")], &fh, &fp), 503);
        // ignored rows: leader, primary, standby-leader
        let mut lh = ha(true);
        lh.tags = fh.tags.clone();
        let lp = primary();
        assert_eq!(t("/primary", &[("tag_zone", "b")], &lh, &lp), 200);
        assert_eq!(t("/leader", &[("tag_zone", "b")], &lh, &lp), 200);
        // read-only on the primary is the applied row
        assert_eq!(t("/read-only", &[("tag_zone", "b")], &lh, &lp), 503);
        // a 503 stays 503
        assert_eq!(t("/replica", &[("tag_zone", "a")], &lh, &lp), 503);
    }

    #[test]
    fn paused_without_cluster_view() {
        let mut h = ha(false);
        h.cluster = None;
        let p = |path: &str, pg: &PgStatus| health_status_paused(path, &q(&[]), &h, pg, true);
        assert_eq!(p("/primary", &primary()), 200);
        assert_eq!(p("/leader", &primary()), 200);
        assert_eq!(p("/standby-leader", &primary()), 503);
        assert_eq!(p("/primary", &replica()), 503);
        assert_eq!(p("/leader", &replica()), 503);
        // not paused: no lock, no primary
        assert_eq!(
            health_status_paused("/primary", &q(&[]), &h, &primary(), false),
            503
        );
    }

    #[test]
    fn liveness() {
        let now = Instant::now();
        let mut h = ha(true);
        assert_eq!(liveness_status(&h, &primary(), now), 200, "not started yet");
        h.next_cycle_due = Some(now);
        assert_eq!(liveness_status(&h, &primary(), now), 200);
        // primary: threshold ttl (30 s)
        let late = now + Duration::from_secs(31);
        assert_eq!(liveness_status(&h, &primary(), late), 503);
        assert_eq!(
            liveness_status(&h, &primary(), now + Duration::from_secs(29)),
            200
        );
        // anything else: 2 * ttl
        assert_eq!(liveness_status(&h, &replica(), late), 200);
        assert_eq!(
            liveness_status(&h, &replica(), now + Duration::from_secs(61)),
            503
        );
        let stopped = down(PgState::Stopped, DataDir::Empty);
        assert_eq!(liveness_status(&h, &stopped, late), 200);
        // paused: always alive
        h.cluster = Some(Cluster::from_kvs(vec![row("config", r#"{"pause":true}"#)]).into());
        assert_eq!(
            liveness_status(&h, &primary(), now + Duration::from_secs(3600)),
            200
        );
    }

    #[test]
    fn readiness() {
        let none = q(&[]);
        // leader: always ready
        assert_eq!(readiness_status(&none, &ha(true), &replica()), 200);
        let stopped = down(PgState::Stopped, DataDir::Empty);
        assert_eq!(readiness_status(&none, &ha(true), &stopped), 200);
        // replica streaming within maximum_lag_on_failover (1 MiB)
        let fh = ha(false);
        assert_eq!(readiness_status(&none, &fh, &replica()), 200);
        assert_eq!(readiness_status(&none, &fh, &stopped), 503);
        let mut archive = replica();
        archive.replication_state = Some("in archive recovery".into());
        assert_eq!(readiness_status(&none, &fh, &archive), 503);
        // a primary without the lock does not stream
        assert_eq!(readiness_status(&none, &fh, &primary()), 503);
        // ?lag= (replay 900 vs optime 1000: 100 bytes)
        assert_eq!(
            readiness_status(&q(&[("lag", "100")]), &fh, &replica()),
            200
        );
        assert_eq!(readiness_status(&q(&[("lag", "99")]), &fh, &replica()), 503);
        assert_eq!(
            readiness_status(&q(&[("lag", "0.1kB")]), &fh, &replica()),
            200
        );
        assert_eq!(
            readiness_status(&q(&[("lag", "0x63")]), &fh, &replica()),
            503
        );
        assert_eq!(
            readiness_status(&q(&[("lag", "bad")]), &fh, &replica()),
            200,
            "invalid: default"
        );
        // ?mode=write measures the received position (1000: no lag)
        assert_eq!(
            readiness_status(&q(&[("lag", "0"), ("mode", "write")]), &fh, &replica()),
            200
        );
        assert_eq!(
            readiness_status(&q(&[("lag", "0"), ("mode", "apply")]), &fh, &replica()),
            503
        );
        // default threshold is maximum_lag_on_failover
        let mut far = ha(false);
        far.cluster = Some(cluster("n2", Some(2 << 20)).into());
        assert_eq!(readiness_status(&none, &far, &replica()), 503);
        far.maximum_lag_on_failover = 4 << 20;
        assert_eq!(readiness_status(&none, &far, &replica()), 200);
        // no cluster view: ready only with a known receiver position
        let mut blind = ha(false);
        blind.cluster = None;
        assert_eq!(readiness_status(&none, &blind, &replica()), 200);
        let mut norecv = replica();
        norecv.receive_lsn = None;
        assert_eq!(readiness_status(&none, &blind, &norecv), 503);
        // ... or while failsafe mode is active
        blind.failsafe_active = true;
        assert_eq!(readiness_status(&none, &blind, &norecv), 200);
    }
}
