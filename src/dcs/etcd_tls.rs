//! TLS towards etcd (`protocol: https`, `cacert`, `cert`, `key`;
//! docs/configuration.md §4): the rustls configuration of the etcd client,
//! built from the section with errors that name the key and the file, and
//! what a failed handshake means, said in the same terms.
//!
//! As Patroni's client (urllib3 with `ca_certs`, `cert_reqs=CERT_REQUIRED`):
//! the server's chain is checked against `cacert`, else the system's CA
//! store, and its host name (or IP address) against the endpoint's. `cert`
//! is the client certificate; `key` its key, or the key is in `cert`'s file
//! (a `key` without `cert` is not used, as in Patroni).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, CertificateError, ClientConfig};

use crate::config::Etcd;
use crate::tls::{ServerCheck, TlsError};

/// The client side of TLS to etcd, built once from the configuration.
#[derive(Debug)]
pub struct EtcdTls {
    /// ALPN `h2`: the v3 API (gRPC).
    config: Arc<ClientConfig>,
    /// The same with ALPN `http/1.1`: the v2 keys API (`etcd2_http`).
    http1: Arc<ClientConfig>,
    /// What the server's certificate is checked against, for messages:
    /// `etcd3.cacert (/path)` or `the system CA store`.
    trust: String,
    /// The client certificate presented, for messages: `etcd3.cert (/path)`.
    identity: Option<String>,
    /// The configuration section, `etcd3` (or `etcd`).
    section: String,
}

/// A TLS setting of the etcd section that cannot be used; each names its
/// key and file.
#[derive(Debug, thiserror::Error)]
pub enum EtcdTlsError {
    #[error(transparent)]
    File(#[from] TlsError),
    #[error("{section}.cacert: not set, and no system CA certificates were found ({reason})")]
    NoTrust { section: String, reason: String },
    /// etcd's section has no key password (Patroni's neither).
    #[error(
        "{key}: {path}: the private key is encrypted; etcd's section has no password for it: \
         store it unencrypted (`openssl pkey -in {path} -out <new file>`, mode 0600)"
    )]
    EncryptedKey { key: String, path: String },
}

impl EtcdTls {
    /// Load the files the section names (read once, at start).
    pub fn from_config(section: &str, e: &Etcd) -> Result<EtcdTls, EtcdTlsError> {
        let key_of = |k: &str| format!("{section}.{k}");
        let identity = match &e.cert {
            Some(cert) => Some(
                identity(section, cert, e.key.as_deref()).map_err(|e| match e {
                    TlsError::NoPassword { key, path } => EtcdTlsError::EncryptedKey { key, path },
                    other => EtcdTlsError::File(other),
                })?,
            ),
            None => None,
        };
        let (check, trust) = match &e.cacert {
            Some(path) => (
                ServerCheck::Full(crate::tls::load_roots(&key_of("cacert"), path)?),
                format!("{} ({path})", key_of("cacert")),
            ),
            None => match crate::tls::system_roots() {
                Ok(roots) => (ServerCheck::Full(roots), "the system CA store".to_owned()),
                Err(e) => {
                    return Err(EtcdTlsError::NoTrust {
                        section: section.to_owned(),
                        reason: match e {
                            TlsError::NoSystemRoots { reason } => reason,
                            other => other.to_string(),
                        },
                    });
                }
            },
        };
        let config = crate::tls::h2_client_config(check, identity)?;
        let mut http1 = config.clone();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(EtcdTls {
            config: Arc::new(config),
            http1: Arc::new(http1),
            trust,
            identity: e.cert.as_ref().map(|p| format!("{} ({p})", key_of("cert"))),
            section: section.to_owned(),
        })
    }

    pub(crate) fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// The configuration for HTTP/1.1 (etcd's v2 keys API).
    pub(crate) fn http1_config(&self) -> Arc<ClientConfig> {
        self.http1.clone()
    }

    /// The client certificate presented, for messages: `etcd3.cert (/path)`.
    pub(crate) fn identity_name(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// What a TLS failure with etcd at `host` means, naming the setting
    /// (and file) it points at.
    pub(crate) fn describe(&self, host: &str, e: &rustls::Error) -> String {
        match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "TLS: the server's certificate is not signed by a CA of {}",
                    self.trust
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    format!("TLS: the server's certificate is not valid for {host}")
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "TLS: the server's certificate has expired".to_owned()
                }
                other => format!("TLS: the server's certificate was refused ({other:?})"),
            },
            rustls::Error::AlertReceived(
                a @ (AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateExpired
                | AlertDescription::AccessDenied),
            ) => match &self.identity {
                Some(id) => format!("TLS: etcd refused the client certificate {id} ({a:?})"),
                None => format!(
                    "TLS: etcd asks for a client certificate ({a:?}): set {s}.cert and {s}.key",
                    s = self.section
                ),
            },
            rustls::Error::NoApplicationProtocol => {
                "TLS: the server did not agree on HTTP/2 (ALPN h2): is it etcd's client port?"
                    .to_owned()
            }
            other => format!("TLS: {other}"),
        }
    }
}

/// Check the TLS files of the `etcd3` (or v2 `etcd`) section, when it is
/// the DCS used and an endpoint is `https`: each problem, naming its key and
/// path. Used by configuration validation (`pgpilot --validate-config`).
pub fn check_files(cfg: &crate::config::Config) -> Vec<String> {
    let (section, e) = match cfg.dcs_sections().first() {
        Some(&"etcd3") => ("etcd3", cfg.etcd3.as_ref()),
        Some(&"etcd") => ("etcd", cfg.etcd.as_ref()),
        _ => return Vec::new(),
    };
    let Some(e) = e else {
        return Vec::new();
    };
    if !e.endpoints().iter().any(|u| u.starts_with("https://")) {
        return Vec::new();
    }
    match EtcdTls::from_config(section, e) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

/// The client certificate chain of `cert` and its key (from `key`, else from
/// `cert`'s own file), checked to belong together.
fn identity(
    section: &str,
    cert: &str,
    key: Option<&str>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_key = format!("{section}.cert");
    let chain = crate::tls::load_certs(&cert_key, cert)?;
    let (kname, kpath) = match key {
        Some(k) => (format!("{section}.key"), k),
        None => (cert_key, cert),
    };
    // etcd's section has no key password (Patroni's neither).
    let private = crate::tls::load_key(&kname, kpath, None)?;
    CertifiedKey::from_der(chain.clone(), private.clone_key(), &crate::tls::provider()).map_err(
        |e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                key: kname.clone(),
                path: kpath.into(),
                certfile: cert.into(),
            },
            error => TlsError::UnusableKey {
                key: kname.clone(),
                path: kpath.into(),
                error,
            },
        },
    )?;
    Ok((chain, private))
}

/// The rustls error under an I/O error of a TLS stream, if any.
pub(crate) fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_key_is_named_without_a_password_setting() {
        let dir = std::env::temp_dir().join(format!("pgpilot-etcd-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = dir.join("k.pem");
        std::fs::write(
            &key,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .expect("key");
        let cert = dir.join("c.pem");
        // Any certificate: the key is refused before they are compared.
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUGv5u\n-----END CERTIFICATE-----\n",
        )
        .expect("cert");
        let e: Etcd = serde_yaml_ng::from_str(&format!(
            "host: h\nprotocol: https\ncert: {}\nkey: {}\n",
            cert.display(),
            key.display()
        ))
        .expect("section");
        let m = EtcdTls::from_config("etcd3", &e)
            .expect_err("refused")
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            m.contains("etcd3.key") && m.contains("encrypted") && !m.contains("keyfile_password"),
            "{m}"
        );
    }
}
