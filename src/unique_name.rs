//! At start, before anything is written: refuse to run when a member key
//! of this node's name belongs to a node that is running (Patroni's
//! `Patroni.ensure_unique_name`; docs/operations.md, "Duplicate member
//! names").
//!
//! Two daemons with one name would share the member key and each take the
//! other's leader key for its own: one with an empty data directory
//! releases "its" lock again and again, demoting the healthy primary.
//! Patroni asks the REST API at the member key's `api_url` for `/liveness`
//! (3 s, no retry); any HTTP answer, whatever its status, means a node of
//! that name runs, and it exits with `Can't start; there is already a node
//! named '<name>' running`. No answer (refused, timed out, TLS refused, no
//! `api_url`) is the normal case of a node restarted after a crash: its old
//! member key is still there until its session ends.

use std::time::Duration;

use crate::dcs::{Cluster, Dcs, DcsError};

/// Patroni's timeout for the probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `api_url` with its path replaced by `/liveness`, query and fragment
/// dropped (Patroni's `Member.get_endpoint_url`). `None` when it is not
/// an absolute http(s) URL.
pub fn liveness_url(api_url: &str) -> Option<String> {
    let mut url = url::Url::parse(api_url).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return None;
    }
    url.set_path("/liveness");
    url.set_query(None);
    url.set_fragment(None);
    Some(url.to_string())
}

/// The `/liveness` URL to probe: the one of `name`'s member key, if the
/// cluster has one.
pub fn namesake_probe(cluster: &Cluster, name: &str) -> Option<String> {
    let member = cluster.members.iter().find(|m| m.name == name)?;
    liveness_url(&member.data.api_url)
}

/// Does something answer HTTP at `url` within [`PROBE_TIMEOUT`]? Any
/// status counts: a node that answers 503 is still running.
pub async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client.get(url).timeout(PROBE_TIMEOUT).send().await.is_ok()
}

/// What the check at start found.
#[derive(Debug)]
pub enum Verdict {
    /// No member key of this name, or nothing answers at its `api_url`.
    Unique,
    /// A node of this name answers at `url`: do not start.
    Running { url: String },
    /// The DCS could not be read (one attempt, bounded by `retry_timeout`).
    /// Patroni waits for the DCS; pgpilot starts as before and its HA loop
    /// waits for the DCS instead.
    Unchecked(DcsError),
}

/// Read the cluster (fresh, not from a cached view) and probe the member
/// key of `name`, if any. Reads only: nothing is written to the DCS.
pub async fn check(dcs: &dyn Dcs, name: &str, client: &reqwest::Client) -> Verdict {
    let cluster = match dcs.load_cluster_fresh().await {
        Ok(c) => c,
        Err(e) => return Verdict::Unchecked(e),
    };
    match namesake_probe(&cluster, name) {
        Some(url) if answers(client, &url).await => Verdict::Running { url },
        _ => Verdict::Unique,
    }
}

/// Patroni's message (logged at its CRITICAL level).
pub fn refusal(name: &str) -> String {
    format!("Can't start; there is already a node named '{name}' running")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::member::{Member, MemberData};

    fn member(name: &str, api_url: &str) -> Member {
        Member {
            name: name.into(),
            data: MemberData {
                api_url: api_url.into(),
                ..MemberData::default()
            },
            version: crate::dcs::Version::from_int(1),
            session: Some(crate::dcs::version::SessionId::from_int(7)),
        }
    }

    #[test]
    fn liveness_url_replaces_the_path() {
        assert_eq!(
            liveness_url("http://10.0.0.1:8008/patroni").as_deref(),
            Some("http://10.0.0.1:8008/liveness")
        );
        assert_eq!(
            liveness_url("https://db-1.example:8443/patroni?x=1#f").as_deref(),
            Some("https://db-1.example:8443/liveness")
        );
        assert_eq!(
            liveness_url("http://[::1]:8008").as_deref(),
            Some("http://[::1]:8008/liveness")
        );
        for bad in [
            "",
            "10.0.0.1:8008/patroni",
            "postgres://h:5432/x",
            "http://",
        ] {
            assert_eq!(liveness_url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_member_of_the_same_name_is_probed() {
        let cluster = Cluster {
            members: vec![
                member("a", "http://127.0.0.1:8008/patroni"),
                member("b", "http://127.0.0.1:8009/patroni"),
            ],
            ..Cluster::default()
        };
        assert_eq!(
            namesake_probe(&cluster, "b").as_deref(),
            Some("http://127.0.0.1:8009/liveness")
        );
        assert_eq!(namesake_probe(&cluster, "c"), None);
        let cluster = Cluster {
            members: vec![member("a", "")],
            ..Cluster::default()
        };
        assert_eq!(namesake_probe(&cluster, "a"), None);
    }

    #[test]
    fn message_is_patronis() {
        assert_eq!(
            refusal("postgres-0"),
            "Can't start; there is already a node named 'postgres-0' running"
        );
    }

    #[tokio::test]
    async fn any_http_answer_counts_and_silence_does_not() {
        crate::tls::install_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A server that answers every request with 503.
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = reqwest::Client::new();
        assert!(answers(&client, &format!("http://{addr}/liveness")).await);
        // A closed port: nothing runs there.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(!answers(&client, &format!("http://127.0.0.1:{port}/liveness")).await);

        // Through a DCS: a member key of this name pointing at the server.
        use crate::dcs::memory::{MemoryDcs, MemoryStore};
        let store = MemoryStore::new();
        let other = MemoryDcs::new(
            store.clone(),
            "/service/t".into(),
            "n0".into(),
            Duration::from_secs(30),
            Duration::from_secs(5),
        );
        let data = MemberData {
            api_url: format!("http://{addr}/patroni"),
            ..MemberData::default()
        };
        other.touch_member(&data).await.unwrap();
        let me = MemoryDcs::new(
            store.clone(),
            "/service/t".into(),
            "n0".into(),
            Duration::from_secs(30),
            Duration::from_secs(5),
        );
        let before = me.load_cluster().await.unwrap();
        match check(&me, "n0", &client).await {
            Verdict::Running { url } => assert_eq!(url, format!("http://{addr}/liveness")),
            v => panic!("{v:?}"),
        }
        assert!(matches!(check(&me, "n1", &client).await, Verdict::Unique));
        // Only read.
        assert_eq!(me.load_cluster().await.unwrap(), before);
    }
}
