//! Callbacks against real etcd and PostgreSQL 15: each node runs a script
//! that appends its arguments (`<action> <role> <scope>`) to a file of its
//! own; the lines must come in the order the events happened.

mod support;

use std::time::Duration;

use pgpilot::events;
use support::cluster::{TestCluster, Timing};
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);

fn lines(c: &TestCluster, i: usize) -> Vec<String> {
    std::fs::read_to_string(c.nodes[i].dir.join("callbacks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_lines(c: &TestCluster, i: usize, want: &[String], what: &str) {
    eventually(Duration::from_secs(30), what, || async {
        (lines(c, i) == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_run_in_order_with_action_role_scope() {
    let mut c = TestCluster::new(2, Timing::default());
    let script = c.write_script(
        "append-args.sh",
        "#!/bin/sh\nf=$1\nshift\necho \"$@\" >> \"$f\"\n",
    );
    for i in 0..2 {
        let log = c.nodes[i].dir.join("callbacks.log");
        let cmd = format!("{} {}", script.display(), log.display());
        c.add_to_section(
            i,
            "postgresql",
            &format!(
                "callbacks:\n  on_start: {cmd}\n  on_stop: {cmd}\n  on_reload: {cmd}\n  on_role_change: {cmd}"
            ),
        );
    }
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = 1 - p;
    let scope = c.scope.clone();
    let line = |s: &str| format!("{s} {scope}");

    wait_lines(&c, p, &[line("on_start primary")], "primary's on_start").await;
    wait_lines(&c, r, &[line("on_start replica")], "replica's on_start").await;

    // A reload (POST /reload, same as SIGHUP) calls on_reload with the role.
    let resp = reqwest::Client::new()
        .post(c.nodes[r].api("/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(resp.status().as_u16(), 202);
    wait_lines(
        &c,
        r,
        &[line("on_start replica"), line("on_reload replica")],
        "replica's on_reload",
    )
    .await;

    // A rebuild (POST /reinitialize) stops and starts the replica:
    // on_stop, then on_start once the new copy runs (as Patroni).
    let resp = reqwest::Client::new()
        .post(c.nodes[r].api("/reinitialize"))
        .send()
        .await
        .expect("POST /reinitialize");
    assert_eq!(resp.status().as_u16(), 200);
    let after_reinit = [
        line("on_start replica"),
        line("on_reload replica"),
        line("on_stop replica"),
        line("on_start replica"),
    ];
    wait_lines(&c, r, &after_reinit, "on_stop and on_start of the rebuild").await;
    c.wait_healthy(BOOT).await;

    // Failover: the replica is promoted and says so.
    c.kill_node(p).await;
    eventually(BOOT, "the replica becomes primary", || async {
        (c.primary().await == Some(r)).then_some(())
    })
    .await;
    wait_lines(
        &c,
        r,
        &[after_reinit.as_slice(), &[line("on_role_change primary")]].concat(),
        "new primary's on_role_change",
    )
    .await;
    assert_eq!(lines(&c, p), vec![line("on_start primary")]);
    assert!(
        c.nodes[r].logged(events::CALLBACK_FINISHED),
        "exit status is logged"
    );
}

/// docs/ha.md §8.1: the leader's PostgreSQL crashes and its start as
/// primary fails (its port is taken): the leader calls `on_role_change
/// demoted` and releases the key, and the replica takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_of_the_crashed_primary_is_a_demotion() {
    let mut c = TestCluster::new(2, Timing::default());
    let script = c.write_script(
        "append-args.sh",
        "#!/bin/sh\nf=$1\nshift\necho \"$@\" >> \"$f\"\n",
    );
    for i in 0..2 {
        let log = c.nodes[i].dir.join("callbacks.log");
        let cmd = format!("{} {}", script.display(), log.display());
        c.add_to_section(
            i,
            "postgresql",
            &format!("callbacks:\n  on_start: {cmd}\n  on_stop: {cmd}\n  on_role_change: {cmd}"),
        );
    }
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = 1 - p;
    let scope = c.scope.clone();
    let line = |s: &str| format!("{s} {scope}");
    wait_lines(&c, p, &[line("on_start primary")], "primary's on_start").await;

    let pm = c.nodes[p].postmaster_pid().expect("postmaster pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pm),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill postmaster");
    // Take its port before the daemon restarts it.
    let port = c.nodes[p].pg_port;
    let blocker = eventually(Duration::from_secs(5), "the port is free", || async {
        std::net::TcpListener::bind(("127.0.0.1", port)).ok()
    })
    .await;
    eventually(BOOT, "the replica takes over", || async {
        (c.primary().await == Some(r)).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "on_role_change demoted",
        || async {
            lines(&c, p)
                .contains(&line("on_role_change demoted"))
                .then_some(())
        },
    )
    .await;
    drop(blocker);
    assert_eq!(c.wait_healthy(BOOT).await, r);
}
