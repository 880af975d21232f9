//! The data directory and the files pgpilot writes into it
//! (docs/configuration.md §9.1, §9.3). Nothing here ever deletes a data
//! directory: a directory that must go is moved aside.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::conf::{
    PgpassEntry, RecoveryParams, render_pg_hba, render_pgpass, render_postgresql_conf,
};

pub const POSTGRESQL_CONF: &str = "postgresql.conf";
pub const POSTGRESQL_BASE_CONF: &str = "postgresql.base.conf";
pub const PG_HBA_CONF: &str = "pg_hba.conf";
pub const STANDBY_SIGNAL: &str = "standby.signal";
pub const POSTMASTER_PID: &str = "postmaster.pid";

/// True when `dir` is missing or has no entries.
pub fn is_empty(dir: &Path) -> io::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// A base backup whose recovery never began: `backup_label` is still
/// there (PostgreSQL renames it to `backup_label.old` once recovery starts
/// from it). Its control file carries the source's state (`in production`),
/// yet it is no crashed primary: crash recovery on it without
/// `standby.signal` would end recovery and write a checkpoint of its own,
/// and its WAL would no longer match the source it was copied from.
pub fn is_unstarted_base_backup(dir: &Path) -> bool {
    dir.join("backup_label").exists()
}

/// `YYYY-MM-DD-HH-MM-SS` in UTC for the given Unix time.
pub fn timestamp_suffix(unix_secs: u64) -> String {
    let t = crate::ha::iso8601::Utc::from_unix(unix_secs);
    format!(
        "{:04}-{:02}-{:02}-{:02}-{:02}-{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Renames `dir` to `<dir>_<YYYY-MM-DD-HH-MM-SS>` (UTC), adding `.1`, `.2`...
/// if that name is taken, and returns the new path.
pub fn move_aside(dir: &Path) -> io::Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!(
        "{}_{}",
        dir.as_os_str().to_string_lossy().trim_end_matches('/'),
        timestamp_suffix(now)
    );
    let mut target = PathBuf::from(&base);
    let mut n = 0;
    while target.symlink_metadata().is_ok() {
        n += 1;
        target = PathBuf::from(format!("{base}.{n}"));
    }
    fs::rename(dir, &target)?;
    Ok(target)
}

pub use crate::atomic_file::write_atomic;

/// What [`write_config_files`] writes.
#[derive(Debug, Clone)]
pub struct ConfigFiles<'a> {
    pub data_dir: &'a Path,
    /// `postgresql.config_dir` (usually the data directory).
    pub config_dir: &'a Path,
    /// `postgresql.custom_conf`: included instead of postgresql.base.conf.
    pub custom_conf: Option<&'a Path>,
    pub params: &'a BTreeMap<String, String>,
    /// `pg_hba` lines; `None` or empty leaves pg_hba.conf alone. Also left
    /// alone when `hba_file` points somewhere else.
    pub hba_lines: Option<&'a [String]>,
    /// `Some` for a standby: recovery section + `standby.signal`.
    pub recovery: Option<&'a RecoveryParams>,
}

/// Writes postgresql.conf (and pg_hba.conf, standby.signal) and returns the
/// path of postgresql.conf. On the first run the original postgresql.conf
/// becomes postgresql.base.conf (unless `custom_conf` is set); an empty base
/// file is created when neither exists so the include never fails.
pub fn write_config_files(files: &ConfigFiles<'_>) -> io::Result<PathBuf> {
    let conf = files.config_dir.join(POSTGRESQL_CONF);
    let include = match files.custom_conf {
        Some(custom) => custom.display().to_string(),
        None => {
            let base = files.config_dir.join(POSTGRESQL_BASE_CONF);
            if !base.exists() {
                if conf.exists() {
                    fs::rename(&conf, &base)?;
                } else {
                    write_atomic(&base, b"")?;
                }
            }
            POSTGRESQL_BASE_CONF.to_owned()
        }
    };
    let text = render_postgresql_conf(&include, files.params, files.recovery);
    write_atomic(&conf, text.as_bytes())?;

    if let Some(lines) = files.hba_lines.filter(|l| !l.is_empty()) {
        let default_hba = files.config_dir.join(PG_HBA_CONF);
        let ours = files
            .params
            .get("hba_file")
            .is_none_or(|f| Path::new(f) == default_hba);
        if ours {
            write_atomic(&default_hba, render_pg_hba(lines).as_bytes())?;
        }
    }

    let signal = files.data_dir.join(STANDBY_SIGNAL);
    if files.recovery.is_some() {
        if !signal.exists() {
            write_atomic(&signal, b"")?;
        }
    } else {
        match fs::remove_file(&signal) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(conf)
}

/// Writes the pgpass file atomically with mode 0600 (libpq ignores it
/// otherwise).
pub fn write_pgpass(path: &Path, entries: &[PgpassEntry]) -> io::Result<()> {
    write_atomic(path, render_pgpass(entries).as_bytes())
}

/// The first lines of `postmaster.pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostmasterPidFile {
    pub pid: i32,
    pub data_dir: PathBuf,
    /// Start time, seconds since the epoch.
    pub start_epoch: u64,
    pub port: u16,
    /// First socket directory; `None` when unix sockets are off.
    pub socket_dir: Option<PathBuf>,
    pub listen_address: Option<String>,
    /// `starting`, `ready`, `stopping`, `standby` (line 8, PG 10+).
    pub status: Option<String>,
}

/// Parses postmaster.pid text; `None` when it is malformed (e.g. being
/// written).
pub fn parse_postmaster_pid(text: &str) -> Option<PostmasterPidFile> {
    let lines: Vec<&str> = text.lines().collect();
    let pid: i32 = lines.first()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    let non_empty = |i: usize| {
        lines
            .get(i)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Some(PostmasterPidFile {
        pid,
        data_dir: PathBuf::from(lines.get(1)?.trim()),
        start_epoch: lines.get(2)?.trim().parse().ok()?,
        port: lines.get(3)?.trim().parse().ok()?,
        socket_dir: non_empty(4).map(PathBuf::from),
        listen_address: non_empty(5),
        status: non_empty(7),
    })
}

/// Reads `<dir>/postmaster.pid`; `None` if it is missing or unreadable.
pub fn read_postmaster_pid(dir: &Path) -> Option<PostmasterPidFile> {
    let text = fs::read_to_string(dir.join(POSTMASTER_PID)).ok()?;
    parse_postmaster_pid(&text)
}

/// PostgreSQL refuses a data directory with group/other access (unless
/// group access was chosen at initdb: 0750 is accepted too).
pub fn ensure_mode_0700(dir: &Path) -> io::Result<()> {
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 && mode != 0o750 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pgpilot-datadir-{tag}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp_suffix(0), "1970-01-01-00-00-00");
        assert_eq!(timestamp_suffix(1_724_873_966), "2024-08-28-19-39-26");
        assert_eq!(timestamp_suffix(951_782_400), "2000-02-29-00-00-00");
    }

    #[test]
    fn empty_and_move_aside() {
        let root = tempdir("aside");
        let d = root.join("data");
        assert!(is_empty(&d).unwrap());
        fs::create_dir(&d).unwrap();
        assert!(is_empty(&d).unwrap());
        fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        assert!(!is_empty(&d).unwrap());
        let moved = move_aside(&d).unwrap();
        assert!(!d.exists());
        assert!(moved.join("PG_VERSION").exists());
        assert!(moved.to_string_lossy().starts_with(&*d.to_string_lossy()));
        // Same second: still unique.
        fs::create_dir(&d).unwrap();
        let moved2 = move_aside(&d).unwrap();
        assert_ne!(moved, moved2);
        assert!(moved2.exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn config_files_lifecycle() {
        let d = tempdir("conf");
        fs::write(d.join(POSTGRESQL_CONF), "# initdb's\n").unwrap();
        let mut params = BTreeMap::new();
        params.insert("port".to_owned(), "5432".to_owned());
        let hba = vec!["local all all trust".to_owned()];
        let rec = RecoveryParams {
            primary_conninfo: "host=x".into(),
            primary_slot_name: None,
            standby_cluster: Vec::new(),
        };
        let files = ConfigFiles {
            data_dir: &d,
            config_dir: &d,
            custom_conf: None,
            params: &params,
            hba_lines: Some(&hba),
            recovery: Some(&rec),
        };
        let conf = write_config_files(&files).unwrap();
        assert_eq!(
            fs::read_to_string(d.join(POSTGRESQL_BASE_CONF)).unwrap(),
            "# initdb's\n"
        );
        let text = fs::read_to_string(&conf).unwrap();
        assert!(text.contains("include 'postgresql.base.conf'"));
        assert!(text.contains("primary_conninfo = 'host=x'"));
        assert_eq!(
            fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            fs::read_to_string(d.join(PG_HBA_CONF))
                .unwrap()
                .contains("local all all trust")
        );
        assert!(d.join(STANDBY_SIGNAL).exists());

        // Second run: base.conf is kept, standby.signal removed.
        let files = ConfigFiles {
            recovery: None,
            hba_lines: None,
            ..files
        };
        write_config_files(&files).unwrap();
        assert_eq!(
            fs::read_to_string(d.join(POSTGRESQL_BASE_CONF)).unwrap(),
            "# initdb's\n"
        );
        assert!(!d.join(STANDBY_SIGNAL).exists());
        assert!(!fs::read_to_string(&conf).unwrap().contains("recovery"));
        // No leftover temp files.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn custom_conf_is_included_without_rename() {
        let d = tempdir("custom");
        fs::write(d.join(POSTGRESQL_CONF), "x\n").unwrap();
        let params = BTreeMap::new();
        let files = ConfigFiles {
            data_dir: &d,
            config_dir: &d,
            custom_conf: Some(Path::new("/etc/custom.conf")),
            params: &params,
            hba_lines: None,
            recovery: None,
        };
        let conf = write_config_files(&files).unwrap();
        assert!(!d.join(POSTGRESQL_BASE_CONF).exists());
        assert!(
            fs::read_to_string(conf)
                .unwrap()
                .contains("include '/etc/custom.conf'")
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn pgpass_mode() {
        let d = tempdir("pgpass");
        let p = d.join("pgpass");
        write_pgpass(
            &p,
            &[PgpassEntry {
                host: "*".into(),
                port: "5432".into(),
                database: "*".into(),
                user: "u".into(),
                password: "p".into(),
            }],
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "*:5432:*:u:p\n");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn postmaster_pid_file() {
        let text =
            "7316\n/tmp/x/pg\n1795698967\n56499\n/tmp/x/sock\n\n 10010935         4\nready   \n";
        let p = parse_postmaster_pid(text).unwrap();
        assert_eq!(p.pid, 7316);
        assert_eq!(p.data_dir, PathBuf::from("/tmp/x/pg"));
        assert_eq!(p.start_epoch, 1_795_698_967);
        assert_eq!(p.port, 56499);
        assert_eq!(p.socket_dir, Some(PathBuf::from("/tmp/x/sock")));
        assert_eq!(p.listen_address, None);
        assert_eq!(p.status.as_deref(), Some("ready"));
        assert!(parse_postmaster_pid("").is_none());
        assert!(parse_postmaster_pid("12\n").is_none());
        let d = tempdir("pid");
        assert!(read_postmaster_pid(&d).is_none());
        fs::write(d.join(POSTMASTER_PID), text).unwrap();
        assert_eq!(read_postmaster_pid(&d).unwrap().pid, 7316);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_mode_0700(&d).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn backup_label_marks_an_unstarted_base_backup() {
        let d = std::env::temp_dir().join(format!("pgpilot-bl-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert!(!is_unstarted_base_backup(&d));
        std::fs::write(d.join("backup_label.old"), "").unwrap();
        assert!(
            !is_unstarted_base_backup(&d),
            "recovery began: backup_label.old"
        );
        std::fs::write(d.join("backup_label"), "START WAL LOCATION: 0/2000028").unwrap();
        assert!(is_unstarted_base_backup(&d));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
