//! Patroni 4.1.5's own `patronictl` (from PyPI) against a [`TestCluster`]:
//! `scripts/test` installs it into `/opt/patroni` (`scripts/lib.sh`,
//! `ensure_patronictl`); `PATRONICTL` names another binary. A missing
//! binary fails the test: it is not skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::cluster::TestCluster;

pub fn bin() -> PathBuf {
    let bin = std::env::var_os("PATRONICTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/patroni/bin/patronictl"));
    assert!(
        bin.is_file(),
        "patronictl not found at {} (set PATRONICTL, or install it: scripts/test does, \
         or by hand: python3 -m venv /opt/patroni && /opt/patroni/bin/pip install \
         'patroni[etcd3]==4.1.5' psycopg2-binary)",
        bin.display()
    );
    bin
}

/// A patronictl configuration for `c` (scope, namespace, etcd3 hosts) plus
/// `extra` YAML lines, written into the cluster's root.
pub fn config(c: &TestCluster, extra: &str) -> PathBuf {
    let yml = c.root.join("patronictl.yml");
    std::fs::write(
        &yml,
        format!(
            "scope: {scope}\nnamespace: /it/\netcd3:\n  hosts: {etcd}\n{extra}",
            scope = c.scope,
            etcd = c.etcd.endpoint().trim_start_matches("http://"),
        ),
    )
    .expect("write patronictl.yml");
    yml
}

/// `patronictl -c yml args...`, run in the cluster's root with no input.
pub fn run(c: &TestCluster, yml: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("-c")
        .arg(yml)
        .args(args)
        .current_dir(&c.root)
        .env("HOME", &c.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run patronictl")
}

/// [`run`], which must exit 0: its standard output.
pub fn ok(c: &TestCluster, yml: &Path, args: &[&str]) -> String {
    let out = run(c, yml, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "patronictl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `patronictl list -f json`.
pub fn list_json(c: &TestCluster, yml: &Path) -> Vec<Value> {
    let out = ok(c, yml, &["list", "-f", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list -f json: {e}: {out}"))
}
