//! What this node publishes under `members/<name>` (docs/dcs.md, "`members/<name>`").

use crate::config::{Config, Tags};
use crate::dcs::MemberData;
use crate::ha::{DataDir, JobKind, PgRole};
use crate::messages::supervisor::{PgState, PgStatus};

/// `postgres://<connect_address>/<database>`.
pub fn conn_url(cfg: &Config) -> String {
    format!(
        "postgres://{}/{}",
        cfg.postgresql.connect_address, cfg.postgresql.database
    )
}

/// `http(s)://<restapi.connect_address>/patroni`.
pub fn api_url(cfg: &Config) -> String {
    let scheme = if cfg.restapi.certfile.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}/patroni", cfg.restapi.connect_address)
}

/// The member record for the current state of PostgreSQL; `pause` is the
/// dynamic configuration's maintenance switch.
pub fn member_data(cfg: &Config, pg: &PgStatus, pause: bool) -> MemberData {
    let role = match (pg.facts.role, &pg.data_dir) {
        (Some(PgRole::Primary), _) => "primary",
        (Some(PgRole::Replica), _) if pg.follows_remote => "standby_leader",
        (Some(PgRole::Replica), _) => "replica",
        (None, DataDir::Empty) => "uninitialized",
        (None, DataDir::Initialized { .. } | DataDir::Unreadable(_)) => "replica",
    };
    let answering = pg.state == PgState::Running && pg.facts.role.is_some();
    MemberData {
        conn_url: conn_url(cfg),
        api_url: api_url(cfg),
        state: pg.state.as_str().to_owned(),
        role: role.to_owned(),
        version: crate::PATRONI_COMPAT_VERSION.to_owned(),
        xlog_location: answering.then_some(pg.facts.lsn).flatten(),
        receive_lsn: pg.receive_lsn,
        replay_lsn: pg.replay_lsn,
        replication_state: pg.replication_state.clone(),
        timeline: pg.facts.timeline,
        tags: cfg.tags.clone(),
        pending_restart: answering && !pg.pending_restart.is_empty(),
        pending_restart_reason: if answering {
            pg.pending_restart.clone()
        } else {
            Default::default()
        },
        pause,
        // The promote job checkpoints right after pg_promote: a primary
        // still inside that job has not finished it.
        checkpoint_after_promote: (pg.busy == Some(JobKind::Promote)
            && pg.facts.role == Some(PgRole::Primary))
        .then_some(false),
        scheduled_restart: pg.scheduled_restart.clone(),
    }
}

/// The tags the member key shows (Patroni's `get_effective_tags`): while
/// this synchronous standby asks to be released (a clean stop, a
/// `POST /restart`; docs/replication-modes.md §3) they say `nosync`, so
/// the primary drops it and does not pick it again meanwhile.
pub fn effective_tags(tags: &Tags, releasing_sync: bool) -> Tags {
    let mut t = tags.clone();
    if releasing_sync {
        t.nosync = true;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_standby_says_nosync_and_keeps_its_other_tags() {
        let tags = Tags {
            nofailover: true,
            ..Tags::default()
        };
        let t = effective_tags(&tags, true);
        assert!(t.nosync);
        assert!(t.nofailover);
        assert_eq!(effective_tags(&tags, false), tags);
    }
}
