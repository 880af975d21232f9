//! Where the PostgreSQL programs live.

use std::path::PathBuf;

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

    /// From `postgresql.bin_dir` (an empty string counts as unset).
    pub fn from_config(pg: &Postgresql) -> Self {
        Binaries {
            bin_dir: pg
                .bin_dir
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
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
}
