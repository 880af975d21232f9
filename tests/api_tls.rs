//! HTTPS for the REST API against real daemons (issue 6): a cluster whose
//! members talk to each other over HTTPS with client certificates
//! (`verify_client: required`) bootstraps, switches over (the leader asks
//! the candidate's `/patroni`) and fails over; plain HTTP and clients
//! without (or with a foreign) certificate are refused; Basic auth still
//! applies; `pgpilotctl` works against https members. With `optional`,
//! health checks need no certificate but unsafe endpoints do, a reload
//! serves a new certificate, and a reload with a broken one keeps the
//! running one. A node whose key is encrypted (`keyfile_password`) serves
//! HTTPS, with `http_extra_headers` and `https_extra_headers` on every
//! response; a reload with a wrong password keeps the running key.

mod support;

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use pgpilot::events;
use serde_json::json;
use support::cluster::{TestCluster, Timing, has_event};
use support::eventually;
use support::tls::{
    Certs, KEY_PASSWORD, client, client_timeout, make_certs, restapi_yaml, served_subject,
};

const BOOT: Duration = Duration::from_secs(120);
const PASSWORD: &str = "tls-Pa55word";

fn certs_for(c: &TestCluster) -> Certs {
    make_certs(&c.root.join("certs"))
}

fn ctl(c: &TestCluster, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
        .arg("-c")
        .arg(&c.nodes[0].config_path)
        .args(args)
        .output()
        .expect("run pgpilotctl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_with_required_client_certificates() {
    let mut c = TestCluster::new(3, Timing::default());
    let certs = certs_for(&c);
    let with_cert = client(&certs, Some((&certs.client_cert, &certs.client_key)));
    c.use_https(
        &format!(
            "{}\nauthentication:\n  username: admin\n  password: {PASSWORD}",
            restapi_yaml(&certs, "required")
        ),
        with_cert.clone(),
    );
    c.start_all();
    let p = c.wait_healthy(BOOT).await;

    // Health over HTTPS with the CA and a client certificate.
    let r = with_cert
        .get(c.nodes[p].api("/health"))
        .send()
        .await
        .expect("GET https /health");
    assert_eq!(r.status().as_u16(), 200);
    // The member keys advertise https.
    let cluster: serde_json::Value = with_cert
        .get(c.nodes[p].api("/cluster"))
        .send()
        .await
        .expect("GET /cluster")
        .json()
        .await
        .expect("JSON");
    for m in cluster["members"].as_array().expect("members") {
        assert!(
            m["api_url"].as_str().unwrap_or("").starts_with("https://"),
            "{m}"
        );
    }

    // Without a client certificate the handshake fails (required), also for
    // health checks; so does a certificate from another CA and plain HTTP.
    let no_cert = client(&certs, None);
    assert!(
        no_cert.get(c.nodes[p].api("/health")).send().await.is_err(),
        "no client certificate must be refused"
    );
    let rogue = client(&certs, Some((&certs.rogue_cert, &certs.rogue_key)));
    assert!(
        rogue.get(c.nodes[p].api("/health")).send().await.is_err(),
        "a certificate of another CA must be refused"
    );
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let plain_url = format!("http://127.0.0.1:{}/health", c.nodes[p].api_port);
    match plain.get(&plain_url).send().await {
        Err(_) => {}
        Ok(r) => panic!("plain HTTP answered {}", r.status()),
    }

    // Basic auth is still enforced over TLS.
    let reload = c.nodes[p].api("/reload");
    let r = with_cert.post(&reload).send().await.expect("POST /reload");
    assert_eq!(r.status().as_u16(), 401);
    let r = with_cert
        .post(&reload)
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(r.status().as_u16(), 202);

    // pgpilotctl: -k list; `version` asks every member over HTTPS
    // (restapi.cafile as CA, restapi.certfile as client certificate, as
    // patronictl falls back to them).
    let (ok, out) = ctl(&c, &["-k", "list"]);
    assert!(ok, "pgpilotctl -k list: {out}");
    for n in &c.nodes {
        assert!(out.contains(&n.name), "{out}");
    }
    let (ok, out) = ctl(&c, &["version"]);
    assert!(ok, "pgpilotctl version: {out}");
    assert!(!out.contains("error"), "{out}");

    // Switchover: the leader checks the candidate's /patroni over HTTPS
    // with its own certificate; a failure there would answer 412.
    let candidate = (p + 1) % 3;
    let r = client_timeout(
        &certs,
        Some((&certs.client_cert, &certs.client_key)),
        Duration::from_secs(90),
    )
    .post(c.nodes[p].api("/switchover"))
    .basic_auth("admin", Some(PASSWORD))
    .json(&json!({"leader": c.nodes[p].name, "candidate": c.nodes[candidate].name}))
    .send()
    .await
    .expect("POST /switchover");
    let code = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(code, 200, "switchover: {text}");
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, candidate);

    // Failover: kill the primary; the others race over HTTPS.
    c.kill_node(p).await;
    let new = eventually(BOOT, "a new primary", || async {
        c.primary().await.filter(|&q| q != p)
    })
    .await;
    assert_ne!(new, p);
    let log = c.nodes[new].log();
    assert!(!has_event(&log, events::PEER_TLS_CONFIG_FAILED), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_and_reload() {
    let mut c = TestCluster::new(1, Timing::default());
    let certs = certs_for(&c);
    let no_cert = client(&certs, None);
    c.use_https(&restapi_yaml(&certs, "optional"), no_cert.clone());
    c.start_all();
    eventually(BOOT, "node0 is primary", || async {
        (c.primary().await == Some(0)).then_some(())
    })
    .await;

    // Health checks need no certificate; unsafe endpoints do (403).
    let r = no_cert
        .get(c.nodes[0].api("/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(r.status().as_u16(), 200);
    let r = no_cert
        .post(c.nodes[0].api("/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(r.status().as_u16(), 403);
    let with_cert = client(&certs, Some((&certs.client_cert, &certs.client_key)));
    let r = with_cert
        .post(c.nodes[0].api("/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(r.status().as_u16(), 202);
    // A certificate of another CA is refused even though one is optional.
    let rogue = client(&certs, Some((&certs.rogue_cert, &certs.rogue_key)));
    assert!(
        rogue.get(c.nodes[0].api("/health")).send().await.is_err(),
        "a certificate of another CA must be refused"
    );

    // A new certificate on SIGHUP is served to new connections.
    let port = c.nodes[0].api_port;
    assert!(
        served_subject(port).ends_with("CN = server"),
        "{}",
        served_subject(port)
    );
    let path = &c.nodes[0].config_path;
    let text = std::fs::read_to_string(path).expect("config");
    let text = text
        .replace(
            certs.server_cert.to_str().unwrap(),
            certs.server2_cert.to_str().unwrap(),
        )
        .replace(
            certs.server_key.to_str().unwrap(),
            certs.server2_key.to_str().unwrap(),
        );
    std::fs::write(path, &text).expect("write config");
    c.signal(0, Signal::SIGHUP);
    eventually(Duration::from_secs(20), "the new certificate", || async {
        c.nodes[0]
            .logged(events::API_CERTIFICATE_RELOADED)
            .then_some(())
    })
    .await;
    assert!(
        served_subject(port).ends_with("CN = server2"),
        "{}",
        served_subject(port)
    );

    // A broken certificate on SIGHUP: the reload is refused, HTTPS goes on
    // with the running certificate.
    let broken = c.root.join("certs/broken.pem");
    std::fs::write(&broken, "not a certificate\n").expect("write");
    std::fs::write(
        path,
        text.replace(
            certs.server2_cert.to_str().unwrap(),
            broken.to_str().unwrap(),
        ),
    )
    .expect("write config");
    c.signal(0, Signal::SIGHUP);
    eventually(Duration::from_secs(20), "the reload refused", || async {
        c.nodes[0]
            .logged(events::CONFIG_RELOAD_FAILED)
            .then_some(())
    })
    .await;
    let r = no_cert
        .get(c.nodes[0].api("/health"))
        .send()
        .await
        .expect("GET /health after a bad reload");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        served_subject(port).ends_with("CN = server2"),
        "{}",
        served_subject(port)
    );

    // `pgpilot --validate` names the key and the path.
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .arg("--validate")
        .arg(path)
        .output()
        .expect("pgpilot --validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("restapi.certfile") && err.contains("broken.pem"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_key_and_extra_headers() {
    let mut c = TestCluster::new(1, Timing::default());
    let certs = certs_for(&c);
    let https = client(&certs, None);
    c.use_https(
        &format!(
            "certfile: {}\nkeyfile: {}\nkeyfile_password: {KEY_PASSWORD}\n\
             http_extra_headers:\n  X-Frame-Options: DENY\n  X-Both: http\n\
             https_extra_headers:\n  Strict-Transport-Security: max-age=31536000\n  X-Both: https",
            certs.server_cert.display(),
            certs.server_key_encrypted.display(),
        ),
        https.clone(),
    );
    c.start_all();
    eventually(BOOT, "node0 is primary", || async {
        (c.primary().await == Some(0)).then_some(())
    })
    .await;

    // HTTPS with the decrypted key; every response carries the headers
    // (https ones too, and they win over an http one of the same name).
    let health = || async {
        https
            .get(c.nodes[0].api("/health"))
            .send()
            .await
            .expect("GET /health")
    };
    let r = health().await;
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["strict-transport-security"], "max-age=31536000");
    assert_eq!(h["x-both"], "https");
    let r = https
        .get(c.nodes[0].api("/no-such-endpoint"))
        .send()
        .await
        .expect("GET unknown");
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // New headers on SIGHUP.
    let path = &c.nodes[0].config_path;
    let text = std::fs::read_to_string(path).expect("config");
    let text = text.replace("X-Frame-Options: DENY", "X-Frame-Options: SAMEORIGIN");
    std::fs::write(path, &text).expect("write config");
    c.signal(0, Signal::SIGHUP);
    eventually(Duration::from_secs(20), "the new header", || async {
        (health().await.headers()["x-frame-options"] == "SAMEORIGIN").then_some(())
    })
    .await;

    // A wrong password on SIGHUP: the reload is refused, HTTPS goes on
    // with the running key.
    std::fs::write(
        path,
        text.replace(
            &format!("keyfile_password: {KEY_PASSWORD}"),
            "keyfile_password: wrong",
        ),
    )
    .expect("write config");
    c.signal(0, Signal::SIGHUP);
    eventually(Duration::from_secs(20), "the reload refused", || async {
        c.nodes[0]
            .logged(events::CONFIG_RELOAD_FAILED)
            .then_some(())
    })
    .await;
    let r = health().await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-frame-options"], "SAMEORIGIN");
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilot"))
        .arg("--validate")
        .arg(path)
        .output()
        .expect("pgpilot --validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("restapi.keyfile_password") && err.contains("server.enc.key"),
        "{err}"
    );
}

/// Issue 14 §3: one self-signed `CA:TRUE` certificate (`openssl req
/// -x509`, tests/fixtures/tls/server.crt) as every node's certificate, its
/// CA file and the clients' certificate, with `verify_client: required`,
/// as Patroni's own test set-up and small installations use it: the
/// members talk to each other (switchover), and a client and pgpilotctl
/// presenting it are served. A different self-signed certificate is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_self_signed_certificate_for_everything() {
    let mut c = TestCluster::new(2, Timing::default());
    let dir = c.root.join("selfsigned");
    std::fs::create_dir_all(&dir).expect("cert dir");
    let fixture = |name: &str| {
        let to = dir.join(name);
        std::fs::copy(
            format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR")),
            &to,
        )
        .expect("copy fixture");
        to
    };
    let (cert, key) = (fixture("server.crt"), fixture("server.key"));
    let (other_cert, other_key) = (
        fixture("selfsigned-other.crt"),
        fixture("selfsigned-other.key"),
    );
    use std::os::unix::fs::PermissionsExt;
    for p in [&dir, &cert, &key, &other_cert, &other_key] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let https = |identity: Option<(&std::path::Path, &std::path::Path)>| {
        let roots = pgpilot::tls::load_roots("ca", cert.to_str().expect("utf-8")).expect("CA");
        let tls = pgpilot::tls::client_config(
            pgpilot::tls::ServerCheck::Full(roots),
            identity.map(|(c, k)| {
                (
                    "test",
                    c.to_str().expect("utf-8"),
                    Some(k.to_str().expect("utf-8")),
                    None,
                )
            }),
        )
        .expect("client TLS config");
        reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .tls_backend_preconfigured(tls)
            .build()
            .expect("https client")
    };
    let with_cert = https(Some((&cert, &key)));
    c.use_https(
        &format!(
            "certfile: {}\nkeyfile: {}\ncafile: {}\nverify_client: required",
            cert.display(),
            key.display(),
            cert.display()
        ),
        with_cert.clone(),
    );
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = with_cert
        .get(c.nodes[p].api("/health"))
        .send()
        .await
        .expect("GET https /health with the self-signed certificate");
    assert_eq!(r.status().as_u16(), 200);
    let other = https(Some((&other_cert, &other_key)));
    assert!(
        other.get(c.nodes[p].api("/health")).send().await.is_err(),
        "a self-signed certificate that is not the trusted one must be refused"
    );
    assert!(
        https(None)
            .get(c.nodes[p].api("/health"))
            .send()
            .await
            .is_err(),
        "no client certificate must be refused (required)"
    );

    // pgpilotctl checks the servers against restapi.cafile and presents
    // restapi.certfile.
    let (ok, out) = ctl(&c, &["list"]);
    assert!(ok, "pgpilotctl list: {out}");
    let (ok, out) = ctl(&c, &["version"]);
    assert!(ok && !out.contains("error"), "pgpilotctl version: {out}");

    // Switchover: the leader asks the candidate's /patroni with the same
    // certificate.
    let candidate = 1 - p;
    let r = with_cert
        .post(c.nodes[p].api("/switchover"))
        .json(&json!({"leader": c.nodes[p].name, "candidate": c.nodes[candidate].name}))
        .send()
        .await
        .expect("POST /switchover");
    let code = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(code, 200, "switchover: {text}");
    assert_eq!(c.wait_healthy(BOOT).await, candidate);
    for n in &c.nodes {
        let log = n.log();
        assert!(!has_event(&log, events::PEER_TLS_CONFIG_FAILED), "{log}");
    }
}
