//! TLS towards ZooKeeper (`use_ssl`, `cacert`, `cert`, `key`,
//! `key_password`, `verify`; docs/configuration.md §4.2): the
//! `zookeeper-client` TLS options built from the section, read once at
//! start, with errors that name the key and the file.
//!
//! What kazoo does for Patroni, and what pgpilot does:
//! - the server's chain is checked against `cacert` and the system's CA
//!   store (kazoo: `load_default_certs` + `load_verify_locations`); the same.
//! - kazoo never checks the server's host name (`check_hostname=False`);
//!   `zookeeper-client` does, unless disabled by an `unsafe` call, which
//!   this crate does not make: the server certificate must name the host (or
//!   IP address) of its `hosts` entry.
//! - `verify: false` makes kazoo check nothing; `zookeeper-client` cannot
//!   skip the chain check, so it is still made (validation warns:
//!   `ZooKeeper::problems`).
//! - `cert` with `key` is the client certificate (kazoo loads it only when
//!   both are set); `key_password` decrypts an encrypted PKCS#8 key.

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use zookeeper_client as zk;

use crate::config::zookeeper::ZooKeeper;
use crate::tls::TlsError;

/// A TLS setting of the `zookeeper` section that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ZkTlsError {
    #[error(transparent)]
    File(#[from] TlsError),
    #[error("zookeeper.cacert: not set, and no system CA certificates were found ({reason})")]
    NoTrust { reason: String },
    /// The client library refused what the files gave (a bug, not the
    /// user's: the files were parsed and checked before).
    #[error("zookeeper: TLS settings refused by the client: {0}")]
    Client(String),
}

/// The TLS options of the section, `None` unless `use_ssl` is true.
pub fn options(c: &ZooKeeper) -> Result<Option<zk::TlsOptions>, ZkTlsError> {
    if c.use_ssl != Some(true) {
        return Ok(None);
    }
    let mut trusted = String::new();
    if let Some(path) = &c.cacert {
        for cert in crate::tls::load_certs("zookeeper.cacert", path)? {
            trusted.push_str(&pem("CERTIFICATE", cert.as_ref()));
        }
    }
    let system = rustls_native_certs::load_native_certs();
    for cert in &system.certs {
        trusted.push_str(&pem("CERTIFICATE", cert.as_ref()));
    }
    if trusted.is_empty() {
        let reason = match system.errors.first() {
            Some(e) => e.to_string(),
            None => "none installed".to_owned(),
        };
        return Err(ZkTlsError::NoTrust { reason });
    }
    let client = |e: zk::Error| ZkTlsError::Client(e.to_string());
    let mut options = zk::TlsOptions::new()
        .with_pem_ca(&trusted)
        .map_err(client)?;
    if let (Some(cert), Some(key)) = (&c.cert, &c.key) {
        let (chain, private) = identity(cert, key, c.key_password.as_deref())?;
        let chain_pem: String = chain
            .iter()
            .map(|c| pem("CERTIFICATE", c.as_ref()))
            .collect();
        let key_pem = match &private {
            PrivateKeyDer::Pkcs1(k) => pem("RSA PRIVATE KEY", k.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(k) => pem("EC PRIVATE KEY", k.secret_sec1_der()),
            PrivateKeyDer::Pkcs8(k) => pem("PRIVATE KEY", k.secret_pkcs8_der()),
            _ => {
                return Err(ZkTlsError::Client(format!(
                    "zookeeper.key: {key}: a key type the client cannot take"
                )));
            }
        };
        options = options
            .with_pem_identity(&chain_pem, &key_pem)
            .map_err(client)?;
    }
    Ok(Some(options))
}

/// The TLS files of the `zookeeper` section, when it is the DCS used and
/// `use_ssl` is true: each problem, naming its key and path. Used by
/// configuration validation (`pgpilot --validate-config`).
pub fn check_files(cfg: &crate::config::Config) -> Vec<String> {
    if cfg.dcs_sections().first() != Some(&"zookeeper") {
        return Vec::new();
    }
    match cfg.zookeeper.as_ref().map(options) {
        Some(Err(e)) => vec![e.to_string()],
        _ => Vec::new(),
    }
}

/// The client certificate chain and its key, checked to belong together.
fn identity(
    cert: &str,
    key: &str,
    password: Option<&str>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = crate::tls::load_certs("zookeeper.cert", cert)?;
    let private = crate::tls::load_key("zookeeper.key", key, password)?;
    CertifiedKey::from_der(chain.clone(), private.clone_key(), &crate::tls::provider()).map_err(
        |e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key: "zookeeper.key".into(),
                path: key.into(),
                certfile: cert.into(),
            },
            error => TlsError::UnusableKey {
                key: "zookeeper.key".into(),
                path: key.into(),
                error,
            },
        },
    )?;
    Ok((chain, private))
}

/// `der` as a PEM block of `label`.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zk(yaml: &str) -> ZooKeeper {
        serde_yaml_ng::from_str(yaml).expect("section")
    }

    #[test]
    fn pem_blocks_wrap_at_64() {
        let p = pem("CERTIFICATE", &[0u8; 60]);
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        // Read back as the client reads it.
        let back: Vec<CertificateDer<'_>> =
            rustls::pki_types::pem::PemObject::pem_slice_iter(p.as_bytes())
                .collect::<Result<_, _>>()
                .expect("parses");
        assert_eq!(back[0].as_ref(), &[0u8; 60][..]);
    }

    #[test]
    fn no_tls_unless_use_ssl() {
        assert!(
            options(&zk("hosts: [a]\ncacert: /nonexistent\n"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn files_are_named_in_errors() {
        let e = options(&zk(
            "hosts: [a]\nuse_ssl: true\ncacert: /nonexistent/ca.pem\n",
        ))
        .expect_err("missing CA");
        let m = e.to_string();
        assert!(
            m.contains("zookeeper.cacert") && m.contains("/nonexistent/ca.pem"),
            "{m}"
        );
    }
}
