//! What every `pgpilotctl` command shares: the configuration read, the
//! DCS and the REST client built from it ([`Ctx`]), and the small helpers
//! of patronictl's habits (confirmation, member lookup, output formats).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde_json::Value;

use crate::config::ClientConfig;
use crate::ctl::table;
use crate::dcs::etcd::EtcdDcs;
use crate::dcs::{Cluster, Dcs, Member, keys};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Yaml,
    Tsv,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Role {
    Primary,
    Leader,
    Replica,
    Any,
}

/// What the command line says about reaching the cluster.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// `--dcs-url`, over the configuration's DCS section.
    pub dcs_url: Option<String>,
    /// `-k`: do not check the certificates of https members.
    pub insecure: bool,
    /// `--group N`: the Citus group's keys, `/<namespace>/<scope>/<N>`
    /// (Patroni's layout for a Citus cluster's groups).
    pub group: Option<u32>,
}

/// The rustls configuration for https members, as patronictl's: no
/// check with `-k`/`ctl.insecure`; else chain and host name against
/// `ctl.cacert` (or `restapi.cafile`, or the system store). It presents
/// `ctl.certfile` (or `restapi.certfile`) as client certificate.
fn tls(cfg: &ClientConfig, insecure: bool) -> anyhow::Result<rustls::ClientConfig> {
    use crate::tls::{ServerCheck, client_config, load_roots, system_roots};
    let insecure = insecure || cfg.ctl.as_ref().and_then(|c| c.insecure) == Some(true);
    let ca = cfg
        .ctl
        .as_ref()
        .and_then(|c| c.cacert.as_deref())
        .map(|p| ("ctl.cacert", p))
        .or_else(|| {
            cfg.restapi
                .as_ref()
                .and_then(|r| r.cafile.as_deref())
                .map(|p| ("restapi.cafile", p))
        });
    let check = if insecure {
        ServerCheck::None
    } else {
        match ca {
            Some((key, path)) => {
                ServerCheck::Full(load_roots(key, path).map_err(anyhow::Error::msg)?)
            }
            None => match system_roots() {
                Ok(roots) => ServerCheck::Full(roots),
                // Fine for http members; https ones will fail to verify.
                Err(_) => ServerCheck::Full(Arc::new(rustls::RootCertStore::empty())),
            },
        }
    };
    let ctl = cfg.ctl.as_ref().and_then(|s| {
        Some((
            "ctl",
            s.certfile.as_deref()?,
            s.keyfile.as_deref(),
            s.keyfile_password.as_deref(),
        ))
    });
    let identity = ctl.or_else(|| {
        let s = cfg.restapi.as_ref()?;
        Some((
            "restapi",
            s.certfile.as_deref()?,
            s.keyfile.as_deref(),
            s.keyfile_password.as_deref(),
        ))
    });
    client_config(check, identity).map_err(anyhow::Error::msg)
}

/// The store a command reads: etcd's endpoints (v3 or v2 API),
/// ZooKeeper's servers, Exhibitor's, or a Consul agent.
enum Store {
    Etcd(crate::dcs::etcd::EtcdSettings),
    Etcd2(crate::dcs::etcd::EtcdSettings),
    ZooKeeper(crate::dcs::zookeeper::ZkSettings),
    /// Exhibitor's servers, and the ZooKeeper keys for the ensemble they
    /// name (docs/dcs.md, "Exhibitor").
    Exhibitor(
        crate::dcs::exhibitor::ExhibitorSettings,
        crate::dcs::zookeeper::ZkSettings,
    ),
    /// The agent's base URL and the settings to reach it.
    Consul(String, crate::dcs::consul::ConsulSettings),
}

impl Store {
    /// What error messages name.
    fn servers(&self) -> Vec<String> {
        match self {
            Store::Etcd(e) => e.endpoints.clone(),
            Store::Etcd2(e) => e.endpoints.clone(),
            Store::ZooKeeper(z) => z.servers.clone(),
            Store::Exhibitor(x, _) => x
                .hosts
                .iter()
                .map(|h| format!("exhibitor http://{h}:{}", x.port))
                .collect(),
            Store::Consul(base, _) => vec![base.clone()],
        }
    }
}

/// `--dcs-url` (patronictl's form, src/ctl/dcs_url.rs) over the file's
/// section (docs/cli.md); with the URL's namespace, if it has one.
fn store(conn: &Connect, cfg: &ClientConfig) -> anyhow::Result<(Store, Option<String>)> {
    if let Some(url) = &conn.dcs_url {
        let u = crate::ctl::dcs_url::parse(url)?;
        return Ok((url_store(&u, cfg)?, u.namespace));
    }
    // Consul, etcd (v2), etcd3, Exhibitor, ZooKeeper: Patroni's order
    // (docs/configuration.md §4).
    if let Some(c) = &cfg.consul {
        return Ok((consul_store(c)?, None));
    }
    let s = match (&cfg.etcd, &cfg.etcd3, &cfg.exhibitor, &cfg.zookeeper) {
        (Some(e), _, _, _) if !e.endpoints().is_empty() || e.srv.is_some() => {
            Store::Etcd2(crate::dcs::etcd::EtcdSettings::from_config("etcd", e)?)
        }
        (_, Some(e), _, _) if !e.endpoints().is_empty() || e.srv.is_some() => {
            Store::Etcd(crate::dcs::etcd::EtcdSettings::from_config("etcd3", e)?)
        }
        (_, _, Some(x), _) if !x.hosts().is_empty() => exhibitor_store(x)?,
        (_, _, _, Some(z)) if !z.servers().is_empty() => {
            Store::ZooKeeper(crate::dcs::zookeeper::ZkSettings::from_config(z)?)
        }
        _ => bail!(
            "no DCS given: pass -c CONFIG with an etcd3, etcd, zookeeper, exhibitor or consul section, or --dcs-url etcd3://host:port"
        ),
    };
    Ok((s, None))
}

/// The store a `--dcs-url` names. As with patronictl the URL replaces the
/// file's DCS sections; only etcd3's credentials are kept (pgpilotctl's
/// habit since its first `--dcs-url`).
fn url_store(u: &crate::ctl::dcs_url::DcsUrl, cfg: &ClientConfig) -> anyhow::Result<Store> {
    use crate::ctl::dcs_url::Scheme;
    let hosts = u.host_ports();
    Ok(match u.scheme {
        Scheme::Consul => consul_store(&crate::config::consul::Consul {
            host: hosts.first().cloned(),
            ..Default::default()
        })?,
        Scheme::ZooKeeper => {
            let section = crate::config::zookeeper::ZooKeeper {
                hosts: Some(crate::config::HostList::List(hosts)),
                ..Default::default()
            };
            Store::ZooKeeper(crate::dcs::zookeeper::ZkSettings::from_config(&section)?)
        }
        Scheme::Exhibitor => {
            // patronictl's template: the host names, and the port (one for
            // every Exhibitor server).
            let port = u.hosts.first().map_or(8181, |(_, p)| *p);
            let section = crate::config::exhibitor::Exhibitor {
                hosts: Some(crate::config::HostList::List(
                    u.hosts.iter().map(|(h, _)| h.clone()).collect(),
                )),
                port: Some(i64::from(port)),
                ..Default::default()
            };
            exhibitor_store(&section)?
        }
        Scheme::Etcd => Store::Etcd2(crate::dcs::etcd::EtcdSettings::plain(
            hosts.iter().map(|h| format!("http://{h}")).collect(),
            cfg.etcd.as_ref().and_then(|e| e.credentials()),
        )),
        Scheme::Etcd3 => Store::Etcd(crate::dcs::etcd::EtcdSettings::plain(
            hosts.iter().map(|h| format!("http://{h}")).collect(),
            cfg.etcd3.as_ref().and_then(|e| e.credentials()),
        )),
    })
}

/// An Exhibitor section as a store.
fn exhibitor_store(x: &crate::config::exhibitor::Exhibitor) -> anyhow::Result<Store> {
    let settings = crate::dcs::exhibitor::ExhibitorSettings::from_config(x)
        .context("exhibitor.port: Exhibitor's HTTP port is required")?;
    Ok(Store::Exhibitor(
        settings,
        crate::dcs::zookeeper::ZkSettings::from_config(&x.zookeeper(&[]))?,
    ))
}

/// A Consul section as a store: its agent and client settings.
fn consul_store(c: &crate::config::consul::Consul) -> anyhow::Result<Store> {
    let base = c
        .base_url()
        .context("consul: the agent's address is not a URL with a host")?;
    let settings = crate::dcs::consul::ConsulSettings::from_config(c)?;
    Ok(Store::Consul(base, settings))
}

/// Everything a command needs: the DCS, the REST client, the scope.
pub struct Ctx {
    pub scope: String,
    endpoints: Vec<String>,
    pub dcs: Arc<dyn Dcs>,
    /// The REST client, or why it could not be built (TLS files): commands
    /// that only read the DCS still work then.
    http: anyhow::Result<reqwest::Client>,
    auth: Option<(String, String)>,
}

impl Ctx {
    pub fn new(
        conn: &Connect,
        cfg: &ClientConfig,
        cluster: Option<&String>,
    ) -> anyhow::Result<Ctx> {
        let (store, url_namespace) = store(conn, cfg)?;
        let endpoints = store.servers();
        let scope = cluster
            .cloned()
            .or_else(|| cfg.scope.clone())
            .context("no cluster name: give one or set `scope` in the config file")?;
        let namespace = url_namespace
            .or_else(|| cfg.namespace.clone())
            .unwrap_or_else(|| "/service".to_owned());
        let prefix = group_prefix(keys::cluster_prefix(&namespace, &scope), conn.group);
        let (ttl, retry) = (Duration::from_secs(30), Duration::from_secs(10));
        let dcs: Arc<dyn Dcs> = match store {
            Store::Etcd(settings) => Arc::new(EtcdDcs::with_settings(
                settings,
                prefix,
                "pgpilotctl".to_owned(),
                ttl,
                retry,
            )),
            Store::Etcd2(settings) => Arc::new(crate::dcs::etcd2::Etcd2Dcs::with_settings(
                settings,
                prefix,
                "pgpilotctl".to_owned(),
                ttl,
                retry,
            )),
            Store::Consul(_, settings) => Arc::new(crate::dcs::consul::ConsulDcs::new(
                settings,
                &prefix,
                "pgpilotctl".to_owned(),
                ttl,
                retry,
            )),
            Store::ZooKeeper(settings) => Arc::new(crate::dcs::zookeeper::ZooKeeperDcs::new(
                settings,
                prefix,
                "pgpilotctl".to_owned(),
                ttl,
                retry,
            )),
            Store::Exhibitor(x, zk) => {
                Arc::new(crate::dcs::zookeeper::ZooKeeperDcs::with_exhibitor(
                    zk,
                    crate::dcs::exhibitor::EnsembleProvider::new(x),
                    prefix,
                    "pgpilotctl".to_owned(),
                    ttl,
                    retry,
                ))
            }
        };
        let auth = [
            cfg.ctl.as_ref().and_then(|c| c.authentication.as_ref()),
            cfg.restapi.as_ref().and_then(|r| r.authentication.as_ref()),
        ]
        .into_iter()
        .flatten()
        .find_map(|a| Some((a.username.clone()?, a.password.clone().unwrap_or_default())));
        crate::tls::install_provider();
        let http = tls(cfg, conn.insecure).and_then(|tls| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .tls_backend_preconfigured(tls)
                .build()
                .context("building the HTTP client")
        });
        Ok(Ctx {
            scope,
            endpoints,
            dcs,
            http,
            auth,
        })
    }

    pub async fn cluster(&self) -> anyhow::Result<Cluster> {
        self.dcs.load_cluster().await.with_context(|| {
            format!(
                "reading cluster {} from {}",
                self.scope,
                self.endpoints.join(",")
            )
        })
    }

    /// Send a request to a member's REST API; answers (status, body).
    pub async fn request(
        &self,
        member: &Member,
        method: reqwest::Method,
        endpoint: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, String)> {
        let base = api_base(member)?;
        let url = format!("{base}/{endpoint}");
        let http = self.http.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut req = http.request(method.clone(), &url);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("member {}: {method} {url} failed", member.name))?;
        let code = resp.status().as_u16();
        Ok((code, resp.text().await.unwrap_or_default()))
    }
}

/// The cluster prefix of Citus group `group` (Patroni's
/// `/<namespace>/<scope>/<group>`), or the cluster's own.
pub fn group_prefix(prefix: String, group: Option<u32>) -> String {
    match group {
        Some(g) => format!("{prefix}/{g}"),
        None => prefix,
    }
}

/// Does a member of this role (`is_leader`: it holds the leader key) pass
/// `--role` (none: every member)?
pub fn role_matches(role: Option<Role>, is_leader: bool) -> bool {
    match role {
        Some(Role::Primary | Role::Leader) => is_leader,
        Some(Role::Replica) => !is_leader,
        Some(Role::Any) | None => true,
    }
}

/// `--watch SECONDS` / `-W` (2 s) as patronictl reads them: how often to
/// repeat, or `None` for once.
pub fn watch_every(watch: Option<f64>, w: bool) -> anyhow::Result<Option<Duration>> {
    match (watch, w) {
        (Some(s), _) if s > 0.0 && s.is_finite() => Ok(Some(Duration::from_secs_f64(s))),
        (Some(s), _) => bail!("--watch {s}: expected a positive number of seconds"),
        (None, true) => Ok(Some(Duration::from_secs(2))),
        (None, false) => Ok(None),
    }
}

/// `scheme://host:port` of a member's `api_url`.
pub fn api_base(m: &Member) -> anyhow::Result<String> {
    let url = &m.data.api_url;
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("member {} has no usable api_url ({url:?})", m.name))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{hostport}"))
}

pub fn leader_of(cluster: &Cluster, scope: &str) -> anyhow::Result<Member> {
    cluster
        .leader_member()
        .cloned()
        .with_context(|| format!("cluster {scope} has no leader"))
}

pub fn member_of(cluster: &Cluster, scope: &str, name: &str) -> anyhow::Result<Member> {
    cluster.member(name).cloned().with_context(|| {
        let names: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
        format!(
            "{name} is not a member of cluster {scope} (members: {})",
            names.join(", ")
        )
    })
}

/// Ask a yes/no question on stdin; anything but y/yes refuses.
pub fn confirm(question: &str) -> anyhow::Result<()> {
    eprint!("{question} [y/N]: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer from stdin")?;
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("aborted: not confirmed"),
    }
}

pub fn paused(cluster: &Cluster) -> bool {
    cluster
        .config
        .as_ref()
        .and_then(|c| c.value.get("pause"))
        .is_some_and(crate::config::json_truthy)
}

pub fn loop_wait(cluster: &Cluster) -> u64 {
    cluster
        .config
        .as_ref()
        .and_then(|c| c.value.get("loop_wait"))
        .and_then(Value::as_u64)
        .unwrap_or(10)
}

pub fn print_values(format: Format, headers: &[String], cells: &[Vec<String>], json: &Value) {
    match format {
        Format::Json => println!("{json}"),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(json).unwrap_or_default()),
        Format::Tsv => print!("{}", table::tsv(headers, cells)),
        Format::Pretty => print!("{}", table::render(None, headers, cells, &[])),
    }
}

/// The leader's member record first, then the other members: the order to
/// try requests that any member can serve but the leader serves best.
pub fn leader_first(cluster: &Cluster) -> Vec<&Member> {
    let mut order: Vec<&Member> = cluster.leader_member().into_iter().collect();
    order.extend(
        cluster
            .members
            .iter()
            .filter(|m| Some(m.name.as_str()) != cluster.leader_name()),
    );
    order
}

/// The member `--member` names, else the first with `--role` (default:
/// the leader).
pub fn pick_member(
    cluster: &Cluster,
    scope: &str,
    role: Option<Role>,
    member: Option<&str>,
) -> anyhow::Result<Member> {
    let leader = cluster.leader_name();
    match (member, role) {
        (Some(_), Some(_)) => bail!("--role and --member are mutually exclusive"),
        (Some(name), None) => member_of(cluster, scope, name),
        (None, Some(Role::Replica)) => cluster
            .members
            .iter()
            .find(|m| Some(m.name.as_str()) != leader)
            .cloned()
            .with_context(|| format!("cluster {scope} has no replica")),
        (None, Some(Role::Any)) => cluster
            .members
            .first()
            .cloned()
            .with_context(|| format!("cluster {scope} has no members")),
        (None, _) => leader_of(cluster, scope),
    }
}

/// patronictl's `restart <cluster> [members]`, or just `[members]` when
/// the cluster is the config file's `scope`.
pub fn split_cluster_members<'a>(
    cfg: &ClientConfig,
    args: &'a [String],
) -> (Option<String>, &'a [String]) {
    match (args.first(), &cfg.scope) {
        (Some(first), Some(scope)) if first == scope => (Some(first.clone()), &args[1..]),
        (Some(first), None) => (Some(first.clone()), &args[1..]),
        _ => (None, args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citus_group_prefix() {
        assert_eq!(group_prefix("/service/c".into(), None), "/service/c");
        assert_eq!(group_prefix("/service/c".into(), Some(1)), "/service/c/1");
    }

    #[test]
    fn roles_and_watch() {
        assert!(role_matches(None, false) && role_matches(Some(Role::Any), true));
        assert!(
            role_matches(Some(Role::Leader), true) && !role_matches(Some(Role::Primary), false)
        );
        assert!(
            role_matches(Some(Role::Replica), false) && !role_matches(Some(Role::Replica), true)
        );
        assert_eq!(watch_every(None, false).ok(), Some(None));
        assert_eq!(
            watch_every(None, true).ok(),
            Some(Some(Duration::from_secs(2)))
        );
        assert_eq!(
            watch_every(Some(0.5), true).ok(),
            Some(Some(Duration::from_millis(500)))
        );
        assert!(watch_every(Some(0.0), false).is_err());
    }
}
