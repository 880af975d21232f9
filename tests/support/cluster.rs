//! A real pgpilot cluster for integration tests: etcd, N daemons, each with
//! its own PostgreSQL 15, all on loopback.
//!
//! PostgreSQL refuses root, so when the tests run as root the daemons run as
//! the `postgres` user (set on the child process, no `runuser` in between, so
//! the pid we hold is the daemon's). The pgpilot binary is copied into the
//! test directory so that user can execute it wherever the checkout lives.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User, chown};
use serde_json::Value;

use super::etcd::{EtcdCluster, EtcdServer};
use super::exhibitor::ExhibitorServer;
use super::free_port;
use super::proxy::TcpProxy;
use super::zookeeper::{ZkEnsemble, ZkServer};

pub const SUPERUSER_PASSWORD: &str = "su-secret";

/// Timing written to `bootstrap.dcs` for test clusters: short enough for
/// quick failovers, loose enough for a loaded 2-core machine.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ttl: u64,
    pub loop_wait: u64,
    pub retry_timeout: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ttl: 6,
            loop_wait: 1,
            retry_timeout: 2,
        }
    }
}

/// How the nodes' YAML is written: the matrix of configurations the
/// integration families run on (docs/architecture.md, "Tests").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// The project's own: data checksums, absolute `data_dir`, unix
    /// sockets beside the data directory, server parameters local.
    #[default]
    Ours,
    /// Shaped like Patroni's sample `postgres0.yml`, as users run it: no
    /// data checksums (pg_rewind relies on `wal_log_hints`), the server
    /// parameters only in `bootstrap.dcs`, `use_pg_rewind: true`, the
    /// `pg_hba` lines in `bootstrap.dcs.postgresql` and nothing but
    /// password (`md5`/`scram-sha-256`) host lines in them, a superuser,
    /// replication and rewind user with passwords, a `data_dir` relative to
    /// the daemon's working directory and `unix_socket_directories: '..'`
    /// (so the daemon reaches its PostgreSQL over TCP, with a password).
    PatroniSample,
}

/// Options of [`TestCluster::with_options`]; the default is what
/// [`TestCluster::new`] builds.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub shape: Shape,
    /// Extra `bootstrap.dcs` keys (`key`, YAML value).
    pub extra_dcs: Vec<(String, String)>,
    /// Each daemon reaches etcd through its own [`TcpProxy`], so
    /// [`TestCluster::cut_from_dcs`] can cut one node off.
    pub dcs_proxies: bool,
    /// The nodes use a standalone ZooKeeper ([`TestCluster::zookeeper`])
    /// instead of etcd: their YAML has a `zookeeper` section.
    pub zookeeper: bool,
    /// With `zookeeper`: a 3-server ensemble
    /// ([`TestCluster::zookeeper_ensemble`]) instead of one server; the
    /// nodes know every member (no `dcs_proxies` then).
    pub zookeeper_ensemble: bool,
    /// The nodes use etcd's v2 API: their YAML has Patroni's `etcd`
    /// section instead of `etcd3` (the test etcd serves both).
    pub etcd2: bool,
    /// The nodes use Consul at this address (`host:port`: the emulator of
    /// tests/support/consul_emulator a test started, or a real agent)
    /// instead of etcd: their YAML has a `consul` section.
    pub consul: Option<String>,
    /// With `zookeeper` and `zookeeper_ensemble`: the ensemble's members
    /// serve on 127.0.0.1-3 (one client port), and the nodes find them
    /// through an `exhibitor` section pointing at
    /// [`TestCluster::exhibitor`], which lists members 1 and 2 at first
    /// (`poll_interval: 1`).
    pub exhibitor: bool,
    /// The nodes use a 3-member etcd cluster ([`TestCluster::etcd_cluster`])
    /// and know every member, in order (no `dcs_proxies` then).
    pub etcd_cluster: bool,
}

/// Passwords of the roles the Patroni-shaped configuration creates.
pub const REPLICATION_PASSWORD: &str = "rep-pass";
pub const REWIND_USER: &str = "rewind_user";
pub const REWIND_PASSWORD: &str = "rewind_password";

/// The uid/gid daemons run as.
fn runtime_user() -> (Uid, Gid) {
    if Uid::effective().is_root() {
        let u = User::from_name("postgres")
            .ok()
            .flatten()
            .expect("the postgres user must exist (Debian's postgresql package creates it)");
        (u.uid, u.gid)
    } else {
        (Uid::effective(), Gid::effective())
    }
}

fn chown_to_runtime(path: &Path) {
    let (uid, gid) = runtime_user();
    chown(path, Some(uid), Some(gid)).expect("chown");
}

pub struct Node {
    pub name: String,
    pub pg_port: u16,
    pub api_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// The REST API speaks HTTPS ([`TestCluster::use_https`]).
    pub https: bool,
    /// The daemon's way to etcd, with [`ClusterOptions::dcs_proxies`].
    pub dcs_proxy: Option<TcpProxy>,
    child: Option<Child>,
}

impl Node {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn api(&self, path: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// The postmaster pid from postmaster.pid, if the file exists.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many times this node's log records event `name`
    /// ([`count_events`]).
    pub fn event_count(&self, name: &'static str) -> usize {
        count_events(&self.log(), name)
    }

    /// Has this node logged event `name` ([`count_events`])?
    pub fn logged(&self, name: &'static str) -> bool {
        self.event_count(name) > 0
    }

    /// HA cycles this daemon has run: every cycle logs one `decision` event
    /// (at INFO when it acts, at DEBUG when it repeats a steady state; the
    /// test daemons log `pgpilot=debug`).
    pub fn cycles(&self) -> usize {
        self.event_count(pgpilot::events::DECISION)
    }

    /// The fence's state directory, `<data_dir>.fence`.
    pub fn fence_dir(&self) -> PathBuf {
        self.dir.join("data.fence")
    }

    pub fn fence_log(&self) -> String {
        fs::read_to_string(self.fence_dir().join("fence.log")).unwrap_or_default()
    }

    /// Live fence processes of this node (`pgpilot fence --state-dir <dir>`).
    pub fn fence_pids(&self) -> Vec<i32> {
        let dir = self.fence_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == "fence")
                && args
                    .windows(2)
                    .any(|w| w[0] == "--state-dir" && Path::new(&w[1]) == dir)
            {
                out.push(pid);
            }
        }
        out
    }

    /// Has the daemon process exited? Returns its exit code if so.
    pub fn exited(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }
}

pub struct TestCluster {
    pub etcd: EtcdServer,
    /// With [`ClusterOptions::zookeeper`]: the store the nodes use.
    pub zookeeper: Option<ZkServer>,
    /// With [`ClusterOptions::zookeeper_ensemble`]: the store the nodes use.
    pub zookeeper_ensemble: Option<ZkEnsemble>,
    /// With [`ClusterOptions::exhibitor`]: the Exhibitor stand-in the nodes ask.
    pub exhibitor: Option<ExhibitorServer>,
    /// [`ClusterOptions::etcd2`].
    pub etcd2: bool,
    /// With [`ClusterOptions::etcd_cluster`]: the store the nodes use.
    pub etcd_cluster: Option<EtcdCluster>,
    pub root: PathBuf,
    pub scope: String,
    pub nodes: Vec<Node>,
    pub timing: Timing,
    /// Extra `bootstrap.dcs` keys (`key`, YAML value), written into the
    /// configuration of every node added afterwards.
    pub extra_dcs: Vec<(String, String)>,
    /// How node YAML is written ([`Shape`]).
    pub shape: Shape,
    /// Give nodes added afterwards their own proxy to etcd.
    pub dcs_proxies: bool,
    /// With [`ClusterOptions::consul`]: the Consul agent the nodes use.
    pub consul: Option<String>,
    bin: PathBuf,
    http: reqwest::Client,
}

impl TestCluster {
    /// Prepare (but do not start) `n` nodes against a fresh etcd.
    pub fn new(n: usize, timing: Timing) -> TestCluster {
        TestCluster::with_dcs(n, timing, &[])
    }

    /// [`TestCluster::new`] with extra `bootstrap.dcs` keys, e.g.
    /// `&[("failsafe_mode", "true")]`.
    pub fn with_dcs(n: usize, timing: Timing, extra_dcs: &[(&str, &str)]) -> TestCluster {
        let opts = ClusterOptions {
            extra_dcs: extra_dcs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ClusterOptions::default()
        };
        TestCluster::with_options(n, timing, opts)
    }

    /// Prepare `n` nodes of the given [`ClusterOptions`].
    pub fn with_options(n: usize, timing: Timing, opts: ClusterOptions) -> TestCluster {
        super::remember_panics();
        pgpilot::tls::install_provider();
        let etcd = EtcdServer::start();
        let root = std::env::temp_dir().join(format!(
            "pgpilot-it-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create test root");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod root");
        chown_to_runtime(&root);
        let bin = root.join("pgpilot");
        fs::copy(env!("CARGO_BIN_EXE_pgpilot"), &bin).expect("copy pgpilot binary");
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");
        let scope = format!("it{}", std::process::id());
        // Tick 500 ms: granted session timeouts of 1 to 10 s, the tests' ttl.
        let zookeeper = (opts.zookeeper && !opts.zookeeper_ensemble).then(|| ZkServer::start(500));
        let zookeeper_ensemble = (opts.zookeeper && opts.zookeeper_ensemble).then(|| {
            assert!(!opts.dcs_proxies, "no DCS proxies with an ensemble");
            if opts.exhibitor {
                ZkEnsemble::start_on_loopbacks(3, 500)
            } else {
                ZkEnsemble::start(3, 500)
            }
        });
        let exhibitor = zookeeper_ensemble
            .as_ref()
            .filter(|_| opts.exhibitor)
            .map(|e| {
                let hosts: Vec<String> = e.members[..2].iter().map(ZkServer::host_name).collect();
                ExhibitorServer::start(&hosts, e.members[0].port())
            });
        let etcd_cluster = opts.etcd_cluster.then(|| {
            assert!(!opts.dcs_proxies, "no DCS proxies with an etcd cluster");
            EtcdCluster::start(3)
        });
        let mut c = TestCluster {
            etcd,
            zookeeper,
            zookeeper_ensemble,
            exhibitor,
            etcd_cluster,
            root,
            scope,
            nodes: Vec::new(),
            timing,
            extra_dcs: opts.extra_dcs,
            shape: opts.shape,
            dcs_proxies: opts.dcs_proxies,
            etcd2: opts.etcd2,
            consul: opts.consul,
            bin,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
        };
        for i in 0..n {
            c.add_node(&format!("node{i}"), &BTreeMap::new());
        }
        c
    }

    /// Add a node; `extra` lines are appended to its YAML (e.g. tags).
    pub fn add_node(&mut self, name: &str, extra: &BTreeMap<&str, &str>) -> usize {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).expect("node dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod node dir");
        chown_to_runtime(&dir);
        let pg_port = free_port();
        let api_port = free_port();
        let config_path = dir.join("pgpilot.yml");
        let store = match (
            &self.zookeeper,
            &self.zookeeper_ensemble,
            &self.etcd_cluster,
        ) {
            _ if self.consul.is_some() => self.consul.clone().unwrap_or_default(),
            (Some(zk), _, _) => zk.server(),
            (None, Some(e), _) => e.servers().join(", "),
            (None, None, Some(e)) => e
                .endpoints()
                .iter()
                .map(|u| u.trim_start_matches("http://"))
                .collect::<Vec<_>>()
                .join(","),
            (None, None, None) => self
                .etcd
                .endpoint()
                .trim_start_matches("http://")
                .to_owned(),
        };
        let dcs_proxy = self
            .dcs_proxies
            .then(|| TcpProxy::start(store.parse().expect("store address")));
        let etcd_hosts = match &dcs_proxy {
            Some(p) => p.addr(),
            None => store,
        };
        let mut yaml = match self.shape {
            Shape::Ours => self.our_yaml(name, &dir, pg_port, api_port, &etcd_hosts),
            Shape::PatroniSample => {
                self.patroni_sample_yaml(name, &dir, pg_port, api_port, &etcd_hosts)
            }
        };
        if self.zookeeper.is_some() || self.zookeeper_ensemble.is_some() {
            yaml = yaml.replace(
                &format!("etcd3:\n  hosts: {etcd_hosts}\n"),
                &format!("zookeeper:\n  hosts: [{etcd_hosts}]\n"),
            );
            assert!(yaml.contains("zookeeper:\n"), "no etcd3 section to swap");
        } else if self.etcd2 {
            yaml = yaml.replace(
                &format!("etcd3:\n  hosts: {etcd_hosts}\n"),
                &format!("etcd:\n  hosts: {etcd_hosts}\n"),
            );
            assert!(yaml.contains("\netcd:\n"), "no etcd3 section to swap");
        }
        if self.consul.is_some() {
            yaml = yaml.replace(
                &format!("etcd3:\n  hosts: {etcd_hosts}\n"),
                &format!("consul:\n  host: {etcd_hosts}\n"),
            );
            assert!(yaml.contains("consul:\n"), "no etcd3 section to swap");
        }
        if let Some(x) = &self.exhibitor {
            yaml = yaml.replace(
                &format!("zookeeper:\n  hosts: [{etcd_hosts}]\n"),
                &format!(
                    "exhibitor:\n  hosts: [127.0.0.1]\n  port: {}\n  poll_interval: 1\n",
                    x.port()
                ),
            );
            assert!(
                yaml.contains("exhibitor:\n"),
                "no zookeeper section to swap"
            );
        }
        for (k, v) in extra {
            yaml.push_str(&format!("{k}: {v}\n"));
        }
        fs::write(&config_path, yaml).expect("write config");
        chown_to_runtime(&config_path);
        let log_path = dir.join("pgpilot.log");
        self.nodes.push(Node {
            name: name.to_owned(),
            pg_port,
            api_port,
            dir,
            config_path,
            log_path,
            https: false,
            dcs_proxy,
            child: None,
        });
        self.nodes.len() - 1
    }

    fn extra_dcs_yaml(&self) -> String {
        self.extra_dcs
            .iter()
            .map(|(k, v)| format!("    {k}: {v}\n"))
            .collect()
    }

    /// [`Shape::Ours`].
    fn our_yaml(&self, name: &str, dir: &Path, pg_port: u16, api_port: u16, etcd: &str) -> String {
        let t = self.timing;
        format!(
            r#"scope: {scope}
namespace: /it/
name: {name}
restapi:
  listen: 127.0.0.1:{api_port}
  connect_address: 127.0.0.1:{api_port}
etcd3:
  hosts: {etcd}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry}
    maximum_lag_on_failover: 1048576
{extra_dcs}    postgresql:
      use_slots: true
      use_pg_rewind: true
  initdb:
  - encoding: UTF8
  - data-checksums
  pg_hba:
  - host replication replicator 127.0.0.1/32 md5
  - host all all 127.0.0.1/32 md5
  users:
    app:
      password: app-pass
      options: [createdb]
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data}
  pgpass: {dir}/pgpass
  pg_ctl_timeout: 30
  authentication:
    superuser:
      username: postgres
      password: {su}
    replication:
      username: replicator
      password: rep-pass
  parameters:
    unix_socket_directories: {dir}
    shared_buffers: 16MB
    max_connections: 30
"#,
            scope = self.scope,
            ttl = t.ttl,
            loop_wait = t.loop_wait,
            retry = t.retry_timeout,
            data = dir.join("data").display(),
            dir = dir.display(),
            su = SUPERUSER_PASSWORD,
            extra_dcs = self.extra_dcs_yaml(),
        )
    }

    /// [`Shape::PatroniSample`]: Patroni's sample `postgres0.yml` with this
    /// test's ports, names and timing. `data_dir: data` is relative: the
    /// daemon runs in the node's directory ([`TestCluster::start`]), as
    /// Patroni resolves it against its working directory.
    fn patroni_sample_yaml(
        &self,
        name: &str,
        dir: &Path,
        pg_port: u16,
        api_port: u16,
        etcd: &str,
    ) -> String {
        let t = self.timing;
        format!(
            r#"scope: {scope}
namespace: /it/
name: {name}

restapi:
  listen: 127.0.0.1:{api_port}
  connect_address: 127.0.0.1:{api_port}

etcd3:
  hosts: {etcd}

bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry}
    maximum_lag_on_failover: 1048576
{extra_dcs}    postgresql:
      use_pg_rewind: true
      use_slots: true
      pg_hba:
      - host replication replicator 127.0.0.1/32 scram-sha-256
      - host all all 0.0.0.0/0 md5
      parameters:
        wal_log_hints: "on"
        max_connections: 30
        shared_buffers: 16MB
  initdb:
  - encoding: UTF8

postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: data
  pgpass: {dir}/pgpass
  pg_ctl_timeout: 30
  authentication:
    replication:
      username: replicator
      password: {rep}
    superuser:
      username: postgres
      password: {su}
    rewind:
      username: {rewind_user}
      password: {rewind_password}
  parameters:
    unix_socket_directories: '..'

tags:
  noloadbalance: false
  clonefrom: false
  nosync: false
  nostream: false
"#,
            scope = self.scope,
            ttl = t.ttl,
            loop_wait = t.loop_wait,
            retry = t.retry_timeout,
            dir = dir.display(),
            rep = REPLICATION_PASSWORD,
            su = SUPERUSER_PASSWORD,
            rewind_user = REWIND_USER,
            rewind_password = REWIND_PASSWORD,
            extra_dcs = self.extra_dcs_yaml(),
        )
    }

    /// Serve every node's REST API over HTTPS: `restapi_yaml` (certfile,
    /// keyfile, ...) goes into each node's `restapi` section, and the
    /// harness talks to the nodes with `client` from now on.
    pub fn use_https(&mut self, restapi_yaml: &str, client: reqwest::Client) {
        for i in 0..self.nodes.len() {
            self.add_to_section(i, "restapi", restapi_yaml);
            self.nodes[i].https = true;
        }
        self.http = client;
    }

    /// Put `yaml` (lines relative to the section, e.g. `callbacks:\n  on_start: x`)
    /// under the top-level `section` (`postgresql`, `restapi`, `bootstrap`)
    /// of node `i`'s configuration, before the daemon starts.
    pub fn add_to_section(&self, i: usize, section: &str, yaml: &str) {
        let path = &self.nodes[i].config_path;
        let text = fs::read_to_string(path).expect("read config");
        let header = format!("\n{section}:\n");
        let at = text.find(&header).expect("section in config") + header.len();
        let lines: String = yaml.lines().map(|l| format!("  {l}\n")).collect();
        let new = format!("{}{lines}{}", &text[..at], &text[at..]);
        fs::write(path, new).expect("write config");
    }

    /// Write an executable script into the test root (readable by the
    /// daemons' OS user) and return its path.
    pub fn write_script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, body).expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
        chown_to_runtime(&path);
        path
    }

    /// Run `program` instead of pgpilot for the daemons started from now
    /// on (Patroni's, to check the Consul emulator against it). It is
    /// started as pgpilot is: `<program> <config>` in the node's directory,
    /// as the PostgreSQL OS user, its output in the node's log.
    pub fn use_program(&mut self, program: PathBuf) {
        self.bin = program;
    }

    /// Start the daemon of node `i` (as the PostgreSQL OS user).
    pub fn start(&mut self, i: usize) {
        self.start_with_env(i, &[]);
    }

    /// Start the daemon of node `i` with extra environment variables.
    pub fn start_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let bin = self.bin.clone();
        self.spawn(i, &bin, env);
    }

    /// Start Patroni 4.1.5's own daemon on node `i`'s YAML instead of
    /// pgpilot (a mixed cluster; give the cluster [`Shape::PatroniSample`]).
    /// `PATRONI_DAEMON` names the binary (scripts/test sets it from
    /// scripts/lib.sh's `ensure_patroni_daemon`); else the daemon venv that
    /// function makes, else the patronictl one.
    pub fn start_patroni(&mut self, i: usize) {
        let bin = std::env::var_os("PATRONI_DAEMON")
            .map(PathBuf::from)
            .or_else(|| {
                [
                    "/opt/patroni-daemon/bin/patroni",
                    "/opt/patroni/bin/patroni",
                ]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
            })
            .expect("no Patroni daemon (scripts/lib.sh ensure_patroni_daemon installs one)");
        let path = format!(
            "/usr/lib/postgresql/15/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        self.spawn(i, &bin, &[("PATH", path.as_str())]);
    }

    fn spawn(&mut self, i: usize, program: &Path, env: &[(&str, &str)]) {
        let (uid, gid) = runtime_user();
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open log");
        let log2 = log.try_clone().expect("dup log");
        let child = Command::new(program)
            .arg(&node.config_path)
            .current_dir(&node.dir)
            .env("HOME", &node.dir)
            .env("RUST_LOG", "info,pgpilot=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .gid(gid.as_raw())
            .uid(uid.as_raw())
            // Its own process group, as under systemd (which starts a
            // service in its own session): a signal to the daemon's group
            // then reaches what a signal to a service's group reaches, and
            // never the test itself.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        node.child = Some(child);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Send a signal to the daemon of node `i`.
    pub fn signal(&self, i: usize, sig: Signal) {
        if let Some(pid) = self.nodes[i].daemon_pid() {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// SIGSTOP of the daemon of node `i` and of every process found by
    /// walking its descendants, except its PostgreSQL (the postmaster and
    /// its children): a fault that freezes the supervisor's whole tree.
    /// Parents are stopped before their children, and the walk is repeated
    /// until it finds nothing new, so a process forked meanwhile is caught.
    /// Returns the stopped pids, for [`TestCluster::thaw`].
    pub fn freeze_tree(&self, i: usize) -> Vec<i32> {
        let Some(daemon) = self.nodes[i].daemon_pid() else {
            return Vec::new();
        };
        let pm = self.nodes[i].postmaster_pid();
        let mut stopped = vec![daemon];
        let _ = kill(Pid::from_raw(daemon), Signal::SIGSTOP);
        loop {
            let mut found = Vec::new();
            let mut queue = vec![daemon];
            while let Some(p) = queue.pop() {
                for ch in pgpilot::postgres::postmaster::children_of(p) {
                    if Some(ch) == pm {
                        continue;
                    }
                    if !stopped.contains(&ch) {
                        let _ = kill(Pid::from_raw(ch), Signal::SIGSTOP);
                        found.push(ch);
                    }
                    queue.push(ch);
                }
            }
            if found.is_empty() {
                return stopped;
            }
            stopped.extend(found);
        }
    }

    /// SIGSTOP of the daemon's process group (the daemon leads it).
    pub fn freeze_group(&self, i: usize) -> Vec<i32> {
        let Some(daemon) = self.nodes[i].daemon_pid() else {
            return Vec::new();
        };
        let _ = kill(Pid::from_raw(-daemon), Signal::SIGSTOP);
        vec![-daemon]
    }

    /// SIGCONT of what [`TestCluster::freeze_tree`] or
    /// [`TestCluster::freeze_group`] stopped (negative: a process group).
    pub fn thaw(&self, stopped: &[i32]) {
        for p in stopped {
            let _ = kill(Pid::from_raw(*p), Signal::SIGCONT);
        }
    }

    /// A "nothing happens" window measured in HA cycles, not seconds: runs
    /// `check` (which asserts that the thing did not happen) again and again
    /// until every node in `nodes` has run `k` more HA cycles than at the
    /// call, and once more after that, so the window holds `k` decisions of
    /// each node however slow the machine is. Panics after `within`.
    pub async fn during_cycles<F, Fut>(
        &self,
        nodes: &[usize],
        k: usize,
        within: Duration,
        what: &str,
        mut check: F,
    ) where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let start: Vec<usize> = nodes.iter().map(|&i| self.nodes[i].cycles()).collect();
        let started = Instant::now();
        let deadline = started + within;
        loop {
            let done = nodes
                .iter()
                .zip(&start)
                .all(|(&i, &s)| self.nodes[i].cycles() >= s + k);
            check().await;
            if done {
                eprintln!(
                    "{what}: {k} HA cycles of nodes {nodes:?} in {:?}",
                    started.elapsed()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {k} HA cycles of nodes {nodes:?}: {what}"
            );
            // Poll interval of the check.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wait for the daemon of node `i` to exit; returns its exit code.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(code) = self.nodes[i].exited() {
                self.nodes[i].child = None;
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.nodes[i].name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// kill -9 of the daemon alone (PostgreSQL and the fence keep running).
    pub async fn kill_daemon(&mut self, i: usize) {
        self.signal(i, Signal::SIGKILL);
        self.wait_exit(i, Duration::from_secs(10)).await;
    }

    /// Cut node `i`'s daemon off from etcd (needs
    /// [`ClusterOptions::dcs_proxies`]); the other nodes keep it.
    pub fn cut_from_dcs(&self, i: usize) {
        self.nodes[i]
            .dcs_proxy
            .as_ref()
            .expect("the cluster was built with dcs_proxies")
            .cut();
    }

    /// Undo [`TestCluster::cut_from_dcs`].
    pub fn heal_dcs(&self, i: usize) {
        if let Some(p) = &self.nodes[i].dcs_proxy {
            p.heal();
        }
    }

    /// kill -9 of everything node `i` runs, at once, as the world kills a
    /// node (OOM killer or systemd on its cgroup, power loss): the daemon,
    /// the postmaster, every PostgreSQL child (each its own session) and
    /// the fence.
    pub async fn kill_node_tree(&mut self, i: usize) {
        let mut pids: Vec<i32> = self.nodes[i].daemon_pid().into_iter().collect();
        if let Some(pm) = self.nodes[i].postmaster_pid() {
            pids.push(pm);
            pids.extend(pgpilot::postgres::postmaster::children_of(pm));
        }
        pids.extend(self.nodes[i].fence_pids());
        for p in &pids {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        self.wait_exit(i, Duration::from_secs(10)).await;
    }

    /// kill -9 of the daemon and its postmaster together.
    pub async fn kill_node(&mut self, i: usize) {
        let pm = self.nodes[i].postmaster_pid();
        self.signal(i, Signal::SIGKILL);
        if let Some(pm) = pm {
            let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
        }
        self.wait_exit(i, Duration::from_secs(10)).await;
    }

    /// `GET /patroni` of node `i`, `None` if it does not answer.
    pub async fn status(&self, i: usize) -> Option<Value> {
        let resp = self
            .http
            .get(self.nodes[i].api("/patroni"))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// HTTP status of `GET path` on node `i` (0 if unreachable).
    pub async fn http_code(&self, i: usize, path: &str) -> u16 {
        match self.http.get(self.nodes[i].api(path)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The node whose `GET /primary` answers 200, if exactly one does.
    pub async fn primary(&self) -> Option<usize> {
        let mut found = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() && self.http_code(i, "/primary").await == 200 {
                found.push(i);
            }
        }
        (found.len() == 1).then(|| found[0])
    }

    /// Is node `i` a running replica that streams?
    pub async fn is_streaming_replica(&self, i: usize) -> bool {
        match self.status(i).await {
            Some(s) => {
                s["role"] == "replica"
                    && s["state"] == "running"
                    && s["replication_state"] == "streaming"
            }
            None => false,
        }
    }

    /// Wait until there is one primary and every other started node streams.
    pub async fn wait_healthy(&self, within: Duration) -> usize {
        super::eventually(within, "one primary and streaming replicas", || async {
            let p = self.primary().await?;
            for i in 0..self.nodes.len() {
                if i != p && self.nodes[i].child.is_some() && !self.is_streaming_replica(i).await {
                    return None;
                }
            }
            Some(p)
        })
        .await
    }

    /// A superuser SQL connection to node `i`'s PostgreSQL.
    pub async fn sql(&self, i: usize) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        sql_at(self.nodes[i].pg_port).await
    }

    /// `GET path` on node `i` as JSON, `None` if it does not answer.
    pub async fn get_json(&self, i: usize, path: &str) -> Option<Value> {
        let resp = self.http.get(self.nodes[i].api(path)).send().await.ok()?;
        resp.json().await.ok()
    }

    /// `CREATE TABLE t(v bigint primary key)` on node `i`: the table every
    /// writer test inserts into.
    pub async fn create_table_t(&self, i: usize) {
        self.sql(i)
            .await
            .expect("connect")
            .batch_execute("CREATE TABLE t(v bigint primary key)")
            .await
            .expect("create table");
    }

    /// Put an unrelated PostgreSQL cluster into node `i`'s data directory.
    pub fn initdb_foreign(&self, i: usize) {
        let (uid, gid) = runtime_user();
        let status = Command::new("/usr/lib/postgresql/15/bin/initdb")
            .arg("-D")
            .arg(self.nodes[i].data_dir())
            .arg("-U")
            .arg("postgres")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(&self.nodes[i].dir)
            .gid(gid.as_raw())
            .uid(uid.as_raw())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
    }

    /// Print the tail of every node's log (used when a test fails).
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "===== {} ({}) =====\n{}",
                n.name,
                n.log_path.display(),
                tail.join("\n")
            );
            let pglog = n.dir.join("data.log");
            if let Ok(t) = fs::read_to_string(&pglog) {
                let l: Vec<&str> = t.lines().collect();
                eprintln!(
                    "----- {} postgres log -----\n{}",
                    n.name,
                    l[l.len().saturating_sub(30)..].join("\n")
                );
            }
        }
    }
}

/// How many lines of `log` (a daemon's log, or a part of it) record event
/// `name`, a name from the catalog (`pgpilot::events`): a renamed event
/// then breaks the build instead of making a negative check pass for
/// nothing. Matches the field (`event="name"` in plain text,
/// `"event":"name"` in JSON), not a substring of any message.
pub fn count_events(log: &str, name: &'static str) -> usize {
    let plain = format!("event=\"{name}\"");
    let json = format!("\"event\":\"{name}\"");
    log.lines()
        .filter(|l| l.contains(&plain) || l.contains(&json))
        .count()
}

/// Does `log` record event `name` ([`count_events`])?
pub fn has_event(log: &str, name: &'static str) -> bool {
    count_events(log, name) > 0
}

/// A superuser SQL connection to the PostgreSQL on `port` (loopback); usable
/// from spawned tasks, which cannot borrow the cluster.
pub async fn sql_at(port: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
            // Again after the logs, which push it out of a truncated view.
            if let Some(why) = super::last_panic() {
                eprintln!("===== the test failed: {why} =====");
            }
        }
        for n in &mut self.nodes {
            let pm = n.postmaster_pid();
            if let Some(c) = n.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            if let Some(pm) = pm {
                // The postmaster leads its own process group.
                let _ = kill(Pid::from_raw(-pm), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
            }
            for f in n.fence_pids() {
                let _ = kill(Pid::from_raw(f), Signal::SIGKILL);
            }
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
