//! OpenSSL's purpose check of an end-entity certificate (`X509_check_purpose`
//! with `sslclient` / `sslserver`): its key usage and extended key usage,
//! when present, must allow the TLS role. webpki makes this check for the
//! certificates it accepts; `crate::tls` needs it for the one it does not
//! (a trusted certificate used as its own end entity), so that what OpenSSL,
//! and so Patroni, refuses there stays refused (docs/configuration.md §3.1).
//!
//! A minimal DER reader: Certificate -> tbsCertificate -> `[3]` extensions;
//! anything it cannot read counts as not allowed.

/// The TLS role a certificate is presented for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A client certificate (`sslclient`).
    Client,
    /// A server certificate (`sslserver`).
    Server,
}

/// `id-ce-keyUsage`, 2.5.29.15.
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// `id-ce-extKeyUsage`, 2.5.29.37.
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// `id-kp-serverAuth`, 1.3.6.1.5.5.7.3.1.
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// `id-kp-clientAuth`, 1.3.6.1.5.5.7.3.2.
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

// Key usage bits, as the first byte of the BIT STRING carries them.
const DIGITAL_SIGNATURE: u8 = 0x80;
const KEY_ENCIPHERMENT: u8 = 0x20;
const KEY_AGREEMENT: u8 = 0x08;

/// Does `cert` (DER) allow `purpose`, as OpenSSL's check does? Without a
/// key usage or extended key usage extension: yes. With key usage: a client
/// needs digitalSignature or keyAgreement, a server also keyEncipherment.
/// With extended key usage: clientAuth, or serverAuth (anyExtendedKeyUsage
/// does not count, as in OpenSSL).
pub fn allows(cert: &[u8], purpose: Purpose) -> bool {
    let Some(exts) = extensions(cert) else {
        return false;
    };
    let mut rest = exts;
    while !rest.is_empty() {
        let Some((0x30, ext, after)) = tlv(rest) else {
            return false;
        };
        rest = after;
        let Some((0x06, oid, mut fields)) = tlv(ext) else {
            return false;
        };
        // `critical` (BOOLEAN) is optional; the value is an OCTET STRING.
        if let Some((0x01, _, after)) = tlv(fields) {
            fields = after;
        }
        let Some((0x04, value, _)) = tlv(fields) else {
            return false;
        };
        let ok = if oid == KEY_USAGE {
            key_usage_allows(value, purpose)
        } else if oid == EXT_KEY_USAGE {
            ext_key_usage_allows(value, purpose)
        } else {
            true
        };
        if !ok {
            return false;
        }
    }
    true
}

fn key_usage_allows(value: &[u8], purpose: Purpose) -> bool {
    // BIT STRING: unused-bits byte, then the bits (bit 0 is 0x80 of the
    // first byte). An empty one sets nothing.
    let Some((0x03, bits, _)) = tlv(value) else {
        return false;
    };
    let first = bits.get(1).copied().unwrap_or(0);
    let needed = match purpose {
        Purpose::Client => DIGITAL_SIGNATURE | KEY_AGREEMENT,
        Purpose::Server => DIGITAL_SIGNATURE | KEY_ENCIPHERMENT | KEY_AGREEMENT,
    };
    first & needed != 0
}

fn ext_key_usage_allows(value: &[u8], purpose: Purpose) -> bool {
    let Some((0x30, mut oids, _)) = tlv(value) else {
        return false;
    };
    let wanted = match purpose {
        Purpose::Client => CLIENT_AUTH,
        Purpose::Server => SERVER_AUTH,
    };
    while !oids.is_empty() {
        let Some((0x06, oid, after)) = tlv(oids) else {
            return false;
        };
        if oid == wanted {
            return true;
        }
        oids = after;
    }
    false
}

/// The content of the `[3]` extensions of a certificate (the SEQUENCE's
/// content), empty when it has none.
fn extensions(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, mut tbs, _) = tlv(cert)? else {
        return None;
    };
    while !tbs.is_empty() {
        let (tag, content, after) = tlv(tbs)?;
        if tag == 0xa3 {
            let (0x30, exts, _) = tlv(content)? else {
                return None;
            };
            return Some(exts);
        }
        tbs = after;
    }
    Some(&[])
}

/// One DER element: `(tag, content, rest)`. Single-byte tags, definite
/// lengths of up to four bytes.
pub(crate) fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let (bytes, after) = input.split_at(n);
        input = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if input.len() < len {
        return None;
    }
    let (content, rest) = input.split_at(len);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
        crate::tls::load_certs("c", &path)
            .unwrap()
            .remove(0)
            .to_vec()
    }

    /// The same answers as `openssl verify -purpose sslclient|sslserver`
    /// (and Python's `ssl`) for the fixtures.
    #[test]
    fn as_openssl_decides() {
        for (name, client, server) in [
            // `openssl req -x509` defaults: no key usage, no EKU.
            ("server.crt", true, true),
            ("selfsigned-other.crt", true, true),
            // extendedKeyUsage=serverAuth
            ("selfsigned-serverauth.crt", false, true),
            // keyUsage=keyCertSign,cRLSign
            ("selfsigned-certsign.crt", false, false),
        ] {
            let d = der(name);
            assert_eq!(allows(&d, Purpose::Client), client, "{name} client");
            assert_eq!(allows(&d, Purpose::Server), server, "{name} server");
        }
    }

    #[test]
    fn unreadable_is_not_allowed() {
        assert!(!allows(&[], Purpose::Client));
        assert!(!allows(&[0x30, 0x05, 0x30], Purpose::Server));
        let d = der("server.crt");
        assert!(!allows(&d[..d.len() / 2], Purpose::Client));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(
            tlv(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(tlv(&long).map(|(_, c, _)| c.len()), Some(0x80));
        assert_eq!(tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(tlv(&[0x04, 0x02, 0xaa]), None);
    }
}
