//! Writing copied slot state files into `pg_replslot` (docs/ha.md §13.1).
//! Only while PostgreSQL is stopped: it
//! reads the directory at start-up and owns it while running.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use super::error::{PgError, PgResult};

/// Write `state` as slot `name`'s state file: into
/// `pg_replslot/<name>.tmp/state`, fsynced, then the directory renamed
/// over `pg_replslot/<name>` (an older copy is removed first) and the
/// directories fsynced, as Patroni does: a crash in between leaves either
/// the old slot or the new one, plus a `.tmp` directory PostgreSQL ignores
/// and the next copy replaces. Modes follow the data directory's (group
/// access when it has it, as PostgreSQL's own files).
pub fn write_slot_state(data_dir: &Path, name: &str, state: &[u8]) -> PgResult<()> {
    // The name comes from the configuration and the leader: it must not
    // leave pg_replslot.
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(PgError::InvalidOption(format!(
            "slot name {name:?} is not a plain slot name"
        )));
    }
    let io = |what: &str, e| PgError::io(format!("{what} for slot {name}"), e);
    let group = fs::metadata(data_dir)
        .map(|m| m.permissions().mode() & 0o070 != 0)
        .map_err(|e| io("read the data directory mode", e))?;
    let (dir_mode, file_mode) = if group {
        (0o750, 0o640)
    } else {
        (0o700, 0o600)
    };
    let replslot = data_dir.join("pg_replslot");
    let dir = replslot.join(name);
    let tmp = replslot.join(format!("{name}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io("remove an old temporary directory", e))?;
    }
    fs::DirBuilder::new()
        .mode(dir_mode)
        .create(&tmp)
        .map_err(|e| io("create the temporary directory", e))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file_mode)
        .open(tmp.join("state"))
        .map_err(|e| io("create the state file", e))?;
    f.write_all(state)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write the state file", e))?;
    drop(f);
    fsync_dir(&tmp).map_err(|e| io("fsync the temporary directory", e))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| io("remove the previous copy", e))?;
    }
    fs::rename(&tmp, &dir).map_err(|e| io("rename the temporary directory", e))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(dir_mode))
        .map_err(|e| io("set the directory mode", e))?;
    fsync_dir(&dir).map_err(|e| io("fsync the slot directory", e))?;
    fsync_dir(&replslot).map_err(|e| io("fsync pg_replslot", e))
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir(mode: u32) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(d.path(), fs::Permissions::from_mode(mode)).expect("chmod");
        fs::create_dir(d.path().join("pg_replslot")).expect("pg_replslot");
        d
    }

    #[test]
    fn a_state_file_replaces_the_previous_copy_with_the_data_directory_modes() {
        let d = data_dir(0o700);
        write_slot_state(d.path(), "cdc", b"old").expect("first copy");
        fs::create_dir(d.path().join("pg_replslot/cdc.tmp")).expect("leftover");
        write_slot_state(d.path(), "cdc", b"new").expect("second copy");
        let slot = d.path().join("pg_replslot/cdc");
        assert_eq!(fs::read(slot.join("state")).expect("read"), b"new");
        assert!(!d.path().join("pg_replslot/cdc.tmp").exists());
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&slot), 0o700);
        assert_eq!(mode(&slot.join("state")), 0o600);
        let g = data_dir(0o750);
        write_slot_state(g.path(), "cdc", b"x").expect("copy");
        let slot = g.path().join("pg_replslot/cdc");
        assert_eq!(mode(&slot), 0o750);
        assert_eq!(mode(&slot.join("state")), 0o640);
    }

    #[test]
    fn a_name_that_would_leave_pg_replslot_is_refused() {
        let d = data_dir(0o700);
        for bad in ["", "../x", "a/b", "."] {
            assert!(write_slot_state(d.path(), bad, b"x").is_err(), "{bad:?}");
        }
    }
}
