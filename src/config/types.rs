//! The typed form of a Patroni-compatible YAML configuration.
//!
//! These structs mirror Patroni's key names exactly so that an existing
//! `patroni.yml` deserialises unchanged. Loading, environment overrides and
//! validation live in sibling modules; this file only says what the shape is.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::TimingError;

/// The whole local configuration of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Member name, unique within the cluster.
    pub name: String,
    /// Cluster name.
    pub scope: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub restapi: RestApi,
    /// The etcd v2 section (Patroni's `etcd`: the v2 keys API,
    /// docs/configuration.md §4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<Etcd>,
    /// The etcd v3 section.
    #[serde(default)]
    pub etcd3: Option<Etcd>,
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
    pub postgresql: Postgresql,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub ctl: Option<Ctl>,
    /// `zookeeper` section (docs/configuration.md §4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zookeeper: Option<super::zookeeper::ZooKeeper>,
    /// `consul` section (docs/configuration.md §4.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul: Option<super::consul::Consul>,
    /// `exhibitor` section (docs/configuration.md §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhibitor: Option<super::exhibitor::Exhibitor>,
    /// Other Patroni DCS sections (`kubernetes`, `raft`): parsed only so
    /// that validation can name them as unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<Watchdog>,
    /// `citus: {group, database}`; kept raw (Citus is out of scope for now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citus: Option<serde_json::Value>,
}

/// `watchdog` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Watchdog {
    /// `off` | `automatic` (default) | `required`; Patroni also accepts
    /// `false`/`disable`/`auto`/`require`, so the YAML value is kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_margin: Option<i64>,
}

/// Normalised `watchdog.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogMode {
    Off,
    Automatic,
    Required,
}

impl Watchdog {
    /// The mode, `None` when the value is not one Patroni accepts.
    pub fn mode(&self) -> Option<WatchdogMode> {
        match &self.mode {
            None | Some(serde_json::Value::Null) => Some(WatchdogMode::Automatic),
            Some(serde_json::Value::Bool(false)) => Some(WatchdogMode::Off),
            Some(serde_json::Value::Bool(true)) => Some(WatchdogMode::Automatic),
            Some(serde_json::Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "off" | "false" | "disable" | "disabled" | "no" => Some(WatchdogMode::Off),
                "automatic" | "auto" | "on" | "true" | "yes" => Some(WatchdogMode::Automatic),
                "required" | "require" => Some(WatchdogMode::Required),
                _ => None,
            },
            Some(_) => None,
        }
    }

    /// `device`, `/dev/watchdog` by default.
    pub fn device(&self) -> &str {
        self.device.as_deref().unwrap_or(DEFAULT_WATCHDOG_DEVICE)
    }

    /// `safety_margin`, 5 by default; `-1` means ttl/2.
    pub fn safety_margin(&self) -> i64 {
        self.safety_margin.unwrap_or(5)
    }

    /// The watchdog timeout for `timing` (docs/ha.md §1): `ttl -
    /// safety_margin` whole seconds, `ttl / 2` when the margin is `-1`.
    /// `Err` explains why it cannot be used: it must be at least one second
    /// and not shorter than `loop_wait`, since the watchdog is kept alive
    /// once per cycle.
    pub fn timeout(&self, timing: &Timing) -> Result<u64, TimingError> {
        let ttl = timing.ttl.as_secs() as i64;
        let margin = self.safety_margin();
        let timeout = if margin == -1 { ttl / 2 } else { ttl - margin };
        let loop_wait = timing.loop_wait.as_secs_f64();
        if timeout < 1 || (timeout as f64) < loop_wait {
            return Err(TimingError::WatchdogTimeout {
                ttl,
                margin,
                timeout,
                loop_wait,
            });
        }
        Ok(timeout as u64)
    }
}

/// Where the Linux watchdog device is by default.
pub const DEFAULT_WATCHDOG_DEVICE: &str = "/dev/watchdog";

impl Config {
    /// `watchdog.mode`, `automatic` when the section or the key is missing
    /// (an unknown value is refused by validation; it counts as `off`).
    pub fn watchdog_mode(&self) -> WatchdogMode {
        match &self.watchdog {
            None => WatchdogMode::Automatic,
            Some(w) => w.mode().unwrap_or(WatchdogMode::Off),
        }
    }
}

pub fn default_namespace() -> String {
    "/service".to_owned()
}

/// The DCS sections in the order Patroni tries them (its `patroni.dcs`
/// modules, alphabetically: `etcd`, the v2 API, before `etcd3`): it uses
/// the first the configuration has (docs/configuration.md §4).
pub const DCS_ORDER: [&str; 7] = [
    "consul",
    "etcd",
    "etcd3",
    "exhibitor",
    "kubernetes",
    "raft",
    "zookeeper",
];

impl Config {
    /// The DCS sections present, in [`DCS_ORDER`]; the first is the one
    /// used, as in Patroni.
    pub fn dcs_sections(&self) -> Vec<&'static str> {
        let present = |name: &str| match name {
            "consul" => self.consul.is_some(),
            "etcd" => self.etcd.is_some(),
            "etcd3" => self.etcd3.is_some(),
            "exhibitor" => self.exhibitor.is_some(),
            "kubernetes" => self.kubernetes.is_some(),
            "raft" => self.raft.is_some(),
            "zookeeper" => self.zookeeper.is_some(),
            _ => false,
        };
        DCS_ORDER.into_iter().filter(|n| present(n)).collect()
    }

    /// Base path of the cluster in the DCS: `/<namespace>/<scope>` with runs of
    /// `/` collapsed, as Patroni does.
    pub fn cluster_prefix(&self) -> String {
        crate::dcs::keys::cluster_prefix(&self.namespace, &self.scope)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestApi {
    pub listen: String,
    pub connect_address: String,
    #[serde(default)]
    pub authentication: Option<Credentials>,
    #[serde(default)]
    pub certfile: Option<String>,
    #[serde(default)]
    pub keyfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cafile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<String>,
    /// `none` | `optional` | `required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist_include_members: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_extra_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_extra_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_queue_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tokens: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ctl {
    #[serde(default)]
    pub authentication: Option<Credentials>,
    #[serde(default)]
    pub insecure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile_password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// libpq connection options, meaningful for `postgresql.authentication.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslpassword: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcrl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcrldir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gssencmode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_binding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslnegotiation: Option<String>,
}

/// `etcd3` (v3) or `etcd` (v2) section: the same keys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Etcd {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub hosts: Option<HostList>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Default port for `host`/`hosts` entries without one (Patroni: 2379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_proxies: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv_suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cacert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `hosts` may be a YAML list or a comma-separated string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HostList {
    List(Vec<String>),
    Csv(String),
}

impl Etcd {
    /// Client endpoints (`<protocol>://host:port`), in the order given, chosen
    /// as Patroni's `get_etcd_client` chooses them: `proxy` alone when set
    /// (etcd reached through a proxy), else `url`, else `hosts`, else `host`
    /// (docs/configuration.md §4). `srv` is resolved at connection time
    /// (`dcs::etcd_srv`), before `hosts` and `host`.
    pub fn endpoints(&self) -> Vec<String> {
        let protocol = self.protocol.clone().unwrap_or_else(|| "http".to_owned());
        let raw: Vec<String> = if let Some(url) = self.proxy.as_ref().or(self.url.as_ref()) {
            vec![without_userinfo(url)]
        } else if let Some(hosts) = &self.hosts {
            match hosts {
                HostList::List(v) => v.clone(),
                HostList::Csv(s) => s
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            }
        } else {
            self.host.iter().cloned().collect()
        };
        let default_port = self.port.unwrap_or(2379);
        raw.into_iter()
            .map(|h| {
                let with_port = if h.contains("://") || has_port(&h) {
                    h
                } else {
                    format!("{h}:{default_port}")
                };
                if with_port.contains("://") {
                    with_port
                } else {
                    format!("{protocol}://{with_port}")
                }
            })
            .collect()
    }

    /// The user and password etcd's RBAC is asked for: those of `url` (or
    /// `proxy`) when it carries them (`https://user:pass@host:2379`), else
    /// `username` and `password`. Patroni authenticates only with both.
    pub fn credentials(&self) -> Option<(String, String)> {
        let from_url = self
            .proxy
            .as_ref()
            .or(self.url.as_ref())
            .and_then(|u| url::Url::parse(u).ok())
            .filter(|u| !u.username().is_empty())
            // Raw, as Python's urlparse gives them (no percent-decoding).
            .map(|u| {
                (
                    u.username().to_owned(),
                    u.password().unwrap_or("").to_owned(),
                )
            });
        from_url
            .or_else(|| self.username.clone().zip(self.password.clone()))
            .filter(|(u, p)| !u.is_empty() && !p.is_empty())
    }
}

/// `url` without its `user:password@` (they are credentials, not part of
/// the endpoint).
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

fn has_port(h: &str) -> bool {
    h.rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Initial dynamic configuration written to the `config` key. Kept as raw
    /// JSON so that keys pgpilot does not interpret survive the round trip.
    #[serde(default)]
    pub dcs: serde_json::Value,
    #[serde(default)]
    pub initdb: Vec<InitdbOption>,
    #[serde(default)]
    pub pg_hba: Vec<String>,
    #[serde(default)]
    pub users: BTreeMap<String, BootstrapUser>,
    #[serde(default, alias = "post_bootstrap")]
    pub post_init: Option<String>,
    /// Custom bootstrap method (its section is `bootstrap.<method>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Other keys, among them the `bootstrap.<method>` sections.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Bootstrap {
    /// The section of the custom `method`, if one is configured (any name
    /// but `initdb`) and has a section.
    pub fn custom_method(&self) -> Option<(&str, &serde_json::Map<String, serde_json::Value>)> {
        let m = self.method.as_deref().filter(|m| *m != "initdb")?;
        Some((m, self.extra.get(m)?.as_object()?))
    }
}

/// One `bootstrap.initdb` entry: a bare flag or `{option: value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InitdbOption {
    Flag(String),
    Valued(BTreeMap<String, serde_json::Value>),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BootstrapUser {
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Postgresql {
    /// `addr[,addr...]:port`; the first address is used for local connections.
    pub listen: String,
    pub connect_address: String,
    pub data_dir: String,
    #[serde(default)]
    pub config_dir: Option<String>,
    #[serde(default)]
    pub bin_dir: Option<String>,
    #[serde(default)]
    pub pgpass: Option<String>,
    #[serde(default = "default_database")]
    pub database: String,
    pub authentication: PgAuthentication,
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub pg_hba: Vec<String>,
    #[serde(default = "default_pg_ctl_timeout")]
    pub pg_ctl_timeout: u64,
    #[serde(default = "default_replica_methods")]
    pub create_replica_methods: Vec<String>,
    #[serde(default)]
    pub use_pg_rewind: Option<bool>,
    #[serde(default)]
    pub remove_data_directory_on_rewind_failure: bool,
    #[serde(default)]
    pub remove_data_directory_on_diverged_timelines: bool,
    #[serde(default)]
    pub recovery_conf: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub custom_conf: Option<String>,
    #[serde(default)]
    pub callbacks: Callbacks,
    #[serde(default)]
    pub basebackup: Option<serde_json::Value>,
    /// Address of a connection pooler next to PostgreSQL (service discovery only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_address: Option<String>,
    /// Per-binary name overrides: `pg_ctl`, `initdb`, `pg_controldata`,
    /// `pg_basebackup`, `postgres`, `pg_isready`, `pg_rewind`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bin_name: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pg_ident: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_unix_socket: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_unix_socket_repl: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_stop: Option<String>,
    /// `pg_rewind` options (list of flags or `{option: value}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<serde_json::Value>,
    /// Other keys, among them the per-method sections `postgresql.<method>`
    /// of `create_replica_methods`.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

pub fn default_database() -> String {
    "postgres".to_owned()
}
pub fn default_pg_ctl_timeout() -> u64 {
    60
}
pub fn default_replica_methods() -> Vec<String> {
    vec!["basebackup".to_owned()]
}

impl Postgresql {
    /// Addresses and port of `listen`, e.g. `127.0.0.1,10.0.0.1:5432`.
    pub fn listen_parts(&self) -> Option<(Vec<String>, u16)> {
        let (addrs, port) = self.listen.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let addrs = addrs
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>();
        (!addrs.is_empty()).then_some((addrs, port))
    }

    pub fn config_dir(&self) -> &str {
        self.config_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// The section `postgresql.<method>` of a replica creation method
    /// (empty when absent).
    pub fn replica_method(&self, method: &str) -> serde_json::Map<String, serde_json::Value> {
        self.extra
            .get(method)
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `method` may create a replica without a leader: any method
    /// but `basebackup` whose section says `no_leader: true` (Patroni's
    /// `no_master` is accepted too).
    pub fn method_works_without_leader(&self, method: &str) -> bool {
        method != "basebackup" && {
            let s = self.replica_method(method);
            ["no_leader", "no_master"]
                .iter()
                .any(|k| s.get(*k).is_some_and(json_truthy))
        }
    }

    /// Some method of `create_replica_methods` works without a leader.
    pub fn can_clone_without_leader(&self) -> bool {
        self.create_replica_methods
            .iter()
            .any(|m| self.method_works_without_leader(m))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PgAuthentication {
    #[serde(default)]
    pub superuser: Credentials,
    pub replication: Credentials,
    #[serde(default)]
    pub rewind: Option<Credentials>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Callbacks {
    #[serde(default)]
    pub on_start: Option<String>,
    #[serde(default)]
    pub on_stop: Option<String>,
    #[serde(default)]
    pub on_restart: Option<String>,
    #[serde(default)]
    pub on_reload: Option<String>,
    #[serde(default)]
    pub on_role_change: Option<String>,
}

/// Member tags. Unknown tags are kept and published verbatim.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tags {
    #[serde(default, skip_serializing_if = "is_false")]
    pub nofailover: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub noloadbalance: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub clonefrom: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nosync: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nostream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicatefrom: Option<String>,
    /// [4.1] preference for synchronous standby selection; <= 0 means nosync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_priority: Option<i64>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A YAML flag as Patroni reads it: `true`, `on`, `yes`, 1...
pub fn json_truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => crate::config::parse_bool(s) == Some(true),
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Tags {
    /// Whether this node may ever become primary on its own.
    pub fn can_failover(&self) -> bool {
        !self.nofailover && self.failover_priority.is_none_or(|p| p > 0)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Log {
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback_level: Option<String>,
    /// A string, or a list of field names for `type: json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dateformat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_num: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loggers: Option<BTreeMap<String, serde_json::Value>>,
    /// Fields added to every JSON line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// Permissions of the log files: a number, or a string read as C's
    /// `strtol` with base 0 reads it (`"0644"` is octal), as Patroni does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<serde_json::Value>,
    /// Patroni's `deduplicate_heartbeat_logs`: a cycle summary identical
    /// to the last one is not written at INFO (it goes to DEBUG). Off by
    /// default, as in Patroni: every cycle says what it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicate_heartbeat_logs: Option<bool>,
}

/// The dynamic (cluster-wide) settings pgpilot acts on, read from the DCS
/// `config` key (or `bootstrap.dcs` before the cluster exists).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicConfig {
    pub timing: Timing,
    pub maximum_lag_on_failover: u64,
    pub use_slots: bool,
    /// `slots` (permanent), `ignore_slots`, `member_slots_ttl`.
    pub slots: SlotsConfig,
    pub use_pg_rewind: bool,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub pause: bool,
    /// `failsafe_mode`: a primary cut off from the DCS keeps running while
    /// every member listed in the `failsafe` key confirms it over REST.
    pub failsafe_mode: bool,
    /// `primary_start_timeout` (old name `master_start_timeout`, used only
    /// when the new one is absent), seconds: how long the lock holder waits
    /// for its crashed primary to start again before failing over to a
    /// healthy replica; 0 fails over at once (docs/ha.md §8.1).
    pub primary_start_timeout: u64,
    /// `synchronous_mode` and its companions (docs/replication-modes.md).
    /// Off in a standby cluster, as in Patroni: its leader runs no primary.
    pub sync: SyncConfig,
    /// `standby_cluster` (docs/ha.md §16): `Some` makes this a standby
    /// cluster, whose leader replicates from the remote PostgreSQL it names.
    pub standby_cluster: Option<StandbyCluster>,
    /// The JSON as stored, for writing back and for `GET /config`.
    pub raw: serde_json::Value,
}

/// `standby_cluster` of the dynamic configuration (docs/ha.md §16), as
/// `super::standby_cluster` checked it; empty strings read as unset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandbyCluster {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The slot the standby leader streams through on the remote side.
    pub primary_slot_name: Option<String>,
    /// How an empty member is filled when the standby cluster has no leader
    /// (default: `basebackup` from the remote).
    pub create_replica_methods: Vec<String>,
    pub restore_command: Option<String>,
    pub archive_cleanup_command: Option<String>,
    /// The standby leader only (Patroni's `RemoteMember`).
    pub recovery_min_apply_delay: Option<String>,
}

/// `synchronous_mode` of the dynamic configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Asynchronous replication (`false`, `off`, absent).
    #[default]
    Off,
    /// `true`: `FIRST n (...)`, the standbys listed in the `sync` key.
    On,
    /// `quorum`: `ANY n (...)`, promotion by a quorum of votes.
    Quorum,
}

/// The synchronous replication settings (docs/replication-modes.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    pub mode: SyncMode,
    /// `synchronous_mode_strict`: never fall back to asynchronous commits.
    pub strict: bool,
    /// `synchronous_node_count` as written (>= 1, default 1).
    pub node_count: u32,
    /// `maximum_lag_on_syncnode`, bytes; <= 0 (the default, -1) is no limit.
    pub maximum_lag_on_syncnode: i64,
}

impl Default for SyncConfig {
    fn default() -> SyncConfig {
        SyncConfig {
            mode: SyncMode::Off,
            strict: false,
            node_count: 1,
            maximum_lag_on_syncnode: -1,
        }
    }
}

impl SyncConfig {
    /// Synchronous replication is requested (either mode).
    pub fn enabled(&self) -> bool {
        self.mode != SyncMode::Off
    }

    /// Patroni's `min_synchronous_nodes`: 1 in strict mode, else 0.
    pub fn min_nodes(&self) -> u32 {
        u32::from(self.strict)
    }

    /// Patroni's `synchronous_node_count`: the setting, at least
    /// [`SyncConfig::min_nodes`].
    pub fn wanted(&self) -> u32 {
        self.node_count.max(self.min_nodes())
    }
}

/// Physical or logical replication slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    Physical,
    Logical,
}

/// A slot that should exist: a member slot or a permanent slot from the
/// dynamic `slots` setting. `database` and `plugin` are set for logical
/// slots only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSpec {
    pub name: String,
    pub kind: SlotKind,
    pub database: Option<String>,
    pub plugin: Option<String>,
}

impl SlotSpec {
    pub fn physical(name: impl Into<String>) -> SlotSpec {
        SlotSpec {
            name: name.into(),
            kind: SlotKind::Physical,
            database: None,
            plugin: None,
        }
    }
}

/// One `ignore_slots` entry: a slot matches when every field given equals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotMatcher {
    pub name: Option<String>,
    pub kind: Option<SlotKind>,
    pub database: Option<String>,
    pub plugin: Option<String>,
}

/// The slot settings of the dynamic configuration (docs/configuration.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotsConfig {
    /// `slots` (aliases `permanent_slots`, `permanent_replication_slots`).
    pub permanent: Vec<SlotSpec>,
    pub ignore: Vec<SlotMatcher>,
    /// `member_slots_ttl` in seconds (default 1800): how long the leader
    /// keeps the slot of a member whose key vanished; 0 drops it at once.
    pub member_slots_ttl: u64,
}

/// See [`Timing::fence_margin`].
pub const FENCE_MARGIN: Duration = Duration::from_secs(1);

/// The three settings every deadline derives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ttl: Duration,
    pub loop_wait: Duration,
    pub retry_timeout: Duration,
}

impl Timing {
    /// How long a peer gets to answer `GET /patroni` during a leader race:
    /// Patroni's 2 s, but never more than `retry_timeout`, so a race fits in
    /// the same budget as one DCS call.
    pub fn peer_timeout(&self) -> Duration {
        self.retry_timeout.min(Duration::from_secs(2))
    }

    /// How long a query of the local PostgreSQL may take before the node
    /// reports it as not answering; the same bound as a peer question, so a
    /// cycle stays within `loop_wait + retry_timeout`.
    pub fn local_query_timeout(&self) -> Duration {
        self.peer_timeout()
    }

    /// Fencing safety margin: PostgreSQL on a leader is stopped this long
    /// before the lease (send time of the last successful renewal + ttl)
    /// could end. A fixed 1 s, whatever the ttl; it covers the fence's
    /// waking at the deadline ([`crate::fence::POLL`] does not add to it), the immediate shutdown and
    /// its SIGKILL fallback ([`crate::fence::KILL_GRACE`], 400 ms) and half a
    /// second for the fence being scheduled late on a loaded host. Nothing
    /// in it grows with the ttl: clock-rate differences between this node and
    /// etcd are parts per million, and the deadline itself is already
    /// conservative (etcd counts the ttl from when it *received* the
    /// renewal, rounds it up to whole seconds and expires leases on a 500 ms
    /// tick). A wider margin only lengthens the outage of a partitioned
    /// primary (the margin plus the replica's promotion).
    /// [`Timing::fence_room`] checks at load that it fits.
    pub fn fence_margin(&self) -> Duration {
        FENCE_MARGIN
    }

    /// How often the leader sends a lease keep-alive of its own, besides
    /// the renewals of the HA cycle: a quarter of the ttl, so a slow cycle
    /// does not cost the lease. See `ha::lease::keepalive_extends`.
    pub fn keepalive_interval(&self) -> Duration {
        self.ttl / 4
    }

    /// How old the HA loop's last confirmation (lock renewed, PostgreSQL
    /// answering as primary) may be for a keep-alive to extend the lease
    /// deadline: half the ttl.
    pub fn keepalive_confirmation_bound(&self) -> Duration {
        self.ttl / 2
    }

    /// How long after a decision the next one surely comes: the next cycle
    /// starts within `loop_wait` and decides after at most one DCS call
    /// (`retry_timeout`).
    pub fn cycle_bound(&self) -> Duration {
        self.loop_wait + self.retry_timeout
    }

    /// `ttl - margin` must exceed one cycle (`loop_wait + retry_timeout`),
    /// otherwise a healthy leader would be fenced between two renewals.
    /// `Err` carries the explanation.
    pub fn fence_room(&self) -> Result<(), TimingError> {
        let m = self.fence_margin();
        if self.ttl > m + self.cycle_bound() {
            Ok(())
        } else {
            Err(TimingError::NoFenceRoom {
                ttl: self.ttl.as_secs_f64(),
                margin: m.as_secs_f64(),
                loop_wait: self.loop_wait.as_secs_f64(),
                retry_timeout: self.retry_timeout.as_secs_f64(),
            })
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod etcd_tests {
    use super::*;

    fn etcd(yaml: &str) -> Etcd {
        serde_yaml_ng::from_str(yaml).expect("etcd section")
    }

    #[test]
    fn endpoints_follow_patronis_precedence() {
        // proxy over everything, then url, then hosts, then host.
        let all = "host: h:1\nhosts: [a:2, b]\nurl: http://u:3\nproxy: http://p:4\n";
        assert_eq!(etcd(all).endpoints(), ["http://p:4"]);
        let no_proxy = all.replace("proxy: http://p:4\n", "");
        assert_eq!(etcd(&no_proxy).endpoints(), ["http://u:3"]);
        let hosts = "host: h:1\nhosts: [a:2, b]\n";
        assert_eq!(etcd(hosts).endpoints(), ["http://a:2", "http://b:2379"]);
        assert_eq!(etcd("host: h\nport: 7\n").endpoints(), ["http://h:7"]);
        // The protocol applies to entries without a scheme.
        assert_eq!(
            etcd("hosts: 'a:1,[::1]:2'\nprotocol: https\n").endpoints(),
            ["https://a:1", "https://[::1]:2"]
        );
        assert_eq!(
            etcd("hosts: '[a:1, b:2]'\n").endpoints(),
            ["http://a:1", "http://b:2"]
        );
    }

    #[test]
    fn credentials_of_the_url_come_first_and_leave_the_endpoint() {
        let e = etcd("url: https://root:pw@h:2379\nusername: x\npassword: y\n");
        assert_eq!(e.endpoints(), ["https://h:2379"]);
        assert_eq!(e.credentials(), Some(("root".into(), "pw".into())));
        let e = etcd("host: h\nusername: x\npassword: y\n");
        assert_eq!(e.credentials(), Some(("x".into(), "y".into())));
        // Patroni authenticates only with both.
        assert_eq!(etcd("host: h\nusername: x\n").credentials(), None);
    }
}
