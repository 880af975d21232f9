//! `log.dir`: the log file and its rotation, with the semantics of Python's
//! `RotatingFileHandler` that Patroni uses (docs/operations.md, "Logs"):
//! before a line is written, if the file is not empty and the line would
//! bring it to `file_size` bytes or more, `patroni.log.<file_num-1>` moves
//! to `patroni.log.<file_num>` (the oldest is dropped) … `patroni.log`
//! moves to `patroni.log.1`, and a new `patroni.log` is opened. A
//! `file_size` or `file_num` of 0 never rotates (Python's rule). The file is
//! opened for appending, so a restart continues it, and gets `log.mode` at
//! every open (Patroni's `PatroniFileHandler._open`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file name in `log.dir`: Patroni's (its logger's module name), so that
/// a log shipper set up for Patroni finds pgpilot's file where it looked.
pub const FILE_NAME: &str = "patroni.log";

/// The rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// `log.file_size`: bytes that trigger a rotation (0: never).
    pub max_bytes: u64,
    /// `log.file_num`: rotated files kept beside the current one.
    pub backups: u64,
    /// `log.mode`: permissions set at each open (None: the umask's).
    pub mode: Option<u32>,
}

/// The open log file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

impl RotatingFile {
    /// Open (append to) `<dir>/patroni.log`.
    pub fn open(dir: &Path, rotation: Rotation) -> io::Result<RotatingFile> {
        let path = dir.join(FILE_NAME);
        let file = open(&path, rotation.mode)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file,
            size,
            rotation,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory this file is in.
    pub fn dir(&self) -> Option<&Path> {
        self.path.parent()
    }

    /// New settings for the same file (a reload): applied from the next
    /// line on; a new mode is set at once, as Patroni sets it on the next
    /// open and pgpilot's file stays open across reloads.
    pub fn set_rotation(&mut self, rotation: Rotation) -> io::Result<()> {
        if let Some(m) = rotation.mode
            && rotation.mode != self.rotation.mode
        {
            fs::set_permissions(&self.path, fs::Permissions::from_mode(m))?;
        }
        self.rotation = rotation;
        Ok(())
    }

    /// Write one line (with its newline), rotating first when it would
    /// overflow the file.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        let Rotation {
            max_bytes, backups, ..
        } = self.rotation;
        if max_bytes > 0 && backups > 0 && self.size > 0 && self.size + len >= max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |i: u64| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        for i in (1..self.rotation.backups).rev() {
            let from = numbered(i);
            if from.exists() {
                fs::rename(&from, numbered(i + 1))?;
            }
        }
        fs::rename(&self.path, numbered(1))?;
        self.file = open(&self.path, self.rotation.mode)?;
        self.size = 0;
        Ok(())
    }
}

fn open(path: &Path, mode: Option<u32>) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode.unwrap_or(0o666))
        .open(path)?;
    if let Some(m) = mode {
        // The mode of a file that already existed, and not masked by the
        // umask: Patroni's chmod after each open.
        fs::set_permissions(path, fs::Permissions::from_mode(m))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().expect("meta").len(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_like_rotating_file_handler() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rotation = Rotation {
            max_bytes: 25,
            backups: 2,
            mode: Some(0o640),
        };
        let mut f = RotatingFile::open(dir.path(), rotation).expect("open");
        // 9 bytes a line: two lines fit (18 < 25), the third rotates
        // (18 + 9 >= 25).
        for i in 0..7 {
            f.write_line(format!("line {i:03}\n").as_bytes())
                .expect("write");
        }
        let got = files(dir.path());
        assert_eq!(
            got,
            [
                ("patroni.log".to_owned(), 9),
                ("patroni.log.1".to_owned(), 18),
                ("patroni.log.2".to_owned(), 18),
            ]
        );
        let newest = fs::read_to_string(dir.path().join("patroni.log")).expect("read");
        assert_eq!(newest, "line 006\n");
        let older = fs::read_to_string(dir.path().join("patroni.log.2")).expect("read");
        assert_eq!(older, "line 002\nline 003\n", "the oldest file was dropped");
        let mode = fs::metadata(dir.path().join("patroni.log"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_long_line_goes_into_an_empty_file_and_zero_never_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = RotatingFile::open(
            dir.path(),
            Rotation {
                max_bytes: 5,
                backups: 1,
                mode: None,
            },
        )
        .expect("open");
        f.write_line(b"much longer than five\n").expect("write");
        assert_eq!(files(dir.path()).len(), 1, "an empty file never rotates");
        f.write_line(b"next\n").expect("write");
        assert_eq!(files(dir.path()).len(), 2);
        f.set_rotation(Rotation {
            max_bytes: 5,
            backups: 0,
            mode: None,
        })
        .expect("set");
        for _ in 0..3 {
            f.write_line(b"more lines\n").expect("write");
        }
        assert_eq!(files(dir.path()).len(), 2, "file_num 0: no rotation");
    }

    #[test]
    fn reopening_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Rotation {
            max_bytes: 0,
            backups: 4,
            mode: None,
        };
        RotatingFile::open(dir.path(), r)
            .expect("open")
            .write_line(b"a\n")
            .expect("write");
        let mut f = RotatingFile::open(dir.path(), r).expect("open");
        f.write_line(b"b\n").expect("write");
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).expect("read");
        assert_eq!(text, "a\nb\n");
    }
}
