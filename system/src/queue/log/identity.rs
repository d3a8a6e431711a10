//! The log's identity: 128 random bits in hex, in `log.id`, created once with the log. A
//! store keeps it beside its positions so a position is never applied to another log.

use std::path::Path;

use super::{segment, LogError};
use crate::disk::{Disk, Open, Os};

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

/// Writes the identity beside, syncs it, then links it into place: a link never replaces an
/// existing file, so when two processes race here both end up reading the same identity.
fn create(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    let tmp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    let id = format!("{:032x}", rand::random::<u128>());
    // A leftover of a crash here is overwritten: it was never linked.
    let f = disk.open(&tmp, Open::Create).map_err(LogError::io("write log identity", &tmp))?;
    f.set_len(0).and_then(|_| f.write_all_at(id.as_bytes(), 0)).and_then(|_| f.sync_all()).map_err(LogError::io("write log identity", &tmp))?;
    let linked = disk.hard_link(&tmp, &dir.join(FILE));
    disk.remove_file(&tmp).map_err(LogError::io("remove temporary identity", &tmp))?;
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(LogError::io("link log identity", dir)(e)),
        _ => {}
    }
    segment::sync_dir_on(disk, dir)
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
