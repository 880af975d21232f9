//! The elector's state as the REST API reads it (`messages::board::HaView`):
//! what the elector published at the end of its last cycle or reload, and
//! the lease and watchdog it shares with its cycles, read at the call.
//!
//! Only the elector writes it (`ElectorBoard::publish`), and only from
//! its own fields, every time one of them changes; so a request sees what
//! asking the elector would answer, without waking the actors' thread.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::config::{Config, Timing};
use crate::dcs::Cluster;
use crate::ha;
use crate::messages::board::HaView;
use crate::messages::elector::HaState;
use crate::sync;
use crate::watchdog::Watchdog;

/// The elector's fields a request reads.
pub(crate) struct Published {
    pub(crate) cfg: Arc<Config>,
    /// The dynamic configuration's parts a request shows.
    pub(crate) timing: Timing,
    pub(crate) maximum_lag_on_failover: u64,
    pub(crate) failsafe_mode: bool,
    /// The last DCS read and when it finished.
    pub(crate) cluster: Option<(Arc<Cluster>, Instant)>,
    pub(crate) dcs_last_seen: Option<SystemTime>,
    pub(crate) next_cycle_due: Option<Instant>,
}

pub struct ElectorBoard {
    published: Mutex<Published>,
    node: Arc<Mutex<ha::Node>>,
    watchdog: Arc<Mutex<Watchdog>>,
    fence_dir: Arc<Path>,
}

impl ElectorBoard {
    pub(crate) fn new(
        published: Published,
        node: Arc<Mutex<ha::Node>>,
        watchdog: Arc<Mutex<Watchdog>>,
        fence_dir: Arc<Path>,
    ) -> ElectorBoard {
        ElectorBoard {
            published: Mutex::new(published),
            node,
            watchdog,
            fence_dir,
        }
    }

    pub(crate) fn publish(&self, published: Published) {
        *sync::lock(&self.published) = published;
    }
}

impl HaView for ElectorBoard {
    fn ha_state(&self, now: Instant) -> HaState {
        let (cfg, timing, max_lag, failsafe_mode, cluster, dcs_last_seen, next_cycle_due) = {
            let p = sync::lock(&self.published);
            (
                p.cfg.clone(),
                p.timing,
                p.maximum_lag_on_failover,
                p.failsafe_mode,
                p.cluster.clone(),
                p.dcs_last_seen,
                p.next_cycle_due,
            )
        };
        let ttl = timing.ttl;
        let (is_leader, failsafe_active, lease_deadline) = {
            let node = sync::lock(&self.node);
            (
                node.is_leader(now),
                node.failsafe_active(now, ttl),
                node.lease_deadline(),
            )
        };
        let watchdog_failed = sync::lock(&self.watchdog).is_failed(&timing);
        HaState {
            name: cfg.name.clone(),
            scope: cfg.scope.clone(),
            tags: cfg.tags.clone(),
            failsafe: cluster.as_ref().and_then(|(c, _)| c.failsafe.clone()),
            // A view older than ttl is no view (`GET /patroni` then shows
            // no leader, as Patroni's after a failed read).
            cluster: cluster
                .filter(|(_, at)| now.saturating_duration_since(*at) < ttl)
                .map(|(c, _)| c),
            is_leader,
            dcs_last_seen,
            ttl_secs: ttl.as_secs_f64(),
            loop_wait_secs: timing.loop_wait.as_secs_f64(),
            maximum_lag_on_failover: max_lag,
            next_cycle_due,
            failsafe_mode,
            failsafe_active,
            watchdog_failed,
            lease_deadline,
            fence_dir: Some(self.fence_dir.clone()),
        }
    }
}
