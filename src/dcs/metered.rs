//! A store that times its calls (docs/rest-api.md, "GET /metrics"): every
//! call of the [`Dcs`] trait goes to the wrapped backend unchanged, and its
//! duration and error class are counted by `telemetry::dcs`. The elector
//! wraps the store it is given, so the HA loop's calls (reads, the leader
//! key, the member key, the lease keep-alive) are measured as the loop
//! waits on them: a backend answering `load_cluster` from the view its
//! watch keeps (docs/dcs.md, "Idle cost") shows as a call of microseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::{
    Cluster, Dcs, DcsResult, Expiry, Leader, LeaderHold, MemberData, SessionId, Status, Version,
    WatchEvent,
};

/// The wrapped store.
pub struct Metered {
    inner: Arc<dyn Dcs>,
}

impl Metered {
    /// `inner`, timed.
    pub fn wrap(inner: Arc<dyn Dcs>) -> Arc<dyn Dcs> {
        Arc::new(Metered { inner })
    }
}

/// `f`, timed as `operation`.
fn timed<'a, T: Send + 'a>(
    operation: &'static str,
    f: BoxFuture<'a, DcsResult<T>>,
) -> BoxFuture<'a, DcsResult<T>> {
    Box::pin(async move {
        let start = Instant::now();
        let r = f.await;
        record(operation, start.elapsed(), &r);
        r
    })
}

fn record<T>(operation: &str, took: Duration, r: &DcsResult<T>) {
    crate::telemetry::dcs::observe(operation, took, r.as_ref().err());
}

impl Dcs for Metered {
    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        self.inner.set_timing(ttl, retry_timeout);
    }

    fn load_cluster(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        timed("load_cluster", self.inner.load_cluster())
    }

    fn load_cluster_fresh(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        timed("load_cluster_fresh", self.inner.load_cluster_fresh())
    }

    fn touch_member(&self, data: &MemberData) -> BoxFuture<'_, DcsResult<()>> {
        timed("touch_member", self.inner.touch_member(data))
    }

    fn attempt_to_acquire_leader(&self) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        timed(
            "attempt_to_acquire_leader",
            self.inner.attempt_to_acquire_leader(),
        )
    }

    fn update_leader(&self, leader: &Leader) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        timed("update_leader", self.inner.update_leader(leader))
    }

    fn keep_alive(&self) -> BoxFuture<'_, DcsResult<Option<Expiry>>> {
        timed("keep_alive", self.inner.keep_alive())
    }

    fn session(&self) -> Option<SessionId> {
        self.inner.session()
    }

    fn holds_session(&self, id: &SessionId) -> bool {
        self.inner.holds_session(id)
    }

    fn inherit_session(&self, id: &SessionId) {
        self.inner.inherit_session(id);
    }

    fn delete_leader(&self) -> BoxFuture<'_, DcsResult<bool>> {
        timed("delete_leader", self.inner.delete_leader())
    }

    fn write_status(&self, status: &Status) -> BoxFuture<'_, DcsResult<()>> {
        timed("write_status", self.inner.write_status(status))
    }

    fn initialize(&self, create: bool, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        timed("initialize", self.inner.initialize(create, value))
    }

    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>> {
        timed("cancel_initialization", self.inner.cancel_initialization())
    }

    fn set_config_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        timed(
            "set_config_value",
            self.inner.set_config_value(value, version),
        )
    }

    fn set_failover_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        timed(
            "set_failover_value",
            self.inner.set_failover_value(value, version),
        )
    }

    fn set_history_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        timed("set_history_value", self.inner.set_history_value(value))
    }

    fn set_failsafe_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        timed("set_failsafe_value", self.inner.set_failsafe_value(value))
    }

    fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        timed(
            "set_sync_state_value",
            self.inner.set_sync_state_value(value, version),
        )
    }

    fn delete_sync_state(&self, version: &Version) -> BoxFuture<'_, DcsResult<bool>> {
        timed("delete_sync_state", self.inner.delete_sync_state(version))
    }

    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>> {
        timed("delete_cluster", self.inner.delete_cluster())
    }

    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>> {
        timed("release_session", self.inner.release_session())
    }

    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        self.inner.watch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::memory::{MemoryDcs, MemoryStore};

    #[tokio::test]
    async fn calls_pass_through_and_are_timed() {
        let inner: Arc<dyn Dcs> = Arc::new(MemoryDcs::new(
            MemoryStore::new(),
            "/service/batman".into(),
            "n1".into(),
            Duration::from_secs(30),
            Duration::from_secs(10),
        ));
        let dcs = Metered::wrap(inner.clone());
        let (before, _) = crate::telemetry::dcs::counts("attempt_to_acquire_leader", "other");
        let hold = dcs.attempt_to_acquire_leader().await.expect("memory store");
        assert!(hold.is_held());
        // The wrapper adds nothing of its own: the session is the store's.
        assert_eq!(dcs.session(), inner.session());
        let (after, _) = crate::telemetry::dcs::counts("attempt_to_acquire_leader", "other");
        assert_eq!(after, before + 1);
        let cluster = dcs.load_cluster().await.expect("memory store");
        assert_eq!(cluster.leader_name(), Some("n1"));
    }
}
