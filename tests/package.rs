//! The Debian package (scripts/package; docs/operations.md,
//! "Installation"): built from the dev binaries this test run already has,
//! installed on this machine with `dpkg -i`, checked, and purged at the end.
//!
//! A real install rather than `dpkg --instdir`/`--root`: those chroot the
//! maintainer scripts into an empty tree (no shell, no `getent`, no
//! `postgres` user), so the postinst could not run as it does for an
//! operator. The tests run as root on a throw-away machine; the test
//! leaves alone a pgpilot package it did not install (a version without
//! `~dev`), and installing over its own leftovers is an upgrade, so a run
//! after an interrupted one works.
//!
//! Then the unit's own command line (`ExecStart=`, as its `User=`) runs
//! the installed example configuration, pointed by `PATRONI_*` variables at
//! a test etcd, free ports and a scratch data directory, until `GET
//! /health` answers 200 (PostgreSQL bootstrapped and running); a SIGTERM
//! stops it cleanly.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};

use support::etcd::EtcdServer;
use support::free_port;

const UNIT: &str = "/usr/lib/systemd/system/pgpilot.service";
const CONFIG: &str = "/etc/pgpilot/pgpilot.yml";

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `Status Version` of the installed pgpilot package, if any.
fn installed() -> Option<String> {
    let (ok, text) = run(Command::new("dpkg-query").args([
        "-W",
        "-f",
        "${db:Status-Status} ${Version}",
        "pgpilot",
    ]));
    (ok && text.starts_with("installed")).then(|| text.trim().to_owned())
}

/// Purges the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let (ok, text) = run(Command::new("dpkg").args(["--purge", "--no-triggers", "pgpilot"]));
        if !ok {
            eprintln!("dpkg --purge pgpilot: {text}");
        }
        // The install and the purge deferred man-db's index update (5 s
        // each): once now, so no trigger is left pending on the machine.
        let (ok, text) = run(Command::new("dpkg").args(["--triggers-only", "--pending"]));
        if !ok {
            eprintln!("dpkg --triggers-only --pending: {text}");
        }
    }
}

/// The daemon started from the unit's command line, and its PostgreSQL:
/// killed if the test fails before its clean stop.
struct Daemon {
    child: std::process::Child,
    data_dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(pm) = std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(-pm), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pm), Signal::SIGKILL);
        }
    }
}

/// `key=value` of the unit's [Service] section.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit:\n{unit}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_validates_and_runs_a_node() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: installing a package needs root");
        return;
    }
    if let Some(v) = installed()
        && !v.contains("~dev")
    {
        eprintln!("skipped: a pgpilot package this test did not build is installed ({v})");
        return;
    }
    let started = Instant::now();
    let scratch = std::env::temp_dir().join(format!("pgpilot-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");

    // Build from the binaries cargo built for this test run.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_pgpilot"))
        .parent()
        .expect("binary directory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package");
    let (ok, out) = run(Command::new(&script)
        .args(["--profile", "dev", "--bin-dir"])
        .arg(bin_dir)
        .arg("--out")
        .arg(scratch.join("deb")));
    assert!(ok, "scripts/package failed:\n{out}");
    // Its standard output is the .deb's path (its log goes to stderr).
    let deb = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('/') && l.ends_with(".deb"))
        .expect("the .deb's path")
        .to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{out}");
    let (ok, contents) = run(Command::new("dpkg-deb").args(["--contents", &deb]));
    assert!(ok, "{contents}");
    for f in [
        "./usr/bin/pgpilot",
        "./usr/bin/pgpilotctl",
        "./usr/lib/systemd/system/pgpilot.service",
        "./etc/pgpilot/pgpilot.yml",
        "./usr/share/bash-completion/completions/pgpilotctl",
        "./usr/share/zsh/vendor-completions/_pgpilot",
        "./usr/share/fish/vendor_completions.d/pgpilotctl.fish",
        "./usr/share/man/man1/pgpilot.1.gz",
        "./usr/share/man/man1/pgpilotctl.1.gz",
        "./usr/share/man/man1/pgpilotctl-switchover.1.gz",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(f)),
            "{f} not in the package:\n{contents}"
        );
    }

    let var_dir_existed = Path::new("/var/lib/postgresql/pgpilot").exists();
    let (ok, out) = run(Command::new("dpkg").args(["-i", "--no-triggers", &deb]));
    let _installed = Installed;
    assert!(ok, "dpkg -i failed:\n{out}");
    let (_, conffiles) =
        run(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", "pgpilot"]));
    assert!(
        conffiles.contains(CONFIG),
        "{CONFIG} is not a conffile: {conffiles}"
    );

    let postgres = User::from_name("postgres")
        .ok()
        .flatten()
        .expect("the postgres user (postgresql-common)");
    let meta = std::fs::metadata(CONFIG).expect("the example configuration");
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(
        meta.gid(),
        postgres.gid.as_raw(),
        "readable by postgres only"
    );
    let (_, man) = run(Command::new("sh").args(["-c", "zcat /usr/share/man/man1/pgpilot.1.gz"]));
    assert!(man.contains("generate\\-sample\\-config"), "{man}");

    // --version of both, --validate of the example as the unit's user.
    let version = format!("{} {}", "pgpilot", env!("CARGO_PKG_VERSION"));
    let (ok, out) = run(Command::new("/usr/bin/pgpilot").arg("--version"));
    assert!(ok && out.trim() == version, "{out}");
    let (ok, out) = run(Command::new("/usr/bin/pgpilotctl").arg("--version"));
    assert!(ok && out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let unit = std::fs::read_to_string(UNIT).expect("the unit");
    assert_eq!(unit_value(&unit, "User"), "postgres");
    assert!(unit_value(&unit, "Type").starts_with("notify"), "{unit}");
    let exec: Vec<String> = unit_value(&unit, "ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(exec, ["/usr/bin/pgpilot", CONFIG]);
    let as_postgres = |cmd: &mut Command| {
        cmd.uid(postgres.uid.as_raw())
            .gid(postgres.gid.as_raw())
            .env("HOME", &scratch);
    };
    let mut validate = Command::new(&exec[0]);
    validate.arg("--validate").arg(CONFIG);
    as_postgres(&mut validate);
    let (ok, out) = run(&mut validate);
    assert!(ok && out.contains("configuration is valid"), "{out}");

    // The unit's command line, as its user, against a test etcd.
    let etcd = EtcdServer::start();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let node_dir = scratch.join("node");
    std::fs::create_dir_all(&node_dir).expect("node dir");
    chown(&node_dir, Some(postgres.uid), Some(postgres.gid)).expect("chown");
    std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let (api, pg) = (free_port(), free_port());
    let data_dir = node_dir.join("data");
    let env = [
        ("PATRONI_SCOPE", format!("pkg{}", std::process::id())),
        ("PATRONI_NAME", "pkgnode".to_owned()),
        ("PATRONI_RESTAPI_LISTEN", format!("127.0.0.1:{api}")),
        (
            "PATRONI_RESTAPI_CONNECT_ADDRESS",
            format!("127.0.0.1:{api}"),
        ),
        (
            "PATRONI_ETCD3_HOSTS",
            etcd.endpoint().replace("http://", ""),
        ),
        ("PATRONI_POSTGRESQL_LISTEN", format!("127.0.0.1:{pg}")),
        (
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
            format!("127.0.0.1:{pg}"),
        ),
        (
            "PATRONI_POSTGRESQL_DATA_DIR",
            data_dir.display().to_string(),
        ),
        (
            "PATRONI_POSTGRESQL_PGPASS",
            node_dir.join("pgpass").display().to_string(),
        ),
        (
            "PATRONI_POSTGRESQL_PARAMETERS",
            format!("{{unix_socket_directories: '{}'}}", node_dir.display()),
        ),
        (
            "PATRONI_BOOTSTRAP_DCS",
            "{ttl: 10, loop_wait: 1, retry_timeout: 3}".to_owned(),
        ),
    ];
    let log = std::fs::File::create(scratch.join("pgpilot.log")).expect("log");
    let mut start = Command::new(&exec[0]);
    start
        .args(&exec[1..])
        .current_dir(&node_dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0);
    as_postgres(&mut start);
    let mut daemon = Daemon {
        child: start.spawn().expect("start the unit's ExecStart"),
        data_dir: data_dir.clone(),
    };
    let logs = || std::fs::read_to_string(scratch.join("pgpilot.log")).unwrap_or_default();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let code = http
            .get(format!("http://127.0.0.1:{api}/health"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if code == 200 {
            break;
        }
        assert!(
            daemon.child.try_wait().ok().flatten().is_none(),
            "the daemon exited:\n{}",
            logs()
        );
        assert!(
            Instant::now() < deadline,
            "GET /health never answered 200 (last {code}):\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out) = run(Command::new("/usr/bin/pgpilotctl")
        .args([
            "-d",
            &format!("etcd3://{}", etcd.endpoint().replace("http://", "")),
        ])
        .args(["list", &format!("pkg{}", std::process::id())]));
    assert!(
        ok && out.contains("pkgnode") && out.contains("Leader"),
        "{out}"
    );

    // --generate-config against this running node (its PostgreSQL, as
    // the data directory's owner), and --generate-sample-config: both
    // documents pass --validate.
    let generated = node_dir.join("generated.yml");
    let mut generate = Command::new("/usr/bin/pgpilot");
    generate
        .args(["--generate-config", "--dsn"])
        .arg(format!(
            "host={} port={pg} user=postgres password=change-me dbname=postgres",
            node_dir.display()
        ))
        .arg(&generated);
    as_postgres(&mut generate);
    let (ok, out) = run(&mut generate);
    assert!(ok, "--generate-config failed: {out}");
    let text = std::fs::read_to_string(&generated).expect("the generated file");
    let doc: serde_json::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    assert_eq!(
        doc["postgresql"]["data_dir"],
        data_dir.display().to_string(),
        "{text}"
    );
    assert_eq!(
        doc["postgresql"]["listen"],
        format!("127.0.0.1:{pg}"),
        "{text}"
    );
    assert_eq!(
        doc["postgresql"]["authentication"]["superuser"]["password"],
        "change-me"
    );
    assert!(
        doc["postgresql"]["bin_dir"]
            .as_str()
            .is_some_and(|d| Path::new(d).join("postgres").exists()),
        "{text}"
    );
    let sample = node_dir.join("sample.yml");
    let mut generate = Command::new("/usr/bin/pgpilot");
    generate.arg("--generate-sample-config").arg(&sample);
    as_postgres(&mut generate);
    let (ok, out) = run(&mut generate);
    assert!(ok, "--generate-sample-config failed: {out}");
    for file in [&generated, &sample] {
        let mut validate = Command::new("/usr/bin/pgpilot");
        validate.arg("--validate").arg(file);
        as_postgres(&mut validate);
        let (ok, out) = run(&mut validate);
        assert!(
            ok,
            "{} does not validate: {out}\n{}",
            file.display(),
            std::fs::read_to_string(file).unwrap_or_default()
        );
    }

    let pid = Pid::from_raw(i32::try_from(daemon.child.id()).expect("pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = daemon.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < stop_deadline, "no clean stop:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit {status:?}:\n{}", logs());
    drop(daemon);

    // The purge removes what the package installed, and the data
    // directory's parent only if this test made it and it is empty.
    drop(_installed);
    assert!(installed().is_none(), "still installed after the purge");
    assert!(!Path::new("/usr/bin/pgpilot").exists());
    assert!(!Path::new(CONFIG).exists());
    if !var_dir_existed {
        let _ = std::fs::remove_dir("/var/lib/postgresql/pgpilot");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("package test took {:?}", started.elapsed());
}
