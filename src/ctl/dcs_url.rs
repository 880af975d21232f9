//! `-d/--dcs-url` as patronictl reads it (its `parse_dcs`; docs/cli.md):
//! `[SCHEME://][HOST][:PORT][/NAMESPACE]`, SCHEME one of `etcd` (the v2
//! API), `etcd3`, `consul`, `zookeeper`, `exhibitor`. Without a scheme
//! the port picks it (2181 zookeeper, 8181 exhibitor, 8500 consul, else
//! etcd); without a host, `localhost`; without a port, the store's
//! default; a path is the namespace, replacing the file's. pgpilotctl also
//! takes several `HOST:PORT` separated by commas (patronictl one).

use thiserror::Error;

/// The store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// etcd's v2 API (Patroni's `etcd`).
    Etcd,
    Etcd3,
    Consul,
    ZooKeeper,
    Exhibitor,
}

impl Scheme {
    /// Patroni's `DCS_DEFAULTS`, in its order (a port without a scheme
    /// picks the first store of that default port).
    const ALL: [(Scheme, &'static str, u16); 5] = [
        (Scheme::ZooKeeper, "zookeeper", 2181),
        (Scheme::Exhibitor, "exhibitor", 8181),
        (Scheme::Consul, "consul", 8500),
        (Scheme::Etcd, "etcd", 2379),
        (Scheme::Etcd3, "etcd3", 2379),
    ];

    fn from_name(name: &str) -> Option<Scheme> {
        Self::ALL
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(s, _, _)| *s)
    }

    /// The store's default port.
    pub fn default_port(self) -> u16 {
        Self::ALL
            .iter()
            .find(|(s, _, _)| *s == self)
            .map_or(2379, |(_, _, p)| *p)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _, _)| *s == self)
            .map_or("etcd", |(_, n, _)| n)
    }
}

/// A parsed `--dcs-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcsUrl {
    pub scheme: Scheme,
    /// `(host, port)`, in the order given; at least one.
    pub hosts: Vec<(String, u16)>,
    /// The URL's path (`/service2`), which replaces the file's `namespace`.
    pub namespace: Option<String>,
}

impl DcsUrl {
    /// `host:port` of each host.
    pub fn host_ports(&self) -> Vec<String> {
        self.hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DcsUrlError {
    /// patronictl's words.
    #[error("Unknown dcs scheme: {0}")]
    UnknownScheme(String),
    #[error("--dcs-url {url}: {port:?} is not a port")]
    BadPort { url: String, port: String },
}

/// Read `url` as patronictl does.
pub fn parse(url: &str) -> Result<DcsUrl, DcsUrlError> {
    let (scheme_name, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", url.strip_prefix("//").unwrap_or(url)),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut parsed: Vec<(String, Option<u16>)> = Vec::new();
    for part in authority.split(',') {
        let (host, port) = split_host_port(part.trim());
        let port = match port {
            None | Some("") => None,
            Some(p) => Some(p.parse::<u16>().map_err(|_| DcsUrlError::BadPort {
                url: url.to_owned(),
                port: p.to_owned(),
            })?),
        };
        let host = if host.is_empty() { "localhost" } else { host };
        parsed.push((host.to_owned(), port));
    }
    let scheme = if scheme_name.is_empty() {
        let port = parsed.first().and_then(|(_, p)| *p);
        Scheme::ALL
            .iter()
            .find(|(_, _, d)| Some(*d) == port)
            .map_or(Scheme::Etcd, |(s, _, _)| *s)
    } else {
        Scheme::from_name(scheme_name)
            .ok_or_else(|| DcsUrlError::UnknownScheme(scheme_name.to_owned()))?
    };
    let hosts = parsed
        .into_iter()
        .map(|(h, p)| (h, p.unwrap_or(scheme.default_port())))
        .collect();
    let path = path.trim();
    let namespace = (!path.is_empty() && path != "/").then(|| path.to_owned());
    Ok(DcsUrl {
        scheme,
        hosts,
        namespace,
    })
}

/// `host[:port]`, `[v6]:port` or a bare IPv6 address.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (host, after.strip_prefix(':'));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(scheme: Scheme, hosts: &[(&str, u16)], ns: Option<&str>) -> DcsUrl {
        DcsUrl {
            scheme,
            hosts: hosts.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect(),
            namespace: ns.map(str::to_owned),
        }
    }

    #[test]
    fn patronictls_examples() {
        // The doctests of patronictl's parse_dcs.
        assert_eq!(
            parse(""),
            Ok(url(Scheme::Etcd, &[("localhost", 2379)], None))
        );
        assert_eq!(
            parse("etcd://:2399"),
            Ok(url(Scheme::Etcd, &[("localhost", 2399)], None))
        );
        assert_eq!(
            parse("etcd://test"),
            Ok(url(Scheme::Etcd, &[("test", 2379)], None))
        );
        assert_eq!(
            parse("etcd3://random.com:2399"),
            Ok(url(Scheme::Etcd3, &[("random.com", 2399)], None))
        );
        assert_eq!(
            parse("etcd3://random.com:2399/customnamespace"),
            Ok(url(
                Scheme::Etcd3,
                &[("random.com", 2399)],
                Some("/customnamespace")
            ))
        );
    }

    #[test]
    fn every_store_and_its_default_port() {
        for (name, scheme, port) in [
            ("zookeeper", Scheme::ZooKeeper, 2181),
            ("exhibitor", Scheme::Exhibitor, 8181),
            ("consul", Scheme::Consul, 8500),
            ("etcd", Scheme::Etcd, 2379),
            ("etcd3", Scheme::Etcd3, 2379),
        ] {
            let u = parse(&format!("{name}://h")).expect(name);
            assert_eq!(u, url(scheme, &[("h", port)], None), "{name}");
            assert_eq!(scheme.name(), name);
        }
    }

    #[test]
    fn a_port_without_scheme_picks_the_store() {
        assert_eq!(parse("h:2181").map(|u| u.scheme), Ok(Scheme::ZooKeeper));
        assert_eq!(parse("//h:8181").map(|u| u.scheme), Ok(Scheme::Exhibitor));
        assert_eq!(parse("h:8500").map(|u| u.scheme), Ok(Scheme::Consul));
        assert_eq!(parse("h:2379").map(|u| u.scheme), Ok(Scheme::Etcd));
        assert_eq!(parse("h:9999").map(|u| u.scheme), Ok(Scheme::Etcd));
    }

    #[test]
    fn several_hosts_ipv6_and_refusals() {
        assert_eq!(
            parse("etcd3://a:1,b,[::1]:3/"),
            Ok(url(
                Scheme::Etcd3,
                &[("a", 1), ("b", 2379), ("::1", 3)],
                None
            ))
        );
        assert_eq!(
            parse("redis://h").map_err(|e| e.to_string()),
            Err("Unknown dcs scheme: redis".to_owned())
        );
        assert!(matches!(
            parse("etcd3://h:port"),
            Err(DcsUrlError::BadPort { .. })
        ));
    }
}
