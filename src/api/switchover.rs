//! `POST /switchover`, `POST /failover`, `DELETE /switchover`
//! (docs/rest-api.md, "Switchover and failover"). Validation and the pre-checks
//! are pure functions; the handlers write the `failover` key, wake the HA loop
//! and poll the DCS for the outcome.

use std::time::{Duration, Instant};

use actix::Recipient;
use serde_json::{Map, Value};

use crate::dcs::{Cluster, Dcs, Failover, Member};
use crate::ha::iso8601::{self, TimeError};
use crate::messages::elector::Wake;

/// How often the outcome is polled. Patroni polls every second; a shorter
/// period answers sooner after a quick switchover.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Peers get as long as in a leader race to answer `GET /patroni`.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Switchover,
    Failover,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Switchover => "switchover",
            Kind::Failover => "failover",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Kind::Switchover => "Switchover",
            Kind::Failover => "Failover",
        }
    }
    fn done(self) -> &'static str {
        match self {
            Kind::Switchover => "switched over",
            Kind::Failover => "failed over",
        }
    }
}

/// A refusal: HTTP status and text.
pub type Refusal = (u16, String);

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub kind: Kind,
    pub leader: Option<String>,
    pub candidate: Option<String>,
    pub scheduled_at: Option<String>,
}

impl Request {
    /// The `failover` key value (the DCS field for the candidate is `member`).
    pub fn key_value(&self) -> String {
        let f = Failover {
            leader: self.leader.clone(),
            member: self.candidate.clone(),
            scheduled_at: self.scheduled_at.clone(),
        };
        serde_json::to_string(&f).unwrap_or_else(|_| "{}".into())
    }
}

fn field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Refusal> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err((400, format!("{key} must be a string"))),
    }
}

/// The checks that need only the request, no cluster state (docs/rest-api.md,
/// "Switchover and failover").
pub fn validate(kind: Kind, body: &[u8], now_unix: f64) -> Result<Request, Refusal> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|_| (400, "Invalid JSON".to_owned()))?
    };
    let Value::Object(obj) = v else {
        return Err((400, "Invalid JSON".into()));
    };
    let leader = field(&obj, "leader")?;
    let candidate = match field(&obj, "candidate")? {
        Some(c) => Some(c),
        None => field(&obj, "member")?,
    };
    let scheduled_at = field(&obj, "scheduled_at")?;
    if kind == Kind::Failover && candidate.is_none() {
        return Err((
            400,
            "Failover could be performed only to a specific candidate".into(),
        ));
    }
    if kind == Kind::Switchover && leader.is_none() {
        return Err((
            400,
            "Switchover could be performed only from a specific leader".into(),
        ));
    }
    if let Some(at) = &scheduled_at {
        if kind == Kind::Failover {
            return Err((400, "Failover can't be scheduled".into()));
        }
        match iso8601::parse(at) {
            Err(TimeError::NoTimezone) => {
                return Err((
                    400,
                    "Timezone information is mandatory for the scheduled switchover".into(),
                ));
            }
            Err(TimeError::Unparsable) => {
                return Err((
                    422,
                    "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601".into(),
                ));
            }
            Ok(t) if t < now_unix => {
                return Err((422, "Cannot schedule switchover in the past".into()));
            }
            Ok(_) => {}
        }
    }
    // A failover naming the leader is a switchover.
    let kind = if leader.is_some() {
        Kind::Switchover
    } else {
        kind
    };
    if leader.is_some() && leader == candidate {
        return Err((400, "Switchover target and source are the same".into()));
    }
    Ok(Request {
        kind,
        leader,
        candidate,
        scheduled_at,
    })
}

/// The checks of what the cluster says, before peers are asked. Answers the
/// members whose `/patroni` decides whether a good candidate exists.
pub fn precheck<'c>(req: &Request, cluster: &'c Cluster) -> Result<Vec<&'c Member>, Refusal> {
    let action = req.kind.name();
    // Pause mode (docs/ha.md §11): only an immediate switchover to a named
    // candidate (Patroni's texts).
    if crate::api::cluster::cluster_paused(cluster) {
        if req.scheduled_at.is_some() {
            return Err((400, "Can't schedule switchover in the paused state".into()));
        }
        if req.candidate.is_none() {
            return Err((
                400,
                "Switchover is possible only to a specific candidate in a paused state".into(),
            ));
        }
    }
    if let Some(l) = &req.leader
        && cluster.leader_name() != Some(l.as_str())
    {
        return Err((412, "leader name does not match".into()));
    }
    if let Some(f) = &cluster.failover {
        let when = f
            .value
            .scheduled_at
            .as_deref()
            .map(|t| format!(" (scheduled at {t})"))
            .unwrap_or_default();
        return Err((
            412,
            format!("{action} is not possible: another switchover is pending{when}"),
        ));
    }
    // docs/replication-modes.md §4 (Patroni's `is_failover_possible`
    // checks): with synchronous mode on (not quorum) a switchover goes to a
    // synchronous standby; a failover may name any member.
    let sync_mode = cluster.synchronous_mode() == crate::config::SyncMode::On;
    if sync_mode {
        let sync = cluster.sync_state();
        if let Some(c) = &req.candidate {
            if req.kind == Kind::Switchover && !sync.matches(c, false) {
                return Err((
                    412,
                    "candidate name does not match with sync_standby".into(),
                ));
            }
        } else {
            let members: Vec<&Member> = cluster
                .members
                .iter()
                .filter(|m| sync.matches(&m.name, false))
                .collect();
            if members.is_empty() {
                return Err((
                    412,
                    format!("{action} is not possible: can not find sync_standby"),
                ));
            }
            return Ok(members);
        }
    }
    if let Some(c) = &req.candidate {
        return match cluster.member(c) {
            Some(m) => Ok(vec![m]),
            None => Err((412, "candidate does not exists".into())),
        };
    }
    let members: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| cluster.leader_name() != Some(m.name.as_str()) && !m.data.api_url.is_empty())
        .collect();
    if members.is_empty() {
        return Err((
            412,
            format!("{action} is not possible: cluster does not have members except leader"),
        ));
    }
    Ok(members)
}

/// Why a member's `/patroni` answer rules it out as a candidate; `None` if
/// it can take over: it answered, may be promoted, runs, and streams.
pub fn limitation(status: Option<&Value>) -> Option<&'static str> {
    let Some(v) = status else {
        return Some("not reachable");
    };
    let tags = v.get("tags");
    if tags
        .and_then(|t| t.get("nofailover"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || tags
            .and_then(|t| t.get("failover_priority"))
            .and_then(Value::as_i64)
            .is_some_and(|p| p <= 0)
    {
        return Some("not allowed to promote");
    }
    if v.get("watchdog_failed").and_then(Value::as_bool) == Some(true) {
        return Some("not watchdog capable");
    }
    if v.get("state").and_then(Value::as_str) != Some("running") {
        return Some("not running");
    }
    if let Some(rs) = v.get("replication_state").and_then(Value::as_str)
        && rs != "streaming"
    {
        return Some("not streaming");
    }
    None
}

/// The answer once the leader changed (or not).
pub fn outcome(
    req: &Request,
    old_leader: Option<&str>,
    cluster: &Cluster,
) -> Option<(u16, String)> {
    match cluster.leader_name() {
        Some(new) if Some(new) != old_leader => {
            let text = match req.candidate.as_deref() {
                Some(c) if c != new => format!(
                    "{} to \"{new}\" instead of \"{c}\"",
                    capitalize(req.kind.done())
                ),
                _ => format!("Successfully {} to \"{new}\"", req.kind.done()),
            };
            Some((200, text))
        }
        _ if cluster.failover.is_none() => Some((503, format!("{} failed", req.kind.title()))),
        _ => None,
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

async fn fetch_status(http: &reqwest::Client, m: &Member) -> Option<Value> {
    let resp = http
        .get(&m.data.api_url)
        .timeout(PEER_TIMEOUT)
        .send()
        .await
        .ok()?;
    resp.json::<Value>().await.ok()
}

/// `POST /switchover` and `POST /failover`.
pub async fn post(
    kind: Kind,
    body: &[u8],
    dcs: &dyn Dcs,
    http: &reqwest::Client,
    wake: &Recipient<Wake>,
    loop_wait_secs: f64,
) -> Refusal {
    let req = match validate(kind, body, iso8601::now_unix()) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let cluster = match dcs.load_cluster_fresh().await {
        Ok(c) => c,
        Err(e) => return (503, format!("DCS is not accessible: {e}")),
    };
    let old_leader = cluster.leader_name().map(str::to_owned);
    let action = req.kind.name();
    let members = match precheck(&req, &cluster) {
        Ok(m) => m,
        Err(e) => return e,
    };
    if req.scheduled_at.is_none() {
        let statuses =
            futures_util::future::join_all(members.iter().map(|m| fetch_status(http, m))).await;
        let reasons: Vec<String> = members
            .iter()
            .zip(&statuses)
            .filter_map(|(m, s)| limitation(s.as_ref()).map(|why| format!("{}: {why}", m.name)))
            .collect();
        if reasons.len() == members.len() {
            tracing::info!(event = crate::events::SWITCHOVER_REFUSED, reasons = ?reasons);
            return (
                412,
                format!("{action} is not possible: no good candidates have been found"),
            );
        }
    }
    match dcs.set_failover_value(&req.key_value(), None).await {
        Ok(true) => {}
        _ => return (503, "failed to write failover key into DCS".into()),
    }
    tracing::info!(event = crate::events::SWITCHOVER_REQUESTED, kind = action, leader = ?req.leader,
                   candidate = ?req.candidate, scheduled_at = ?req.scheduled_at);
    wake.do_send(Wake("switchover request"));
    if req.scheduled_at.is_some() {
        return (202, format!("{} scheduled", req.kind.title()));
    }
    let limit = 2.0 * loop_wait_secs.max(10.0);
    let deadline = Instant::now() + Duration::from_secs_f64(limit);
    while Instant::now() < deadline {
        tokio::time::sleep(POLL_EVERY).await;
        if let Ok(c) = dcs.load_cluster_fresh().await
            && let Some(answer) = outcome(&req, old_leader.as_deref(), &c)
        {
            return answer;
        }
    }
    (
        503,
        format!(
            "{} status unknown after {limit:.0} seconds; operation may still be in progress",
            req.kind.title()
        ),
    )
}

/// `DELETE /switchover`: cancel a scheduled request. `None` = 409 (the key
/// changed meanwhile).
pub async fn delete(dcs: &dyn Dcs) -> Option<Refusal> {
    let cluster = match dcs.load_cluster_fresh().await {
        Ok(c) => c,
        Err(e) => return Some((503, format!("DCS is not accessible: {e}"))),
    };
    match cluster.failover {
        Some(f) if f.value.scheduled_at.is_some() => {
            match dcs.set_failover_value("{}", Some(&f.version)).await {
                Ok(true) => {
                    tracing::info!(event = crate::events::SCHEDULED_SWITCHOVER_DELETED);
                    Some((200, "scheduled switchover deleted".into()))
                }
                _ => None,
            }
        }
        _ => Some((404, "no switchover is scheduled".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::{Leader, MemberData, Versioned};

    const NOW: f64 = 1_900_000_000.0; // 2030-03-17

    fn v(kind: Kind, body: &str) -> Result<Request, Refusal> {
        validate(kind, body.as_bytes(), NOW)
    }

    fn code(r: Result<Request, Refusal>) -> (u16, String) {
        r.expect_err("refused")
    }

    #[test]
    fn required_fields() {
        assert_eq!(
            code(v(Kind::Failover, "{}")),
            (
                400,
                "Failover could be performed only to a specific candidate".into()
            )
        );
        assert_eq!(code(v(Kind::Switchover, r#"{"candidate":"b"}"#)).0, 400);
        assert_eq!(code(v(Kind::Switchover, "[1]")).0, 400);
        assert_eq!(code(v(Kind::Switchover, "{bad")).0, 400);
        assert_eq!(code(v(Kind::Switchover, r#"{"leader":1}"#)).0, 400);
        let r = v(Kind::Switchover, r#"{"leader":"a"}"#).unwrap();
        assert_eq!(r.candidate, None);
        let r = v(Kind::Switchover, r#"{"leader":"a","member":"b"}"#).unwrap();
        assert_eq!(r.candidate.as_deref(), Some("b"));
    }

    #[test]
    fn failover_naming_the_leader_is_a_switchover() {
        let r = v(Kind::Failover, r#"{"leader":"a","candidate":"b"}"#).unwrap();
        assert_eq!(r.kind, Kind::Switchover);
        let r = v(Kind::Failover, r#"{"candidate":"b"}"#).unwrap();
        assert_eq!(r.kind, Kind::Failover);
        assert_eq!(r.key_value(), r#"{"member":"b"}"#);
    }

    #[test]
    fn same_leader_and_candidate() {
        assert_eq!(
            code(v(Kind::Switchover, r#"{"leader":"a","candidate":"a"}"#)),
            (400, "Switchover target and source are the same".into())
        );
    }

    #[test]
    fn schedules() {
        let ok = v(
            Kind::Switchover,
            r#"{"leader":"a","scheduled_at":"2030-12-01T10:00:00+01:00"}"#,
        )
        .unwrap();
        assert!(ok.key_value().contains("scheduled_at"));
        assert_eq!(
            code(v(
                Kind::Switchover,
                r#"{"leader":"a","scheduled_at":"2020-01-01T10:00:00Z"}"#
            )),
            (422, "Cannot schedule switchover in the past".into())
        );
        assert_eq!(
            code(v(
                Kind::Switchover,
                r#"{"leader":"a","scheduled_at":"2030-12-01T10:00:00"}"#
            ))
            .0,
            400
        );
        assert_eq!(
            code(v(
                Kind::Switchover,
                r#"{"leader":"a","scheduled_at":"soon"}"#
            ))
            .0,
            422
        );
        assert_eq!(
            code(v(
                Kind::Failover,
                r#"{"candidate":"b","scheduled_at":"2030-12-01T10:00:00Z"}"#
            )),
            (400, "Failover can't be scheduled".into())
        );
    }

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            data: MemberData {
                api_url: format!("http://127.0.0.1/{name}/patroni"),
                ..MemberData::default()
            },
            version: crate::dcs::Version::from_int(1),
            session: Some(crate::dcs::SessionId::from_int(1)),
        }
    }

    fn cluster(leader: &str, names: &[&str]) -> Cluster {
        Cluster {
            leader: Some(Leader {
                name: leader.into(),
                version: crate::dcs::Version::from_int(1),
                session: Some(crate::dcs::SessionId::from_int(1)),
            }),
            members: names.iter().map(|n| member(n)).collect(),
            ..Cluster::default()
        }
    }

    fn req(leader: Option<&str>, cand: Option<&str>) -> Request {
        Request {
            kind: Kind::Switchover,
            leader: leader.map(Into::into),
            candidate: cand.map(Into::into),
            scheduled_at: None,
        }
    }

    #[test]
    fn prechecks_in_synchronous_mode() {
        let mut c = cluster("a", &["a", "b", "c"]);
        c.config = Some(crate::dcs::Versioned {
            value: serde_json::json!({"synchronous_mode": true}),
            version: crate::dcs::Version::from_int(1),
        });
        assert_eq!(
            precheck(&req(Some("a"), None), &c).unwrap_err(),
            (
                412,
                "switchover is not possible: can not find sync_standby".into()
            )
        );
        c.sync = Some(crate::dcs::Versioned {
            value: crate::dcs::SyncState::parse(r#"{"leader":"a","sync_standby":"b"}"#),
            version: crate::dcs::Version::from_int(1),
        });
        assert_eq!(
            precheck(&req(Some("a"), Some("c")), &c).unwrap_err(),
            (
                412,
                "candidate name does not match with sync_standby".into()
            )
        );
        let names = |r: Vec<&Member>| r.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(precheck(&req(Some("a"), None), &c).unwrap()), ["b"]);
        assert_eq!(
            names(precheck(&req(Some("a"), Some("b")), &c).unwrap()),
            ["b"]
        );
        // A failover may name an asynchronous member.
        let failover = Request {
            kind: Kind::Failover,
            ..req(None, Some("c"))
        };
        assert_eq!(names(precheck(&failover, &c).unwrap()), ["c"]);
    }

    #[test]
    fn prechecks() {
        let c = cluster("a", &["a", "b", "c"]);
        assert_eq!(
            precheck(&req(Some("x"), None), &c).unwrap_err(),
            (412, "leader name does not match".into())
        );
        assert_eq!(
            precheck(&req(Some("a"), Some("z")), &c).unwrap_err(),
            (412, "candidate does not exists".into())
        );
        let names = |r: Vec<&Member>| r.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(precheck(&req(Some("a"), Some("b")), &c).unwrap()),
            ["b"]
        );
        assert_eq!(
            names(precheck(&req(Some("a"), None), &c).unwrap()),
            ["b", "c"]
        );
        let alone = cluster("a", &["a"]);
        assert_eq!(
            precheck(&req(Some("a"), None), &alone).unwrap_err(),
            (
                412,
                "switchover is not possible: cluster does not have members except leader".into()
            )
        );
        let mut pending = c.clone();
        pending.failover = Some(Versioned {
            value: Failover {
                leader: Some("a".into()),
                member: None,
                scheduled_at: Some("2030-12-01T10:00:00Z".into()),
            },
            version: crate::dcs::Version::from_int(3),
        });
        let e = precheck(&req(Some("a"), Some("b")), &pending).unwrap_err();
        assert_eq!(e.0, 412);
        assert!(e.1.contains("another switchover is pending"), "{}", e.1);
    }

    #[test]
    fn paused_cluster_takes_only_an_immediate_switchover_to_a_candidate() {
        let mut c = cluster("a", &["a", "b", "c"]);
        c.config = Some(Versioned {
            value: serde_json::json!({"pause": true}),
            version: crate::dcs::Version::from_int(1),
        });
        let e = precheck(&req(Some("a"), None), &c).unwrap_err();
        assert_eq!(e.0, 400, "{}", e.1);
        assert!(e.1.contains("specific candidate"), "{}", e.1);
        let mut sched = req(Some("a"), Some("b"));
        sched.scheduled_at = Some("2030-12-01T10:00:00Z".into());
        let e = precheck(&sched, &c).unwrap_err();
        assert_eq!(
            e,
            (400, "Can't schedule switchover in the paused state".into())
        );
        assert!(precheck(&req(Some("a"), Some("b")), &c).is_ok());
    }

    #[test]
    fn candidate_limitations() {
        let j = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(limitation(None), Some("not reachable"));
        assert_eq!(
            limitation(Some(&j(
                r#"{"state":"running","role":"replica","tags":{"nofailover":true}}"#
            ))),
            Some("not allowed to promote")
        );
        assert_eq!(
            limitation(Some(&j(
                r#"{"state":"running","role":"replica","replication_state":"in archive recovery"}"#
            ))),
            Some("not streaming")
        );
        assert_eq!(
            limitation(Some(&j(r#"{"state":"stopped","role":"replica"}"#))),
            Some("not running")
        );
        assert_eq!(
            limitation(Some(&j(
                r#"{"state":"running","role":"replica","replication_state":"streaming"}"#
            ))),
            None
        );
    }

    #[test]
    fn outcomes() {
        let r = req(Some("a"), Some("b"));
        let mut c = cluster("a", &["a", "b", "c"]);
        c.failover = Some(Versioned {
            value: Failover::default(),
            version: crate::dcs::Version::from_int(1),
        });
        assert_eq!(outcome(&r, Some("a"), &c), None, "still leading");
        c.leader = None;
        assert_eq!(outcome(&r, Some("a"), &c), None, "in progress");
        c.leader = Some(Leader {
            name: "b".into(),
            version: crate::dcs::Version::from_int(2),
            session: Some(crate::dcs::SessionId::from_int(2)),
        });
        assert_eq!(
            outcome(&r, Some("a"), &c),
            Some((200, "Successfully switched over to \"b\"".into()))
        );
        c.leader.as_mut().unwrap().name = "c".into();
        assert_eq!(
            outcome(&r, Some("a"), &c),
            Some((200, "Switched over to \"c\" instead of \"b\"".into()))
        );
        let mut f = req(None, Some("b"));
        f.kind = Kind::Failover;
        c.leader.as_mut().unwrap().name = "b".into();
        assert_eq!(
            outcome(&f, Some("a"), &c),
            Some((200, "Successfully failed over to \"b\"".into()))
        );
        c.leader.as_mut().unwrap().name = "a".into();
        c.failover = None;
        assert_eq!(
            outcome(&r, Some("a"), &c),
            Some((503, "Switchover failed".into()))
        );
    }
}
