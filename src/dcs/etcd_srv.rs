//! etcd endpoints from DNS SRV records (`srv`, `srv_suffix`;
//! docs/configuration.md §4), as Patroni's `_get_machines_cache_from_srv`
//! finds them: `_etcd-client-ssl._tcp.<srv>` (https), else
//! `_etcd-client._tcp.<srv>` (http), else `_etcd-ssl._tcp.<srv>` (https),
//! else `_etcd._tcp.<srv>` (http); with `srv_suffix`, `_etcd-client-ssl-<suffix>`
//! and so on. Patroni's last resort comes after them: the peer records
//! `_etcd-server-ssl._tcp.<srv>` (https) and `_etcd-server._tcp.<srv>`
//! (http), and from the first peer that answers a `GET /members` on its
//! peer port (without checking its certificate, as Patroni's
//! `verify=False`), every member's `clientURLs`.
//!
//! No resolver crate is in the tree: this is one SRV question over UDP to
//! the first `nameserver` of `/etc/resolv.conf` (RFC 1035, section 4), enough for
//! the records etcd deployments publish; a truncated answer is not retried
//! over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// The record prefixes, in Patroni's order, and whether they mean https.
const PREFIXES: [(&str, bool); 4] = [
    ("-client-ssl", true),
    ("-client", false),
    ("-ssl", true),
    ("", false),
];

/// The peer records of the last resort, in Patroni's order.
const SERVER_PREFIXES: [(&str, bool); 2] = [("-server-ssl", true), ("-server", false)];

/// The SRV names asked for `srv` (with `suffix`), in order, each with
/// whether its endpoints are https.
pub(crate) fn names(srv: &str, suffix: Option<&str>) -> Vec<(String, bool)> {
    names_of(&PREFIXES, srv, suffix)
}

/// The peer names of the last resort (`_etcd-server-ssl`, `_etcd-server`).
pub(crate) fn server_names(srv: &str, suffix: Option<&str>) -> Vec<(String, bool)> {
    names_of(&SERVER_PREFIXES, srv, suffix)
}

fn names_of(prefixes: &[(&str, bool)], srv: &str, suffix: Option<&str>) -> Vec<(String, bool)> {
    prefixes
        .iter()
        .map(|(p, https)| {
            let p = match suffix {
                Some(s) if !s.is_empty() => format!("{p}-{s}"),
                _ => (*p).to_owned(),
            };
            (
                format!("_etcd{p}._tcp.{}", srv.trim_end_matches('.')),
                *https,
            )
        })
        .collect()
}

/// What the SRV names gave.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// The endpoints of the first name that has records.
    pub endpoints: Vec<String>,
    /// The names asked, in order (for the message when none has records).
    pub asked: Vec<String>,
    /// The name server answered at least once (else it is unreachable).
    pub answered: bool,
}

/// The endpoints of the first name that has records.
pub(crate) async fn endpoints(
    srv: &str,
    suffix: Option<&str>,
    nameserver: SocketAddr,
    timeout: Duration,
) -> Found {
    let mut asked = Vec::new();
    let mut answered = false;
    for (name, https) in names(srv, suffix) {
        let found = lookup(&name, nameserver, timeout).await;
        asked.push(name);
        match found {
            Ok(targets) if !targets.is_empty() => {
                let scheme = if https { "https" } else { "http" };
                let endpoints = targets
                    .into_iter()
                    .map(|(host, port)| format!("{scheme}://{host}:{port}"))
                    .collect();
                return Found {
                    endpoints,
                    asked,
                    answered: true,
                };
            }
            Ok(_) => answered = true,
            Err(e) => {
                tracing::debug!(name = %asked[asked.len() - 1], error = %e, "SRV lookup failed")
            }
        }
    }
    // The last resort: a peer's list of the members' client URLs.
    for (name, https) in server_names(srv, suffix) {
        let found = lookup(&name, nameserver, timeout).await;
        asked.push(name);
        match found {
            Ok(targets) => {
                answered = true;
                for (host, port) in targets {
                    let endpoints = members(https, &host, port, timeout).await;
                    if !endpoints.is_empty() {
                        return Found {
                            endpoints,
                            asked,
                            answered,
                        };
                    }
                }
            }
            Err(e) => {
                tracing::debug!(name = %asked[asked.len() - 1], error = %e, "SRV lookup failed")
            }
        }
    }
    Found {
        endpoints: Vec::new(),
        asked,
        answered,
    }
}

/// The endpoints `srv` gives a section, as both etcd backends ask for them
/// (v3 at each new connection, v2 at its first request and again when no
/// endpoint answered; docs/dcs.md): `Ok(Some)` the first name with records,
/// `Ok(None)` none has any but `configured` endpoints remain to be used.
/// With nothing configured, no records for any name is a refusal naming
/// `<section>.srv` and the names asked (a configuration error: the daemon
/// stops at start), and a name server that never answered is an outage.
/// Each name is given an eighth of `retry_timeout`, so the six names fit
/// in one.
pub(crate) async fn resolve(
    section: &str,
    srv: &super::etcd_conn::SrvSettings,
    configured: bool,
    retry_timeout: Duration,
) -> Result<Option<Vec<String>>, super::etcd_conn::ConnectError> {
    use super::etcd_conn::ConnectError;
    let Some(ns) = srv.nameserver.or_else(system_nameserver) else {
        return if configured {
            Ok(None)
        } else {
            Err(ConnectError::Refusal(format!(
                "{section}.srv: no nameserver in /etc/resolv.conf"
            )))
        };
    };
    let found = endpoints(&srv.name, srv.suffix.as_deref(), ns, retry_timeout / 8).await;
    if !found.endpoints.is_empty() {
        return Ok(Some(found.endpoints));
    }
    if configured {
        return Ok(None);
    }
    let asked = found.asked.join(", ");
    Err(if found.answered {
        ConnectError::Refusal(format!(
            "{section}.srv: {asked}: no SRV records (name server {ns})"
        ))
    } else {
        ConnectError::Unreachable(format!(
            "{section}.srv: name server {ns} did not answer for {asked}"
        ))
    })
}

/// One member of a `GET /members` answer (etcd's peer API).
#[derive(Debug, serde::Deserialize)]
struct PeerMember {
    #[serde(default, rename = "clientURLs")]
    client_urls: Vec<String>,
}

/// Every member's client URLs, from `GET /members` on the peer at
/// `host:port` (its certificate not checked, as Patroni's `verify=False`),
/// in the order given, each once; empty when it does not answer below 400.
async fn members(https: bool, host: &str, port: u16, timeout: Duration) -> Vec<String> {
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{host}:{port}/members");
    // reqwest wants its TLS even for http (rustls-no-provider).
    let tls = match crate::tls::client_config(crate::tls::ServerCheck::None, None) {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(%url, error = %e, "no TLS client for the etcd peer");
            return Vec::new();
        }
    };
    let Ok(client) = reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_preconfigured(tls)
        .build()
    else {
        return Vec::new();
    };
    let answer = match client.get(&url).send().await {
        Ok(r) if r.status().as_u16() < 400 => r.json::<Vec<PeerMember>>().await,
        Ok(r) => {
            tracing::debug!(%url, status = %r.status(), "etcd peer refused /members");
            return Vec::new();
        }
        Err(e) => {
            tracing::debug!(%url, error = %e, "etcd peer did not answer /members");
            return Vec::new();
        }
    };
    let mut urls: Vec<String> = Vec::new();
    for m in answer.unwrap_or_default() {
        for u in m.client_urls {
            if !urls.contains(&u) {
                urls.push(u);
            }
        }
    }
    urls
}

/// The first `nameserver` of `/etc/resolv.conf`, port 53.
pub(crate) fn system_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next())
            .flatten()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SrvError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed answer")]
    Malformed,
    #[error("name server error (rcode {0})")]
    Rcode(u8),
}

/// The `(target, port)` of the SRV records of `name`, by priority then
/// weight (heaviest first); empty when the name has none (NXDOMAIN too).
pub(crate) async fn lookup(
    name: &str,
    nameserver: SocketAddr,
    timeout: Duration,
) -> Result<Vec<(String, u16)>, SrvError> {
    let bind: SocketAddr = if nameserver.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(nameserver).await?;
    let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(7);
    sock.send(&query(id, name)).await?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| SrvError::Timeout(timeout))??;
        // Another id is a stray answer: keep waiting for ours.
        if let Some(r) = parse(id, &buf[..n])? {
            return Ok(r);
        }
    }
}

/// A recursive SRV question for `name`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    for label in name.trim_end_matches('.').split('.') {
        let l = &label.as_bytes()[..label.len().min(63)];
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    q.extend_from_slice(&[0, 33, 0, 1]); // SRV, IN
    q
}

/// The SRV records of an answer with `id` (`None`: another id).
fn parse(id: u16, m: &[u8]) -> Result<Option<Vec<(String, u16)>>, SrvError> {
    let u16_at = |i: usize| -> Result<u16, SrvError> {
        Ok(u16::from_be_bytes([
            *m.get(i).ok_or(SrvError::Malformed)?,
            *m.get(i + 1).ok_or(SrvError::Malformed)?,
        ]))
    };
    if u16_at(0)? != id {
        return Ok(None);
    }
    let rcode = m.get(3).ok_or(SrvError::Malformed)? & 0x0f;
    match rcode {
        0 => {}
        3 => return Ok(Some(Vec::new())), // NXDOMAIN
        r => return Err(SrvError::Rcode(r)),
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i)? + 4;
    }
    let mut found: Vec<(u16, u16, String, u16)> = Vec::new();
    for _ in 0..an {
        i = skip_name(m, i)?;
        let (rtype, rdlen) = (u16_at(i)?, usize::from(u16_at(i + 8)?));
        let rdata = i + 10;
        if m.len() < rdata + rdlen {
            return Err(SrvError::Malformed);
        }
        if rtype == 33 && rdlen >= 7 {
            let (prio, weight, port) = (u16_at(rdata)?, u16_at(rdata + 2)?, u16_at(rdata + 4)?);
            let target = read_name(m, rdata + 6)?;
            if !target.is_empty() {
                found.push((prio, weight, target, port));
            }
        }
        i = rdata + rdlen;
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    Ok(Some(found.into_iter().map(|(_, _, t, p)| (t, p)).collect()))
}

/// The offset after the (possibly compressed) name at `i`.
fn skip_name(m: &[u8], mut i: usize) -> Result<usize, SrvError> {
    loop {
        let len = *m.get(i).ok_or(SrvError::Malformed)?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xc0 == 0xc0 => return Ok(i + 2),
            l => i += 1 + usize::from(l),
        }
    }
}

/// The name at `i`, following compression pointers (at most 32).
fn read_name(m: &[u8], mut i: usize) -> Result<String, SrvError> {
    let mut labels: Vec<String> = Vec::new();
    for _ in 0..128 {
        let len = *m.get(i).ok_or(SrvError::Malformed)?;
        if len == 0 {
            return Ok(labels.join("."));
        }
        if len & 0xc0 == 0xc0 {
            let lo = *m.get(i + 1).ok_or(SrvError::Malformed)?;
            i = (usize::from(len & 0x3f) << 8) | usize::from(lo);
            continue;
        }
        let l = m
            .get(i + 1..i + 1 + usize::from(len))
            .ok_or(SrvError::Malformed)?;
        labels.push(String::from_utf8_lossy(l).into_owned());
        i += 1 + usize::from(len);
    }
    Err(SrvError::Malformed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn patronis_names_in_patronis_order() {
        let n: Vec<String> = names("example.com", None)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            n,
            [
                "_etcd-client-ssl._tcp.example.com",
                "_etcd-client._tcp.example.com",
                "_etcd-ssl._tcp.example.com",
                "_etcd._tcp.example.com"
            ]
        );
        let (n, https) = names("example.com.", Some("blue"))[0].clone();
        assert_eq!(n, "_etcd-client-ssl-blue._tcp.example.com");
        assert!(https);
        assert!(!names("x", None)[1].1);
    }

    /// An answer to `q` (a query made by [`query`]) with SRV records
    /// `(priority, weight, port, target)`, the targets written as
    /// compression pointers where they repeat the question's domain.
    pub(crate) fn answer(q: &[u8], records: &[(u16, u16, u16, &str)], rcode: u8) -> Vec<u8> {
        let mut a = q.to_vec();
        a[2] = 0x81;
        a[3] = 0x80 | rcode;
        a[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (prio, weight, port, target) in records {
            a.extend_from_slice(&[0xc0, 12]); // the question's name
            a.extend_from_slice(&[0, 33, 0, 1, 0, 0, 0, 60]);
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&prio.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            for l in target.split('.') {
                rdata.push(l.len() as u8);
                rdata.extend_from_slice(l.as_bytes());
            }
            rdata.push(0);
            a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            a.extend_from_slice(&rdata);
        }
        a
    }

    #[test]
    fn answers_are_read_by_priority_then_weight() {
        let q = query(7, "_etcd-client._tcp.example.com");
        let a = answer(
            &q,
            &[
                (20, 0, 2379, "c.example.com"),
                (10, 1, 2379, "b.example.com"),
                (10, 5, 2380, "a.example.com"),
            ],
            0,
        );
        assert_eq!(
            parse(7, &a).unwrap(),
            Some(vec![
                ("a.example.com".to_owned(), 2380),
                ("b.example.com".to_owned(), 2379),
                ("c.example.com".to_owned(), 2379)
            ])
        );
        assert_eq!(parse(8, &a).unwrap(), None, "another id");
        assert_eq!(parse(7, &answer(&q, &[], 3)).unwrap(), Some(vec![]));
        assert!(matches!(
            parse(7, &answer(&q, &[], 2)),
            Err(SrvError::Rcode(2))
        ));
        assert!(matches!(
            parse(7, &a[..a.len() - 3]),
            Err(SrvError::Malformed)
        ));
    }

    /// A name server on loopback answering `records` for `_etcd-client._tcp`
    /// and NXDOMAIN for everything else, once per question, `n` questions.
    pub(crate) async fn fake_nameserver(
        records: Vec<(u16, u16, u16, String)>,
        n: usize,
    ) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            for _ in 0..n {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let q = &buf[..len];
                let client = String::from_utf8_lossy(q).contains("etcd-client\x04_tcp");
                let recs: Vec<(u16, u16, u16, &str)> = records
                    .iter()
                    .map(|(a, b, c, d)| (*a, *b, *c, d.as_str()))
                    .collect();
                let a = if client {
                    answer(q, &recs, 0)
                } else {
                    answer(q, &[], 3)
                };
                let _ = sock.send_to(&a, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_first_name_with_records_gives_the_endpoints() {
        let ns = fake_nameserver(vec![(0, 0, 2379, "etcd1.example.com".into())], 2).await;
        let f = endpoints("example.com", None, ns, Duration::from_secs(2)).await;
        assert_eq!(f.endpoints, ["http://etcd1.example.com:2379"]);
        assert_eq!(f.asked.len(), 2, "-client-ssl, then -client");
        let ns = fake_nameserver(Vec::new(), 6).await;
        let f = endpoints("example.com", None, ns, Duration::from_secs(2)).await;
        assert!(f.endpoints.is_empty() && f.answered);
        // The four client names, then Patroni's last resort (the peers').
        assert_eq!(f.asked.len(), 6);
        // Nobody answering: not answered.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let f = endpoints(
            "example.com",
            None,
            silent.local_addr().expect("addr"),
            Duration::from_millis(100),
        )
        .await;
        assert!(f.endpoints.is_empty() && !f.answered);
    }

    fn srv_node(ns: SocketAddr) -> crate::dcs::etcd::EtcdDcs {
        let settings = crate::dcs::etcd::EtcdSettings {
            srv: Some(crate::dcs::etcd_conn::SrvSettings {
                name: "example.com".into(),
                suffix: None,
                nameserver: Some(ns),
            }),
            ..crate::dcs::etcd::EtcdSettings::default()
        };
        crate::dcs::etcd::EtcdDcs::with_settings(
            settings,
            "/service/srv".into(),
            "a".into(),
            Duration::from_secs(10),
            Duration::from_secs(2),
        )
    }

    #[tokio::test]
    async fn an_srv_name_without_records_is_a_refusal_naming_it() {
        let ns = fake_nameserver(Vec::new(), 6).await;
        let m = srv_node(ns).refused_at_start().await.expect("refused");
        assert!(
            m.contains("etcd3.srv")
                && m.contains("_etcd-client-ssl._tcp.example.com")
                && m.contains("_etcd._tcp.example.com")
                && m.contains("no SRV records"),
            "{m}"
        );
    }

    /// Patroni's last resort: no client records, a peer record whose
    /// `/members` (a real etcd's peer port) lists the client URLs.
    #[tokio::test]
    async fn the_peer_records_give_the_members_client_urls() {
        // A peer that answers /members as etcd's peer API does.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let peer = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 2048];
                let _ = s.read(&mut buf).await;
                let body = r#"[{"id":"1","name":"a","peerURLs":["http://127.0.0.1:1"],"clientURLs":["http://127.0.0.1:2379","http://10.0.0.1:2379"]},{"id":"2","name":"b","clientURLs":["http://127.0.0.1:2379"]}]"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let ns = sock.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            loop {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let q = &buf[..len];
                // Only `_etcd-server._tcp` (not -ssl) has a record.
                let server = String::from_utf8_lossy(q).contains("\x0c_etcd-server\x04_tcp");
                let a = if server {
                    answer(q, &[(0, 0, peer, "127.0.0.1")], 0)
                } else {
                    answer(q, &[], 3)
                };
                let _ = sock.send_to(&a, from).await;
            }
        });
        let found = endpoints("example.test", None, ns, Duration::from_secs(2)).await;
        assert_eq!(
            found.endpoints,
            ["http://127.0.0.1:2379", "http://10.0.0.1:2379"],
            "{found:?}"
        );
        assert_eq!(found.asked.len(), 6, "{found:?}");
        assert!(found.asked[4].starts_with("_etcd-server-ssl._tcp."));
    }

    #[tokio::test]
    async fn the_records_are_the_endpoints_connected_to() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let ns = fake_nameserver(vec![(0, 0, port, "127.0.0.1".into())], 2).await;
        let node = srv_node(ns);
        // Nobody listens there: an outage, not a refusal.
        assert_eq!(node.refused_at_start().await, None);
        assert_eq!(
            node.endpoint_in_use(),
            Some(format!("http://127.0.0.1:{port}"))
        );
    }
}
