//! Where the PostgreSQL programs live.

use std::path::{Path, PathBuf};

use crate::config::Postgresql;

/// The directory of the PostgreSQL programs; `None` means "look them up in
/// `PATH`" (the bare program name is returned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binaries {
    pub bin_dir: Option<PathBuf>,
}

impl Binaries {
    pub fn new(bin_dir: Option<PathBuf>) -> Self {
        Binaries { bin_dir }
    }

    /// From `postgresql.bin_dir` (an empty string counts as unset). Unset,
    /// the directory that really holds the `postgres` found in `PATH` (a
    /// symlink such as `/usr/local/bin/postgres` is followed, since its
    /// siblings pg_controldata, pg_basebackup... may not be linked there), else
    /// the newest Debian `/usr/lib/postgresql/<major>/bin`.
    pub fn from_config(pg: &Postgresql) -> Self {
        Binaries::from_bin_dir(pg.bin_dir.as_deref())
    }

    /// [`Binaries::from_config`] of a `bin_dir` setting.
    pub fn from_bin_dir(bin_dir: Option<&str>) -> Self {
        let configured = bin_dir.filter(|s| !s.is_empty()).map(PathBuf::from);
        Binaries {
            bin_dir: configured
                .or_else(server_dir_in_path)
                .or_else(|| debian_bin_dir(Path::new("/usr/lib/postgresql"))),
        }
    }

    /// Path of the program `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    pub fn pg_ctl(&self) -> PathBuf {
        self.path("pg_ctl")
    }
    pub fn initdb(&self) -> PathBuf {
        self.path("initdb")
    }
    pub fn postgres(&self) -> PathBuf {
        self.path("postgres")
    }
    pub fn pg_basebackup(&self) -> PathBuf {
        self.path("pg_basebackup")
    }
    pub fn pg_controldata(&self) -> PathBuf {
        self.path("pg_controldata")
    }
    pub fn pg_rewind(&self) -> PathBuf {
        self.path("pg_rewind")
    }
    pub fn pg_isready(&self) -> PathBuf {
        self.path("pg_isready")
    }
}

fn server_dir_in_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("postgres"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The `bin` directory of the highest PostgreSQL major version installed
/// under `root` (Debian's layout), if any.
fn debian_bin_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .max_by_key(|(m, _)| *m)
        .map(|(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let b = Binaries::new(Some("/usr/lib/postgresql/15/bin".into()));
        assert_eq!(
            b.initdb(),
            PathBuf::from("/usr/lib/postgresql/15/bin/initdb")
        );
        let p = Binaries::default();
        assert_eq!(p.pg_ctl(), PathBuf::from("pg_ctl"));
        assert_eq!(p.pg_isready(), PathBuf::from("pg_isready"));
    }

    #[test]
    fn picks_the_newest_major_with_a_server() {
        let root = std::env::temp_dir().join(format!("pgpilot-bins-{}", std::process::id()));
        for (v, with_server) in [("13", true), ("15", true), ("16", false)] {
            let bin = root.join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if with_server {
                std::fs::write(bin.join("postgres"), "").unwrap();
            }
        }
        assert_eq!(debian_bin_dir(&root), Some(root.join("15").join("bin")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
