//! pgpilot's own PostgreSQL connections read an authentication section's
//! TLS files as libpq does (docs/configuration.md, "postgresql.authentication:
//! libpq settings"): the client certificate with its key, an encrypted key
//! with `sslpassword`, the root certificate for the verifying modes.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use pgpilot::config::Credentials;
use pgpilot::postgres::conninfo::Conninfo;
use pgpilot::postgres::tls_client::plan;
use support::tls::{Certs, KEY_PASSWORD, make_certs};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

fn s(p: &std::path::Path) -> Option<String> {
    Some(p.display().to_string())
}

#[test]
fn client_certificate_and_keys_load_as_libpq_reads_them() {
    pgpilot::tls::install_provider();
    let dir = std::env::temp_dir().join(format!("pgpilot-tls-settings-{}", std::process::id()));
    let certs = make_certs(&dir);
    let base = Credentials {
        sslmode: Some("verify-full".into()),
        sslrootcert: s(&certs.ca),
        sslcert: s(&certs.server_cert),
        sslkey: s(&certs.server_key),
        ..Credentials::default()
    };
    let p = plan(&Conninfo::settings(&base), false).expect("plain key");
    assert!(p.connector.is_some());

    // An encrypted PKCS#8 key needs sslpassword, and the right one.
    let encrypted = Credentials {
        sslkey: s(&certs.server_key_encrypted),
        ..base.clone()
    };
    let err = plan(&Conninfo::settings(&encrypted), false)
        .err()
        .expect("no password");
    assert!(err.to_string().contains("sslpassword"), "{err}");
    let wrong = Credentials {
        sslpassword: Some("wrong".into()),
        ..encrypted.clone()
    };
    assert!(plan(&Conninfo::settings(&wrong), false).is_err());
    let right = Credentials {
        sslpassword: Some(KEY_PASSWORD.into()),
        ..encrypted
    };
    assert!(plan(&Conninfo::settings(&right), false).is_ok());

    // A certificate without its key is refused, not sent half.
    let no_key = Credentials {
        sslkey: Some(dir.join("missing.key").display().to_string()),
        ..base.clone()
    };
    assert!(plan(&Conninfo::settings(&no_key), false).is_err());

    // A root certificate file that is not one, for a verifying mode.
    let bad_root = Credentials {
        sslrootcert: s(&certs.server_key),
        ..base
    };
    assert!(plan(&Conninfo::settings(&bad_root), false).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn openssl_ca(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .arg("ca")
        .args(["-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt"])
        .args(args)
        .output()
        .expect("run openssl ca");
    assert!(
        out.status.success(),
        "openssl ca {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TLS handshake of pgpilot's connector with `libpq`'s settings against
/// a server presenting the test server certificate.
async fn handshake(certs: &Certs, libpq: &Conninfo) -> Result<(), String> {
    let chain = pgpilot::tls::load_certs("cert", &certs.server_cert.display().to_string())
        .map_err(|e| e.to_string())?;
    let key = pgpilot::tls::load_key("key", &certs.server_key.display().to_string(), None)
        .map_err(|e| e.to_string())?;
    let server = rustls::ServerConfig::builder_with_provider(pgpilot::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        if let Ok((s, _)) = listener.accept().await {
            let _ = acceptor.accept(s).await;
        }
    });
    let mut make = plan(libpq, false)
        .map_err(|e| e.to_string())?
        .connector
        .ok_or("no TLS planned")?;
    let connect = MakeTlsConnect::<TcpStream>::make_tls_connect(&mut make, "127.0.0.1")
        .map_err(|e| e.to_string())?;
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    TlsConnect::connect(connect, stream)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `sslcrl` and `sslcrldir` are checked: a server whose certificate the
/// CA revoked is refused, as libpq refuses it.
#[tokio::test]
async fn a_revoked_server_certificate_is_refused() {
    pgpilot::tls::install_provider();
    let dir = std::env::temp_dir().join(format!("pgpilot-tls-crl-{}", std::process::id()));
    let certs = make_certs(&dir);
    std::fs::write(dir.join("index.txt"), "").expect("index");
    std::fs::write(dir.join("crlnumber"), "01\n").expect("crlnumber");
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\ncrlnumber=crlnumber\n\
         default_md=sha256\ndefault_crl_days=2\n",
    )
    .expect("ca.cnf");
    openssl_ca(&dir, &["-gencrl", "-out", "empty.crl"]);
    openssl_ca(&dir, &["-revoke", "server.crt"]);
    let crldir = dir.join("crls");
    std::fs::create_dir_all(&crldir).expect("crl dir");
    openssl_ca(&dir, &["-gencrl", "-out", "crls/revoked.crl"]);

    let auth = |crl: Option<&Path>, crldir: Option<&Path>| {
        Conninfo::settings(&Credentials {
            sslmode: Some("verify-full".into()),
            sslrootcert: s(&certs.ca),
            sslcrl: crl.and_then(s),
            sslcrldir: crldir.and_then(s),
            ..Credentials::default()
        })
    };
    handshake(&certs, &auth(None, None))
        .await
        .expect("no CRL: accepted");
    handshake(&certs, &auth(Some(&dir.join("empty.crl")), None))
        .await
        .expect("a CRL without it: accepted");
    let err = handshake(&certs, &auth(Some(&crldir.join("revoked.crl")), None))
        .await
        .expect_err("sslcrl revokes it");
    assert!(err.to_lowercase().contains("revoked"), "{err}");
    let err = handshake(&certs, &auth(None, Some(&crldir)))
        .await
        .expect_err("sslcrldir revokes it");
    assert!(err.to_lowercase().contains("revoked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
