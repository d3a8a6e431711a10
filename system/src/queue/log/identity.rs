//! The log's identity: 128 random bits in hex, in `log.id`, created once with the log. A
//! store keeps it beside its positions so a position is never applied to another log.

use std::path::Path;

use super::{segment, LogError};
use crate::disk::{Disk, Os};

const FILE: &str = "log.id";

/// Reads the identity, creating the directory and the identity first if they do not exist.
pub fn load_or_create(dir: &Path) -> Result<String, LogError> {
    load_or_create_on(&Os, dir)
}

/// [`load_or_create`] on `disk`.
pub fn load_or_create_on(disk: &dyn Disk, dir: &Path) -> Result<String, LogError> {
    crate::durable_dir::create_all(disk, dir).map_err(LogError::io("create log directory", dir))?;
    let path = dir.join(FILE);
    if !disk.exists(&path) {
        create(disk, dir)?;
    }
    let id = disk.read(&path).map_err(LogError::io("read log identity", &path))?;
    let id = String::from_utf8_lossy(&id);
    let id = id.trim();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LogError::Identity(path));
    }
    Ok(id.to_owned())
}

/// Writes the identity whole: when two processes race here both end up reading the same one.
fn create(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    let id = format!("{:032x}", rand::random::<u128>());
    match crate::durable_dir::write_file(disk, dir, FILE, id.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(LogError::io("write log identity", dir)(e)),
        _ => segment::sync_dir_on(disk, dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("log");
        let id = load_or_create(&log).expect("create");
        assert_eq!(id.len(), 32);
        assert_eq!(load_or_create(&log).expect("load"), id);
        let other = tempfile::tempdir().expect("dir");
        assert_ne!(load_or_create(other.path()).expect("create"), id, "each log its own identity");
    }

    #[test]
    fn a_damaged_identity_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join(FILE), "not an id").expect("write");
        assert!(matches!(load_or_create(dir.path()), Err(LogError::Identity(_))));
    }
}
