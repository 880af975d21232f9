//! Files written whole or not at all: the data directory's configuration
//! files, `patroni.dynamic.json`, the fence's heartbeat. Shared by the
//! modules that write them, so none has to reach into another for it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same
/// directory (fsync, mode 0600, rename), so a reader never sees half a file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_whole(path, contents, true)
}

/// [`write_atomic`] without the fsync: for files that only processes of
/// this boot read (the fence's heartbeat carries the boot id, and an order
/// from before a crash of the machine counts for nothing), where the page
/// cache both processes share is all that matters. The HA loop rewrites
/// the heartbeat every cycle; an fsync each time bought nothing.
pub fn write_replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_whole(path, contents, false)
}

fn write_whole(path: &Path, contents: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(contents)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
