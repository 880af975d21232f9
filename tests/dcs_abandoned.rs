//! A DCS request the node gave up on must never take effect later
//! (issue 12 §4; docs/dcs.md, "Abandoned requests").
//!
//! The cut is the issue's: an iptables REJECT (ICMP port unreachable,
//! iptables' default) of the node's packets to etcd, matched on the owner of
//! the node's sockets. Unlike a TCP reset it leaves the connection
//! established, and what is queued on it stays in the kernel's send queue.
//! The node sends a keep-alive into the cut and gives up at its deadline
//! (retry_timeout). Seen from etcd, over a connection the rule does not
//! match, the lease must then only run down. The original client closed the
//! connection gracefully when it gave up: the closed socket has no owner any
//! more, its queued keep-alive no longer matched the rule and reached etcd,
//! whose lease then outlived what the node believed by up to `ttl`.
//!
//! The node's sockets get another owner through the test thread's file-system
//! uid (setfsuid: the owner match reads the socket file's fsuid); the test
//! runs on a current-thread runtime, so every socket of the DCS client is made
//! on this thread. Needs root and iptables (`scripts/lib.sh` installs it);
//! fails otherwise. The same for the etcd v2 backend (a TTL refresh).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use nix::unistd::{Uid, setfsuid};
use pgpilot::dcs::etcd::EtcdDcs;
use pgpilot::dcs::{Dcs, DcsError, MemberData};
use support::etcd::EtcdServer;

/// The uid the DCS client's sockets are made with (no such user is needed).
const NODE_UID: u32 = 64_123;

/// The iptables rule, removed again when dropped (also on a failed assert).
struct Cut {
    rule: Vec<String>,
}

impl Cut {
    /// Reject (ICMP port unreachable) packets of sockets owned by `NODE_UID`
    /// to 127.0.0.1:`port`.
    fn new(port: u16) -> Cut {
        let rule: Vec<String> = [
            "-p",
            "tcp",
            "-d",
            "127.0.0.1",
            "--dport",
            &port.to_string(),
            "-m",
            "owner",
            "--uid-owner",
            &NODE_UID.to_string(),
            "-m",
            "comment",
            "--comment",
            "pgpilot-test-dcs-abandoned",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-port-unreachable",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = Command::new("iptables")
            .args(["-I", "OUTPUT", "1"])
            .args(&rule)
            .output()
            .unwrap_or_else(|e| panic!("cannot run iptables (needs root and iptables): {e}"));
        assert!(
            out.status.success(),
            "iptables -I OUTPUT failed (needs root and the owner match): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cut { rule }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(["-D", "OUTPUT"])
            .args(&self.rule)
            .status();
    }
}

/// Sockets made on this thread while it lives belong to `NODE_UID`.
struct AsNode;

impl AsNode {
    fn new() -> AsNode {
        setfsuid(Uid::from_raw(NODE_UID));
        assert_eq!(
            setfsuid(Uid::from_raw(NODE_UID)),
            Uid::from_raw(NODE_UID),
            "setfsuid (needs root)"
        );
        AsNode
    }
}

impl Drop for AsNode {
    fn drop(&mut self) {
        setfsuid(Uid::from_raw(0));
    }
}

/// The lease's remaining TTL as etcd sees it (-1 once it is gone).
async fn remaining(observer: &mut etcd_client::Client, lease: i64) -> i64 {
    observer
        .lease_time_to_live(lease, None)
        .await
        .expect("observer: lease time-to-live")
        .ttl()
}

#[tokio::test(flavor = "current_thread")]
async fn abandoned_keep_alive_never_reaches_etcd() {
    let etcd = EtcdServer::start();
    let retry_timeout = Duration::from_secs(1);
    let ttl = Duration::from_secs(60);
    // The observer's connection is made first, as root: the rule never
    // matches it.
    let mut observer = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("observer connects");
    observer.status().await.expect("observer reaches etcd");

    let as_node = AsNode::new();
    let dcs = EtcdDcs::new(
        vec![etcd.endpoint()],
        None,
        "/service/abandoned".into(),
        "n1".into(),
        ttl,
        retry_timeout,
    );
    dcs.touch_member(&MemberData::default())
        .await
        .expect("member key written");
    assert!(
        matches!(dcs.keep_alive().await, Ok(Some(_))),
        "keep-alive before the cut"
    );
    let lease = dcs.lease_id().expect("a lease after touch_member");

    // etcd reports whole seconds, rounded down: a keep-alive shows as a rise
    // only once the lease has run down by more than one second.
    let full = ttl.as_secs() as i64;
    let o = observer.clone();
    support::eventually(Duration::from_secs(10), "the lease to run down 3 s", || {
        let mut o = o.clone();
        async move { (remaining(&mut o, lease).await <= full - 3).then_some(()) }
    })
    .await;
    drop(o);

    let _cut = Cut::new(etcd.client_port());
    let at_cut = remaining(&mut observer, lease).await;
    let sent = Instant::now();
    let r = dcs.keep_alive().await;
    assert!(
        matches!(r, Err(DcsError::Unreachable(_))),
        "keep-alive into the cut: {r:?}"
    );
    assert!(
        sent.elapsed() < retry_timeout + Duration::from_secs(1),
        "the keep-alive was abandoned at its deadline, not {:?} later",
        sent.elapsed()
    );
    // The node has given up on it: from now on, while the cut lasts, the
    // lease may only run down.
    let mut last = at_cut;
    while sent.elapsed() < Duration::from_secs(6) {
        let now = remaining(&mut observer, lease).await;
        assert!(
            now <= last,
            "the lease gained TTL ({last} s -> {now} s) {:?} after the node sent a keep-alive \
             it then abandoned: the abandoned request reached etcd",
            sent.elapsed()
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last > 0 && last < at_cut,
        "the lease ran down while nobody renewed it ({at_cut} s -> {last} s)"
    );
    drop(as_node);
}

/// The member key's remaining TTL as etcd's v2 API reports it (`None`:
/// gone), by a plain HTTP/1.0 GET.
fn v2_ttl(port: u16, key: &str) -> Option<i64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("observer connects");
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    write!(s, "GET /v2/keys{key} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("observer sends");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("observer reads");
    let body = text.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["node"]["ttl"].as_i64()
}

/// etcd v2 (docs/dcs.md, "etcd v2 (`Etcd2Dcs`)"): a keep-alive (a TTL
/// refresh of the member key) sent into the cut and given up on at its
/// deadline never refreshes the key afterwards.
#[tokio::test(flavor = "current_thread")]
async fn abandoned_v2_refresh_never_reaches_etcd() {
    let etcd = EtcdServer::start();
    let port = etcd.client_port();
    let retry_timeout = Duration::from_secs(1);
    let ttl = Duration::from_secs(60);
    const KEY: &str = "/service/abandoned2/members/n1";
    // The observer is a thread made before the node's fsuid is set: its
    // sockets are root's, and the rule never matches them.
    let (ask, asked) = std::sync::mpsc::channel::<()>();
    let (tell, told) = std::sync::mpsc::channel::<Option<i64>>();
    let observer = std::thread::spawn(move || {
        while asked.recv().is_ok() {
            if tell.send(v2_ttl(port, KEY)).is_err() {
                return;
            }
        }
    });
    let remaining = || {
        ask.send(()).expect("observer alive");
        told.recv().expect("observer answers")
    };

    let as_node = AsNode::new();
    let dcs = pgpilot::dcs::etcd2::Etcd2Dcs::new(
        vec![etcd.endpoint()],
        "/service/abandoned2".into(),
        "n1".into(),
        ttl,
        retry_timeout,
    );
    dcs.touch_member(&MemberData::default())
        .await
        .expect("member key written");
    let full = ttl.as_secs() as i64;
    support::eventually(Duration::from_secs(10), "the key to run down 3 s", || {
        let r = remaining();
        async move { r.is_some_and(|t| t <= full - 3).then_some(()) }
    })
    .await;

    let _cut = Cut::new(port);
    let at_cut = remaining().expect("the key is there");
    let sent = Instant::now();
    let r = dcs.keep_alive().await;
    assert!(
        matches!(r, Err(DcsError::Unreachable(_))),
        "keep-alive into the cut: {r:?}"
    );
    assert!(
        sent.elapsed() < retry_timeout + Duration::from_secs(1),
        "the keep-alive was abandoned at its deadline, not {:?} later",
        sent.elapsed()
    );
    let mut last = at_cut;
    while sent.elapsed() < Duration::from_secs(6) {
        let now = remaining().expect("the key is there");
        assert!(
            now <= last,
            "the key gained TTL ({last} s -> {now} s) {:?} after the node sent a refresh \
             it then abandoned: the abandoned request reached etcd",
            sent.elapsed()
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        last > 0 && last < at_cut,
        "the key ran down while nobody renewed it ({at_cut} s -> {last} s)"
    );
    drop(as_node);
    drop(ask);
    observer.join().expect("observer thread");
}
