//! What every route reads: the elector's and the supervisor's state, asked
//! concurrently with a short deadline, and the DCS.
//!
//! A busy actor cannot hang a health check or a peer's `GET /patroni`
//! during a leader race: a late answer falls back to the last one received
//! (PostgreSQL then reads as `unknown`).

use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::join;

use crate::api::server::ApiContext;
use crate::dcs::Cluster;
use crate::ha::PgFacts;
use crate::messages::elector::{GetHaState, HaState};
use crate::messages::supervisor::{GetPgStatus, PgState, PgStatus};

/// How long a request waits for an actor's answer. Peers give `/patroni`
/// 2 s in a leader race; this leaves room for the reply itself.
pub(crate) const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

/// The application state of the server, shared by its workers.
pub(crate) struct Shared {
    pub(crate) ctx: ApiContext,
    last_ha: Mutex<Option<HaState>>,
    last_pg: Mutex<Option<PgStatus>>,
}

impl Shared {
    pub(crate) fn new(ctx: ApiContext) -> Shared {
        Shared {
            ctx,
            last_ha: Mutex::new(None),
            last_pg: Mutex::new(None),
        }
    }

    /// Ask the elector and the supervisor concurrently. `None` only when the
    /// elector has never answered (the node is still starting).
    pub(crate) async fn states(&self) -> Option<(HaState, PgStatus)> {
        let ha = self.ctx.elector.send(GetHaState).timeout(ASK_TIMEOUT);
        let pg = self
            .ctx
            .supervisor
            .send(GetPgStatus {
                take_outcome: false,
            })
            .timeout(ASK_TIMEOUT);
        let (ha, pg) = join(ha, pg).await;
        let ha = match ha {
            Ok(h) => {
                *lock(&self.last_ha) = Some(h.clone());
                h
            }
            Err(e) => {
                tracing::warn!(error = %e, "REST API: no answer from the elector");
                lock(&self.last_ha).clone()?
            }
        };
        let pg = match pg {
            Ok(p) => {
                *lock(&self.last_pg) = Some(p.clone());
                p
            }
            Err(e) => {
                tracing::warn!(error = %e, "REST API: no answer from the supervisor");
                unknown_pg(lock(&self.last_pg).clone())
            }
        };
        Some((ha, pg))
    }

    pub(crate) async fn load_cluster(&self) -> Option<Cluster> {
        match self.ctx.dcs.load_cluster_fresh().await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "REST API: DCS read failed");
                None
            }
        }
    }
}

/// The cached answers are whole values: a panic elsewhere while the lock
/// was held cannot have left one half-written, so a poisoned lock is used
/// as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    crate::sync::lock(m)
}

/// The supervisor did not answer: PostgreSQL's state is unknown now. Keep
/// what does not change quickly (data directory, version).
pub(crate) fn unknown_pg(last: Option<PgStatus>) -> PgStatus {
    let mut pg = last.unwrap_or_else(|| PgStatus::unknown(PgState::Unknown));
    pg.state = PgState::Unknown;
    pg.facts = PgFacts::default();
    pg.outcome = None;
    pg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pg_keeps_slow_facts() {
        let pg = unknown_pg(None);
        assert_eq!(pg.state, PgState::Unknown);
        assert_eq!(crate::api::status::role_str(&pg), "uninitialized");
    }
}
