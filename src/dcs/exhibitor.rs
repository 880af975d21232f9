//! Exhibitor ensemble provider (docs/dcs.md, "Exhibitor"): the ZooKeeper
//! servers as Exhibitor's REST API lists them, polled in the background.
//!
//! Patroni's `ExhibitorEnsembleProvider` asks
//! `http://<host>:<port>/exhibitor/v1/cluster/list` of the Exhibitor hosts
//! it knows (the servers of the last answer, then the configured ones) and
//! turns the answer `{"servers": [...], "port": N}` into kazoo's connection
//! string, the servers sorted. pgpilot does the same.
//!
//! Invariants:
//! * The list handed out is the last one an Exhibitor answered, never an
//!   empty one: a bad or empty answer keeps the previous list.
//! * Nothing blocks on Exhibitor but the first [`EnsembleProvider::servers`]
//!   call, and that only for the wait its caller gives: the daemon keeps
//!   running (the DCS is unreachable) until an answer comes.
//! * The poll loop holds the provider weakly: it ends when the DCS is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The path Patroni asks.
pub const URI_PATH: &str = "/exhibitor/v1/cluster/list";
/// Per-request timeout (Patroni's `TIMEOUT`).
pub const TIMEOUT: Duration = Duration::from_millis(3100);
/// Pause after a poll no Exhibitor answered (Patroni waits 5 s between its
/// tries at start), bounded by `poll_interval`.
const RETRY: Duration = Duration::from_secs(5);

/// Why an answer or a poll gave no server list.
#[derive(Debug, thiserror::Error)]
pub enum ExhibitorError {
    #[error("answer is not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("answer has no `servers` list of host names")]
    NoServers,
    #[error("answer lists no server")]
    EmptyList,
    #[error("answer has no `port`")]
    NoPort,
    #[error("answer's `port` {0} is not a TCP port")]
    BadPort(String),
    #[error("http://{host}:{port}{URI_PATH}: {source}")]
    Http {
        host: String,
        port: u16,
        #[source]
        source: reqwest::Error,
    },
    #[error("http://{host}:{port}{URI_PATH}: {source}")]
    Answer {
        host: String,
        port: u16,
        #[source]
        source: Box<ExhibitorError>,
    },
    #[error("the HTTP client cannot be built: {0}")]
    Client(String),
    #[error("no Exhibitor host to ask")]
    NoHosts,
    #[error("no server list from Exhibitor yet (last error: {0})")]
    NotYet(String),
}

/// One answer of `/exhibitor/v1/cluster/list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterList {
    /// Host names of the ZooKeeper servers (Exhibitor runs beside each).
    pub servers: Vec<String>,
    /// Their client port, the same on every server.
    pub port: u16,
}

/// Parse an answer. `port` may be a number or a numeric string (Patroni
/// reads it with `str()`); a list without servers is refused, as nothing
/// could connect to it.
pub fn parse_cluster_list(body: &[u8]) -> Result<ClusterList, ExhibitorError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(ExhibitorError::NotJson)?;
    let servers: Vec<String> = v
        .get("servers")
        .and_then(|s| s.as_array())
        .ok_or(ExhibitorError::NoServers)?
        .iter()
        .map(|s| s.as_str().map(|s| s.trim().to_owned()))
        .collect::<Option<Vec<String>>>()
        .ok_or(ExhibitorError::NoServers)?;
    let servers: Vec<String> = servers.into_iter().filter(|s| !s.is_empty()).collect();
    if servers.is_empty() {
        return Err(ExhibitorError::EmptyList);
    }
    let port = match v.get("port").ok_or(ExhibitorError::NoPort)? {
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| ExhibitorError::BadPort(n.to_string()))?,
        serde_json::Value::String(s) => s
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ExhibitorError::BadPort(s.clone()))?,
        other => return Err(ExhibitorError::BadPort(other.to_string())),
    };
    Ok(ClusterList { servers, port })
}

/// The ZooKeeper servers of an answer as `host:port`, sorted by host (as
/// Patroni builds its connection string, so that the same set in another
/// order is no change); an IPv6 address is bracketed.
pub fn connection_servers(list: &ClusterList) -> Vec<String> {
    let mut hosts = list.servers.clone();
    hosts.sort();
    hosts.dedup();
    hosts
        .into_iter()
        .map(|h| {
            if h.contains(':') && !h.starts_with('[') {
                format!("[{h}]:{}", list.port)
            } else {
                format!("{h}:{}", list.port)
            }
        })
        .collect()
}

/// Whether `new` is a change from what is held (`None`: nothing yet).
pub fn is_change(held: Option<&[String]>, new: &[String]) -> bool {
    held != Some(new)
}

/// The hosts to ask, in turn: those of the last answer, then the
/// configured ones not among them.
pub fn hosts_to_ask(last: &[String], boot: &[String]) -> Vec<String> {
    let mut v: Vec<String> = last.to_vec();
    for h in boot {
        if !v.contains(h) {
            v.push(h.clone());
        }
    }
    v
}

/// Where to ask and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExhibitorSettings {
    /// Exhibitor hosts (no port).
    pub hosts: Vec<String>,
    /// Exhibitor's HTTP port.
    pub port: u16,
    pub poll_interval: Duration,
}

impl ExhibitorSettings {
    /// The section as the configuration gives it; `None` without a valid
    /// `port` (validation refuses that).
    pub fn from_config(c: &crate::config::exhibitor::Exhibitor) -> Option<ExhibitorSettings> {
        Some(ExhibitorSettings {
            hosts: c.hosts(),
            port: c.port()?,
            poll_interval: c.poll_interval(),
        })
    }
}

struct State {
    /// The Exhibitor hosts of the last answer (its ZooKeeper servers).
    last_hosts: Vec<String>,
    last_error: String,
}

/// The ZooKeeper servers of one ensemble, as Exhibitor lists them.
pub struct EnsembleProvider {
    settings: ExhibitorSettings,
    http: Result<reqwest::Client, String>,
    state: Mutex<State>,
    /// The servers (`host:port`), `None` until the first answer.
    servers: tokio::sync::watch::Sender<Option<Vec<String>>>,
    started: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EnsembleProvider {
    /// Contacts nothing: the first [`EnsembleProvider::servers`] call
    /// starts the polling.
    pub fn new(settings: ExhibitorSettings) -> Arc<EnsembleProvider> {
        crate::tls::install_provider();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string());
        Arc::new(EnsembleProvider {
            settings,
            http,
            state: Mutex::new(State {
                last_hosts: Vec::new(),
                last_error: "not asked yet".to_owned(),
            }),
            servers: tokio::sync::watch::channel(None).0,
            started: AtomicBool::new(false),
        })
    }

    /// The latest server list, waiting up to `wait` for the first one.
    pub async fn servers(self: &Arc<Self>, wait: Duration) -> Result<Vec<String>, ExhibitorError> {
        self.start();
        let mut rx = self.servers.subscribe();
        let first = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        match first {
            Ok(Ok(list)) => Ok(list.clone().unwrap_or_default()),
            _ => Err(ExhibitorError::NotYet(lock(&self.state).last_error.clone())),
        }
    }

    /// The latest list, without waiting (`None` before the first answer).
    pub fn latest(&self) -> Option<Vec<String>> {
        self.servers.borrow().clone()
    }

    /// Changes of the server list from now on (the current one counts as
    /// seen).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Vec<String>>> {
        self.servers.subscribe()
    }

    /// Start the poll loop once (needs a Tokio runtime).
    fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(poll_loop(Arc::downgrade(self)));
    }

    /// Ask the hosts in turn; the first list answered is taken. `Ok(true)`:
    /// the servers changed.
    pub async fn poll(&self) -> Result<bool, ExhibitorError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| ExhibitorError::Client(e.clone()))?;
        let hosts = hosts_to_ask(&lock(&self.state).last_hosts, &self.settings.hosts);
        if hosts.is_empty() {
            return Err(ExhibitorError::NoHosts);
        }
        let port = self.settings.port;
        let mut last = ExhibitorError::NoHosts;
        for host in hosts {
            match ask(http, &host, port).await {
                Ok(list) => return Ok(self.adopt(list)),
                Err(e) => {
                    tracing::debug!(host = %host, error = %e, "Exhibitor did not answer");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Take an answer; `true` if the servers changed.
    fn adopt(&self, list: ClusterList) -> bool {
        let new = connection_servers(&list);
        lock(&self.state).last_hosts = list.servers;
        let held = self.servers.borrow().clone();
        if !is_change(held.as_deref(), &new) {
            return false;
        }
        tracing::info!(
            event = crate::events::EXHIBITOR_SERVERS_CHANGED,
            old = %held.as_deref().unwrap_or_default().join(","),
            new = %new.join(","),
            "ZooKeeper connection string has changed"
        );
        self.servers.send_replace(Some(new));
        true
    }
}

async fn ask(http: &reqwest::Client, host: &str, port: u16) -> Result<ClusterList, ExhibitorError> {
    let h = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let http_err = |source| ExhibitorError::Http {
        host: h.clone(),
        port,
        source,
    };
    let body = http
        .get(format!("http://{h}:{port}{URI_PATH}"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http_err)?
        .bytes()
        .await
        .map_err(http_err)?;
    parse_cluster_list(&body).map_err(|e| ExhibitorError::Answer {
        host: h.clone(),
        port,
        source: Box::new(e),
    })
}

/// Poll every `poll_interval`; after a poll no Exhibitor answered, again
/// after [`RETRY`] (at most `poll_interval`), logging each failure.
async fn poll_loop(provider: Weak<EnsembleProvider>) {
    loop {
        let pause = {
            let Some(p) = provider.upgrade() else {
                return;
            };
            match p.poll().await {
                Ok(_) => p.settings.poll_interval,
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(
                        event = crate::events::EXHIBITOR_UNREACHABLE,
                        error = %msg,
                        hosts = %hosts_to_ask(&lock(&p.state).last_hosts, &p.settings.hosts).join(","),
                        have_list = p.latest().is_some(),
                        "no server list from Exhibitor; asking again"
                    );
                    lock(&p.state).last_error = msg;
                    RETRY.min(p.settings.poll_interval)
                }
            }
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let l = parse_cluster_list(br#"{"servers": ["z2", "z1"], "port": 2181}"#).unwrap();
        assert_eq!(l.servers, ["z2", "z1"]);
        assert_eq!(l.port, 2181);
        let l = parse_cluster_list(br#"{"servers": ["z1"], "port": "2182"}"#).unwrap();
        assert_eq!(l.port, 2182);
        for (body, want) in [
            (&b"<html>"[..], "not a JSON"),
            (br#"{"port": 1}"#, "no `servers`"),
            (br#"{"servers": [1], "port": 1}"#, "no `servers`"),
            (br#"{"servers": [], "port": 1}"#, "no server"),
            (br#"{"servers": [" "], "port": 1}"#, "no server"),
            (br#"{"servers": ["a"]}"#, "no `port`"),
            (br#"{"servers": ["a"], "port": 0}"#, "not a TCP port"),
            (br#"{"servers": ["a"], "port": 70000}"#, "not a TCP port"),
            (br#"{"servers": ["a"], "port": "x"}"#, "not a TCP port"),
            (br#"{"servers": ["a"], "port": null}"#, "not a TCP port"),
        ] {
            let e = parse_cluster_list(body).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn connection_string_sorted_with_the_port() {
        let l = ClusterList {
            servers: vec!["z2".into(), "z1".into(), "::1".into(), "z1".into()],
            port: 2181,
        };
        assert_eq!(
            connection_servers(&l),
            ["::1", "z1", "z2"].map(|h| if h == "::1" {
                "[::1]:2181".to_owned()
            } else {
                format!("{h}:2181")
            })
        );
    }

    #[test]
    fn change_detection() {
        let a = vec!["z1:2181".to_owned(), "z2:2181".to_owned()];
        let b = vec!["z2:2181".to_owned(), "z3:2181".to_owned()];
        assert!(is_change(None, &a));
        assert!(!is_change(Some(&a), &a));
        assert!(is_change(Some(&a), &b));
        // The same set in another order is the same list once sorted.
        let x = ClusterList {
            servers: vec!["z2".into(), "z1".into()],
            port: 2181,
        };
        assert!(!is_change(Some(&a), &connection_servers(&x)));
    }

    #[test]
    fn hosts_asked_last_answer_first() {
        let last = vec!["z1".to_owned(), "z2".to_owned()];
        let boot = vec!["e1".to_owned(), "z2".to_owned()];
        assert_eq!(hosts_to_ask(&last, &boot), ["z1", "z2", "e1"]);
        assert_eq!(hosts_to_ask(&[], &boot), ["e1", "z2"]);
    }

    #[test]
    fn adopting_keeps_the_list_and_reports_changes() {
        let p = EnsembleProvider::new(ExhibitorSettings {
            hosts: vec!["e1".into()],
            port: 8181,
            poll_interval: Duration::from_secs(300),
        });
        assert_eq!(p.latest(), None);
        let l = |s: &[&str]| ClusterList {
            servers: s.iter().map(|s| (*s).to_owned()).collect(),
            port: 2181,
        };
        assert!(p.adopt(l(&["z1", "z2"])));
        assert!(!p.adopt(l(&["z2", "z1"])));
        assert!(p.adopt(l(&["z3", "z2"])));
        assert_eq!(
            p.latest(),
            Some(vec!["z2:2181".to_owned(), "z3:2181".to_owned()])
        );
        assert_eq!(
            hosts_to_ask(&lock(&p.state).last_hosts, &p.settings.hosts),
            ["z3", "z2", "e1"]
        );
    }

    #[tokio::test]
    async fn no_exhibitor_is_an_error_not_a_hang() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let p = EnsembleProvider::new(ExhibitorSettings {
            hosts: vec!["127.0.0.1".into()],
            port,
            poll_interval: Duration::from_secs(1),
        });
        let e = p.servers(Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(e, ExhibitorError::NotYet(_)), "{e}");
    }
}
