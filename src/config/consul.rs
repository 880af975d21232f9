//! The `consul` section as Patroni reads it (docs/configuration.md §4.3):
//! where the agent is, how to authenticate to it, how to read, and the
//! service registration.
//!
//! Patroni's `Consul.__init__`: `url` wins (its scheme, host and port, port
//! 8500 by default); else `host` (`host[:port]`, port 8500), with `port`
//! overriding the one in `host`; else python-consul's default
//! `127.0.0.1:8500`. `scheme` defaults to `http`. `cert` with `key` is a
//! client certificate and its key, `cert` alone a file holding both.

use serde::{Deserialize, Serialize};

/// Consul's HTTP port, for a `host` without one.
pub const DEFAULT_PORT: u16 = 8500;

/// `consul` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Consul {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// ACL token, sent as `X-Consul-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Check the agent's certificate (https); default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Datacenter (`?dc=`); the agent's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    /// `default`, `consistent` or `stale`: the reads' consistency mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    /// Agent check IDs the node's session is tied to (Patroni's default:
    /// none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_service: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_check_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_check_tls_server_name: Option<String>,
}

/// How reads ask Consul for consistency (docs/dcs.md, "What `load_cluster`
/// promises").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Served by the leader, which may be stale for a leader election.
    #[default]
    Default,
    /// `?consistent`: the leader confirms its leadership first.
    Consistent,
    /// `?stale`: any server.
    Stale,
}

impl Consistency {
    /// The query flag for this mode, if any.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            Consistency::Default => None,
            Consistency::Consistent => Some("consistent"),
            Consistency::Stale => Some("stale"),
        }
    }
}

impl Consul {
    /// `scheme://host:port` of the agent, as Patroni derives it; `None`
    /// when `url` is not a URL with a host.
    pub fn base_url(&self) -> Option<String> {
        if let Some(u) = &self.url {
            let parsed = url::Url::parse(u).ok()?;
            let host = parsed.host_str()?;
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            let port = parsed.port().unwrap_or(DEFAULT_PORT);
            return Some(format!("{}://{host}:{port}", parsed.scheme()));
        }
        let (host, port_in_host) = match &self.host {
            Some(h) => split_host_port(h.trim()),
            None => ("127.0.0.1".to_owned(), None),
        };
        let port = self.port.or(port_in_host).unwrap_or(DEFAULT_PORT);
        let scheme = self.scheme.as_deref().unwrap_or("http");
        Some(format!("{scheme}://{host}:{port}"))
    }

    /// The consistency mode; an unknown name reads as `default`, as
    /// python-consul treats it (reported by [`Consul::problems`]).
    pub fn consistency(&self) -> Consistency {
        match self.consistency.as_deref() {
            Some("consistent") => Consistency::Consistent,
            Some("stale") => Consistency::Stale,
            _ => Consistency::Default,
        }
    }

    /// What `validate` reports: `(key, message)` errors and warnings.
    pub fn problems(&self) -> (Vec<(String, String)>, Vec<String>) {
        let mut errors = Vec::new();
        let warnings = Vec::new();
        match self.base_url() {
            None => errors.push((
                "consul.url".to_owned(),
                format!(
                    "not a URL with a host: {:?}",
                    self.url.as_deref().unwrap_or("")
                ),
            )),
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => errors.push((
                if self.url.is_some() {
                    "consul.url"
                } else {
                    "consul.scheme"
                }
                .to_owned(),
                format!("the scheme must be http or https: {u}"),
            )),
            Some(_) => {}
        }
        if let Some(c) = &self.consistency
            && !matches!(c.as_str(), "default" | "consistent" | "stale")
        {
            errors.push((
                "consul.consistency".to_owned(),
                format!("{c:?}: one of default, consistent, stale"),
            ));
        }
        if self.key.is_some() && self.cert.is_none() {
            errors.push((
                "consul.key".to_owned(),
                "a key without `cert` is not used".to_owned(),
            ));
        }
        if let Some(i) = &self.service_check_interval
            && !is_go_duration(i)
        {
            errors.push((
                "consul.service_check_interval".to_owned(),
                format!("{i:?}: a duration such as 5s"),
            ));
        }
        (errors, warnings)
    }
}

/// A duration as Consul reads one (Go's `time.ParseDuration`): numbers
/// with units `ns`, `us`, `ms`, `s`, `m`, `h`, e.g. `5s`, `1m30s`, `0.5s`.
fn is_go_duration(text: &str) -> bool {
    let mut rest = text.trim();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 || rest[..n].parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(&rest[..u], "ns" | "us" | "ms" | "s" | "m" | "h") {
            return false;
        }
        rest = &rest[u..];
    }
    true
}

/// `host[:port]` (an IPv6 address in brackets keeps them).
fn split_host_port(h: &str) -> (String, Option<u16>) {
    if let Some(rest) = h.strip_prefix('[')
        && let Some((addr, tail)) = rest.split_once(']')
    {
        let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
        return (format!("[{addr}]"), port);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host.to_owned(), Some(p)),
            Err(_) => (h.to_owned(), None),
        },
        _ => (h.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(yaml: &str) -> Consul {
        serde_yaml_ng::from_str(yaml).expect("consul section")
    }

    #[test]
    fn address_as_patroni_derives_it() {
        assert_eq!(c("{}").base_url().as_deref(), Some("http://127.0.0.1:8500"));
        assert_eq!(c("host: c1").base_url().as_deref(), Some("http://c1:8500"));
        assert_eq!(
            c("host: c1:9500").base_url().as_deref(),
            Some("http://c1:9500")
        );
        // `port` overrides the one in `host`.
        assert_eq!(
            c("{host: 'c1:9500', port: 7500, scheme: https}")
                .base_url()
                .as_deref(),
            Some("https://c1:7500")
        );
        // `url` wins over host, port and scheme.
        assert_eq!(
            c("{url: 'https://u:8501', host: c1, port: 1}")
                .base_url()
                .as_deref(),
            Some("https://u:8501")
        );
        assert_eq!(
            c("url: 'http://u'").base_url().as_deref(),
            Some("http://u:8500")
        );
        assert_eq!(
            c("host: '[::1]:8600'").base_url().as_deref(),
            Some("http://[::1]:8600")
        );
    }

    #[test]
    fn consistency_modes() {
        assert_eq!(c("{}").consistency(), Consistency::Default);
        assert_eq!(
            c("consistency: consistent").consistency(),
            Consistency::Consistent
        );
        assert_eq!(c("consistency: stale").consistency(), Consistency::Stale);
        let (e, _) = c("consistency: strong").problems();
        assert_eq!(e[0].0, "consul.consistency");
    }

    #[test]
    fn problems_name_the_key() {
        assert!(c("host: c1").problems().0.is_empty());
        assert_eq!(c("url: 'nope'").problems().0[0].0, "consul.url");
        assert_eq!(c("scheme: ftp").problems().0[0].0, "consul.scheme");
        assert_eq!(c("key: /k").problems().0[0].0, "consul.key");
        assert_eq!(
            c("service_check_interval: often").problems().0[0].0,
            "consul.service_check_interval"
        );
        assert!(c("service_check_interval: 10s").problems().0.is_empty());
    }
}
