//! The `zookeeper` section as Patroni reads it (docs/configuration.md §4.2):
//! its shape, the servers it names, its ACLs and credentials, and the checks
//! `validate` runs on it.
//!
//! Patroni hands the section to kazoo: `hosts` is joined into kazoo's
//! `host:port,host:port` string, `set_acls` becomes the default ACL of every
//! znode it creates (`principal: [permissions]`, a principal without a
//! `scheme:` being an `x509` one), `auth_data` the `(scheme, credential)`
//! pairs added to the session. pgpilot reads the same keys the same way.

use serde::{Deserialize, Serialize};

use super::types::HostList;

/// ZooKeeper's client port, for `hosts` entries without one (kazoo's default).
pub const DEFAULT_PORT: u16 = 2181;

/// `zookeeper` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ZooKeeper {
    /// A YAML list or a comma-separated string of `host[:port]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<HostList>,
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
    /// `{principal: [READ, WRITE, CREATE, DELETE, ADMIN, ALL]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_acls: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// `{scheme: credential}`, e.g. `{digest: "user:password"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_data: Option<std::collections::BTreeMap<String, String>>,
}

/// The permissions `set_acls` names, as kazoo's `make_acl` reads them
/// (upper-cased first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AclPerms {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub delete: bool,
    pub admin: bool,
}

/// One entry of `set_acls`: `scheme` and `id` as ZooKeeper names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    pub scheme: String,
    pub id: String,
    pub perms: AclPerms,
}

/// A `set_acls` permission Patroni knows; anything else it ignores.
const PERMISSIONS: &[&str] = &["READ", "WRITE", "CREATE", "DELETE", "ADMIN", "ALL"];

impl ZooKeeper {
    /// The servers, `host:port` each (port 2181 when the entry has none), in
    /// the order given; empty entries of a comma-separated string dropped.
    pub fn servers(&self) -> Vec<String> {
        let raw: Vec<String> = match &self.hosts {
            Some(HostList::List(v)) => v.iter().map(|s| s.trim().to_owned()).collect(),
            Some(HostList::Csv(s)) => s.split(',').map(|s| s.trim().to_owned()).collect(),
            None => Vec::new(),
        };
        raw.into_iter()
            .filter(|h| !h.is_empty())
            .map(|h| {
                if has_port(&h) {
                    h
                } else {
                    format!("{h}:{DEFAULT_PORT}")
                }
            })
            .collect()
    }

    /// `set_acls` as ZooKeeper ACL entries, in key order. A principal with
    /// no `scheme:` is an `x509` one, as in Patroni; unknown permission
    /// names are skipped (and reported by [`ZooKeeper::problems`]).
    pub fn acls(&self) -> Vec<AclEntry> {
        let Some(acls) = &self.set_acls else {
            return Vec::new();
        };
        acls.iter()
            .map(|(principal, perms)| {
                let (scheme, id) = principal
                    .split_once(':')
                    .unwrap_or(("x509", principal.as_str()));
                let has = |p: &str| perms.iter().any(|q| q.eq_ignore_ascii_case(p));
                let all = has("ALL");
                AclEntry {
                    scheme: scheme.to_owned(),
                    id: id.to_owned(),
                    perms: AclPerms {
                        read: all || has("READ"),
                        write: all || has("WRITE"),
                        create: all || has("CREATE"),
                        delete: all || has("DELETE"),
                        admin: all || has("ADMIN"),
                    },
                }
            })
            .collect()
    }

    /// `auth_data` as `(scheme, credential)` pairs, in key order.
    pub fn auth(&self) -> Vec<(String, String)> {
        self.auth_data
            .iter()
            .flatten()
            .map(|(s, c)| (s.clone(), c.clone()))
            .collect()
    }

    /// What `validate` reports about the section: `(key, message)` errors
    /// and warnings. `host_ok` checks one `host:port`.
    pub fn problems<E: std::fmt::Display>(
        &self,
        host_ok: impl Fn(&str) -> Result<(), E>,
    ) -> (Vec<(String, String)>, Vec<String>) {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let servers = self.servers();
        if servers.is_empty() {
            errors.push((
                "zookeeper.hosts".to_owned(),
                "at least one ZooKeeper server is required (`host:port`)".to_owned(),
            ));
        }
        for h in &servers {
            // kazoo reads `hosts/chroot`; pgpilot keeps Patroni's layout
            // under `namespace` instead, so a chroot would move every key.
            if h.contains('/') {
                errors.push((
                    "zookeeper.hosts".to_owned(),
                    format!("bad server {h:?}: a chroot suffix is not supported"),
                ));
            } else if let Err(m) = host_ok(h) {
                errors.push((
                    "zookeeper.hosts".to_owned(),
                    format!("bad server {h:?}: {m}"),
                ));
            }
        }
        warnings.extend(self.tls_warnings());
        for (principal, perms) in self.set_acls.iter().flatten() {
            if principal.is_empty() || principal.ends_with(':') {
                errors.push((
                    "zookeeper.set_acls".to_owned(),
                    format!("principal {principal:?} names no id"),
                ));
            }
            for p in perms {
                if !PERMISSIONS.iter().any(|k| k.eq_ignore_ascii_case(p)) {
                    warnings.push(format!(
                        "zookeeper.set_acls.{principal}: unknown permission {p:?} ignored \
                         (known: {})",
                        PERMISSIONS.join(", ")
                    ));
                }
            }
        }
        for (scheme, _) in self.auth_data.iter().flatten() {
            if scheme.is_empty() {
                errors.push((
                    "zookeeper.auth_data".to_owned(),
                    "an empty scheme".to_owned(),
                ));
            }
        }
        (errors, warnings)
    }
}

impl ZooKeeper {
    /// What the TLS keys mean here and not in Patroni, or not at all
    /// (docs/configuration.md §4.2; the files are read by
    /// `dcs::zookeeper_tls`).
    fn tls_warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.use_ssl != Some(true) {
            if self.cacert.is_some() || self.cert.is_some() || self.key.is_some() {
                w.push("zookeeper.cacert/cert/key: not used: use_ssl is not true".to_owned());
            }
            return w;
        }
        if self.verify == Some(false) {
            w.push(
                "zookeeper.verify: false: the server's certificate chain is still checked \
                 (against zookeeper.cacert and the system CA store), and its host name too"
                    .to_owned(),
            );
        }
        if self.cert.is_some() != self.key.is_some() {
            w.push(
                "zookeeper.cert/key: only one is set: no client certificate is presented \
                 (as kazoo, which needs both)"
                    .to_owned(),
            );
        }
        w
    }
}

fn has_port(h: &str) -> bool {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split_once("]:").is_some();
    }
    h.rsplit_once(':')
        .is_some_and(|(host, p)| !host.contains(':') && !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zk(yaml: &str) -> ZooKeeper {
        serde_yaml_ng::from_str(yaml).expect("section parses")
    }

    #[test]
    fn hosts_as_list_or_string_get_the_default_port() {
        let a = zk("hosts: ['a:2182', b]");
        assert_eq!(a.servers(), ["a:2182", "b:2181"]);
        let b = zk("hosts: 'a:2182, b,,[::1]:3000'");
        assert_eq!(b.servers(), ["a:2182", "b:2181", "[::1]:3000"]);
        assert!(zk("{}").servers().is_empty());
    }

    #[test]
    fn acls_as_kazoo_makes_them() {
        let z = zk("set_acls:\n  CN=p1: [ALL]\n  'sasl:admin': [read, Write]\n");
        let acls = z.acls();
        assert_eq!(acls.len(), 2);
        assert_eq!(
            (acls[0].scheme.as_str(), acls[0].id.as_str()),
            ("x509", "CN=p1")
        );
        assert!(acls[0].perms.admin && acls[0].perms.delete && acls[0].perms.read);
        assert_eq!(
            (acls[1].scheme.as_str(), acls[1].id.as_str()),
            ("sasl", "admin")
        );
        assert_eq!(
            acls[1].perms,
            AclPerms {
                read: true,
                write: true,
                ..AclPerms::default()
            }
        );
    }

    #[test]
    fn auth_pairs() {
        let z = zk("auth_data: {digest: 'u:p'}");
        assert_eq!(z.auth(), [("digest".to_owned(), "u:p".to_owned())]);
    }

    fn ok(_: &str) -> Result<(), std::convert::Infallible> {
        Ok(())
    }

    #[test]
    fn problems_name_the_key() {
        let (e, w) = zk("hosts: []").problems(ok);
        assert_eq!(e[0].0, "zookeeper.hosts");
        assert!(w.is_empty());
        let (e, _) = zk("hosts: 'a:2181/chroot'").problems(ok);
        assert!(e[0].1.contains("chroot"), "{e:?}");
        // TLS is no error; what differs from kazoo is warned about.
        let (e, w) = zk("hosts: [a]\nuse_ssl: true").problems(ok);
        assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");
        let (_, w) = zk("hosts: [a]\nuse_ssl: true\nverify: false\ncert: /c\n").problems(ok);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("zookeeper.verify") && w[1].contains("only one"),
            "{w:?}"
        );
        let (_, w) = zk("hosts: [a]\ncacert: /x\n").problems(ok);
        assert!(w[0].contains("use_ssl"), "{w:?}");
        let (e, w) = zk("hosts: [a]\nset_acls: {'digest:': [READ], x: [READ, FLY]}").problems(ok);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "zookeeper.set_acls");
        assert!(w[0].contains("FLY"), "{w:?}");
        let (e, _) = zk("hosts: [a]").problems(|_| Err(std::io::Error::other("nope")));
        assert!(e[0].1.contains("nope"), "{e:?}");
        let (e, w) = zk("hosts: [a]\nuse_ssl: false\nauth_data: {digest: 'u:p'}").problems(ok);
        assert!(e.is_empty() && w.is_empty(), "{e:?} {w:?}");
    }
}

#[cfg(test)]
mod env_tests {
    use crate::config::load::tests::{POSTGRES0, TempDir, env};
    use crate::config::{load, validate};

    /// POSTGRES0 with its etcd section swapped for a ZooKeeper one given
    /// only by the variables.
    fn zk_only(vars: &[(&str, &str)]) -> crate::config::Config {
        let d = TempDir::new("zk");
        let text = POSTGRES0.replace("etcd3:\n", "unused_etcd:\n");
        let p = d.write("c.yml", &text);
        load(Some(&p), &env(vars)).expect("loads").config
    }

    #[test]
    fn hosts_from_either_prefix() {
        let c = zk_only(&[
            ("PATRONI_ZOOKEEPER_HOSTS", "a:2181,b"),
            ("PATRONI_ZOOKEEPER_USE_SSL", "false"),
        ]);
        let z = c.zookeeper.as_ref().expect("section from the variables");
        assert_eq!(z.servers(), ["a:2181", "b:2181"]);
        assert_eq!(z.use_ssl, Some(false));
        validate(&c).expect("valid");
        let c = zk_only(&[
            ("PATRONI_ZOOKEEPER_HOSTS", "a:2181"),
            ("PGPILOT_ZOOKEEPER_HOSTS", "[c:2182, d:2183]"),
        ]);
        assert_eq!(
            c.zookeeper.as_ref().map(|z| z.servers()),
            Some(vec!["c:2182".to_owned(), "d:2183".to_owned()])
        );
    }
}
