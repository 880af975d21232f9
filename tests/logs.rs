//! Issue 18, "Logs": a daemon with `log.dir` writes Patroni-shaped lines to
//! `<dir>/patroni.log`, rotates at `file_size` keeping at most `file_num`
//! old files, sets `mode`, never writes escape codes, and a reload (SIGHUP)
//! switches it to JSON lines that a log shipper parses and applies a new
//! level and `loggers` (docs/operations.md, "Logs").

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, chown};
use serde_json::Value;
use support::cluster::{TestCluster, Timing};
use support::eventually;

const BOOT: Duration = Duration::from_secs(90);
const ROTATE: Duration = Duration::from_secs(60);
const FILE_SIZE: u64 = 2000;

/// The log files present, by name.
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Is `line` Patroni's default plain shape, `2026-12-05 11:21:49,123 INFO: ...`?
fn patroni_plain(line: &str) -> bool {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(10) == Some(&b' ')
        && digits(11..13)
        && b.get(19) == Some(&b',')
        && digits(20..23)
        && ["DEBUG: ", "INFO: ", "WARNING: ", "ERROR: ", "CRITICAL: "]
            .iter()
            .any(|l| line[24.min(line.len())..].starts_with(l))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_dir_rotates_bounded_plain_then_json_after_a_reload() {
    let mut c = TestCluster::new(1, Timing::default());
    let dir = c.nodes[0].dir.join("logs");
    fs::create_dir_all(&dir).expect("log dir");
    // The directory must exist and belong to the daemon's user (Patroni's
    // rule too): the node directory's owner.
    let owner = fs::metadata(&c.nodes[0].dir).expect("node dir");
    chown(
        &dir,
        Some(Uid::from_raw(owner.uid())),
        Some(Gid::from_raw(owner.gid())),
    )
    .expect("chown log dir");
    let config = c.nodes[0].config_path.clone();
    let base = fs::read_to_string(&config).expect("config");
    let plain = format!(
        "{base}log:\n  level: DEBUG\n  dir: {}\n  file_size: {FILE_SIZE}\n  file_num: 2\n  \
         mode: '0640'\n",
        dir.display()
    );
    fs::write(&config, &plain).expect("write config");
    // The harness's RUST_LOG would replace log.level and log.loggers.
    c.start_with_env(0, &[("RUST_LOG", "")]);
    assert_eq!(c.wait_healthy(BOOT).await, 0);

    // Two rotations, then one more (the oldest file's first line changes):
    // never a third old file.
    let oldest = dir.join("patroni.log.2");
    let first_line = |p: &Path| {
        fs::read_to_string(p)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
    };
    let before = eventually(ROTATE, "patroni.log.2", || {
        let f = first_line(&oldest);
        async move { f }
    })
    .await;
    eventually(ROTATE, "another rotation", || {
        let f = first_line(&oldest).filter(|l| *l != before);
        async move { f }
    })
    .await;
    let names: Vec<String> = files(&dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["patroni.log", "patroni.log.1", "patroni.log.2"]);
    for (name, path) in files(&dir) {
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640, "{name}");
        let text = fs::read_to_string(&path).expect("read log");
        assert!(!text.contains('\x1b'), "escape codes in {name}");
        let longest = text.lines().map(str::len).max().unwrap_or(0) as u64;
        // A file rotates before it reaches file_size, unless one line alone
        // is longer.
        assert!(
            meta.len() < FILE_SIZE || meta.len() <= longest + 1,
            "{name}: {} bytes",
            meta.len()
        );
        for line in text.lines() {
            assert!(patroni_plain(line), "{name}: not Patroni's shape: {line}");
        }
        if name != "patroni.log" {
            assert!(
                text.contains(" event=\""),
                "{name}: structured fields kept after the message"
            );
        }
    }
    assert!(
        !c.nodes[0].log().contains("event="),
        "stderr carries no log line once log.dir is set"
    );
    // Patroni's words as the message, pgpilot's fields after them
    // (docs/operations.md, "Patroni's messages"): every cycle of the
    // leader writes them at INFO, repeats included (Patroni's default,
    // `deduplicate_heartbeat_logs: false`), so some file holds two of them
    // whatever rotated away.
    let name = c.nodes[0].name.clone();
    let summary =
        format!(" INFO: no action. I am ({name}), the leader with the lock event=\"decision\"");
    let owner = format!(": Lock owner: {name}; I am {name} event=\"cycle_note\"");
    eventually(
        ROTATE,
        "Patroni's cycle summary in the log, every cycle",
        || {
            let text: String = files(&dir)
                .iter()
                .map(|(_, p)| fs::read_to_string(p).unwrap_or_default())
                .collect();
            let found = text.matches(summary.as_str()).count() >= 2 && text.contains(&owner);
            async move { found.then_some(()) }
        },
    )
    .await;

    // A reload turns the lines into JSON, with the structured fields beside
    // the message and the static fields, at INFO except the HA loop
    // (Patroni's `patroni.ha` logger) at DEBUG, and repeated summaries at
    // DEBUG (`deduplicate_heartbeat_logs`, applied by the reload too).
    let json = format!(
        "{base}log:\n  dir: {}\n  file_size: {FILE_SIZE}\n  file_num: 2\n  mode: '0640'\n  \
         type: json\n  static_fields:\n    app: it\n  level: INFO\n  loggers:\n    \
         patroni.ha: DEBUG\n  deduplicate_heartbeat_logs: true\n",
        dir.display()
    );
    fs::write(&config, json).expect("write config");
    c.signal(0, Signal::SIGHUP);
    let all_log = || -> String {
        let mut t = String::new();
        for n in ["patroni.log.2", "patroni.log.1", "patroni.log"] {
            t.push_str(&fs::read_to_string(dir.join(n)).unwrap_or_default());
        }
        t
    };
    eventually(
        ROTATE,
        "JSON lines after the reload, across a rotation",
        || {
            let text = all_log();
            let json_lines: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v.get("app") == Some(&Value::from("it")) && v.get("event").is_some())
                .collect();
            let rotated = fs::read_to_string(dir.join("patroni.log.1"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with('{'));
            let ha_debug = json_lines
                .iter()
                .any(|v| v["levelname"] == "DEBUG" && v["event"] == "decision");
            let summary = json_lines.iter().any(|v| {
                v["event"] == "decision"
                    && v["message"]
                        == format!("no action. I am ({name}), the leader with the lock").as_str()
                    && v.get("reason").is_some()
            });
            async move { (json_lines.len() >= 5 && ha_debug && summary && rotated).then_some(()) }
        },
    )
    .await;
    let text = all_log();
    let from = text.find("\n{").expect("a JSON line") + 1;
    for line in text[from..].lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        for key in ["asctime", "levelname", "message", "app"] {
            assert!(v.get(key).is_some(), "{key} in {line}");
        }
        if v["levelname"] == "DEBUG" {
            assert!(
                v["event"] == "decision" || v["event"] == "cycle_note",
                "DEBUG only from patroni.ha: {line}"
            );
        }
        assert!(!line.contains('\x1b'));
    }
    let names: Vec<String> = files(&dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["patroni.log", "patroni.log.1", "patroni.log.2"]);
}
