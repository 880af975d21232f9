//! Issue 14 §2: a second daemon started with a running member's `name`
//! refuses to start as Patroni does (`Can't start; there is already a node
//! named '<name>' running`, exit 1) and touches nothing: not the leader
//! key, not the member key, not its data directory.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use pgpilot::events;
use support::cluster::{TestCluster, Timing};

const BOOT: Duration = Duration::from_secs(90);

/// `(value, create_revision, mod_revision, lease)` of a key under the
/// cluster's prefix.
async fn key(c: &TestCluster, rel: &str) -> Option<(String, i64, i64, i64)> {
    let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .ok()?;
    let resp = client
        .get(format!("/it/{}/{rel}", c.scope), None)
        .await
        .ok()?;
    let kv = resp.kvs().first()?;
    Some((
        String::from_utf8_lossy(kv.value()).into_owned(),
        kv.create_revision(),
        kv.mod_revision(),
        kv.lease(),
    ))
}

/// Node `i` (added as `dup...`) takes `name` in its configuration.
fn rename(c: &TestCluster, i: usize, name: &str) {
    let path = &c.nodes[i].config_path;
    let text = fs::read_to_string(path).expect("read config");
    let from = format!("\nname: {}\n", c.nodes[i].name);
    assert!(text.contains(&from), "{text}");
    fs::write(path, text.replace(&from, &format!("\nname: {name}\n"))).expect("write config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_with_a_running_name_refuses_to_start() {
    let mut c = TestCluster::new(1, Timing::default());
    c.start(0);
    assert_eq!(c.wait_healthy(BOOT).await, 0);
    let leader = key(&c, "leader").await.expect("leader key");
    let member = key(&c, "members/node0").await.expect("member key");

    // An empty data directory, then one holding an unrelated cluster.
    for (tag, foreign) in [("dup_empty", false), ("dup_foreign", true)] {
        let i = c.add_node(tag, &BTreeMap::new());
        rename(&c, i, "node0");
        if foreign {
            c.initdb_foreign(i);
        }
        let listing = |c: &TestCluster| {
            fs::read_dir(c.nodes[i].data_dir())
                .map(|d| {
                    let mut v: Vec<_> = d.flatten().map(|e| e.file_name()).collect();
                    v.sort();
                    v
                })
                .ok()
        };
        let before = listing(&c);
        c.start(i);
        let code = c.wait_exit(i, Duration::from_secs(30)).await;
        let log = c.nodes[i].log();
        assert_eq!(code, 1, "{tag}: {log}");
        assert!(
            log.contains("Can't start; there is already a node named 'node0' running")
                && log.contains("CRITICAL"),
            "{tag}: {log}"
        );
        assert_eq!(listing(&c), before, "{tag}: the data directory changed");

        // The running leader's keys are its own still: same lease, same
        // key (not deleted and re-created).
        let now = key(&c, "leader").await.expect("leader key");
        assert_eq!(
            (now.0.as_str(), now.1, now.3),
            (leader.0.as_str(), leader.1, leader.3),
            "{tag}"
        );
        let m = key(&c, "members/node0").await.expect("member key");
        assert_eq!((m.1, m.3), (member.1, member.3), "{tag}");
        assert!(
            m.0.contains(&format!(":{}/", c.nodes[0].api_port)),
            "{tag}: {}",
            m.0
        );
    }
    assert!(
        !c.nodes[0].logged(events::LOCK_LOST),
        "{}",
        c.nodes[0].log()
    );
    assert_eq!(c.primary().await, Some(0));
}
