//! pgpilotctl: the operator's command-line tool (patronictl's habits). It
//! reads the cluster from the DCS and acts through the REST API of the
//! leader or of the named members.

// The lint gate of src/lib.rs; no ioctl here, so unsafe is forbidden outright.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(rustdoc::broken_intra_doc_links)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};

use pgpilot::config::Etcd;
use pgpilot::ctl::{edit, history, list, table};
use pgpilot::dcs::etcd::EtcdDcs;
use pgpilot::dcs::{Cluster, Dcs, DcsError, Member, keys};

#[derive(Parser)]
#[command(
    name = "pgpilotctl",
    version,
    about = "Manage a pgpilot (or Patroni) cluster"
)]
struct Cli {
    /// Configuration file (the daemon's YAML works).
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// DCS to use instead of the config file's, e.g. etcd3://127.0.0.1:2379.
    #[arg(short = 'd', long = "dcs-url")]
    dcs_url: Option<String>,
    /// Do not check the certificates of https members (like `ctl.insecure`).
    #[arg(short = 'k', long = "insecure", global = true)]
    insecure: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the members of a cluster.
    List {
        /// Cluster name (default: `scope` from the config file).
        cluster: Option<String>,
        /// Always show the Pending restart and Tags columns.
        #[arg(short = 'e', long = "extended")]
        extended: bool,
        /// Print the time (UTC) before the output.
        #[arg(short = 't', long = "timestamp")]
        timestamp: bool,
        /// Repeat every 2 seconds until interrupted.
        #[arg(short = 'W')]
        watch_default: bool,
        /// Repeat every SECONDS until interrupted.
        #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
        watch: Option<f64>,
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// The members as a replication tree.
    Topology { cluster: Option<String> },
    /// The timeline history of the cluster.
    History {
        cluster: Option<String>,
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Print the dynamic configuration (the DCS `config` key) as YAML.
    ShowConfig { cluster: Option<String> },
    /// Change the dynamic configuration (PATCH /config on the leader).
    EditConfig {
        cluster: Option<String>,
        /// Set a dotted key, e.g. `--set loop_wait=5`; an empty value deletes it.
        #[arg(short = 's', long = "set")]
        set: Vec<String>,
        /// Set a PostgreSQL parameter, e.g. `--pg work_mem=16MB`.
        #[arg(short = 'p', long = "pg")]
        pg: Vec<String>,
        /// Merge the YAML of FILE (`-` = stdin) into the configuration.
        #[arg(long, value_name = "FILE")]
        apply: Option<PathBuf>,
        /// Apply without asking.
        #[arg(long)]
        force: bool,
    },
    /// Put the cluster in maintenance mode.
    Pause {
        cluster: Option<String>,
        /// Wait until every member reports the pause.
        #[arg(long)]
        wait: bool,
    },
    /// Leave maintenance mode.
    Resume {
        cluster: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// Hand the leader role to a healthy replica.
    Switchover {
        cluster: Option<String>,
        /// The current leader (checked against the leader key).
        #[arg(long, alias = "primary")]
        leader: Option<String>,
        /// The member to become leader (default: the best one the leader picks).
        #[arg(long)]
        candidate: Option<String>,
        /// When: ISO 8601 with a time zone, or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Make a given member the leader, even without a healthy leader.
    Failover {
        cluster: Option<String>,
        #[arg(long)]
        candidate: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Restart PostgreSQL on members (all members when none is named).
    Restart {
        /// `[CLUSTER] [MEMBER...]`: the cluster name may be left out when it
        /// is the config file's `scope`.
        #[arg(value_name = "CLUSTER|MEMBER")]
        args: Vec<String>,
        /// Only members with this role.
        #[arg(short = 'r', long = "role", value_enum)]
        role: Option<Role>,
        /// Only members waiting for a restart to apply settings.
        #[arg(short = 'p', long = "pending")]
        pending: bool,
        /// Schedule the restart: ISO 8601 (a time without a zone is UTC),
        /// or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Restart only members running a PostgreSQL older than this
        /// (`X.Y` or `X.Y.Z`).
        #[arg(long = "pg-version")]
        pg_version: Option<String>,
        /// Fail the restart if PostgreSQL is not up within this (`30`,
        /// `30s`, `2min`); on the leader a failover follows.
        #[arg(long)]
        timeout: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Reload the configuration of members (all members when none is named).
    Reload {
        /// `[CLUSTER] [MEMBER...]`: the cluster name may be left out when it
        /// is the config file's `scope`.
        #[arg(value_name = "CLUSTER|MEMBER")]
        args: Vec<String>,
        /// Only members with this role.
        #[arg(short = 'r', long = "role", value_enum)]
        role: Option<Role>,
        #[arg(long)]
        force: bool,
    },
    /// Cancel scheduled actions: `flush [CLUSTER] switchover` or
    /// `flush [CLUSTER] restart` (every member's scheduled restart).
    Flush {
        /// `[CLUSTER] switchover|restart`.
        #[arg(value_name = "CLUSTER|TARGET", required = true)]
        args: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// Run SQL on a member (default: the leader) and print the result.
    Query {
        cluster: Option<String>,
        #[arg(short = 'r', long = "role", value_enum)]
        role: Option<Role>,
        #[arg(short = 'm', long = "member")]
        member: Option<String>,
        /// The SQL to run.
        #[arg(short = 'c', long = "command", conflicts_with = "file")]
        command: Option<String>,
        /// A file with the SQL to run.
        #[arg(long = "file")]
        file: Option<PathBuf>,
        /// User (default: the config's superuser, else postgres).
        #[arg(short = 'U', long = "username")]
        username: Option<String>,
        #[arg(short = 'd', long = "dbname", default_value = "postgres")]
        dbname: String,
        #[arg(long = "format", value_enum, default_value = "tsv")]
        format: Format,
    },
    /// Rebuild replicas from the leader (POST /reinitialize).
    Reinit {
        /// `[CLUSTER] MEMBER...`.
        #[arg(value_name = "CLUSTER|MEMBER", required = true)]
        args: Vec<String>,
        /// Wait until PostgreSQL runs again on the members.
        #[arg(long)]
        wait: bool,
        /// Copy from the leader, not from a `clonefrom` member.
        #[arg(long = "from-leader")]
        from_leader: bool,
        /// No confirmation; cancel a job already running there.
        #[arg(long)]
        force: bool,
    },
    /// Delete the whole cluster from the DCS (asks for the cluster name,
    /// "Yes I am aware" and, if there is a leader, its name).
    Remove { cluster: String },
    /// Print the connection string of the primary or a replica.
    Dsn {
        cluster: Option<String>,
        #[arg(short = 'r', long = "role", value_enum)]
        role: Option<Role>,
        #[arg(short = 'm', long = "member")]
        member: Option<String>,
    },
    /// The version of pgpilotctl, and of the members' daemons and PostgreSQL.
    Version {
        cluster: Option<String>,
        members: Vec<String>,
    },
    /// Print a shell completion script, e.g. `pgpilotctl completion bash`
    /// (docs/cli.md says where to put it).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Pretty,
    Json,
    Yaml,
    Tsv,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Role {
    Primary,
    Leader,
    Replica,
    Any,
}

#[derive(Default, Deserialize)]
struct Auth {
    username: Option<String>,
    password: Option<String>,
}

/// `restapi` or `ctl`: credentials and TLS settings (docs/configuration.md §2, §3, §3.1).
#[derive(Default, Deserialize)]
struct AuthSection {
    authentication: Option<Auth>,
    /// A bool, or a string such as `"true"`/`"yes"` as Patroni accepts.
    insecure: Option<serde_yaml_ng::Value>,
    cacert: Option<String>,
    cafile: Option<String>,
    certfile: Option<String>,
    keyfile: Option<String>,
    keyfile_password: Option<String>,
}

impl CtlConfig {
    /// The rustls configuration for https members, as patronictl's: no
    /// check with `-k`/`ctl.insecure`; else chain and host name against
    /// `ctl.cacert` (or `restapi.cafile`, or the system store). It presents
    /// `ctl.certfile` (or `restapi.certfile`) as client certificate.
    fn tls(&self, insecure: bool) -> anyhow::Result<rustls::ClientConfig> {
        use pgpilot::tls::{ServerCheck, client_config, load_roots, system_roots};
        let sections = [
            ("ctl", self.ctl.as_ref()),
            ("restapi", self.restapi.as_ref()),
        ];
        let insecure = insecure
            || match self.ctl.as_ref().and_then(|c| c.insecure.as_ref()) {
                Some(serde_yaml_ng::Value::Bool(b)) => *b,
                Some(serde_yaml_ng::Value::String(s)) => {
                    pgpilot::config::parse_bool(s).unwrap_or(false)
                }
                _ => false,
            };
        let ca = self
            .ctl
            .as_ref()
            .and_then(|c| c.cacert.as_deref())
            .map(|p| ("ctl.cacert", p))
            .or_else(|| {
                self.restapi
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
        let identity = sections.iter().find_map(|(name, s)| {
            let s = (*s)?;
            let cert = s.certfile.as_deref()?;
            Some((
                *name,
                cert,
                s.keyfile.as_deref(),
                s.keyfile_password.as_deref(),
            ))
        });
        client_config(check, identity).map_err(anyhow::Error::msg)
    }
}

/// The parts of a daemon config the CLI needs; everything else is ignored.
#[derive(Default, Deserialize)]
struct CtlConfig {
    scope: Option<String>,
    namespace: Option<String>,
    #[serde(alias = "etcd")]
    etcd3: Option<Etcd>,
    restapi: Option<AuthSection>,
    ctl: Option<AuthSection>,
    postgresql: Option<PgSection>,
}

#[derive(Default, Deserialize)]
struct PgSection {
    authentication: Option<PgAuth>,
}

#[derive(Default, Deserialize)]
struct PgAuth {
    superuser: Option<Auth>,
}

fn load_ctl_config(path: Option<&PathBuf>) -> anyhow::Result<CtlConfig> {
    let Some(path) = path else {
        return Ok(CtlConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn endpoints(cli: &Cli, cfg: &CtlConfig) -> anyhow::Result<Vec<String>> {
    if let Some(url) = &cli.dcs_url {
        let rest = url
            .strip_prefix("etcd3://")
            .or_else(|| url.strip_prefix("etcd://"))
            .with_context(|| format!("--dcs-url {url}: only etcd3://host:port is supported"))?;
        let hosts = rest.split('/').next().unwrap_or(rest);
        return Ok(hosts.split(',').map(|h| format!("http://{h}")).collect());
    }
    match &cfg.etcd3 {
        Some(e) if !e.endpoints().is_empty() => Ok(e.endpoints()),
        _ => bail!(
            "no DCS given: pass -c CONFIG with an etcd3 section, or --dcs-url etcd3://host:port"
        ),
    }
}

/// Everything a command needs: the DCS, the REST client, the scope.
struct Ctx {
    scope: String,
    endpoints: Vec<String>,
    dcs: Arc<dyn Dcs>,
    /// The REST client, or why it could not be built (TLS files): commands
    /// that only read the DCS still work then.
    http: Result<reqwest::Client, String>,
    auth: Option<(String, String)>,
}

impl Ctx {
    fn new(cli: &Cli, cfg: &CtlConfig, cluster: Option<&String>) -> anyhow::Result<Ctx> {
        let endpoints = endpoints(cli, cfg)?;
        let scope = cluster
            .cloned()
            .or_else(|| cfg.scope.clone())
            .context("no cluster name: give one or set `scope` in the config file")?;
        let namespace = cfg
            .namespace
            .clone()
            .unwrap_or_else(|| "/service".to_owned());
        let etcd_auth = cfg
            .etcd3
            .as_ref()
            .and_then(|e| Some((e.username.clone()?, e.password.clone().unwrap_or_default())));
        let dcs: Arc<dyn Dcs> = Arc::new(EtcdDcs::new(
            endpoints.clone(),
            etcd_auth,
            keys::cluster_prefix(&namespace, &scope),
            "pgpilotctl".to_owned(),
            Duration::from_secs(30),
            Duration::from_secs(10),
        ));
        let auth = [cfg.ctl.as_ref(), cfg.restapi.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|s| s.authentication.as_ref())
            .find_map(|a| Some((a.username.clone()?, a.password.clone().unwrap_or_default())));
        pgpilot::tls::install_provider();
        let http = cfg
            .tls(cli.insecure)
            .map_err(|e| format!("{e:#}"))
            .and_then(|tls| {
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .tls_backend_preconfigured(tls)
                    .build()
                    .map_err(|e| format!("building the HTTP client: {e}"))
            });
        Ok(Ctx {
            scope,
            endpoints,
            dcs,
            http,
            auth,
        })
    }

    async fn cluster(&self) -> anyhow::Result<Cluster> {
        self.dcs.load_cluster().await.with_context(|| {
            format!(
                "reading cluster {} from {}",
                self.scope,
                self.endpoints.join(",")
            )
        })
    }

    /// Send a request to a member's REST API; answers (status, body).
    async fn request(
        &self,
        member: &Member,
        method: reqwest::Method,
        endpoint: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, String)> {
        let base = api_base(member)?;
        let url = format!("{base}/{endpoint}");
        let http = self.http.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
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

/// `scheme://host:port` of a member's `api_url`.
fn api_base(m: &Member) -> anyhow::Result<String> {
    let url = &m.data.api_url;
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("member {} has no usable api_url ({url:?})", m.name))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{hostport}"))
}

fn leader_of(cluster: &Cluster, scope: &str) -> anyhow::Result<Member> {
    cluster
        .leader_member()
        .cloned()
        .with_context(|| format!("cluster {scope} has no leader"))
}

fn member_of(cluster: &Cluster, scope: &str, name: &str) -> anyhow::Result<Member> {
    cluster.member(name).cloned().with_context(|| {
        let names: Vec<&str> = cluster.members.iter().map(|m| m.name.as_str()).collect();
        format!(
            "{name} is not a member of cluster {scope} (members: {})",
            names.join(", ")
        )
    })
}

/// Ask a yes/no question on stdin; anything but y/yes refuses.
fn confirm(question: &str) -> anyhow::Result<()> {
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

fn paused(cluster: &Cluster) -> bool {
    cluster
        .config
        .as_ref()
        .and_then(|c| c.value.get("pause"))
        .is_some_and(pgpilot::config::json_truthy)
}

fn loop_wait(cluster: &Cluster) -> u64 {
    cluster
        .config
        .as_ref()
        .and_then(|c| c.value.get("loop_wait"))
        .and_then(Value::as_u64)
        .unwrap_or(10)
}

fn print_values(format: Format, headers: &[String], cells: &[Vec<String>], json: &Value) {
    match format {
        Format::Json => println!("{json}"),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(json).unwrap_or_default()),
        Format::Tsv => print!("{}", table::tsv(headers, cells)),
        Format::Pretty => print!("{}", table::render(None, headers, cells, &[])),
    }
}

/// The leader's member record first, then the other members: the order to
/// try requests that any member can serve but the leader serves best.
fn leader_first(cluster: &Cluster) -> Vec<&Member> {
    let mut order: Vec<&Member> = cluster.leader_member().into_iter().collect();
    order.extend(
        cluster
            .members
            .iter()
            .filter(|m| Some(m.name.as_str()) != cluster.leader_name()),
    );
    order
}

/// `PATCH /config` to the leader first, then the other members, until one
/// answers; bails with the last failure.
async fn patch_config(ctx: &Ctx, cluster: &Cluster, patch: &Value) -> anyhow::Result<Value> {
    let order = leader_first(cluster);
    let mut last = anyhow::anyhow!("cluster {} has no members", ctx.scope);
    for m in order {
        match ctx
            .request(m, reqwest::Method::PATCH, "config", Some(patch))
            .await
        {
            Ok((200, body)) => return Ok(serde_json::from_str(&body).unwrap_or(Value::Null)),
            Ok((code, body)) => {
                bail!(
                    "member {}: PATCH /config answered {code}: {}",
                    m.name,
                    body.trim()
                )
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What `edit-config` prints (exit 1) when the `config` key changed between
/// its read and its write.
const CONCURRENT_CHANGE: &str = "config changed concurrently, re-run";

/// `edit-config`'s write, as patronictl's: the whole edited document, checked
/// as the daemons check a `PATCH /config`, written to the DCS with
/// compare-and-swap on the `version` read before the edit. A change by
/// anyone else in between (another operator, `PATCH /config`, the leader
/// restoring the key) makes the write fail and nothing is written.
async fn write_config(ctx: &Ctx, version: i64, doc: &Value) -> anyhow::Result<()> {
    let Value::Object(map) = doc else {
        bail!("the configuration must be a mapping");
    };
    if let Err(e) = pgpilot::api::config::validate_document(map) {
        bail!("the new configuration is refused: {}", e.message());
    }
    match ctx
        .dcs
        .set_config_value(&doc.to_string(), Some(version))
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) | Err(DcsError::CasConflict(_)) => bail!(
            "{CONCURRENT_CHANGE}: the config key of cluster {} is no longer the version read \
             ({version}); nothing was written",
            ctx.scope
        ),
        Err(e) => {
            Err(e).with_context(|| format!("writing the config key of cluster {}", ctx.scope))
        }
    }
}

async fn pause_resume(ctx: &Ctx, pause: bool, wait: bool) -> anyhow::Result<()> {
    let cluster = ctx.cluster().await?;
    if paused(&cluster) == pause {
        bail!(
            "cluster {} is {}",
            ctx.scope,
            if pause {
                "already paused"
            } else {
                "not paused"
            }
        );
    }
    let patch = json!({ "pause": if pause { Value::Bool(true) } else { Value::Null } });
    patch_config(ctx, &cluster, &patch).await?;
    if wait {
        let deadline = Instant::now() + Duration::from_secs(loop_wait(&cluster) + 30);
        eprint!(
            "Waiting for the cluster to {}",
            if pause { "pause" } else { "resume" }
        );
        loop {
            let c = ctx.cluster().await?;
            let pending: Vec<&str> = c
                .members
                .iter()
                .filter(|m| !m.data.api_url.is_empty() && m.data.pause != pause)
                .map(|m| m.name.as_str())
                .collect();
            if pending.is_empty() {
                eprintln!();
                break;
            }
            if Instant::now() > deadline {
                eprintln!();
                bail!(
                    "members not reporting the change yet: {}",
                    pending.join(", ")
                );
            }
            eprint!(".");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if pause {
        println!("Success: cluster management is paused");
    } else {
        println!("Success: cluster management is resumed");
    }
    Ok(())
}

/// What `restart` adds to its body (docs/rest-api.md, "POST /restart, DELETE /restart").
#[derive(Default)]
struct RestartExtras {
    scheduled: Option<String>,
    pg_version: Option<String>,
    timeout: Option<String>,
}

/// POST `endpoint` to each named member (all when none), reporting each.
async fn per_member(
    ctx: &Ctx,
    names: &[String],
    endpoint: &str,
    role: Option<Role>,
    pending: bool,
    force: bool,
    extras: RestartExtras,
) -> anyhow::Result<()> {
    let cluster = ctx.cluster().await?;
    let members: Vec<Member> = if names.is_empty() {
        cluster.members.clone()
    } else {
        names
            .iter()
            .map(|n| member_of(&cluster, &ctx.scope, n))
            .collect::<anyhow::Result<_>>()?
    };
    let leader = cluster.leader_name();
    let members: Vec<Member> = members
        .into_iter()
        .filter(|m| {
            let is_leader = Some(m.name.as_str()) == leader;
            match role {
                Some(Role::Primary | Role::Leader) => is_leader,
                Some(Role::Replica) => !is_leader,
                Some(Role::Any) | None => true,
            }
        })
        .filter(|m| !pending || m.data.pending_restart)
        .collect();
    if members.is_empty() {
        bail!(
            "no member of cluster {} matches (names, --role{})",
            ctx.scope,
            if pending { ", --pending" } else { "" }
        );
    }
    let mut body = serde_json::Map::new();
    if pending {
        body.insert("restart_pending".into(), json!(true));
    }
    if let Some(v) = &extras.pg_version {
        body.insert("postgres_version".into(), json!(v));
    }
    if let Some(t) = &extras.timeout {
        body.insert("timeout".into(), json!(t));
    }
    let schedule = match extras.scheduled.as_deref() {
        None | Some("now") => None,
        Some(_) if paused(&cluster) => bail!("can't schedule restart in the paused state"),
        Some(t) => Some(pgpilot::ctl::time::with_timezone(t)),
    };
    if let Some(t) = &schedule {
        body.insert("schedule".into(), json!(t));
    }
    let body = Value::Object(body);
    print!("{}", list::render_table(&cluster, &ctx.scope));
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    if !force {
        confirm(&format!(
            "Are you sure you want to {endpoint} members {}?",
            names.join(", ")
        ))?;
    }
    if schedule.is_some() && force {
        // patronictl: --force replaces a restart already scheduled.
        for m in members
            .iter()
            .filter(|m| m.data.scheduled_restart.is_some())
        {
            ctx.request(m, reqwest::Method::DELETE, "restart", None)
                .await?;
        }
    }
    let wait = loop_wait(&cluster);
    post_each(ctx, &members, endpoint, &body, |name, code, body| {
        matches!(code, 200 | 202).then(|| {
            let what = if endpoint == "reload" && code == 202 {
                format!("reload request received, will be processed within {wait} seconds")
            } else {
                body.trim().to_owned()
            };
            format!("Success: {endpoint} on member {name}: {what}")
        })
    })
    .await
}

/// POST `endpoint` to each member in turn, printing one line per member, as
/// patronictl does; `success` turns a member's reply into its success line,
/// or `None` when it is a failure. Fails naming every member that did not
/// succeed.
async fn post_each(
    ctx: &Ctx,
    members: &[Member],
    endpoint: &str,
    body: &serde_json::Value,
    success: impl Fn(&str, u16, &str) -> Option<String>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for m in members {
        match ctx
            .request(m, reqwest::Method::POST, endpoint, Some(body))
            .await
        {
            Ok((code, text)) => match success(&m.name, code, &text) {
                Some(line) => println!("{line}"),
                None => {
                    println!(
                        "Failed: {endpoint} for member {}, status code={code}, ({})",
                        m.name,
                        text.trim()
                    );
                    failed.push(m.name.clone());
                }
            },
            Err(e) => {
                println!("Failed: {endpoint} for member {}: {e:#}", m.name);
                failed.push(m.name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("{endpoint} failed on {}", failed.join(", "));
    }
    Ok(())
}

async fn switchover(
    ctx: &Ctx,
    failover: bool,
    leader: Option<&str>,
    candidate: Option<&str>,
    scheduled: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    let action = if failover { "failover" } else { "switchover" };
    let cluster = ctx.cluster().await?;
    let current = cluster.leader_member().cloned();
    if failover && candidate.is_none() {
        bail!(
            "failover needs --candidate: a failover could be performed only to a specific candidate"
        );
    }
    if !failover {
        let Some(cur) = &current else {
            bail!("cluster {} has no leader: use failover", ctx.scope);
        };
        if let Some(l) = leader
            && l != cur.name
        {
            bail!(
                "member {l} is not the leader of cluster {} (the leader is {})",
                ctx.scope,
                cur.name
            );
        }
    }
    if let Some(c) = candidate {
        member_of(&cluster, &ctx.scope, c)
            .with_context(|| format!("{action} candidate {c} refused"))?;
        if current.as_ref().is_some_and(|l| l.name == c) {
            bail!("{action} candidate {c} is already the leader");
        }
    }
    let scheduled_at = match scheduled {
        None | Some("now") => None,
        Some(_) if paused(&cluster) => {
            bail!("can't schedule a {action} while the cluster is paused")
        }
        Some(t) => Some(pgpilot::ctl::time::with_timezone(t)),
    };
    let mut body = serde_json::Map::new();
    if !failover && let Some(cur) = &current {
        body.insert("leader".into(), Value::from(cur.name.clone()));
    }
    if let Some(c) = candidate {
        body.insert("candidate".into(), Value::from(c));
    }
    if let Some(t) = &scheduled_at {
        body.insert("scheduled_at".into(), Value::from(t.clone()));
    }
    print!("{}", list::render_table(&cluster, &ctx.scope));
    if !force {
        let from = current
            .as_ref()
            .map(|l| l.name.as_str())
            .unwrap_or("(no leader)");
        let to = candidate.unwrap_or("the best candidate");
        let when = scheduled_at.as_deref().unwrap_or("now");
        confirm(&format!(
            "Are you sure you want to {action} from {from} to {to} ({when})?"
        ))?;
    }
    // To the leader; a failover without a leader goes to the candidate.
    let target = match (&current, candidate) {
        (Some(l), _) => l.clone(),
        (None, Some(c)) => member_of(&cluster, &ctx.scope, c)?,
        (None, None) => bail!("cluster {} has no leader", ctx.scope),
    };
    let body = Value::Object(body);
    let (mut code, mut text) = ctx
        .request(&target, reqwest::Method::POST, action, Some(&body))
        .await?;
    // Older servers without /switchover: patronictl retries as /failover.
    if !failover && code == 501 && text.contains("Server does not support this operation") {
        (code, text) = ctx
            .request(&target, reqwest::Method::POST, "failover", Some(&body))
            .await?;
    }
    match code {
        200 | 202 => {
            println!("{}", text.trim());
            let after = ctx.cluster().await?;
            print!("{}", list::render_table(&after, &ctx.scope));
            print!("{}", list::footer(&after));
            Ok(())
        }
        _ => bail!(
            "{} failed on member {}, details: {code}, {}",
            capitalize(action),
            target.name,
            text.trim()
        ),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = load_ctl_config(cli.config.as_ref())?;
    match &cli.command {
        Command::List {
            cluster,
            extended,
            timestamp,
            watch_default,
            watch,
            format,
        } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let every = match (watch, watch_default) {
                (Some(s), _) if *s > 0.0 => Some(Duration::from_secs_f64(*s)),
                (Some(s), _) => bail!("--watch {s}: expected a positive number of seconds"),
                (None, true) => Some(Duration::from_secs(2)),
                (None, false) => None,
            };
            loop {
                if *timestamp {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    println!("{} UTC", pgpilot::ctl::time::format_utc(now));
                }
                print_list(&ctx, *extended, *format).await?;
                let Some(every) = every else { break };
                std::io::stdout().flush().ok();
                tokio::time::sleep(every).await;
            }
        }
        Command::Topology { cluster } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let cluster = ctx.cluster().await?;
            let rows = list::topology_rows(&cluster, &ctx.scope);
            let title = list::title(&cluster, &ctx.scope);
            print!("{}", list::render_rows(&rows, &title, false));
            print!("{}", list::footer(&cluster));
        }
        Command::History { cluster, format } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let cluster = ctx.cluster().await?;
            let lines = cluster.history.unwrap_or_default();
            let headers: Vec<String> = history::HEADERS.iter().map(|h| (*h).to_owned()).collect();
            print_values(
                *format,
                &headers,
                &history::cells(&lines),
                &Value::Array(history::rows(&lines)),
            );
        }
        Command::ShowConfig { cluster } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let cluster = ctx.cluster().await?;
            let config = cluster
                .config
                .with_context(|| format!("cluster {} has no dynamic configuration", ctx.scope))?;
            print!("{}", serde_yaml_ng::to_string(&config.value)?);
        }
        Command::EditConfig {
            cluster,
            set,
            pg,
            apply,
            force,
        } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let cluster = ctx.cluster().await?;
            let (before, version) = cluster
                .config
                .as_ref()
                .map(|c| (c.value.clone(), c.version))
                .with_context(|| format!("cluster {} has no dynamic configuration", ctx.scope))?;
            // patronictl's order: --apply, then --set/--pg (a later option
            // wins); the editor only when neither is given.
            let mut after = before.clone();
            if let Some(file) = apply {
                let text = if file.as_os_str() == "-" {
                    let mut t = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                        .context("reading --apply - from stdin")?;
                    t
                } else {
                    std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?
                };
                let v: Value = serde_yaml_ng::from_str(&text)
                    .with_context(|| format!("parsing {} as YAML", file.display()))?;
                if !v.is_object() {
                    bail!("{}: expected a YAML mapping", file.display());
                }
                pgpilot::config::patch_config(&mut after, v);
            }
            if set.is_empty() && pg.is_empty() && apply.is_none() {
                after = run_editor(&before)?;
            } else {
                edit::apply_options(&mut after, set, pg)?;
            }
            let diff = edit::diff(
                &serde_yaml_ng::to_string(&before)?,
                &serde_yaml_ng::to_string(&after)?,
            );
            if diff.is_empty() {
                println!("Not changed");
                return Ok(());
            }
            print!("{diff}");
            if !force {
                // --apply - consumed stdin: there is nothing left to answer.
                if apply.as_ref().is_some_and(|f| f.as_os_str() == "-") {
                    bail!("--apply - reads stdin: add --force to apply without asking");
                }
                confirm("Apply these changes?")?;
            }
            write_config(&ctx, version, &after).await?;
            println!("Configuration changed");
        }
        Command::Pause { cluster, wait } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            pause_resume(&ctx, true, *wait).await?;
        }
        Command::Resume { cluster, wait } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            pause_resume(&ctx, false, *wait).await?;
        }
        Command::Switchover {
            cluster,
            leader,
            candidate,
            scheduled,
            force,
        } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            switchover(
                &ctx,
                false,
                leader.as_deref(),
                candidate.as_deref(),
                scheduled.as_deref(),
                *force,
            )
            .await?;
        }
        Command::Failover {
            cluster,
            candidate,
            force,
        } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            switchover(&ctx, true, None, candidate.as_deref(), None, *force).await?;
        }
        Command::Restart {
            args,
            role,
            pending,
            scheduled,
            pg_version,
            timeout,
            force,
        } => {
            let (cluster, members) = split_cluster_members(&cfg, args);
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let extras = RestartExtras {
                scheduled: scheduled.clone(),
                pg_version: pg_version.clone(),
                timeout: timeout.clone(),
            };
            per_member(&ctx, members, "restart", *role, *pending, *force, extras).await?;
        }
        Command::Reload { args, role, force } => {
            let (cluster, members) = split_cluster_members(&cfg, args);
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            per_member(
                &ctx,
                members,
                "reload",
                *role,
                false,
                *force,
                RestartExtras::default(),
            )
            .await?;
        }
        Command::Query {
            cluster,
            role,
            member,
            command,
            file,
            username,
            dbname,
            format,
        } => {
            let sql = match (command, file) {
                (Some(c), _) => c.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?,
                (None, None) => bail!("query: give the SQL with --command or --file"),
            };
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let c = ctx.cluster().await?;
            let m = pick_member(&c, &ctx.scope, *role, member.as_deref())?;
            let su = cfg
                .postgresql
                .as_ref()
                .and_then(|p| p.authentication.as_ref())
                .and_then(|a| a.superuser.as_ref());
            let user = username
                .clone()
                .or_else(|| su.and_then(|s| s.username.clone()))
                .unwrap_or_else(|| "postgres".to_owned());
            let password = std::env::var("PGPASSWORD").ok().or_else(|| {
                su.filter(|s| s.username.as_deref() == Some(user.as_str()))
                    .and_then(|s| s.password.clone())
            });
            let (headers, rows) = run_query(&m, &user, password.as_deref(), dbname, &sql).await?;
            let json = Value::Array(
                rows.iter()
                    .map(|r| {
                        Value::Object(
                            headers
                                .iter()
                                .cloned()
                                .zip(r.iter().cloned().map(Value::from))
                                .collect(),
                        )
                    })
                    .collect(),
            );
            print_values(*format, &headers, &rows, &json);
        }
        Command::Reinit {
            args,
            wait,
            from_leader,
            force,
        } => {
            let (cluster, names) = split_cluster_members(&cfg, args);
            if names.is_empty() {
                bail!("reinit: name the members to reinitialize");
            }
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let c = ctx.cluster().await?;
            let members: Vec<Member> = names
                .iter()
                .map(|n| member_of(&c, &ctx.scope, n))
                .collect::<anyhow::Result<_>>()?;
            if let Some(l) = members
                .iter()
                .find(|m| Some(m.name.as_str()) == c.leader_name())
            {
                bail!(
                    "member {} is the leader: only replicas can be reinitialized",
                    l.name
                );
            }
            print!("{}", list::render_table(&c, &ctx.scope));
            if !force {
                let list: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                confirm(&format!(
                    "Are you sure you want to reinitialize members {}?",
                    list.join(", ")
                ))?;
            }
            let mut failed = Vec::new();
            let mut started: Vec<Member> = Vec::new();
            for m in &members {
                let mut body = json!({"force": force, "from_leader": from_leader});
                loop {
                    match ctx
                        .request(m, reqwest::Method::POST, "reinitialize", Some(&body))
                        .await
                    {
                        Ok((code, text)) if code < 400 => {
                            println!(
                                "Success: reinitialize for member {}: {}",
                                m.name,
                                text.trim()
                            );
                            started.push(m.clone());
                        }
                        Ok((code, text)) => {
                            println!(
                                "Failed: reinitialize for member {}, status code={code}, ({})",
                                m.name,
                                text.trim()
                            );
                            // patronictl: offer to cancel what runs there.
                            if text.trim_end().ends_with(" already in progress")
                                && body["force"] == false
                                && confirm("Do you want to cancel it and reinitialize anyway?")
                                    .is_ok()
                            {
                                body["force"] = Value::Bool(true);
                                continue;
                            }
                            failed.push(m.name.clone());
                        }
                        Err(e) => {
                            println!("Failed: reinitialize for member {}: {e:#}", m.name);
                            failed.push(m.name.clone());
                        }
                    }
                    break;
                }
            }
            if !failed.is_empty() {
                bail!("reinitialize failed on {}", failed.join(", "));
            }
            let members = started;
            if *wait {
                eprint!("Waiting for the replicas to be rebuilt");
                let deadline = Instant::now() + Duration::from_secs(3600);
                let mut pending: Vec<&Member> = members.iter().collect();
                while !pending.is_empty() {
                    if Instant::now() > deadline {
                        bail!("still reinitializing after an hour");
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    eprint!(".");
                    let mut still = Vec::new();
                    for m in pending {
                        // Done once PostgreSQL runs again (a replica that
                        // answers); a failed start ends the wait.
                        let state =
                            match ctx.request(m, reqwest::Method::GET, "patroni", None).await {
                                Ok((_, body)) => serde_json::from_str::<Value>(&body)
                                    .ok()
                                    .and_then(|v| v["state"].as_str().map(str::to_owned)),
                                Err(_) => None,
                            };
                        match state.as_deref() {
                            Some("running") => {
                                eprintln!();
                                println!("Reinitialize is completed on: {}", m.name);
                            }
                            Some(s @ ("start failed" | "crashed")) => {
                                eprintln!();
                                bail!("reinitialize of {} ended with PostgreSQL {s}", m.name);
                            }
                            _ => still.push(m),
                        }
                    }
                    pending = still;
                }
                eprintln!();
                println!("Reinitialization finished");
            }
        }
        Command::Remove { cluster } => {
            let ctx = Ctx::new(&cli, &cfg, Some(cluster))?;
            let c = ctx.cluster().await?;
            print!("{}", list::render_table(&c, &ctx.scope));
            let mut lines = std::io::stdin().lock().lines();
            let mut ask = |q: &str| -> anyhow::Result<String> {
                eprint!("{q}: ");
                std::io::stderr().flush().ok();
                Ok(lines
                    .next()
                    .transpose()
                    .context("reading the answer from stdin")?
                    .unwrap_or_default()
                    .trim()
                    .to_owned())
            };
            if ask("Please confirm the cluster name to remove")? != ctx.scope {
                bail!("aborted: the cluster name does not match {}", ctx.scope);
            }
            if ask(
                "You are about to remove all information in DCS for this cluster, please type: \"Yes I am aware\"",
            )? != "Yes I am aware"
            {
                bail!("aborted: you did not exactly type \"Yes I am aware\"");
            }
            if let Some(l) = c.leader_name()
                && ask(
                    "This cluster currently is healthy. Please specify the leader name to continue",
                )? != l
            {
                bail!("aborted: you did not specify the current leader of the cluster ({l})");
            }
            ctx.dcs
                .delete_cluster()
                .await
                .with_context(|| format!("deleting cluster {} from the DCS", ctx.scope))?;
            println!("Cluster {} removed from the DCS", ctx.scope);
        }
        Command::Flush { args, force } => {
            let (target, rest) = args.split_last().context("flush: give the target")?;
            if target == "restart" {
                let ctx = Ctx::new(&cli, &cfg, rest.first())?;
                let cluster = ctx.cluster().await?;
                let members: Vec<&Member> = cluster
                    .members
                    .iter()
                    .filter(|m| m.data.scheduled_restart.is_some())
                    .collect();
                if members.is_empty() {
                    bail!("cluster {} has no scheduled restart", ctx.scope);
                }
                if !force {
                    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                    confirm(&format!(
                        "Cancel the scheduled restarts of {}?",
                        names.join(", ")
                    ))?;
                }
                let mut failed = Vec::new();
                for m in members {
                    match ctx
                        .request(m, reqwest::Method::DELETE, "restart", None)
                        .await
                    {
                        Ok((200 | 404, text)) => println!(
                            "Success: flush scheduled restart on member {}: {}",
                            m.name,
                            text.trim()
                        ),
                        Ok((code, text)) => {
                            println!(
                                "Failed: flush scheduled restart for member {}, status code={code}, ({})",
                                m.name,
                                text.trim()
                            );
                            failed.push(m.name.clone());
                        }
                        Err(e) => {
                            println!(
                                "Failed: flush scheduled restart for member {}: {e:#}",
                                m.name
                            );
                            failed.push(m.name.clone());
                        }
                    }
                }
                if !failed.is_empty() {
                    bail!("flush restart failed on {}", failed.join(", "));
                }
                return Ok(());
            }
            if target != "switchover" {
                bail!("flush {target}: expected `switchover` or `restart`");
            }
            let ctx = Ctx::new(&cli, &cfg, rest.first())?;
            let cluster = ctx.cluster().await?;
            let Some(f) = &cluster.failover else {
                bail!("cluster {} has no scheduled switchover", ctx.scope);
            };
            if !force {
                confirm(&format!(
                    "Cancel the switchover scheduled at {}?",
                    f.value.scheduled_at.as_deref().unwrap_or("(now)")
                ))?;
            }
            // Leader first, then the others; stop at the first 200 or 404.
            let order = leader_first(&cluster);
            let mut last = anyhow::anyhow!("cluster {} has no members", ctx.scope);
            let mut done = false;
            for m in order {
                match ctx
                    .request(m, reqwest::Method::DELETE, "switchover", None)
                    .await
                {
                    Ok((200 | 404, body)) => {
                        println!("Success: {}", body.trim());
                        done = true;
                        break;
                    }
                    Ok((code, body)) => {
                        last = anyhow::anyhow!(
                            "member {}: DELETE /switchover answered {code}: {}",
                            m.name,
                            body.trim()
                        )
                    }
                    Err(e) => last = e,
                }
            }
            if !done {
                return Err(last);
            }
        }
        Command::Dsn {
            cluster,
            role,
            member,
        } => {
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let cluster = ctx.cluster().await?;
            let m = pick_member(&cluster, &ctx.scope, *role, member.as_deref())?;
            let (host, port) = m
                .data
                .conn_host_port()
                .with_context(|| format!("member {} has no usable conn_url", m.name))?;
            println!("host={host} port={port}");
        }
        Command::Version { cluster, members } => {
            println!("pgpilotctl version {}", env!("CARGO_PKG_VERSION"));
            if cluster.is_none() && cfg.scope.is_none() {
                return Ok(());
            }
            let ctx = Ctx::new(&cli, &cfg, cluster.as_ref())?;
            let c = ctx.cluster().await?;
            let targets: Vec<Member> = if members.is_empty() {
                c.members.clone()
            } else {
                members
                    .iter()
                    .map(|n| member_of(&c, &ctx.scope, n))
                    .collect::<anyhow::Result<_>>()?
            };
            for m in &targets {
                match ctx.request(m, reqwest::Method::GET, "patroni", None).await {
                    Ok((_, body)) => {
                        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        let pv = v["patroni"]["version"].as_str().unwrap_or("?");
                        let sv = v["server_version"]
                            .as_u64()
                            .map(pg_version)
                            .unwrap_or_else(|| "?".into());
                        println!("{}: Patroni {pv} PostgreSQL {sv}", m.name);
                    }
                    Err(e) => println!("{}: failed to get version: {e:#}", m.name),
                }
            }
        }
        // Answered in main, before any configuration is read.
        Command::Completion { .. } => {}
    }
    Ok(())
}

async fn print_list(ctx: &Ctx, extended: bool, format: Format) -> anyhow::Result<()> {
    let cluster = ctx.cluster().await?;
    let rows = list::rows(&cluster, &ctx.scope);
    match format {
        Format::Pretty => {
            let title = list::title(&cluster, &ctx.scope);
            print!("{}", list::render_rows(&rows, &title, extended));
            print!("{}", list::footer(&cluster));
        }
        Format::Json => println!("{}", serde_json::to_string(&rows)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(&rows)?),
        Format::Tsv => {
            let (h, c) = list::cells(&rows, extended, true);
            print!("{}", table::tsv(&h, &c));
        }
    }
    Ok(())
}

/// The member `--member` names, else the first with `--role` (default:
/// the leader).
fn pick_member(
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

/// Run `sql` on member `m` (simple query protocol, every value as text);
/// the column names and rows of the last result set.
async fn run_query(
    m: &Member,
    user: &str,
    password: Option<&str>,
    dbname: &str,
    sql: &str,
) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let (host, port) = m
        .data
        .conn_host_port()
        .with_context(|| format!("member {} has no usable conn_url", m.name))?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(user)
        .dbname(dbname)
        .application_name("Patroni ctl")
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = password {
        config.password(p);
    }
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("member {}: connecting to {host}:{port}", m.name))?;
    tokio::spawn(conn);
    let msgs = client
        .simple_query(sql)
        .await
        .with_context(|| format!("member {}: query failed", m.name))?;
    let mut headers = Vec::new();
    let mut rows = Vec::new();
    for msg in msgs {
        match msg {
            tokio_postgres::SimpleQueryMessage::RowDescription(cols) => {
                headers = cols.iter().map(|c| c.name().to_owned()).collect();
                rows.clear();
            }
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                if headers.is_empty() {
                    headers = r.columns().iter().map(|c| c.name().to_owned()).collect();
                }
                rows.push(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("").to_owned())
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Ok((headers, rows))
}

/// Open `$EDITOR` (else `vi`) on the configuration as YAML; the edited
/// document.
fn run_editor(config: &Value) -> anyhow::Result<Value> {
    let path = std::env::temp_dir().join(format!("pgpilotctl-config-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_yaml_ng::to_string(config)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("running the editor {editor}"));
    let text = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    let status = status?;
    if !status.success() {
        bail!("the editor {editor} exited with {status}; nothing changed");
    }
    let text = text.context("reading the edited configuration")?;
    let v: Value =
        serde_yaml_ng::from_str(&text).context("the edited configuration is not valid YAML")?;
    if !v.is_object() {
        bail!("the edited configuration is not a YAML mapping");
    }
    Ok(v)
}

/// patronictl's `restart <cluster> [members]`, or just `[members]` when
/// the cluster is the config file's `scope`.
fn split_cluster_members<'a>(
    cfg: &CtlConfig,
    args: &'a [String],
) -> (Option<String>, &'a [String]) {
    match (args.first(), &cfg.scope) {
        (Some(first), Some(scope)) if first == scope => (Some(first.clone()), &args[1..]),
        (Some(first), None) => (Some(first.clone()), &args[1..]),
        _ => (None, args),
    }
}

/// `150018` -> `15.18`; `90624` -> `9.6.24`.
fn pg_version(v: u64) -> String {
    if v >= 100000 {
        format!("{}.{}", v / 10000, v % 10000)
    } else {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        // Needs neither a configuration nor a DCS.
        // Generated into memory: clap_complete panics on a failed write
        // (`| head`), we report it.
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "pgpilotctl", &mut script);
        let mut out = std::io::stdout().lock();
        return match out.write_all(&script).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: writing the completion script: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
