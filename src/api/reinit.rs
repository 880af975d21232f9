//! `POST /reinitialize` (docs/rest-api.md, "POST /reinitialize"), the pure
//! part: the body and the member to rebuild from, with Patroni's refusals.

use serde_json::Value;

use crate::dcs::Cluster;
use crate::ha::Upstream;

/// `{"force": bool, "from_leader": bool}`; a missing or unparsable body
/// means neither (Patroni reads it leniently).
pub fn parse_body(body: &[u8]) -> (bool, bool) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let flag = |k: &str| {
        v.get(k)
            .and_then(crate::config::dynamic::json_bool)
            .unwrap_or(false)
    };
    (flag("force"), flag("from_leader"))
}

/// Why this member cannot be rebuilt now. The texts are Patroni's
/// (answered with 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Cluster has no leader, can not reinitialize")]
    NoLeader,
    #[error("I am the leader, can not reinitialize")]
    IAmTheLeader,
    #[error("leader {0} has no usable member record, can not reinitialize")]
    LeaderUnreachable(String),
}

/// Where to rebuild `me` from: the leader with `from_leader`, else a
/// running member tagged `clonefrom`, else the leader.
pub fn source(cluster: &Cluster, me: &str, from_leader: bool) -> Result<Upstream, Refusal> {
    let Some(leader) = cluster.leader_name() else {
        return Err(Refusal::NoLeader);
    };
    if leader == me {
        return Err(Refusal::IAmTheLeader);
    }
    let up = if from_leader {
        crate::ha::upstream_of(cluster, leader)
    } else {
        crate::ha::clone_source(cluster, leader, me)
    };
    up.ok_or_else(|| Refusal::LeaderUnreachable(leader.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::{Leader, Member, MemberData};

    fn member(name: &str, port: u16, clonefrom: bool) -> Member {
        let mut data = MemberData {
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
            api_url: format!("http://127.0.0.1:{}/patroni", port + 3000),
            state: "running".into(),
            ..MemberData::default()
        };
        data.tags.clonefrom = clonefrom;
        Member {
            name: name.into(),
            data,
            version: crate::dcs::Version::from_int(1),
            session: None,
        }
    }

    fn cluster(leader: Option<&str>) -> Cluster {
        Cluster {
            members: vec![
                member("a", 5432, false),
                member("b", 5433, true),
                member("c", 5434, false),
            ],
            leader: leader.map(|l| Leader {
                name: l.into(),
                version: crate::dcs::Version::from_int(1),
                session: None,
            }),
            ..Cluster::default()
        }
    }

    #[test]
    fn body_flags() {
        assert_eq!(parse_body(b""), (false, false));
        assert_eq!(parse_body(b"{}"), (false, false));
        assert_eq!(parse_body(br#"{"force": true}"#), (true, false));
        assert_eq!(
            parse_body(br#"{"force": "yes", "from_leader": true}"#),
            (true, true)
        );
        assert_eq!(parse_body(b"[true]"), (false, false));
    }

    #[test]
    fn refusals_and_sources() {
        let e = source(&cluster(None), "c", false).unwrap_err();
        assert_eq!(e, Refusal::NoLeader);
        assert_eq!(e.to_string(), "Cluster has no leader, can not reinitialize");
        let e = source(&cluster(Some("a")), "a", false).unwrap_err();
        assert_eq!(e, Refusal::IAmTheLeader);
        assert_eq!(e.to_string(), "I am the leader, can not reinitialize");
        assert_eq!(source(&cluster(Some("a")), "c", false).unwrap().name, "b");
        assert_eq!(source(&cluster(Some("a")), "c", true).unwrap().name, "a");
        assert_eq!(source(&cluster(Some("a")), "b", false).unwrap().name, "a");
    }
}
