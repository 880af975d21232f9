//! Which peers a cycle asks for their state, and when (docs/ha.md §3.1).

use std::collections::BTreeMap;

use super::PgFacts;
use crate::dcs::Cluster;

/// A member to ask for `GET /patroni`: its name and REST address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub api_url: String,
}

/// The peers a cycle asks before deciding, in the order asked: none unless
/// the cluster has no leader key and PostgreSQL runs as a replica (a leader
/// race), this node holds the lock as a primary and a `failover` key
/// exists (a switchover's candidates), or it holds the lock and PostgreSQL
/// is not running (a failover after a crash, docs/ha.md §8.1). Asked are the members in the DCS,
/// plus, in failsafe mode, the members only the `failsafe` key lists, plus
/// every member `seen` earlier by this daemon (a member whose key just
/// expired with its lease may still run and be ahead), each with a REST
/// address and other than `me`.
pub fn peers_to_ask(
    cluster: &Cluster,
    pg: &PgFacts,
    me: &str,
    failsafe_mode: bool,
    seen: &BTreeMap<String, String>,
) -> Vec<Peer> {
    let race = cluster.leader.is_none() && pg.is_replica();
    let switchover =
        cluster.failover.is_some() && cluster.leader_name() == Some(me) && pg.is_primary();
    // docs/ha.md §8.1: a lock holder whose PostgreSQL is down looks for a
    // replica to fail over to (`primary_start_timeout`).
    let leader_down = cluster.leader_name() == Some(me) && !pg.running;
    if !race && !switchover && !leader_down {
        return Vec::new();
    }
    let mut ask: Vec<Peer> = cluster
        .members
        .iter()
        .map(|m| Peer {
            name: m.name.clone(),
            api_url: m.data.api_url.clone(),
        })
        .collect();
    if failsafe_mode {
        // docs/ha.md §3.1: also the members only the failsafe key knows.
        ask.extend(
            cluster
                .failsafe
                .iter()
                .flatten()
                .filter(|(name, _)| cluster.member(name).is_none())
                .map(|(name, url)| Peer {
                    name: name.clone(),
                    api_url: url.clone(),
                }),
        );
    }
    for (name, url) in seen {
        if !ask.iter().any(|p| &p.name == name) {
            ask.push(Peer {
                name: name.clone(),
                api_url: url.clone(),
            });
        }
    }
    ask.retain(|p| p.name != me && !p.api_url.is_empty());
    ask
}

/// Fold one DCS read into the members seen since start (name -> REST
/// address): a member without a REST address is not recorded.
pub fn remember_members(seen: &mut BTreeMap<String, String>, cluster: &Cluster) {
    for m in cluster
        .members
        .iter()
        .filter(|m| !m.data.api_url.is_empty())
    {
        seen.insert(m.name.clone(), m.data.api_url.clone());
    }
}
