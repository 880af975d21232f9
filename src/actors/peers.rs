//! Asking peers for their state during a leader race (`GET <api_url>`).

use std::time::Duration;

use serde_json::Value;

use crate::config::Tags;
use crate::ha::PeerReply;
use crate::ha::peers::Peer;
use crate::ha::{PeerStatus, PgRole};

/// One peer's `/patroni` answer; `reply: None` if it did not answer in time.
pub async fn fetch_peer(http: &reqwest::Client, p: &Peer, timeout: Duration) -> PeerStatus {
    let reply = match http.get(&p.api_url).timeout(timeout).send().await {
        Ok(resp) => resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| parse_reply(&v)),
        Err(_) => None,
    };
    PeerStatus {
        name: p.name.clone(),
        reply,
    }
}

/// Read the parts of a `/patroni` document a race needs. A node is a
/// primary if `xlog.location` is present or its role says so; a replica's
/// position is max(received, replayed).
pub fn parse_reply(v: &Value) -> Option<PeerReply> {
    let xlog = v.get("xlog");
    let location = xlog.and_then(|x| x.get("location")).and_then(Value::as_u64);
    let role_text = v.get("role").and_then(Value::as_str).unwrap_or_default();
    let primary = location.is_some() || role_text == "primary" || role_text == "master";
    let lsn = if primary {
        location
    } else {
        let rec = xlog
            .and_then(|x| x.get("received_location"))
            .and_then(Value::as_u64);
        let rep = xlog
            .and_then(|x| x.get("replayed_location"))
            .and_then(Value::as_u64);
        rec.max(rep)
    };
    let tags: Tags = v
        .get("tags")
        .cloned()
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_default();
    Some(PeerReply {
        role: if primary {
            PgRole::Primary
        } else {
            PgRole::Replica
        },
        running: v.get("state").and_then(Value::as_str) == Some("running"),
        lsn,
        timeline: v.get("timeline").and_then(Value::as_u64),
        tags,
        watchdog_failed: v.get("watchdog_failed").and_then(Value::as_bool) == Some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_reply() {
        let v: Value = serde_json::from_str(
            r#"{"state":"running","role":"replica","xlog":{"received_location":100,"replayed_location":90},"tags":{"nofailover":true}}"#,
        )
        .unwrap();
        let r = parse_reply(&v).unwrap();
        assert_eq!(r.role, PgRole::Replica);
        assert_eq!(r.lsn, Some(100));
        assert!(r.running);
        assert!(!r.tags.can_failover());
        assert!(!r.watchdog_failed);
    }

    #[test]
    fn watchdog_failed_peer_cannot_be_promoted() {
        let v: Value = serde_json::from_str(
            r#"{"state":"running","role":"replica","xlog":{"received_location":100},"watchdog_failed":true}"#,
        )
        .unwrap();
        let r = parse_reply(&v).unwrap();
        assert!(r.watchdog_failed);
        assert!(r.tags.can_failover());
        assert!(!r.can_promote());
    }

    #[test]
    fn primary_reply_by_location() {
        let v: Value =
            serde_json::from_str(r#"{"state":"running","role":"master","xlog":{"location":5}}"#)
                .unwrap();
        let r = parse_reply(&v).unwrap();
        assert_eq!(r.role, PgRole::Primary);
        assert_eq!(r.lsn, Some(5));
    }
}
