//! A cluster whose PostgreSQL takes TCP connections only over TLS with a
//! client certificate (`hostssl ... clientcert=verify-ca|verify-full`):
//! every libpq connection pgpilot makes or writes carries the
//! authentication sections' TLS settings (docs/configuration.md,
//! "postgresql.authentication: libpq settings"). Replicas are built by
//! pg_basebackup and stream (primary_conninfo), and after a kill -9
//! failover the old primary rejoins by pg_rewind, whose source connection
//! and pgpilot's own check of the new leader go over TLS too.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Uid, User, chown};
use pgpilot::events;
use support::cluster::{SUPERUSER_PASSWORD, TestCluster, Timing, has_event};
use support::eventually;
use support::tls::{leaf, make_certs};

const BOOT: Duration = Duration::from_secs(120);

/// Copy `from` into `dir` as a file of the daemons' OS user with `mode`
/// (libpq and PostgreSQL refuse a private key others may read).
fn install(from: &Path, dir: &Path, mode: u32) -> PathBuf {
    let to = dir.join(from.file_name().expect("file name"));
    fs::copy(from, &to).expect("copy");
    fs::set_permissions(&to, fs::Permissions::from_mode(mode)).expect("chmod");
    if Uid::effective().is_root() {
        let u = User::from_name("postgres")
            .ok()
            .flatten()
            .expect("postgres user");
        chown(&to, Some(u.uid), Some(u.gid)).expect("chown");
    }
    to
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A superuser connection over node `i`'s unix socket (the only way in
/// without a client certificate).
async fn socket_sql(c: &TestCluster, i: usize) -> Option<tokio_postgres::Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(&c.nodes[i].dir)
        .port(c.nodes[i].pg_port)
        .user("postgres")
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

async fn has_row(c: &TestCluster, i: usize, v: i64) -> bool {
    let Some(client) = socket_sql(c, i).await else {
        return false;
    };
    client
        .query_opt("SELECT 1 FROM t WHERE v = $1", &[&v])
        .await
        .ok()
        .flatten()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_cluster_bootstraps_replicates_fails_over_and_rewinds() {
    let mut c = TestCluster::new(3, Timing::default());
    let certs = make_certs(&c.root.join("certs"));
    let client_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                      extendedKeyUsage=clientAuth\n";
    // `cert`-style checks map the certificate's CN to the role.
    leaf(&certs.dir, "replicator", "ca", client_ext);
    leaf(&certs.dir, "postgres", "ca", client_ext);
    let keys = c.root.join("keys");
    fs::create_dir_all(&keys).expect("keys dir");
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o755)).expect("chmod");
    let ca = install(&certs.ca, &keys, 0o644);
    let server_crt = install(&certs.server_cert, &keys, 0o644);
    let server_key = install(&certs.server_key, &keys, 0o600);
    let rep_crt = install(&certs.dir.join("replicator.crt"), &keys, 0o644);
    let rep_key = install(&certs.dir.join("replicator.key"), &keys, 0o600);
    let su_crt = install(&certs.dir.join("postgres.crt"), &keys, 0o644);
    let su_key = install(&certs.dir.join("postgres.key"), &keys, 0o600);

    // post_init gets the local superuser connection as Patroni passes it
    // (a libpq keyword string with the superuser section's settings), and
    // psql connects with it (over the socket, where libpq uses no TLS).
    let post_init_out = c.root.join("post_init.out");
    let post_init = c.write_script(
        "post_init.sh",
        &format!(
            "#!/bin/sh\nset -e\necho \"$1\" > {out}\n\
             /usr/lib/postgresql/15/bin/psql \"$1\" -Atc 'SELECT 42' >> {out}\n",
            out = post_init_out.display()
        ),
    );
    for i in 0..c.nodes.len() {
        c.add_to_section(
            i,
            "bootstrap",
            &format!("post_init: {}", post_init.display()),
        );
        let path = c.nodes[i].config_path.clone();
        let text = fs::read_to_string(&path).expect("read config");
        let text = text
            .replace(
                "  parameters:\n",
                &format!(
                    "  parameters:\n    ssl: 'on'\n    ssl_cert_file: {}\n    ssl_key_file: {}\n    ssl_ca_file: {}\n",
                    p(&server_crt),
                    p(&server_key),
                    p(&ca)
                ),
            )
            .replace(
                "      password: rep-pass\n",
                &format!(
                    "      password: rep-pass\n      sslmode: verify-ca\n      sslrootcert: {}\n      sslcert: {}\n      sslkey: {}\n",
                    p(&ca),
                    p(&rep_crt),
                    p(&rep_key)
                ),
            )
            .replace(
                &format!("      password: {SUPERUSER_PASSWORD}\n"),
                &format!(
                    "      password: {SUPERUSER_PASSWORD}\n      sslmode: verify-full\n      sslrootcert: {}\n      sslcert: {}\n      sslkey: {}\n",
                    p(&ca),
                    p(&su_crt),
                    p(&su_key)
                ),
            );
        assert!(text.contains("sslcert"), "{text}");
        fs::write(&path, text).expect("write config");
        // No plain TCP at all: the replication user needs a certificate of
        // the CA and its password, the superuser (pg_rewind, pgpilot's
        // check of the leader) a certificate naming it and its password
        // (SCRAM, with channel binding as libpq prefers it over TLS).
        c.add_to_section(
            i,
            "postgresql",
            "pg_hba:\n\
             - local all all md5\n\
             - hostssl replication replicator 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n\
             - hostssl all postgres 127.0.0.1/32 scram-sha-256 clientcert=verify-full",
        );
    }

    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let out = fs::read_to_string(&post_init_out).expect("post_init ran");
    assert!(
        out.starts_with("dbname=postgres user=postgres host=")
            && out.contains(&format!("sslcert={}", p(&su_crt)))
            && out.lines().nth(1) == Some("42"),
        "post_init's connection string and psql's answer: {out}"
    );
    let client = socket_sql(&c, primary).await.expect("socket connection");
    // Both replicas stream over TLS with their client certificate.
    let rows = client
        .query(
            "SELECT r.application_name, s.ssl, s.client_dn FROM pg_stat_replication r \
             JOIN pg_stat_ssl s USING (pid)",
            &[],
        )
        .await
        .expect("pg_stat_replication");
    assert_eq!(rows.len(), 2, "two replicas stream");
    for r in &rows {
        let ssl: bool = r.get(1);
        let dn: Option<String> = r.get(2);
        assert!(ssl, "replication over TLS");
        assert_eq!(dn.as_deref(), Some("/CN=replicator"));
    }
    // pgpilotctl's own connection (the superuser section's TLS settings:
    // verify-full, client certificate) reaches the leader over TCP.
    let out = support::ctl::ok(
        &c,
        &[
            "query",
            "-c",
            "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
    );
    assert_eq!(out, "ssl\tclient_dn\nt\t/CN=postgres\n");
    client
        .batch_execute("CREATE TABLE t(v bigint primary key); INSERT INTO t VALUES (1)")
        .await
        .expect("create table");
    for i in (0..c.nodes.len()).filter(|&i| i != primary) {
        eventually(Duration::from_secs(30), "row 1 on the replicas", || async {
            has_row(&c, i, 1).await.then_some(())
        })
        .await;
        let conf = fs::read_to_string(c.nodes[i].data_dir().join("postgresql.conf"))
            .expect("postgresql.conf");
        assert!(
            conf.contains(&format!("sslcert={}", p(&rep_crt)))
                && conf.contains("sslmode=verify-ca"),
            "primary_conninfo carries the replication section's TLS settings:\n{conf}"
        );
    }

    // kill -9 of the primary with its daemon; a replica takes over.
    c.kill_node(primary).await;
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|&p| p != primary)
    })
    .await;
    // The old primary comes back and rejoins by pg_rewind.
    c.start(primary);
    eventually(
        Duration::from_secs(90),
        "the old primary streams from the new one",
        || async { c.is_streaming_replica(primary).await.then_some(()) },
    )
    .await;
    let log = c.nodes[primary].log();
    assert!(
        has_event(&log, events::REWIND_DONE),
        "rejoined by pg_rewind:\n{log}"
    );
    assert!(
        !has_event(&log, events::REPLICA_METHOD_STARTED),
        "rebuilt by basebackup instead of pg_rewind:\n{log}"
    );
    let new = socket_sql(&c, new_primary).await.expect("new primary");
    new.execute("INSERT INTO t VALUES (2)", &[])
        .await
        .expect("insert on the new primary");
    for i in 0..c.nodes.len() {
        eventually(Duration::from_secs(30), "row 2 everywhere", || async {
            has_row(&c, i, 2).await.then_some(())
        })
        .await;
    }
}
