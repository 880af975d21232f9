//! `patroni.dynamic.json` (docs/configuration.md §9.1): the leader's copy of the applied
//! dynamic configuration in its data directory, from which it restores a
//! missing or invalid `config` key.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::DynamicConfig;

pub const FILE_NAME: &str = "patroni.dynamic.json";

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Write `value` atomically, mode 0600.
pub fn save(data_dir: &Path, value: &Value) -> io::Result<()> {
    crate::atomic_file::write_atomic(&path(data_dir), value.to_string().as_bytes())
}

/// The stored document, if the file exists, is a JSON object and validates.
pub fn load(data_dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    (v.is_object() && DynamicConfig::from_json(&v).is_ok()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn save_and_load() {
        let dir = crate::config::load::tests::TempDir::new("dynjson");
        let dir = dir.0.as_path();
        assert_eq!(load(dir), None);
        let v = serde_json::json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "8MB"}}});
        save(dir, &v).unwrap();
        assert_eq!(load(dir), Some(v));
        let mode = std::fs::metadata(path(dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(dir), r#"{"ttl": "x"}"#).unwrap();
        assert_eq!(load(dir), None);
        std::fs::write(path(dir), "[]").unwrap();
        assert_eq!(load(dir), None);
    }
}
