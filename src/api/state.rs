//! What every route reads: the elector's state and the supervisor's
//! PostgreSQL status, from their boards (`messages::board`) when they are
//! fresh, else asked with a short deadline; and the DCS.
//!
//! A busy supervisor cannot hang a health check or a peer's `GET /patroni`
//! during a leader race: a late answer falls back to the last one received
//! (PostgreSQL then reads as `unknown`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::server::ApiContext;
use crate::dcs::Cluster;
use crate::ha::PgFacts;
use crate::messages::elector::HaState;
use crate::messages::supervisor::{GetPgStatus, PgState, PgStatus};

/// How long a request waits for the supervisor's answer. Peers give
/// `/patroni` 2 s in a leader race; this leaves room for the reply itself.
pub(crate) const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

/// The application state of the server, shared by its workers.
pub(crate) struct Shared {
    pub(crate) ctx: ApiContext,
    last_pg: Mutex<Option<PgStatus>>,
}

impl Shared {
    pub(crate) fn new(ctx: ApiContext) -> Shared {
        Shared {
            ctx,
            last_pg: Mutex::new(None),
        }
    }

    /// The HA loop's state and PostgreSQL's. The supervisor's published
    /// light status answers while it is fresh (`PgBoard`: a query sent at
    /// most 20 ms ago, nothing changed since): no message, no wake-up of
    /// the actors' thread. Otherwise the supervisor is asked.
    pub(crate) async fn states(&self) -> (HaState, PgStatus) {
        let pg = match self.ctx.pg_board.fresh(Instant::now()) {
            Some(pg) => pg,
            None => self.ask_supervisor().await,
        };
        // Read after PostgreSQL's answer: never older than it.
        (self.ctx.ha.ha_state(Instant::now()), pg)
    }

    /// The HA loop's state alone (routes that show nothing of PostgreSQL).
    pub(crate) fn ha(&self) -> HaState {
        self.ctx.ha.ha_state(Instant::now())
    }

    async fn ask_supervisor(&self) -> PgStatus {
        let asked = self
            .ctx
            .supervisor
            .send(GetPgStatus {
                take_outcome: false,
            })
            .timeout(ASK_TIMEOUT)
            .await;
        match asked {
            Ok(p) => {
                *lock(&self.last_pg) = Some(p.clone());
                p
            }
            Err(e) => {
                tracing::warn!(error = %e, "REST API: no answer from the supervisor");
                unknown_pg(lock(&self.last_pg).clone())
            }
        }
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
