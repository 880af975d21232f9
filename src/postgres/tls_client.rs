//! TLS of pgpilot's own PostgreSQL connections (tokio-postgres on rustls),
//! the libpq settings of an authentication section read as libpq reads
//! them (docs/configuration.md, "postgresql.authentication: libpq
//! settings"), so that a server that takes pg_basebackup's and the
//! walreceiver's connections takes pgpilot's too:
//!
//! * no TLS over a unix socket (libpq never uses it there);
//! * `sslmode` (default `prefer`): `disable`; `allow` and `prefer` try TLS
//!   without checking the server; `require` checks the chain only when a
//!   root certificate file exists (libpq's rule); `verify-ca` the chain;
//!   `verify-full` the chain and the host name. `sslrootcert=system` is the
//!   system's trust store, with the host name checked;
//! * `sslcert`/`sslkey` (default `~/.postgresql/postgresql.crt`/`.key`,
//!   used when the files exist) are presented, the key decrypted with
//!   `sslpassword`; `sslrootcert` defaults to `~/.postgresql/root.crt`;
//!   `sslcrl`/`sslcrldir` are checked along the chain;
//! * `channel_binding`, `sslnegotiation` as libpq; `gssencmode=require`
//!   cannot be met (no GSSAPI here) and fails the connection.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateRevocationListDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{ChannelBinding as BindingMode, SslMode, SslNegotiation};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::conninfo::Conninfo;
use super::error::{PgError, PgResult};
use crate::tls::{self, ServerCheck};

/// What a connection does about TLS.
pub struct TlsPlan {
    pub mode: SslMode,
    pub negotiation: SslNegotiation,
    pub channel_binding: BindingMode,
    /// `None`: no TLS (`sslmode=disable`, a unix socket).
    pub connector: Option<MakeRustls>,
}

fn invalid(key: &str, value: &str) -> PgError {
    PgError::InvalidOption(format!("invalid {key} value: \"{value}\""))
}

/// libpq's default file `~/.postgresql/<name>`.
fn default_file(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql").join(name))
}

/// `key`'s file: the configured one, else libpq's default; `None` when
/// the file does not exist (libpq then goes on without it).
fn existing_file(libpq: &Conninfo, key: &str, default: &str) -> Option<String> {
    let path = match libpq.get(key) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        Some(_) => return None,
        None => default_file(default)?,
    };
    path.exists().then(|| path.display().to_string())
}

fn tls_error(key: &str, e: impl std::fmt::Display) -> PgError {
    PgError::InvalidOption(format!("{key}: {e}"))
}

/// The CRLs of `sslcrl` (a PEM file) and `sslcrldir` (a directory of
/// them); missing ones are skipped, as libpq skips them.
fn load_crls(libpq: &Conninfo) -> PgResult<Vec<CertificateRevocationListDer<'static>>> {
    let mut files = Vec::new();
    if let Some(f) = existing_file(libpq, "sslcrl", "root.crl") {
        files.push(PathBuf::from(f));
    }
    if let Some(dir) = libpq.get("sslcrldir").filter(|d| !d.is_empty())
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    let mut crls = Vec::new();
    for f in files {
        let pem =
            std::fs::read(&f).map_err(|e| tls_error("sslcrl", format!("{}: {e}", f.display())))?;
        for crl in CertificateRevocationListDer::pem_slice_iter(&pem) {
            crls.push(crl.map_err(|e| tls_error("sslcrl", format!("{}: {e}", f.display())))?);
        }
    }
    Ok(crls)
}

/// How to check the server for `sslmode`, from `sslrootcert`.
fn server_check(libpq: &Conninfo, sslmode: &str) -> PgResult<ServerCheck> {
    if libpq.get("sslrootcert") == Some("system") {
        let roots = tls::system_roots().map_err(|e| tls_error("sslrootcert", e))?;
        return Ok(ServerCheck::Full(roots));
    }
    let root = existing_file(libpq, "sslrootcert", "root.crt");
    let roots =
        |path: &str| tls::load_roots("sslrootcert", path).map_err(|e| tls_error("sslrootcert", e));
    match (sslmode, root) {
        ("allow" | "prefer", _) | ("require", None) => Ok(ServerCheck::None),
        ("require" | "verify-ca", Some(path)) => Ok(ServerCheck::ChainOnly(roots(&path)?)),
        ("verify-full", Some(path)) => Ok(ServerCheck::Full(roots(&path)?)),
        (_, None) => Err(PgError::InvalidOption(format!(
            "sslmode={sslmode} needs a root certificate file (sslrootcert), and {} does not exist",
            libpq.get("sslrootcert").map_or_else(
                || default_file("root.crt").map_or_else(
                    || "~/.postgresql/root.crt".to_owned(),
                    |p| p.display().to_string()
                ),
                str::to_owned
            )
        ))),
        (other, _) => Err(invalid("sslmode", other)),
    }
}

/// The TLS of a connection with the settings `libpq` (see the module
/// comment); `over_socket` for a unix socket.
pub fn plan(libpq: &Conninfo, over_socket: bool) -> PgResult<TlsPlan> {
    let channel_binding = match libpq.get("channel_binding").unwrap_or("prefer") {
        "disable" => BindingMode::Disable,
        "prefer" => BindingMode::Prefer,
        "require" => BindingMode::Require,
        other => return Err(invalid("channel_binding", other)),
    };
    let negotiation = match libpq.get("sslnegotiation").unwrap_or("postgres") {
        "postgres" => SslNegotiation::Postgres,
        "direct" => SslNegotiation::Direct,
        other => return Err(invalid("sslnegotiation", other)),
    };
    match libpq.get("gssencmode").unwrap_or("prefer") {
        "disable" | "prefer" => {}
        "require" => {
            return Err(PgError::InvalidOption(
                "gssencmode=require: pgpilot's own connections have no GSSAPI encryption".into(),
            ));
        }
        other => return Err(invalid("gssencmode", other)),
    }
    let sslmode = libpq.get("sslmode").unwrap_or("prefer");
    let mode = match sslmode {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        "require" | "verify-ca" | "verify-full" => SslMode::Require,
        other => return Err(invalid("sslmode", other)),
    };
    if over_socket || mode == SslMode::Disable {
        return Ok(TlsPlan {
            mode: SslMode::Disable,
            negotiation: SslNegotiation::Postgres,
            channel_binding,
            connector: None,
        });
    }
    let check = server_check(libpq, sslmode)?;
    let identity = match existing_file(libpq, "sslcert", "postgresql.crt") {
        Some(cert) => {
            let key = existing_file(libpq, "sslkey", "postgresql.key").ok_or_else(|| {
                PgError::InvalidOption(format!(
                    "sslkey: no private key file for the certificate {cert}"
                ))
            })?;
            let chain = tls::load_certs("sslcert", &cert).map_err(|e| tls_error("sslcert", e))?;
            let key = tls::load_key("sslkey", &key, libpq.get("sslpassword"))
                .map_err(|e| tls_error("sslkey", e))?;
            Some((chain, key))
        }
        None => None,
    };
    let config = tls::postgres_client_config(check, identity, load_crls(libpq)?)
        .map_err(|e| tls_error("sslcert", e))?;
    Ok(TlsPlan {
        mode,
        negotiation,
        channel_binding,
        connector: Some(MakeRustls {
            config: Arc::new(config),
        }),
    })
}

/// tokio-postgres' TLS connector on a rustls configuration.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_owned())?,
        })
    }
}

/// One TLS handshake to `name`.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let s = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(s))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929): the server certificate's hash
    /// with the hash of its signature algorithm, SHA-256 for MD5, SHA-1
    /// and anything else.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, conn) = self.0.get_ref();
        match conn.peer_certificates().and_then(|c| c.first()) {
            Some(cert) => ChannelBinding::tls_server_end_point(end_point_hash(cert)),
            None => ChannelBinding::none(),
        }
    }
}

// Signature algorithm OIDs whose hash is not SHA-256.
/// sha384WithRSAEncryption, 1.2.840.113549.1.1.12.
const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
/// sha512WithRSAEncryption, 1.2.840.113549.1.1.13.
const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
/// ecdsa-with-SHA384, 1.2.840.10045.4.3.3.
const SHA384_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// ecdsa-with-SHA512, 1.2.840.10045.4.3.4.
const SHA512_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];

/// The OID of a certificate's `signatureAlgorithm` (DER).
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    use crate::x509_usage::tlv;
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, _tbs, rest) = tlv(cert)? else {
        return None;
    };
    let (0x30, alg, _) = tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _) = tlv(alg)? else {
        return None;
    };
    Some(oid)
}

/// The `tls-server-end-point` hash of `cert` (DER).
pub fn end_point_hash(cert: &[u8]) -> Vec<u8> {
    use ring::digest;
    let alg = match signature_algorithm(cert) {
        Some(o) if o == SHA384_RSA || o == SHA384_ECDSA => &digest::SHA384,
        Some(o) if o == SHA512_RSA || o == SHA512_ECDSA => &digest::SHA512,
        _ => &digest::SHA256,
    };
    digest::digest(alg, cert).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credentials;

    fn settings(pairs: &[(&str, &str)]) -> Conninfo {
        let mut auth = Credentials::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "sslmode" => auth.sslmode = v,
                "sslrootcert" => auth.sslrootcert = v,
                "sslcert" => auth.sslcert = v,
                "sslkey" => auth.sslkey = v,
                "gssencmode" => auth.gssencmode = v,
                "channel_binding" => auth.channel_binding = v,
                "sslnegotiation" => auth.sslnegotiation = v,
                other => panic!("{other}"),
            }
        }
        Conninfo::settings(&auth)
    }

    #[test]
    fn socket_and_disable_use_no_tls() {
        let p = plan(&settings(&[("sslmode", "verify-full")]), true).unwrap();
        assert_eq!(p.mode, SslMode::Disable);
        assert!(p.connector.is_none());
        let p = plan(&settings(&[("sslmode", "disable")]), false).unwrap();
        assert!(p.connector.is_none());
    }

    #[test]
    fn modes_map_as_libpq() {
        let none = "/nonexistent/root.crt";
        let p = plan(&settings(&[("sslrootcert", none)]), false).unwrap();
        assert_eq!(p.mode, SslMode::Prefer, "libpq's default is prefer");
        assert!(p.connector.is_some());
        let p = plan(
            &settings(&[("sslmode", "require"), ("sslrootcert", none)]),
            false,
        )
        .unwrap();
        assert_eq!(p.mode, SslMode::Require);
        for mode in ["verify-ca", "verify-full"] {
            let err = plan(
                &settings(&[("sslmode", mode), ("sslrootcert", none)]),
                false,
            )
            .err()
            .expect("a verifying mode needs a root certificate");
            assert!(err.to_string().contains(none), "{err}");
        }
        for (k, v) in [
            ("sslmode", "sometimes"),
            ("channel_binding", "maybe"),
            ("sslnegotiation", "later"),
            ("gssencmode", "require"),
        ] {
            assert!(plan(&settings(&[(k, v)]), false).is_err(), "{k}={v}");
        }
        let p = plan(&settings(&[("channel_binding", "require")]), true).unwrap();
        assert_eq!(p.channel_binding, BindingMode::Require);
    }

    #[test]
    fn missing_client_certificate_is_skipped_as_libpq_does() {
        let p = plan(
            &settings(&[
                ("sslcert", "/nonexistent/c.crt"),
                ("sslkey", "/nonexistent/c.key"),
            ]),
            false,
        )
        .unwrap();
        assert!(p.connector.is_some());
    }

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        // A minimal Certificate: SEQUENCE { SEQUENCE {}, SEQUENCE { OID }, BIT STRING }.
        let cert = |oid: &[u8]| {
            let mut alg = vec![0x06, oid.len() as u8];
            alg.extend_from_slice(oid);
            let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
            body.extend_from_slice(&alg);
            body.extend_from_slice(&[0x03, 0x01, 0x00]);
            let mut c = vec![0x30, body.len() as u8];
            c.extend_from_slice(&body);
            c
        };
        assert_eq!(end_point_hash(&cert(SHA384_ECDSA)).len(), 48);
        assert_eq!(end_point_hash(&cert(SHA512_RSA)).len(), 64);
        // ecdsa-with-SHA256 and anything unreadable: SHA-256.
        let sha256_ecdsa = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        assert_eq!(end_point_hash(&cert(&sha256_ecdsa)).len(), 32);
        assert_eq!(end_point_hash(b"junk").len(), 32);
        assert_eq!(signature_algorithm(&cert(SHA384_RSA)), Some(SHA384_RSA));
    }
}
