//! HTTPS for the REST API (rustls with the *ring* provider): loading PEM
//! certificates and keys with errors that name the configuration key and
//! the path, the server side (a certificate and a client verifier that a
//! reload swaps in place), and the client side (peers, `pgpilotctl`).
//!
//! reqwest is built with `rustls-no-provider`, so a client built without a
//! preconfigured TLS setup needs a process-wide provider:
//! [`install_provider`] installs ring's (idempotent). Every client built
//! here gets its rustls configuration explicitly.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::config::{Config, RestApi};
use crate::sync;
use crate::x509_usage::Purpose;

/// What is wrong with a TLS file or setting. Every message names the
/// configuration key and the path (operators read them in `--validate`, the
/// log of a reload and the daemon's exit).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {error}")]
    Read {
        key: String,
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{key}: {path}: not a valid PEM file ({error})")]
    Pem {
        key: String,
        path: String,
        #[source]
        error: pem::Error,
    },
    #[error("{key}: {path}: no certificate found (expected PEM `BEGIN CERTIFICATE`)")]
    NoCertificate { key: String, path: String },
    #[error(
        "{key}: {path}: no private key found (expected PEM `BEGIN PRIVATE KEY`, \
         `BEGIN ENCRYPTED PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)"
    )]
    NoPrivateKey { key: String, path: String },
    /// OpenSSL's legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`).
    #[error(
        "{key}: {path}: the private key is encrypted in OpenSSL's legacy PEM format \
         (`Proc-Type: 4,ENCRYPTED`), which pgpilot cannot read: convert it to \
         encrypted PKCS#8 (`openssl pkcs8 -topk8 -v2 aes-256-cbc -in {path} \
         -out <new file>`) and keep {}, or store it unencrypted \
         (`openssl pkey -in {path} -out <new file>`, mode 0600)",
        password_key(key)
    )]
    LegacyEncryptedPem { key: String, path: String },
    #[error(
        "{key}: {path}: the private key is encrypted and {} is not set",
        password_key(key)
    )]
    NoPassword { key: String, path: String },
    #[error("{key}: {path}: not a valid encrypted PKCS#8 PEM key ({reason})")]
    BadEncryptedPem {
        key: String,
        path: String,
        reason: String,
    },
    /// Not PKCS#5 at all (PKCS#12 schemes such as `-v1 PBE-SHA1-3DES`).
    #[error(
        "{key}: {path}: unsupported or invalid encrypted PKCS#8 key ({reason}): {PBES2_ONLY} \
         `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {path} -out <new file>`"
    )]
    BadEncryptedKey {
        key: String,
        path: String,
        reason: String,
    },
    /// PKCS#5, but not PBES2 with PBKDF2 or scrypt and AES.
    #[error(
        "{key}: {path}: unsupported key encryption ({reason}): {PBES2_ONLY} \
         `openssl pkcs8 -topk8 -v2 aes-256-cbc -in {path} -out <new file>`"
    )]
    UnsupportedEncryption {
        key: String,
        path: String,
        reason: String,
    },
    #[error(
        "{key}: {path}: cannot decrypt the private key with {} (wrong password?): {reason}",
        password_key(key)
    )]
    CannotDecrypt {
        key: String,
        path: String,
        reason: String,
    },
    #[error("{key}: {path}: the private key does not match the certificate of {certfile}")]
    KeyMismatch {
        key: String,
        path: String,
        certfile: String,
    },
    #[error("{key}: {path}: unusable private key ({error})")]
    UnusableKey {
        key: String,
        path: String,
        #[source]
        error: rustls::Error,
    },
    #[error("{key}: {path}: no usable CA certificate")]
    NoCaCertificate { key: String, path: String },
    #[error("restapi.cafile: required when restapi.verify_client is optional or required")]
    NoCafile,
    #[error("restapi.cafile: {path}: {error}")]
    ClientVerifier {
        path: String,
        #[source]
        error: rustls::server::VerifierBuilderError,
    },
    /// A reload found `restapi.certfile` gone.
    #[error("restapi.certfile: removed; HTTPS stays on until a restart")]
    CertfileRemoved,
    /// The client certificate and key were refused together.
    #[error("{section}.certfile: {path}: {error}")]
    ClientCertificate {
        section: String,
        path: String,
        #[source]
        error: rustls::Error,
    },
    #[error("no system CA certificates found ({reason}); set ctl.cacert or use -k")]
    NoSystemRoots { reason: String },
    /// rustls refused a configuration built here (a bug, not the user's).
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    ServerVerifier(rustls::server::VerifierBuilderError),
}

/// The crypto provider of every TLS configuration built here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process-wide rustls provider, which `reqwest::Client::new()`
/// needs (reqwest is built without one). Call it before building any client;
/// calling it again does nothing.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(key: &str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        key: key.into(),
        path: path.into(),
        error,
    })
}

/// The certificates (PEM `BEGIN CERTIFICATE`) of `path`, at least one.
pub fn load_certs(key: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            key: key.into(),
            path: path.into(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key: key.into(),
            path: path.into(),
        });
    }
    Ok(certs)
}

/// The configuration key of the password that goes with the key file
/// named by `key` (`restapi.keyfile` → `restapi.keyfile_password`; libpq's
/// `sslkey` → `sslpassword`).
fn password_key(key: &str) -> String {
    if let Some(prefix) = key.strip_suffix("sslkey") {
        return format!("{prefix}sslpassword");
    }
    // The zookeeper section's (and exhibitor's) `key` has `key_password`.
    if let Some(prefix) = key.strip_suffix(".key")
        && matches!(prefix, "zookeeper" | "exhibitor")
    {
        return format!("{prefix}.key_password");
    }
    let section = key.split_once('.').map_or(key, |(s, _)| s);
    format!("{section}.keyfile_password")
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
const PBES2_ONLY: &str =
    "pgpilot reads PKCS#8 keys encrypted with PBES2 (PBKDF2 or scrypt, AES); convert it with";

/// Decrypt the first `BEGIN ENCRYPTED PRIVATE KEY` block of `text`
/// (PKCS#8 with PBES2: PBKDF2 or scrypt, AES-CBC or AES-GCM).
fn decrypt_pkcs8(
    key: &str,
    path: &str,
    text: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    use pkcs8::EncryptedPrivateKeyInfoRef;
    use pkcs8::pkcs5::Error as Pkcs5Error;
    let Some(password) = password else {
        return Err(TlsError::NoPassword {
            key: key.into(),
            path: path.into(),
        });
    };
    let invalid = |e: &dyn std::fmt::Display| TlsError::BadEncryptedPem {
        key: key.into(),
        path: path.into(),
        reason: e.to_string(),
    };
    let begin = text.find(ENCRYPTED_BEGIN).unwrap_or(0);
    let end = text[begin..]
        .find(ENCRYPTED_END)
        .map(|i| begin + i + ENCRYPTED_END.len())
        .ok_or_else(|| invalid(&"no END ENCRYPTED PRIVATE KEY line"))?;
    let (_, der) =
        pkcs8::der::pem::decode_vec(&text.as_bytes()[begin..end]).map_err(|e| invalid(&e))?;
    // PKCS#12 schemes (`-v1 PBE-SHA1-3DES`) do not even parse as PKCS#5.
    let info = EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).map_err(|e| {
        TlsError::BadEncryptedKey {
            key: key.into(),
            path: path.into(),
            reason: e.to_string(),
        }
    })?;
    let plain = info.decrypt(password).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(
            Pkcs5Error::AlgorithmParametersInvalid { .. }
            | Pkcs5Error::UnsupportedAlgorithm { .. }
            | Pkcs5Error::NoPbes1CryptSupport,
        ) => TlsError::UnsupportedEncryption {
            key: key.into(),
            path: path.into(),
            reason: e.to_string(),
        },
        _ => TlsError::CannotDecrypt {
            key: key.into(),
            path: path.into(),
            reason: e.to_string(),
        },
    })?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        plain.as_bytes().to_vec(),
    )))
}

/// The private key of `path` (PKCS#8, PKCS#1 or SEC1 PEM). An encrypted
/// PKCS#8 key (`BEGIN ENCRYPTED PRIVATE KEY`) is decrypted with `password`
/// (`<section>.keyfile_password`); OpenSSL's legacy encrypted PEM
/// (`Proc-Type: 4,ENCRYPTED`) is refused with a message saying how to
/// convert it.
pub fn load_key(
    key: &str,
    path: &str,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::LegacyEncryptedPem {
            key: key.into(),
            path: path.into(),
        });
    }
    if text.contains(ENCRYPTED_BEGIN) {
        return decrypt_pkcs8(key, path, &text, password);
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            key: key.into(),
            path: path.into(),
        },
        error => TlsError::Pem {
            key: key.into(),
            path: path.into(),
            error,
        },
    })
}

/// The certificate chain of `<section>.certfile` with its key from
/// `<section>.keyfile`, or from the certificate file when there is no
/// keyfile; the key must match the certificate.
pub fn certified_key(
    section: &str,
    certfile: &str,
    keyfile: Option<&str>,
    password: Option<&str>,
) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(&format!("{section}.certfile"), certfile)?;
    let (kname, kpath) = match keyfile {
        Some(k) => (format!("{section}.keyfile"), k),
        None => (format!("{section}.certfile"), certfile),
    };
    let key = load_key(&kname, kpath, password)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            key: kname,
            path: kpath.into(),
            certfile: certfile.into(),
        },
        error => TlsError::UnusableKey {
            key: kname,
            path: kpath.into(),
            error,
        },
    })
}

/// The trust anchors of a CA file.
pub fn load_roots(key: &str, path: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(load_certs(key, path)?);
    if added == 0 {
        return Err(TlsError::NoCaCertificate {
            key: key.into(),
            path: path.into(),
        });
    }
    Ok(Arc::new(roots))
}

/// `restapi.verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    None,
    Optional,
    Required,
}

impl VerifyClient {
    pub fn of(r: &RestApi) -> VerifyClient {
        match r.verify_client.as_deref() {
            Some("optional") => VerifyClient::Optional,
            Some("required") => VerifyClient::Required,
            _ => VerifyClient::None,
        }
    }
}

/// Is HTTPS on, with client certificates asked for (`verify_client`
/// `optional` or `required`)? Then the unsafe endpoints need one.
pub fn client_cert_required_for_unsafe(r: &RestApi) -> bool {
    r.certfile.is_some() && VerifyClient::of(r) != VerifyClient::None
}

fn client_verifier(r: &RestApi) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mode = VerifyClient::of(r);
    if mode == VerifyClient::None {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let cafile = r.cafile.as_deref().ok_or(TlsError::NoCafile)?;
    let roots = load_roots("restapi.cafile", cafile)?;
    let builder = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
    let builder = if mode == VerifyClient::Optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    let inner = builder.build().map_err(|error| TlsError::ClientVerifier {
        path: cafile.into(),
        error,
    })?;
    Ok(Arc::new(TrustedLeafClientVerifier { inner, roots }))
}

/// Check the TLS files of `restapi` (and `ctl`): every problem, each naming
/// its key and path. Used by configuration validation.
pub fn check_files(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let r = &cfg.restapi;
    if let Some(cert) = &r.certfile {
        if let Err(e) = certified_key(
            "restapi",
            cert,
            r.keyfile.as_deref(),
            r.keyfile_password.as_deref(),
        ) {
            problems.push(e.to_string());
        }
        if let Err(e) = client_verifier(r) {
            problems.push(e.to_string());
        } else if let Some(ca) = &r.cafile
            && VerifyClient::of(r) == VerifyClient::None
            && let Err(e) = load_roots("restapi.cafile", ca)
        {
            problems.push(e.to_string());
        }
    }
    if let Some(ctl) = &cfg.ctl {
        if let Some(ca) = &ctl.cacert
            && let Err(e) = load_roots("ctl.cacert", ca)
        {
            problems.push(e.to_string());
        }
        if let Some(cert) = &ctl.certfile
            && let Err(e) = certified_key(
                "ctl",
                cert,
                ctl.keyfile.as_deref(),
                ctl.keyfile_password.as_deref(),
            )
        {
            problems.push(e.to_string());
        }
    }
    problems
}

// ---------------------------------------------------------- trusted leaf

/// Did webpki refuse the certificate only for being a CA used as an end
/// entity? OpenSSL (and so Patroni, through Python's `ssl`, whose default
/// contexts also set `X509_V_FLAG_PARTIAL_CHAIN`) accepts a certificate
/// that is itself one of the trusted certificates, whatever its basic
/// constraints: the self-signed `CA:TRUE` certificate of `openssl req
/// -x509` used both as the CA file and as the peer's certificate. webpki
/// returns this error only after it parsed the certificate and checked its
/// validity period, so an expired or not yet valid certificate is still
/// refused, as OpenSSL refuses it (docs/configuration.md §3.1).
fn ca_used_as_end_entity(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::Other(o))
            if matches!(o.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
    )
}

/// Is `cert` one of the trusted certificates (the same subject, public key
/// and name constraints as one of `roots`), and do its key usages allow
/// `purpose` as OpenSSL checks them (webpki never got to its extended key
/// usage)? The handshake's signature, checked separately, proves the peer
/// holds that key.
fn is_trusted_itself(cert: &CertificateDer<'_>, roots: &RootCertStore, purpose: Purpose) -> bool {
    webpki::anchor_from_trusted_cert(cert).is_ok_and(|a| roots.roots.contains(&a))
        && crate::x509_usage::allows(cert, purpose)
}

/// webpki's client verification, plus OpenSSL's acceptance of a client
/// certificate that is itself trusted ([`ca_used_as_end_entity`]).
/// Everything else (unknown issuer, expired, no certificate with
/// `verify_client: required`) is refused as before.
#[derive(Debug)]
struct TrustedLeafClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    roots: Arc<RootCertStore>,
}

impl ClientCertVerifier for TrustedLeafClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e)
                if ca_used_as_end_entity(&e)
                    && is_trusted_itself(end_entity, &self.roots, Purpose::Client) =>
            {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// ---------------------------------------------------------------- server

/// The server certificate, swapped by a reload.
#[derive(Debug)]
struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(sync::read(&self.0).clone())
    }
}

/// The client-certificate verifier, swapped by a reload (`cafile`,
/// `verify_client`).
#[derive(Debug)]
struct VerifierSlot(RwLock<Arc<dyn ClientCertVerifier>>);

impl VerifierSlot {
    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        sync::read(&self.0).clone()
    }
}

impl ClientCertVerifier for VerifierSlot {
    fn offer_client_auth(&self) -> bool {
        self.get().offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.get().client_auth_mandatory()
    }
    /// No hints: a client then sends whatever certificate it has.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}

/// The REST API's TLS state: cheap to clone; [`ServerTls::reload`] swaps
/// certificate and client verification under running connections.
#[derive(Debug, Clone)]
pub struct ServerTls {
    cert: Arc<CertSlot>,
    verifier: Arc<VerifierSlot>,
}

impl ServerTls {
    /// `None` when `restapi.certfile` is not set (plain HTTP).
    pub fn from_restapi(r: &RestApi) -> Result<Option<ServerTls>, TlsError> {
        let Some(certfile) = &r.certfile else {
            return Ok(None);
        };
        let key = certified_key(
            "restapi",
            certfile,
            r.keyfile.as_deref(),
            r.keyfile_password.as_deref(),
        )?;
        let verifier = client_verifier(r)?;
        Ok(Some(ServerTls {
            cert: Arc::new(CertSlot(RwLock::new(Arc::new(key)))),
            verifier: Arc::new(VerifierSlot(RwLock::new(verifier))),
        }))
    }

    /// The rustls configuration for the listener (TLS 1.2 and 1.3).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(self.verifier.clone())
            .with_cert_resolver(self.cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Load the files again; on any error keep what runs and say why.
    /// `Ok(true)` when the certificate changed.
    pub fn reload(&self, r: &RestApi) -> Result<bool, TlsError> {
        let Some(fresh) = ServerTls::from_restapi(r)? else {
            return Err(TlsError::CertfileRemoved);
        };
        let new_key = sync::read(&fresh.cert.0).clone();
        let mut key = sync::write(&self.cert.0);
        let changed = key.cert != new_key.cert;
        *key = new_key;
        *sync::write(&self.verifier.0) = fresh.verifier.get();
        Ok(changed)
    }
}

// ---------------------------------------------------------------- clients

/// How a client checks the server's certificate.
#[derive(Debug, Clone)]
pub enum ServerCheck {
    /// Chain to these roots and the host name (a browser's check).
    Full(Arc<RootCertStore>),
    /// Chain to these roots; any host name (Patroni's member-to-member
    /// calls: urllib3 with `assert_hostname=False`).
    ChainOnly(Arc<RootCertStore>),
    /// No check (`ctl.insecure`, `-k`; peers when no CA is configured).
    None,
}

/// Accepts what [`ServerCheck`] says; signatures are always checked. A
/// server certificate that is itself one of the trusted ones is accepted
/// as OpenSSL accepts it ([`ca_used_as_end_entity`]), its host name
/// checked when the check asks for it.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<dyn ServerCertVerifier>>,
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain before the name: a name error means the
        // chain was good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(e)
                if ca_used_as_end_entity(&e)
                    && self
                        .roots
                        .as_ref()
                        .is_some_and(|r| is_trusted_itself(end_entity, r, Purpose::Server)) =>
            {
                if self.check_name {
                    webpki::EndEntityCert::try_from(end_entity)
                        .and_then(|c| c.verify_is_valid_for_subject_name(server_name))
                        .map_err(|_| {
                            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
                        })?;
                }
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The [`Verifier`] of `check`, with `crls` checked along the chain.
fn verifier(
    check: ServerCheck,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<Verifier>, TlsError> {
    let provider = provider();
    let (roots, check_name) = match check {
        ServerCheck::Full(roots) => (Some(roots), true),
        ServerCheck::ChainOnly(roots) => (Some(roots), false),
        ServerCheck::None => (None, false),
    };
    let chain = match &roots {
        Some(roots) => Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .with_crls(crls)
            .build()
            .map_err(TlsError::ServerVerifier)? as Arc<dyn ServerCertVerifier>,
        ),
        None => None,
    };
    Ok(Arc::new(Verifier {
        chain,
        roots,
        check_name,
        provider,
    }))
}

/// The rustls configuration of a PostgreSQL client connection
/// (`crate::postgres::tls_client`): `check` with `crls`, the client
/// certificate already loaded, ALPN `postgresql` (what PostgreSQL 17's
/// direct negotiation requires; older servers ignore it).
pub fn postgres_client_config(
    check: ServerCheck,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier(check, crls)?);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// The rustls configuration of a gRPC client (etcd's v3 API,
/// `crate::dcs::etcd_tls`): `check`, the client certificate already loaded,
/// ALPN `h2` (gRPC servers refuse TLS connections that did not negotiate it).
pub fn h2_client_config(
    check: ServerCheck,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier(check, Vec::new())?);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client certificate: `(section, certfile, keyfile, keyfile_password)`.
pub type ClientIdentity<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

/// The rustls configuration of an HTTPS client.
pub fn client_config(
    check: ServerCheck,
    identity: Option<ClientIdentity<'_>>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier(check, Vec::new())?);
    let mut config = match identity {
        Some((section, cert, key, password)) => {
            let ck = certified_key(section, cert, key, password)?;
            let key = match key {
                Some(k) => load_key(&format!("{section}.keyfile"), k, password)?,
                None => load_key(&format!("{section}.certfile"), cert, password)?,
            };
            builder
                .with_client_auth_cert(ck.cert, key)
                .map_err(|error| TlsError::ClientCertificate {
                    section: section.into(),
                    path: cert.into(),
                    error,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client certificate a node or `pgpilotctl` presents, as Patroni picks
/// it: `ctl.certfile` (with `ctl.keyfile`), else `restapi.certfile` (with
/// `restapi.keyfile`), so a member passes the others' `verify_client`.
pub fn client_identity(cfg: &Config) -> Option<ClientIdentity<'_>> {
    if let Some(ctl) = &cfg.ctl
        && let Some(cert) = &ctl.certfile
    {
        return Some((
            "ctl",
            cert,
            ctl.keyfile.as_deref(),
            ctl.keyfile_password.as_deref(),
        ));
    }
    let r = &cfg.restapi;
    r.certfile.as_deref().map(|cert| {
        (
            "restapi",
            cert,
            r.keyfile.as_deref(),
            r.keyfile_password.as_deref(),
        )
    })
}

/// The CA a client trusts: `ctl.cacert`, else `restapi.cafile`.
pub fn client_ca(cfg: &Config) -> Option<(&'static str, &str)> {
    cfg.ctl
        .as_ref()
        .and_then(|c| c.cacert.as_deref())
        .map(|p| ("ctl.cacert", p))
        .or_else(|| cfg.restapi.cafile.as_deref().map(|p| ("restapi.cafile", p)))
}

/// The TLS configuration of a node's calls to the other members (leader
/// race, failsafe, switchover checks). As Patroni's daemon (PatroniRequest
/// with `insecure=True`): it presents [`client_identity`]; with a CA
/// ([`client_ca`]) it checks the chain but not the host name, without one
/// it does not check the peer's certificate at all.
pub fn peer_client_config(cfg: &Config) -> Result<ClientConfig, TlsError> {
    let check = match client_ca(cfg) {
        Some((key, path)) => ServerCheck::ChainOnly(load_roots(key, path)?),
        None => ServerCheck::None,
    };
    client_config(check, client_identity(cfg))
}

/// The system's trust anchors (SSL_CERT_FILE / SSL_CERT_DIR or the
/// distribution's bundle).
pub fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots {
            reason: found
                .errors
                .first()
                .map(ToString::to_string)
                .unwrap_or_else(|| "empty store".into()),
        });
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_key_names_the_sections_password() {
        assert_eq!(
            super::password_key("restapi.keyfile"),
            "restapi.keyfile_password"
        );
        assert_eq!(super::password_key("ctl.certfile"), "ctl.keyfile_password");
        assert_eq!(super::password_key("sslkey"), "sslpassword");
        assert_eq!(
            super::password_key("zookeeper.key"),
            "zookeeper.key_password"
        );
    }

    use super::*;

    #[test]
    fn verify_client_modes() {
        let mut r: RestApi = serde_json::from_value(serde_json::json!({
            "listen": ":8008", "connect_address": "h:8008"
        }))
        .unwrap();
        assert_eq!(VerifyClient::of(&r), VerifyClient::None);
        assert!(!client_cert_required_for_unsafe(&r));
        r.verify_client = Some("optional".into());
        assert_eq!(VerifyClient::of(&r), VerifyClient::Optional);
        assert!(!client_cert_required_for_unsafe(&r), "plain HTTP");
        r.certfile = Some("/x".into());
        assert!(client_cert_required_for_unsafe(&r));
        r.verify_client = Some("required".into());
        assert_eq!(VerifyClient::of(&r), VerifyClient::Required);
    }

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn reload_keeps_the_running_certificate_on_error() {
        let mut r: RestApi = serde_json::from_value(serde_json::json!({
            "listen": ":8008", "connect_address": "h:8008",
            "certfile": fixture("server.crt"), "keyfile": fixture("server.key"),
        }))
        .unwrap();
        let tls = ServerTls::from_restapi(&r).unwrap().expect("HTTPS on");
        tls.server_config().unwrap();
        let before = tls.cert.0.read().unwrap().cert.clone();
        assert!(!tls.verifier.get().offer_client_auth());
        // Same files: nothing changed.
        assert!(!tls.reload(&r).unwrap());
        // A broken file: refused, the old certificate stays.
        r.certfile = Some(fixture("other.key"));
        let e = tls.reload(&r).unwrap_err().to_string();
        assert!(e.starts_with("restapi.certfile: "), "{e}");
        assert_eq!(tls.cert.0.read().unwrap().cert, before);
        // Client verification switched on by a reload.
        r.certfile = Some(fixture("combined.pem"));
        r.keyfile = None;
        r.cafile = Some(fixture("server.crt"));
        r.verify_client = Some("required".into());
        tls.reload(&r).unwrap();
        assert!(tls.verifier.get().client_auth_mandatory());
        r.verify_client = Some("optional".into());
        tls.reload(&r).unwrap();
        assert!(tls.verifier.get().offer_client_auth());
        assert!(!tls.verifier.get().client_auth_mandatory());
        // Plain HTTP: no TLS state.
        r.certfile = None;
        assert!(ServerTls::from_restapi(&r).unwrap().is_none());
    }

    /// Run a TLS handshake in memory; the first error either side reports.
    fn handshake(
        server: ServerConfig,
        client: ClientConfig,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(Arc::new(server))?;
        fn pump(
            from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
            to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        ) -> Result<(), rustls::Error> {
            let mut buf = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut buf).unwrap();
            }
            let mut rest = &buf[..];
            while !rest.is_empty() {
                to.read_tls(&mut rest).unwrap();
                to.process_new_packets()?;
            }
            Ok(())
        }
        for _ in 0..10 {
            pump(&mut c, &mut s)?;
            pump(&mut s, &mut c)?;
            if !c.is_handshaking() && !s.is_handshaking() {
                // The last flight (the server's verdict on the client's
                // certificate in TLS 1.3) is processed.
                pump(&mut c, &mut s)?;
                return Ok(());
            }
        }
        Err(rustls::Error::General("handshake made no progress".into()))
    }

    fn server(cafile: &str, verify_client: &str) -> ServerConfig {
        let r: RestApi = serde_json::from_value(serde_json::json!({
            "listen": ":8008", "connect_address": "h:8008",
            "certfile": fixture("server.crt"), "keyfile": fixture("server.key"),
            "cafile": fixture(cafile), "verify_client": verify_client,
        }))
        .unwrap();
        ServerTls::from_restapi(&r)
            .unwrap()
            .unwrap()
            .server_config()
            .unwrap()
    }

    fn client_presenting(check: ServerCheck, cert: Option<&str>) -> ClientConfig {
        let cert = cert.map(|c| (fixture(&format!("{c}.crt")), fixture(&format!("{c}.key"))));
        client_config(
            check,
            cert.as_ref()
                .map(|(c, k)| ("test", c.as_str(), Some(k.as_str()), None)),
        )
        .unwrap()
    }

    /// Issue 14 §3: the self-signed `CA:TRUE` certificate of `openssl req
    /// -x509`, used as the server's and the client's certificate and as the
    /// CA file on both sides, passes as it does with OpenSSL (Patroni).
    #[test]
    fn a_trusted_self_signed_ca_certificate_is_accepted_as_end_entity() {
        install_provider();
        let roots = || load_roots("ca", &fixture("server.crt")).unwrap();
        for mode in ["required", "optional"] {
            handshake(
                server("server.crt", mode),
                client_presenting(ServerCheck::Full(roots()), Some("server")),
                "localhost",
            )
            .unwrap();
        }
        // The host name is still checked where it was.
        let e = handshake(
            server("server.crt", "required"),
            client_presenting(ServerCheck::Full(roots()), Some("server")),
            "db.example.com",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            ),
            "{e:?}"
        );
        handshake(
            server("server.crt", "required"),
            client_presenting(ServerCheck::ChainOnly(roots()), Some("server")),
            "db.example.com",
        )
        .unwrap();
    }

    /// What OpenSSL refuses stays refused: a self-signed certificate that
    /// is not the trusted one (same subject, other key), none with
    /// `required`, an expired one, and a server the client does not trust.
    #[test]
    fn untrusted_missing_and_expired_certificates_are_still_refused() {
        install_provider();
        let roots = || load_roots("ca", &fixture("server.crt")).unwrap();
        let e = handshake(
            server("server.crt", "required"),
            client_presenting(ServerCheck::Full(roots()), Some("selfsigned-other")),
            "localhost",
        )
        .unwrap_err();
        // webpki's reason is the CA used as an end entity (it checks that
        // before the issuer); OpenSSL's is the unknown issuer.
        assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
        let e = handshake(
            server("server.crt", "required"),
            client_presenting(ServerCheck::Full(roots()), None),
            "localhost",
        )
        .unwrap_err();
        assert!(matches!(e, rustls::Error::NoCertificatesPresented), "{e:?}");
        // A client trusting another certificate refuses the server.
        let other = load_roots("ca", &fixture("selfsigned-other.crt")).unwrap();
        let e = handshake(
            server("server.crt", "optional"),
            client_presenting(ServerCheck::ChainOnly(other), None),
            "localhost",
        )
        .unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
        // A trusted certificate whose usages OpenSSL refuses for the role:
        // extendedKeyUsage serverAuth only as a client certificate, key
        // usage keyCertSign only on either side.
        for (cert, as_client_ok) in [
            ("selfsigned-serverauth", false),
            ("selfsigned-certsign", false),
        ] {
            let r: RestApi = serde_json::from_value(serde_json::json!({
                "listen": ":8008", "connect_address": "h:8008",
                "certfile": fixture("server.crt"), "keyfile": fixture("server.key"),
                "cafile": fixture(&format!("{cert}.crt")), "verify_client": "required",
            }))
            .unwrap();
            let der = load_certs("c", &fixture(&format!("{cert}.crt")))
                .unwrap()
                .remove(0);
            let got = client_verifier(&r)
                .unwrap()
                .verify_client_cert(&der, &[], UnixTime::now());
            assert_eq!(got.is_ok(), as_client_ok, "{cert}: {got:?}");
        }
        let usage_roots = |c: &str| load_roots("ca", &fixture(&format!("{c}.crt"))).unwrap();
        for (cert, as_server_ok) in [
            ("selfsigned-serverauth", true),
            ("selfsigned-certsign", false),
        ] {
            let der = load_certs("c", &fixture(&format!("{cert}.crt")))
                .unwrap()
                .remove(0);
            let v = Verifier {
                chain: Some(
                    rustls::client::WebPkiServerVerifier::builder_with_provider(
                        usage_roots(cert),
                        provider(),
                    )
                    .build()
                    .unwrap(),
                ),
                roots: Some(usage_roots(cert)),
                check_name: true,
                provider: provider(),
            };
            let name = ServerName::try_from("localhost").unwrap();
            let got = v.verify_server_cert(&der, &[], &name, &[], UnixTime::now());
            assert_eq!(got.is_ok(), as_server_ok, "{cert}: {got:?}");
        }

        // Expired (the fixture is valid until 2126): refused on both sides.
        let year_2200 = UnixTime::since_unix_epoch(std::time::Duration::from_secs(7_258_118_400));
        let cert = load_certs("c", &fixture("server.crt")).unwrap().remove(0);
        let r: RestApi = serde_json::from_value(serde_json::json!({
            "listen": ":8008", "connect_address": "h:8008",
            "certfile": fixture("server.crt"), "keyfile": fixture("server.key"),
            "cafile": fixture("server.crt"), "verify_client": "required",
        }))
        .unwrap();
        let e = client_verifier(&r)
            .unwrap()
            .verify_client_cert(&cert, &[], year_2200)
            .unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{e:?}"
        );
        let chain =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(), provider())
                .build()
                .unwrap();
        let v = Verifier {
            chain: Some(chain),
            roots: Some(roots()),
            check_name: true,
            provider: provider(),
        };
        let name = ServerName::try_from("localhost").unwrap();
        let e = v
            .verify_server_cert(&cert, &[], &name, &[], year_2200)
            .unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{e:?}"
        );
        v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .unwrap();
    }

    #[test]
    fn client_configs() {
        let roots = load_roots("ca", &fixture("server.crt")).unwrap();
        client_config(ServerCheck::Full(roots.clone()), None).unwrap();
        client_config(ServerCheck::ChainOnly(roots), None).unwrap();
        client_config(
            ServerCheck::None,
            Some((
                "ctl",
                &fixture("server.crt"),
                Some(&fixture("server.key")),
                None,
            )),
        )
        .unwrap();
        let e = client_config(
            ServerCheck::None,
            Some((
                "ctl",
                &fixture("server.crt"),
                Some(&fixture("other.key")),
                None,
            )),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("ctl.keyfile: ") && e.contains("does not match"),
            "{e}"
        );
    }

    #[test]
    fn missing_files_name_key_and_path() {
        let e = load_certs("restapi.certfile", "/nonexistent/c.pem").unwrap_err();
        assert!(
            matches!(&e, TlsError::Read { key, path, error }
                if key == "restapi.certfile" && path == "/nonexistent/c.pem"
                    && error.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.starts_with("restapi.certfile: cannot read /nonexistent/c.pem"),
            "{e}"
        );
        let e = load_key("restapi.keyfile", "/nonexistent/k.pem", None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("restapi.keyfile: cannot read"), "{e}");
    }

    #[test]
    fn bad_pem_contents() {
        let dir = std::env::temp_dir().join(format!("pgpilot-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let p = junk.to_str().unwrap();
        let e = load_certs("restapi.certfile", p).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("no certificate found"), "{e}");
        let e = load_key("restapi.keyfile", p, None).unwrap_err();
        assert!(matches!(e, TlsError::NoPrivateKey { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("no private key found"), "{e}");
        let enc = dir.join("enc.pem");
        std::fs::write(
            &enc,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = load_key("restapi.keyfile", enc.to_str().unwrap(), Some("pw"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("restapi.keyfile: ") && e.contains("invalid encrypted PKCS#8"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn encrypted_pkcs8_keys() {
        let plain = load_key("restapi.keyfile", &fixture("server.key"), None).unwrap();
        // PBKDF2 + AES-256-CBC (`openssl pkey -aes256`) and scrypt.
        for f in ["encrypted.key", "encrypted-scrypt.key"] {
            let k = load_key("restapi.keyfile", &fixture(f), Some("secret")).unwrap();
            assert_eq!(k.secret_der(), plain.secret_der(), "{f}");
        }
        // RSA from `openssl genpkey ... -aes-256-cbc`: a key rustls can sign with.
        let rsa = load_key(
            "restapi.keyfile",
            &fixture("encrypted-rsa.key"),
            Some("secret"),
        )
        .unwrap();
        provider().key_provider.load_private_key(rsa).unwrap();
        certified_key(
            "restapi",
            &fixture("server.crt"),
            Some(&fixture("encrypted.key")),
            Some("secret"),
        )
        .unwrap();
        // Certificate and encrypted key in one file.
        certified_key(
            "ctl",
            &fixture("combined-encrypted.pem"),
            None,
            Some("secret"),
        )
        .unwrap();
        // No password, wrong password: the password's key and the file.
        let path = fixture("encrypted.key");
        let e = load_key("restapi.keyfile", &path, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("restapi.keyfile: {path}: "))
                && e.contains("restapi.keyfile_password is not set"),
            "{e}"
        );
        let e = load_key("ctl.keyfile", &path, Some("wrong"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("ctl.keyfile: {path}: "))
                && e.contains("cannot decrypt the private key with ctl.keyfile_password"),
            "{e}"
        );
        // PBES1 (`-v1 PBE-SHA1-3DES`): how to convert.
        let e = load_key(
            "restapi.keyfile",
            &fixture("encrypted-pbes1.key"),
            Some("secret"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unsupported") && e.contains("openssl pkcs8 -topk8"),
            "{e}"
        );
        // OpenSSL's legacy `Proc-Type: 4,ENCRYPTED`: refused, how to convert.
        let e = load_key(
            "restapi.keyfile",
            &fixture("legacy-encrypted.key"),
            Some("secret"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("legacy PEM format") && e.contains("openssl pkcs8 -topk8"),
            "{e}"
        );
    }

    #[test]
    fn reload_with_a_wrong_password_keeps_the_running_key() {
        let mut r: RestApi = serde_json::from_value(serde_json::json!({
            "listen": ":8008", "connect_address": "h:8008",
            "certfile": fixture("server.crt"), "keyfile": fixture("encrypted.key"),
            "keyfile_password": "secret",
        }))
        .unwrap();
        let tls = ServerTls::from_restapi(&r).unwrap().expect("HTTPS on");
        let before = tls.cert.0.read().unwrap().clone();
        r.keyfile_password = Some("wrong".into());
        let e = tls.reload(&r).unwrap_err().to_string();
        assert!(e.contains("restapi.keyfile_password"), "{e}");
        assert!(Arc::ptr_eq(&tls.cert.0.read().unwrap(), &before));
        r.keyfile_password = None;
        let e = tls.reload(&r).unwrap_err().to_string();
        assert!(e.contains("restapi.keyfile_password is not set"), "{e}");
        assert!(Arc::ptr_eq(&tls.cert.0.read().unwrap(), &before));
    }

    /// The checks `config::validate_with` runs through [`check_files`].
    mod validation {
        use super::check_files;
        use crate::config::load::tests::POSTGRES0;
        use crate::config::validate::tests::{cfg, keys};
        use crate::config::{Config, ConfigError};

        fn validate(c: &Config) -> Result<Vec<String>, ConfigError> {
            crate::config::validate::validate_with(c, &[check_files])
        }

        fn fixture(name: &str) -> String {
            format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
        }

        fn tls_errors(c: &Config) -> Vec<String> {
            match validate(c) {
                Ok(_) => vec![],
                Err(e) => e.errors().iter().map(|e| e.to_string()).collect(),
            }
        }

        #[test]
        fn restapi_tls_files() {
            let mut c = cfg(POSTGRES0);
            c.restapi.certfile = Some(fixture("server.crt"));
            c.restapi.keyfile = Some(fixture("server.key"));
            validate(&c).unwrap();
            // The key inside the certificate file.
            c.restapi.certfile = Some(fixture("combined.pem"));
            c.restapi.keyfile = None;
            validate(&c).unwrap();
            // A certificate file without a key and no keyfile.
            c.restapi.certfile = Some(fixture("server.crt"));
            let e = tls_errors(&c);
            assert!(
                e.iter().any(|e| e.contains("restapi.certfile")
                    && e.contains("server.crt")
                    && e.contains("no private key")),
                "{e:?}"
            );
            // Missing file: key and path named.
            c.restapi.certfile = Some("/nonexistent/api.pem".into());
            let err = validate(&c).unwrap_err();
            assert_eq!(keys(&err), ["restapi.certfile"]);
            assert!(err.to_string().contains("/nonexistent/api.pem"), "{err}");
            // A key of another certificate.
            c.restapi.certfile = Some(fixture("server.crt"));
            c.restapi.keyfile = Some(fixture("other.key"));
            let e = tls_errors(&c);
            assert!(
                e.iter()
                    .any(|e| e.contains("restapi.keyfile") && e.contains("does not match")),
                "{e:?}"
            );
            // An encrypted key: decrypted with keyfile_password.
            c.restapi.certfile = Some(fixture("server.crt"));
            c.restapi.keyfile = Some(fixture("encrypted.key"));
            c.restapi.keyfile_password = Some("secret".into());
            validate(&c).unwrap();
            c.restapi.keyfile_password = Some("wrong".into());
            let e = tls_errors(&c);
            assert!(
                e.iter()
                    .any(|e| e.contains("restapi.keyfile: ")
                        && e.contains("restapi.keyfile_password")),
                "{e:?}"
            );
            c.restapi.keyfile_password = None;
            let e = tls_errors(&c);
            assert!(
                e.iter()
                    .any(|e| e.contains("encrypted and restapi.keyfile_password is not set")),
                "{e:?}"
            );
        }

        #[test]
        fn restapi_client_verification() {
            let mut c = cfg(POSTGRES0);
            c.restapi.certfile = Some(fixture("combined.pem"));
            c.restapi.verify_client = Some("required".into());
            let err = validate(&c).unwrap_err();
            assert_eq!(keys(&err), ["restapi.cafile"]);
            c.restapi.cafile = Some(fixture("server.crt"));
            validate(&c).unwrap();
            c.restapi.verify_client = Some("optional".into());
            validate(&c).unwrap();
            c.restapi.cafile = Some(fixture("server.key"));
            let err = validate(&c).unwrap_err();
            assert_eq!(keys(&err), ["restapi.cafile"]);
            c.restapi.verify_client = Some("sometimes".into());
            c.restapi.cafile = Some(fixture("server.crt"));
            let err = validate(&c).unwrap_err();
            assert_eq!(keys(&err), ["restapi.verify_client"]);
            // ciphers: accepted, ignored with a warning.
            c.restapi.verify_client = None;
            c.restapi.ciphers = Some("ECDHE+AESGCM".into());
            let w = validate(&c).unwrap();
            assert!(w.iter().any(|w| w.contains("restapi.ciphers")), "{w:?}");
            // verify_client without HTTPS: a warning.
            let mut c = cfg(POSTGRES0);
            c.restapi.verify_client = Some("required".into());
            let w = validate(&c).unwrap();
            assert!(
                w.iter().any(|w| w.contains("without restapi.certfile")),
                "{w:?}"
            );
        }

        #[test]
        fn ctl_tls_files() {
            let mut c = cfg(POSTGRES0);
            c.ctl = Some(crate::config::Ctl {
                authentication: None,
                insecure: None,
                cacert: Some("/nonexistent/ca.pem".into()),
                certfile: Some(fixture("server.crt")),
                keyfile: Some(fixture("other.key")),
                keyfile_password: None,
            });
            let err = validate(&c).unwrap_err();
            assert_eq!(keys(&err), ["ctl.cacert", "ctl.keyfile"]);
        }
    }
}
