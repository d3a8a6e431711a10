//! Directory entries that survive a power cut.
//!
//! A file's fsync makes its data durable, not its name: under strict POSIX semantics a created,
//! linked, renamed or removed entry, and a new directory itself, is durable only once the
//! directory holding it has been synced. ext4 and XFS usually persist such entries with the
//! next file sync, but nothing promises it, and a data directory whose entries vanish at the
//! first cut takes every acknowledged event with it.

use std::path::{Path, PathBuf};

use crate::disk::Disk;

/// Creates `dir` and any missing parents, syncing the parent of each one created, so the
/// whole path survives a power cut. Directories that exist already are left as they are.
pub fn create_all(disk: &dyn Disk, dir: &Path) -> std::io::Result<()> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !disk.exists(d)) {
        missing.push(d.to_owned());
        at = d.parent();
    }
    for d in missing.iter().rev() {
        match disk.create_dir(d) {
            Ok(()) => {}
            // Another process (a server and a worker starting together) made it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !crate::holes::open(crate::holes::Hole::UnsyncedDirectories) {
            disk.sync_dir(parent_of(d))?;
        }
    }
    Ok(())
}

fn parent_of(p: &Path) -> &Path {
    match p.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Os;

    #[test]
    fn creates_every_missing_level_and_accepts_an_existing_one() {
        let root = tempfile::tempdir().expect("dir");
        let deep = root.path().join("a/b/c");
        create_all(&Os, &deep).expect("create");
        assert!(deep.is_dir());
        create_all(&Os, &deep).expect("existing");
        let file = root.path().join("a/file");
        std::fs::write(&file, b"x").expect("write");
        assert!(create_all(&Os, &file.join("below")).is_err(), "a file in the path is an error");
    }
}
