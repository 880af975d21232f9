//! Replica creation methods against real etcd and PostgreSQL 15: a custom
//! method that fails falls back to basebackup; a custom method that works
//! (a script running pg_basebackup itself with the connstring it is given)
//! is used.

mod support;

use std::time::Duration;

use pgpilot::events;
use support::cluster::{TestCluster, Timing, has_event};
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);

/// The daemon's log without colour escapes.
fn plain_log(c: &TestCluster, i: usize) -> String {
    let log = c.nodes[i].log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for e in chars.by_ref() {
                if e == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_method_is_used_and_a_failing_one_falls_back() {
    let mut c = TestCluster::new(3, Timing::default());
    let failing = c.write_script(
        "failing-method.sh",
        "#!/bin/sh\necho \"failing method called with $*\" >&2\nexit 7\n",
    );
    let marker = c.root.join("custom-method-args");
    let working = c.write_script(
        "basebackup-method.sh",
        &format!(
            r#"#!/bin/sh
set -e
for a in "$@"; do
  case "$a" in
    --datadir=*) datadir=${{a#--datadir=}} ;;
    --connstring=*) connstring=${{a#--connstring=}} ;;
  esac
done
printf '%s\n' "$@" > {marker}
/usr/lib/postgresql/15/bin/pg_basebackup -D "$datadir" -d "$connstring" -X stream -c fast --no-password
"#,
            marker = marker.display()
        ),
    );
    c.add_to_section(
        1,
        "postgresql",
        &format!(
            "create_replica_methods: [broken, basebackup]\nbroken:\n  command: {}\n  no_leader: false",
            failing.display()
        ),
    );
    c.add_to_section(
        2,
        "postgresql",
        &format!(
            "create_replica_methods: [mine, basebackup]\nmine:\n  command: {}\n  threads: 2",
            working.display()
        ),
    );
    // node0 bootstraps alone, so the other two must create replicas.
    c.start(0);
    eventually(BOOT, "node0 is primary", || async {
        (c.primary().await == Some(0)).then_some(())
    })
    .await;
    c.start(1);
    c.start(2);
    assert_eq!(c.wait_healthy(BOOT).await, 0);

    let log1 = plain_log(&c, 1);
    assert!(
        has_event(&log1, events::REPLICA_METHOD_FAILED) && log1.contains("method=broken"),
        "node1 tried the broken method first"
    );
    let created1 = log1
        .lines()
        .find(|l| has_event(l, events::REPLICA_CREATED))
        .expect("node1 created a replica");
    assert!(created1.contains("method=basebackup"), "{created1}");

    let log2 = plain_log(&c, 2);
    let created2 = log2
        .lines()
        .find(|l| has_event(l, events::REPLICA_CREATED))
        .expect("node2 created a replica");
    assert!(created2.contains("method=mine"), "{created2}");
    assert!(!has_event(&log2, events::REPLICA_METHOD_FAILED));
    let args = std::fs::read_to_string(&marker).expect("the custom method ran");
    let scope = format!("--scope={}", c.scope);
    let datadir = format!("--datadir={}", c.nodes[2].data_dir().display());
    // Patroni's connstring: a libpq keyword string of the replication user.
    let conn = format!(
        "--connstring=dbname=postgres user=replicator host=127.0.0.1 port={}",
        c.nodes[0].pg_port
    );
    for want in ["--threads=2", "--role=replica", &scope, &datadir, &conn] {
        assert!(args.lines().any(|a| a == want), "{want} in {args}");
    }
    assert!(!args.contains("rep-pass"), "no password in the arguments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_bootstrap_method_replaces_initdb() {
    let mut c = TestCluster::new(1, Timing::default());
    let marker = c.root.join("bootstrap-args");
    let script = c.write_script(
        "bootstrap-method.sh",
        &format!(
            r#"#!/bin/sh
set -e
for a in "$@"; do
  case "$a" in
    --datadir=*) datadir=${{a#--datadir=}} ;;
  esac
done
printf '%s\n' "$@" > {marker}
/usr/lib/postgresql/15/bin/initdb -D "$datadir" -U postgres -E UTF8 >/dev/null
"#,
            marker = marker.display()
        ),
    );
    c.add_to_section(
        0,
        "bootstrap",
        &format!(
            "method: restore\nrestore:\n  command: {}\n  label: nightly",
            script.display()
        ),
    );
    c.start_all();
    eventually(BOOT, "node0 is primary", || async {
        (c.primary().await == Some(0)).then_some(())
    })
    .await;
    let args = std::fs::read_to_string(&marker).expect("the bootstrap method ran");
    let scope = format!("--scope={}", c.scope);
    let datadir = format!("--datadir={}", c.nodes[0].data_dir().display());
    for want in ["--label=nightly", &scope, &datadir] {
        assert!(args.lines().any(|a| a == want), "{want} in {args}");
    }
    let log = plain_log(&c, 0);
    assert!(has_event(&log, events::BOOTSTRAP_METHOD_DONE));
    assert!(!has_event(&log, events::INITDB_DONE), "initdb did not run");
    // The rest of the bootstrap ran: the configured superuser password works.
    c.sql(0)
        .await
        .expect("superuser login with the configured password");
}
