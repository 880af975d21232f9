//! Test certificates made with the `openssl` command: a CA, a server
//! certificate for 127.0.0.1/localhost (also usable as a client
//! certificate, as members present theirs to each other), a client
//! certificate, and a client certificate from a second, untrusted CA.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgpilot::tls::{ServerCheck, client_config, load_roots};

pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    /// A second server certificate (CN `server2`), for reloads.
    pub server2_cert: PathBuf,
    pub server2_key: PathBuf,
    /// `server_key` as encrypted PKCS#8 (PBES2, AES-256-CBC) with the
    /// password [`KEY_PASSWORD`].
    pub server_key_encrypted: PathBuf,
}

/// The password of [`Certs::server_key_encrypted`].
pub const KEY_PASSWORD: &str = "key-Pa55word";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate `<name>.crt` (CN `name`, key `<name>.key`) signed by `<ca>`, with
/// the extensions `ext` (openssl `-extfile` lines).
pub fn leaf(dir: &Path, name: &str, ca: &str, ext: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// Make the certificates in `dir` (created, world-readable: the daemons run
/// as another user; a real key file would be mode 0600).
pub fn make_certs(dir: &Path) -> Certs {
    fs::create_dir_all(dir).expect("cert dir");
    ca(dir, "ca");
    ca(dir, "rogue-ca");
    let server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
                      keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n";
    leaf(dir, "server", "ca", server_ext);
    leaf(dir, "server2", "ca", server_ext);
    let client_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                      extendedKeyUsage=clientAuth\n";
    leaf(dir, "client", "ca", client_ext);
    leaf(dir, "rogue", "rogue-ca", client_ext);
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "server.key",
            "-passout",
            &format!("pass:{KEY_PASSWORD}"),
            "-out",
            "server.enc.key",
        ],
    );
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    for e in fs::read_dir(dir).expect("read cert dir") {
        let p = e.expect("entry").path();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    Certs {
        dir: dir.to_owned(),
        ca: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        rogue_cert: dir.join("rogue.crt"),
        rogue_key: dir.join("rogue.key"),
        server2_cert: dir.join("server2.crt"),
        server2_key: dir.join("server2.key"),
        server_key_encrypted: dir.join("server.enc.key"),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An HTTPS client trusting the test CA (host name checked), with an
/// optional client certificate `(cert, key)`.
pub fn client(certs: &Certs, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    client_timeout(certs, identity, std::time::Duration::from_secs(5))
}

/// [`client`] with a request timeout.
pub fn client_timeout(
    certs: &Certs,
    identity: Option<(&Path, &Path)>,
    timeout: std::time::Duration,
) -> reqwest::Client {
    pgpilot::tls::install_provider();
    let roots = load_roots("ca", s(&certs.ca)).expect("CA");
    let tls = client_config(
        ServerCheck::Full(roots),
        identity.map(|(c, k)| ("test", s(c), Some(s(k)), None)),
    )
    .expect("client TLS config");
    reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_preconfigured(tls)
        .build()
        .expect("https client")
}

/// The subject of the certificate `127.0.0.1:port` serves (`openssl
/// s_client`), e.g. `subject=CN = server`.
pub fn served_subject(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null \
             | openssl x509 -noout -subject"
        ))
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The `restapi` lines for HTTPS with `verify_client: mode`.
pub fn restapi_yaml(certs: &Certs, verify_client: &str) -> String {
    format!(
        "certfile: {}\nkeyfile: {}\ncafile: {}\nverify_client: {verify_client}",
        s(&certs.server_cert),
        s(&certs.server_key),
        s(&certs.ca)
    )
}
