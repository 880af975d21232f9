//! The `exhibitor` section as Patroni reads it (docs/configuration.md §4.4):
//! the Exhibitor servers to ask for the ZooKeeper ensemble, their port and
//! how often to ask again, and the checks `validate` runs on it.
//!
//! Patroni's `Exhibitor` DCS is its ZooKeeper one with `hosts` replaced by
//! the list Exhibitor answers: the section's other keys (`set_acls`,
//! `auth_data`, `use_ssl`, ...) are the `zookeeper` section's and read the
//! same way ([`Exhibitor::zookeeper`]).

use serde::{Deserialize, Serialize};

use super::types::HostList;
use super::zookeeper::ZooKeeper;

/// Patroni's default `poll_interval`, in seconds.
pub const DEFAULT_POLL_INTERVAL: u64 = 300;

/// `exhibitor` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Exhibitor {
    /// The Exhibitor servers (host names, no port): a YAML list or a
    /// comma-separated string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<HostList>,
    /// Exhibitor's HTTP port, the same on every host (required, as in
    /// Patroni).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Seconds between two polls of the server list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<i64>,
    /// The `zookeeper` keys the section may also carry (`hosts` aside).
    #[serde(flatten)]
    pub zookeeper: ZooKeeperKeys,
}

/// The `zookeeper` section's keys other than `hosts`, as Patroni passes
/// them on to its ZooKeeper DCS under `exhibitor`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ZooKeeperKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_ssl: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_acls: Option<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_data: Option<std::collections::BTreeMap<String, String>>,
}

impl Exhibitor {
    /// The Exhibitor hosts, in the order given, empty entries dropped.
    pub fn hosts(&self) -> Vec<String> {
        let raw: Vec<String> = match &self.hosts {
            Some(HostList::List(v)) => v.iter().map(|s| s.trim().to_owned()).collect(),
            Some(HostList::Csv(s)) => s.split(',').map(|s| s.trim().to_owned()).collect(),
            None => Vec::new(),
        };
        raw.into_iter().filter(|h| !h.is_empty()).collect()
    }

    /// `port`, when it is a valid TCP port.
    pub fn port(&self) -> Option<u16> {
        self.port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
    }

    /// `poll_interval` (300 s by default; a value below one second counts
    /// as one, and validation refuses it).
    pub fn poll_interval(&self) -> std::time::Duration {
        let secs = self
            .poll_interval
            .map_or(DEFAULT_POLL_INTERVAL, |s| s.max(1) as u64);
        std::time::Duration::from_secs(secs)
    }

    /// The `zookeeper` section this one stands for once Exhibitor named the
    /// servers (`servers`, `host:port` each).
    pub fn zookeeper(&self, servers: &[String]) -> ZooKeeper {
        ZooKeeper {
            hosts: Some(HostList::List(servers.to_vec())),
            use_ssl: self.zookeeper.use_ssl,
            cacert: self.zookeeper.cacert.clone(),
            cert: self.zookeeper.cert.clone(),
            key: self.zookeeper.key.clone(),
            key_password: self.zookeeper.key_password.clone(),
            verify: self.zookeeper.verify,
            set_acls: self.zookeeper.set_acls.clone(),
            auth_data: self.zookeeper.auth_data.clone(),
        }
    }

    /// What `validate` reports about the section: `(key, message)` errors
    /// and warnings. `host_ok` checks one `host:port`.
    pub fn problems<E: std::fmt::Display>(
        &self,
        host_ok: impl Fn(&str) -> Result<(), E>,
    ) -> (Vec<(String, String)>, Vec<String>) {
        let mut errors = Vec::new();
        let hosts = self.hosts();
        if hosts.is_empty() {
            errors.push((
                "exhibitor.hosts".to_owned(),
                "at least one Exhibitor host is required".to_owned(),
            ));
        }
        match (self.port, self.port()) {
            (None, _) => errors.push((
                "exhibitor.port".to_owned(),
                "Exhibitor's HTTP port is required".to_owned(),
            )),
            (Some(p), None) => errors.push((
                "exhibitor.port".to_owned(),
                format!("{p} is not a TCP port (1-65535)"),
            )),
            (Some(_), Some(port)) => {
                for h in &hosts {
                    let bracketed = if h.contains(':') && !h.starts_with('[') {
                        format!("[{h}]")
                    } else {
                        h.clone()
                    };
                    if let Err(m) = host_ok(&format!("{bracketed}:{port}")) {
                        errors.push(("exhibitor.hosts".to_owned(), format!("bad host {h:?}: {m}")));
                    }
                }
            }
        }
        if let Some(s) = self.poll_interval
            && s < 1
        {
            errors.push((
                "exhibitor.poll_interval".to_owned(),
                format!("{s}: must be at least 1 (seconds)"),
            ));
        }
        // The ZooKeeper keys, checked as the `zookeeper` section's, under
        // this section's name; the servers come later, from Exhibitor.
        let (zk_errors, zk_warnings) = self
            .zookeeper(&["exhibitor:1".to_owned()])
            .problems(|_| Ok::<(), std::convert::Infallible>(()));
        errors.extend(
            zk_errors
                .into_iter()
                .map(|(k, m)| (k.replacen("zookeeper.", "exhibitor.", 1), m)),
        );
        let warnings = zk_warnings
            .into_iter()
            .map(|w| w.replacen("zookeeper.", "exhibitor.", 1))
            .collect();
        (errors, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(yaml: &str) -> Exhibitor {
        serde_yaml_ng::from_str(yaml).expect("section parses")
    }

    fn ok(_: &str) -> Result<(), std::convert::Infallible> {
        Ok(())
    }

    #[test]
    fn hosts_list_or_string_port_and_default_poll_interval() {
        let e = ex("hosts: [a, ' b']\nport: 8181");
        assert_eq!(e.hosts(), ["a", "b"]);
        assert_eq!(e.port(), Some(8181));
        assert_eq!(e.poll_interval(), std::time::Duration::from_secs(300));
        let e = ex("hosts: 'a,,b'\nport: 8181\npoll_interval: 10");
        assert_eq!(e.hosts(), ["a", "b"]);
        assert_eq!(e.poll_interval(), std::time::Duration::from_secs(10));
    }

    #[test]
    fn zookeeper_keys_carried_over() {
        let e = ex("hosts: [a]\nport: 8181\nauth_data: {digest: 'u:p'}\nset_acls: {x: [READ]}");
        let z = e.zookeeper(&["z1:2181".to_owned()]);
        assert_eq!(z.servers(), ["z1:2181"]);
        assert_eq!(z.auth(), [("digest".to_owned(), "u:p".to_owned())]);
        assert_eq!(z.acls().len(), 1);
    }

    #[test]
    fn problems_name_the_key() {
        let (e, w) = ex("hosts: [a, b]\nport: 8181").problems(ok);
        assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");
        let keys =
            |y: &str| -> Vec<String> { ex(y).problems(ok).0.into_iter().map(|(k, _)| k).collect() };
        assert_eq!(keys("port: 8181"), ["exhibitor.hosts"]);
        assert_eq!(keys("hosts: [a]"), ["exhibitor.port"]);
        assert_eq!(keys("hosts: [a]\nport: 70000"), ["exhibitor.port"]);
        assert_eq!(
            keys("hosts: [a]\nport: 1\npoll_interval: 0"),
            ["exhibitor.poll_interval"]
        );
        // TLS keys are the zookeeper section's, warnings under this name.
        assert!(keys("hosts: [a]\nport: 1\nuse_ssl: true").is_empty());
        let (_, w) = ex("hosts: [a]\nport: 1\nuse_ssl: true\nverify: false").problems(ok);
        assert!(w[0].starts_with("exhibitor.verify"), "{w:?}");
        let (e, _) = ex("hosts: [a]\nport: 1").problems(|_| Err(std::io::Error::other("nope")));
        assert_eq!(e[0].0, "exhibitor.hosts");
        assert!(e[0].1.contains("nope"), "{e:?}");
    }
}

#[cfg(test)]
mod env_tests {
    use crate::config::load::tests::{POSTGRES0, TempDir, env};
    use crate::config::{load, validate};

    /// POSTGRES0 with its etcd section swapped for an Exhibitor one given
    /// only by the variables.
    fn exhibitor_only(vars: &[(&str, &str)]) -> crate::config::Config {
        let d = TempDir::new("exhibitor");
        let text = POSTGRES0.replace("etcd3:\n", "unused_etcd:\n");
        let p = d.write("c.yml", &text);
        load(Some(&p), &env(vars)).expect("loads").config
    }

    #[test]
    fn patroni_old_spelling_inside_zookeeper() {
        let d = TempDir::new("exhibitor-old");
        let text = POSTGRES0.replace(
            "etcd3:\n",
            "zookeeper:\n  exhibitor:\n    hosts: [e1]\n    port: '8181'\nunused_etcd:\n",
        );
        let p = d.write("c.yml", &text);
        let loaded = load(Some(&p), &env(&[])).expect("loads");
        assert!(
            !loaded.warnings.iter().any(|w| w.contains("zookeeper")),
            "{:?}",
            loaded.warnings
        );
        let c = loaded.config;
        assert!(c.zookeeper.is_none(), "the zookeeper section is dropped");
        let e = c.exhibitor.as_ref().expect("moved to exhibitor");
        assert_eq!((e.hosts(), e.port()), (vec!["e1".to_owned()], Some(8181)));
        assert_eq!(c.dcs_sections(), ["exhibitor"]);
    }

    #[test]
    fn hosts_and_port_from_either_prefix() {
        let c = exhibitor_only(&[
            ("PATRONI_EXHIBITOR_HOSTS", "e1,e2"),
            ("PATRONI_EXHIBITOR_PORT", "8181"),
        ]);
        let e = c.exhibitor.as_ref().expect("section from the variables");
        assert_eq!(e.hosts(), ["e1", "e2"]);
        assert_eq!(e.port(), Some(8181));
        assert_eq!(c.dcs_sections(), ["exhibitor"]);
        validate(&c).expect("valid");
        let c = exhibitor_only(&[
            ("PATRONI_EXHIBITOR_HOSTS", "e1"),
            ("PGPILOT_EXHIBITOR_HOSTS", "[e3, e4]"),
            ("PGPILOT_EXHIBITOR_PORT", "8080"),
        ]);
        let e = c.exhibitor.as_ref().expect("section");
        assert_eq!(e.hosts(), ["e3", "e4"]);
        assert_eq!(e.port(), Some(8080));
    }
}
