//! The libpq keywords of every connection pgpilot makes or writes, built
//! from a `postgresql.authentication.<section>` and a target as Patroni
//! builds them (docs/configuration.md, "postgresql.authentication: libpq
//! settings"): Patroni's `Member.conn_kwargs(auth)` (host, port, dbname of
//! the target, then every key the section sets, `username` as `user`),
//! the defaults of `primary_conninfo_params`, and `format_dsn` (its order of
//! keywords, its escaping, each keyword only from the PostgreSQL version
//! that knows it).
//!
//! The password never goes into a connection string: it is in the pgpass
//! file (`passfile` keyword or `PGPASSFILE`). Paths (`sslcert`, ...) are
//! passed as written, as Patroni passes them: libpq resolves a relative one
//! against the working directory of the process that connects.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Credentials;

use super::conf::conninfo_value;

/// Where a connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
}

/// The keywords a connection string may carry, in the order of Patroni's
/// `format_dsn`; `connect_timeout` (pgpilot's pg_rewind source) last.
const KEYWORDS: &[&str] = &[
    "dbname",
    "user",
    "passfile",
    "host",
    "port",
    "sslmode",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "application_name",
    "krbsrvname",
    "gssencmode",
    "channel_binding",
    "target_session_attrs",
    "sslnegotiation",
    "connect_timeout",
];

/// The libpq settings an authentication section may carry besides the
/// user name and password (Patroni's `_AUTH_ALLOWED_PARAMETERS`).
pub const SECTION_SETTINGS: &[&str] = &[
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];

/// The first `server_version_num` whose libpq knows `keyword` (Patroni's
/// `AUTH_ALLOWED_PARAMETERS_VERSIONS` and `target_session_attrs`); an older
/// server's tools would refuse the whole string.
fn since(keyword: &str) -> u32 {
    match keyword {
        "target_session_attrs" => 100_000,
        "gssencmode" => 120_000,
        "channel_binding" | "sslpassword" => 130_000,
        "sslcrldir" => 140_000,
        "sslnegotiation" => 170_000,
        _ => 0,
    }
}

/// The value of setting `key` in `auth`, if set.
fn section_value<'a>(auth: &'a Credentials, key: &str) -> Option<&'a str> {
    match key {
        "sslmode" => auth.sslmode.as_deref(),
        "sslcert" => auth.sslcert.as_deref(),
        "sslkey" => auth.sslkey.as_deref(),
        "sslpassword" => auth.sslpassword.as_deref(),
        "sslrootcert" => auth.sslrootcert.as_deref(),
        "sslcrl" => auth.sslcrl.as_deref(),
        "sslcrldir" => auth.sslcrldir.as_deref(),
        "gssencmode" => auth.gssencmode.as_deref(),
        "channel_binding" => auth.channel_binding.as_deref(),
        "sslnegotiation" => auth.sslnegotiation.as_deref(),
        _ => None,
    }
}

/// A set of libpq keywords with their values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conninfo {
    values: BTreeMap<&'static str, String>,
}

impl Conninfo {
    /// Only the section's libpq settings (no user, no target): what
    /// pgpilot's own connections take from a section.
    pub fn settings(auth: &Credentials) -> Conninfo {
        let mut c = Conninfo::default();
        for key in SECTION_SETTINGS {
            if let Some(v) = section_value(auth, key) {
                c.set(key, v);
            }
        }
        c
    }

    /// Patroni's `conn_kwargs(auth)`: the target's host, port and dbname,
    /// the section's user and settings.
    pub fn new(auth: &Credentials, target: Target<'_>) -> Conninfo {
        let mut c = Conninfo::settings(auth);
        c.set("host", target.host);
        c.set("port", target.port.to_string());
        c.set("dbname", target.dbname);
        if let Some(u) = &auth.username {
            c.set("user", u.as_str());
        }
        c
    }

    /// Sets `key`, which must be one of `KEYWORDS` (others are never
    /// written out).
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.values.insert(key, value.into());
    }

    /// Sets `key` unless it is set.
    pub fn set_default(&mut self, key: &'static str, value: &str) {
        self.values.entry(key).or_insert_with(|| value.to_owned());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `key=value ...` in Patroni's order and escaping, leaving out the
    /// keywords a server of `version_num` does not know.
    pub fn dsn(&self, version_num: u32) -> String {
        KEYWORDS
            .iter()
            .filter(|k| version_num >= since(k))
            .filter_map(|k| self.get(k).map(|v| format!("{k}={}", conninfo_value(v))))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `primary_conninfo` of a standby of `target` (Patroni's
/// `primary_conninfo_params`): the replication section's settings, the
/// pgpass file, `application_name` = this member, and libpq's defaults made
/// explicit where the section leaves them unset: `sslmode=prefer`,
/// `gssencmode=prefer` (12+), `channel_binding=prefer` (13+),
/// `sslnegotiation=postgres` (17+).
pub fn primary_conninfo(
    replication: &Credentials,
    target: Target<'_>,
    passfile: &Path,
    application_name: &str,
    version_num: u32,
) -> String {
    let mut c = Conninfo::new(replication, target);
    c.set("passfile", passfile.display().to_string());
    c.set("application_name", application_name);
    c.set_default("sslmode", "prefer");
    c.set_default("gssencmode", "prefer");
    c.set_default("channel_binding", "prefer");
    c.set_default("sslnegotiation", "postgres");
    c.dsn(version_num)
}

/// Patroni's `format_dsn(conn_kwargs(auth))` without a password: the
/// section's user and settings for `target` (the password comes from
/// `PGPASSFILE`). With the replication section: what `pg_basebackup
/// --dbname=` gets and the custom replica methods' `--connstring=`
/// (Patroni's `create_replica`); with the superuser's and the local
/// server: the argument of `post_init` (Patroni's `call_post_bootstrap`).
pub fn connection_string(auth: &Credentials, target: Target<'_>, version_num: u32) -> String {
    Conninfo::new(auth, target).dsn(version_num)
}

/// pg_rewind's `--source-server` (Patroni's `Rewind._conn_kwargs`): the
/// rewind credentials' user and settings, `target_session_attrs=read-write`
/// so that only a primary is used, the pgpass file and a connect timeout.
pub fn rewind_source(
    credentials: &Credentials,
    target: Target<'_>,
    passfile: &Path,
    version_num: u32,
) -> String {
    let mut c = Conninfo::new(credentials, target);
    c.set("passfile", passfile.display().to_string());
    c.set("target_session_attrs", "read-write");
    c.set("connect_timeout", "5");
    c.dsn(version_num)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: u32 = 150_000;

    fn target() -> Target<'static> {
        Target {
            host: "10.0.0.1",
            port: 5432,
            dbname: "postgres",
        }
    }

    fn all_settings() -> Credentials {
        Credentials {
            username: Some("rep user".into()),
            password: Some("never-shown".into()),
            sslmode: Some("verify-full".into()),
            sslcert: Some("/etc/pg/rep.crt".into()),
            sslkey: Some("/etc/pg/rep.key".into()),
            sslpassword: Some("key pass".into()),
            sslrootcert: Some("/etc/pg/ca.crt".into()),
            sslcrl: Some("/etc/pg/ca.crl".into()),
            sslcrldir: Some("/etc/pg/crl".into()),
            gssencmode: Some("disable".into()),
            channel_binding: Some("require".into()),
            sslnegotiation: Some("direct".into()),
        }
    }

    #[test]
    fn primary_conninfo_without_settings_is_patronis_default() {
        let auth = Credentials {
            username: Some("rep user".into()),
            password: Some("secret".into()),
            ..Credentials::default()
        };
        let c = primary_conninfo(
            &auth,
            target(),
            Path::new("/var/lib/pg/pgpass"),
            "node-1",
            PG15,
        );
        assert_eq!(
            c,
            "dbname=postgres user=rep\\ user passfile=/var/lib/pg/pgpass host=10.0.0.1 \
port=5432 sslmode=prefer application_name=node-1 gssencmode=prefer channel_binding=prefer"
        );
    }

    #[test]
    fn primary_conninfo_carries_every_setting_in_patronis_order() {
        let c = primary_conninfo(
            &all_settings(),
            target(),
            Path::new("/p/pgpass"),
            "n1",
            170_000,
        );
        assert_eq!(
            c,
            "dbname=postgres user=rep\\ user passfile=/p/pgpass host=10.0.0.1 port=5432 \
sslmode=verify-full sslcert=/etc/pg/rep.crt sslkey=/etc/pg/rep.key sslpassword=key\\ pass \
sslrootcert=/etc/pg/ca.crt sslcrl=/etc/pg/ca.crl sslcrldir=/etc/pg/crl application_name=n1 \
gssencmode=disable channel_binding=require sslnegotiation=direct"
        );
        assert!(!c.contains("never-shown"), "no password in a conninfo");
    }

    #[test]
    fn keywords_a_server_does_not_know_are_left_out() {
        let c = primary_conninfo(&all_settings(), target(), Path::new("/p"), "n1", PG15);
        assert!(c.contains("sslcrldir=/etc/pg/crl"), "{c}");
        assert!(!c.contains("sslnegotiation"), "17+ only: {c}");
        let c = primary_conninfo(&all_settings(), target(), Path::new("/p"), "n1", 130_000);
        assert!(!c.contains("sslcrldir"), "14+ only: {c}");
        assert!(c.contains("sslpassword=") && c.contains("channel_binding=require"));
        let c = primary_conninfo(&all_settings(), target(), Path::new("/p"), "n1", 120_000);
        assert!(!c.contains("sslpassword") && !c.contains("channel_binding"));
        assert!(c.contains("gssencmode=disable"), "{c}");
        let c = rewind_source(&all_settings(), target(), Path::new("/p"), 90_600);
        assert!(!c.contains("target_session_attrs"), "10+ only: {c}");
    }

    #[test]
    fn connection_string_has_no_defaults_and_no_passfile() {
        let auth = Credentials {
            username: Some("replicator".into()),
            sslmode: Some("verify-ca".into()),
            sslcert: Some("certs/rep.crt".into()),
            sslkey: Some("certs/rep.key".into()),
            sslrootcert: Some("certs/ca.crt".into()),
            ..Credentials::default()
        };
        assert_eq!(
            connection_string(&auth, target(), PG15),
            "dbname=postgres user=replicator host=10.0.0.1 port=5432 sslmode=verify-ca \
sslcert=certs/rep.crt sslkey=certs/rep.key sslrootcert=certs/ca.crt",
            "relative paths are passed as written, as Patroni passes them"
        );
        let none = connection_string(&Credentials::default(), target(), PG15);
        assert_eq!(none, "dbname=postgres host=10.0.0.1 port=5432");
    }

    #[test]
    fn rewind_source_asks_for_a_primary() {
        let auth = Credentials {
            username: Some("postgres".into()),
            sslmode: Some("require".into()),
            sslcert: Some("/c/su.crt".into()),
            ..Credentials::default()
        };
        assert_eq!(
            rewind_source(&auth, target(), Path::new("/p/pgpass"), PG15),
            "dbname=postgres user=postgres passfile=/p/pgpass host=10.0.0.1 port=5432 \
sslmode=require sslcert=/c/su.crt target_session_attrs=read-write connect_timeout=5"
        );
    }

    #[test]
    fn settings_only_and_escaping() {
        let c = Conninfo::settings(&all_settings());
        assert_eq!(c.get("user"), None);
        assert_eq!(c.get("host"), None);
        for key in SECTION_SETTINGS {
            assert!(c.get(key).is_some(), "{key} carried");
        }
        let auth = Credentials {
            sslcert: Some("/a b/it's\\x".into()),
            ..Credentials::default()
        };
        let dsn = connection_string(&auth, target(), PG15);
        assert!(dsn.ends_with("sslcert=/a\\ b/it\\'s\\\\x"), "{dsn}");
    }
}
