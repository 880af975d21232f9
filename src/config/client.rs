//! The configuration as a client of the cluster (`pgpilotctl`) reads it:
//! the daemon's file works, and so does one with only these sections.
//! Loaded through the same layers as the daemon's
//! ([`load_client`](super::load::load_client)); the sections it shares with
//! the daemon are the daemon's types.

use serde::Deserialize;

use super::types::{Credentials, Ctl, Etcd};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClientConfig {
    /// The cluster, when the command line names none.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// etcd's v2 API (Patroni's `etcd` section).
    #[serde(default)]
    pub etcd: Option<Etcd>,
    #[serde(default)]
    pub etcd3: Option<Etcd>,
    #[serde(default)]
    pub zookeeper: Option<super::zookeeper::ZooKeeper>,
    #[serde(default)]
    pub consul: Option<super::consul::Consul>,
    #[serde(default)]
    pub exhibitor: Option<super::exhibitor::Exhibitor>,
    /// Credentials and TLS files the REST API is called with when `ctl`
    /// does not give them (Patroni's order).
    #[serde(default)]
    pub restapi: Option<ClientRestApi>,
    #[serde(default)]
    pub ctl: Option<Ctl>,
    /// `postgresql.authentication.superuser`: who `query` connects as.
    #[serde(default)]
    pub postgresql: Option<ClientPostgresql>,
}

/// The parts of `restapi` a client uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClientRestApi {
    #[serde(default)]
    pub authentication: Option<Credentials>,
    #[serde(default)]
    pub cafile: Option<String>,
    #[serde(default)]
    pub certfile: Option<String>,
    #[serde(default)]
    pub keyfile: Option<String>,
    #[serde(default)]
    pub keyfile_password: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClientPostgresql {
    #[serde(default)]
    pub authentication: Option<ClientPgAuthentication>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClientPgAuthentication {
    #[serde(default)]
    pub superuser: Option<Credentials>,
}

impl ClientConfig {
    /// `postgresql.authentication.superuser`, if set.
    pub fn superuser(&self) -> Option<&Credentials> {
        self.postgresql
            .as_ref()?
            .authentication
            .as_ref()?
            .superuser
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::load_client;
    use crate::config::load::tests::{POSTGRES0, TempDir, env};

    #[test]
    fn the_daemons_file_and_a_minimal_one() {
        let d = TempDir::new("client");
        let p = d.write("c.yml", POSTGRES0);
        let c = load_client(Some(&p), &env(&[])).unwrap();
        assert!(c.scope.is_some());
        assert!(c.etcd3.is_some());
        assert!(c.superuser().is_some());
        let p = d.write(
            "m.yml",
            "etcd: {hosts: '127.0.0.1:2379'}\nctl: {insecure: 'yes'}\n",
        );
        let c = load_client(Some(&p), &env(&[])).unwrap();
        assert_eq!(c.scope, None);
        assert_eq!(c.ctl.and_then(|c| c.insecure), Some(true));
        // `etcd` is the v2 API's section, not another spelling of `etcd3`.
        assert!(c.etcd.is_some());
        assert!(c.etcd3.is_none());
    }

    #[test]
    fn the_same_layers_as_the_daemon() {
        // No file, no variables: the defaults.
        assert_eq!(
            load_client(None, &env(&[])).unwrap(),
            super::ClientConfig::default()
        );
        // Variables over the file.
        let d = TempDir::new("client-env");
        let p = d.write("c.yml", "scope: from-file\n");
        let c = load_client(Some(&p), &env(&[("PATRONI_SCOPE", "from-env")])).unwrap();
        assert_eq!(c.scope.as_deref(), Some("from-env"));
        // PATRONI_CONFIGURATION replaces the file.
        let c = load_client(
            Some(&p),
            &env(&[("PATRONI_CONFIGURATION", "scope: whole\n")]),
        )
        .unwrap();
        assert_eq!(c.scope.as_deref(), Some("whole"));
        // A bad value names its key.
        let p = d.write("bad.yml", "ctl: {insecure: perhaps}\n");
        let e = load_client(Some(&p), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("ctl.insecure"), "{e}");
    }
}
