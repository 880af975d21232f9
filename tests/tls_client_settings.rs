//! pgpilot's own PostgreSQL connections read an authentication section's
//! TLS files as libpq does (docs/configuration.md, "postgresql.authentication:
//! libpq settings"): the client certificate with its key, an encrypted key
//! with `sslpassword`, the root certificate for the verifying modes.

mod support;

use pgpilot::config::Credentials;
use pgpilot::postgres::conninfo::Conninfo;
use pgpilot::postgres::tls_client::plan;
use support::tls::{KEY_PASSWORD, make_certs};

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
