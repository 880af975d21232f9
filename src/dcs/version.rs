//! What a backend hands out about its keys and its session, in forms callers
//! can pass back but cannot look into (docs/dcs.md, "Versions, sessions and
//! expiry").
//!
//! Every store names a key's version and a session differently: etcd an
//! `i64` mod revision and lease id, ZooKeeper a per-node `i32` version and a
//! session id, Consul a `u64` `ModifyIndex` and a session UUID, Kubernetes a
//! string `resourceVersion`. Callers only carry a [`Version`] back to a
//! compare-and-swap and compare two for equality; they never order them or
//! compute with them (a Kubernetes `resourceVersion` has no order, a
//! ZooKeeper version is per node), so neither type says what it holds.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// The inside of a [`Version`] or [`SessionId`]: private, so that callers
/// cannot depend on a backend's form.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Int(i64),
    Text(Arc<str>),
}

impl fmt::Debug for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repr::Int(n) => write!(f, "{n}"),
            Repr::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// The version of a key, as a compare-and-swap names it. Equal versions of
/// one key mean an unchanged key; nothing else can be read from it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version(Repr);

impl Version {
    /// A version a backend counts in integers (etcd's mod revision,
    /// ZooKeeper's node version, Consul's `ModifyIndex` up to `i64::MAX`).
    pub fn from_int(n: i64) -> Version {
        Version(Repr::Int(n))
    }

    /// A version a backend names by a string (Kubernetes' `resourceVersion`).
    pub fn from_text(s: &str) -> Version {
        Version(Repr::Text(s.into()))
    }

    /// The integer a backend made this from, for that backend's own
    /// compare; `None` for a version named by a string.
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self.0 {
            Repr::Int(n) => Some(n),
            Repr::Text(_) => None,
        }
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({:?})", self.0)
    }
}

/// The session a key is attached to (etcd lease, ZooKeeper session, Consul
/// session). Two keys with equal session ids live and die together.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Repr);

impl SessionId {
    /// A session a backend numbers (etcd's lease id, ZooKeeper's session id).
    pub fn from_int(n: i64) -> SessionId {
        SessionId(Repr::Int(n))
    }

    /// A session a backend names by a string (Consul's session UUID).
    pub fn from_text(s: &str) -> SessionId {
        SessionId(Repr::Text(s.into()))
    }

    /// etcd's lease id: `0` is "no lease".
    pub(crate) fn from_etcd_lease(lease: i64) -> Option<SessionId> {
        (lease != 0).then(|| SessionId::from_int(lease))
    }

    /// The integer a backend made this from; `None` for a named session.
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self.0 {
            Repr::Int(n) => Some(n),
            Repr::Text(_) => None,
        }
    }

    /// The string a backend made this from (Consul's session UUID); `None`
    /// for a numbered session.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match &self.0 {
            Repr::Int(_) => None,
            Repr::Text(s) => Some(s),
        }
    }

    /// The form a node keeps on its own disk for the daemon that follows
    /// it (docs/dcs.md, "A restarted daemon"): `int:<n>` or `text:<s>`.
    pub fn to_persisted(&self) -> String {
        match &self.0 {
            Repr::Int(n) => format!("int:{n}"),
            Repr::Text(s) => format!("text:{s}"),
        }
    }

    /// Read back [`SessionId::to_persisted`]; `None` for anything else.
    pub fn from_persisted(s: &str) -> Option<SessionId> {
        let s = s.trim();
        if let Some(n) = s.strip_prefix("int:") {
            return n.parse().ok().map(SessionId::from_int);
        }
        s.strip_prefix("text:")
            .filter(|t| !t.is_empty())
            .map(SessionId::from_text)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:?})", self.0)
    }
}

/// When the store drops this node's session (and every key attached to it,
/// the leader key among them) if nothing renews it, as the backend
/// guarantees it, on this process's monotonic clock.
///
/// `earliest` is what the holder may count on: the store keeps the session
/// at least until then, so a leader that stops writing by `earliest` can
/// never write while another node holds the key. It is derived from the
/// send time of a request the store answered (never its answer time), so
/// the time the request spent in flight only shortens it. `latest` is what
/// the other nodes may count on: without a renewal the session is gone by
/// then, up to the backend's stated tolerance (docs/dcs.md, per backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub earliest: Instant,
    pub latest: Instant,
}

impl Expiry {
    /// The later of two guarantees for the same session: a renewal only
    /// ever moves it forward.
    pub fn max(self, other: Expiry) -> Expiry {
        Expiry {
            earliest: self.earliest.max(other.earliest),
            latest: self.latest.max(other.latest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn versions_compare_only_for_equality() {
        assert_eq!(Version::from_int(7), Version::from_int(7));
        assert_ne!(Version::from_int(7), Version::from_int(8));
        assert_ne!(Version::from_int(7), Version::from_text("7"));
        assert_eq!(Version::from_int(7).as_int(), Some(7));
        assert_eq!(Version::from_text("abc").as_int(), None);
        assert_eq!(format!("{:?}", Version::from_text("a")), r#"Version("a")"#);
    }

    #[test]
    fn etcd_lease_zero_is_no_session() {
        assert_eq!(SessionId::from_etcd_lease(0), None);
        assert_eq!(SessionId::from_etcd_lease(5), Some(SessionId::from_int(5)));
    }

    #[test]
    fn expiry_only_moves_forward() {
        let t = Instant::now();
        let a = Expiry {
            earliest: t,
            latest: t + Duration::from_secs(3),
        };
        let b = Expiry {
            earliest: t + Duration::from_secs(1),
            latest: t + Duration::from_secs(2),
        };
        let m = a.max(b);
        assert_eq!(m.earliest, t + Duration::from_secs(1));
        assert_eq!(m.latest, t + Duration::from_secs(3));
    }
}
