//! Directory entries that survive a power cut.
//!
//! A file's fsync makes its data durable, not its name: under strict POSIX semantics a created,
//! linked, renamed or removed entry, and a new directory itself, is durable only once the
//! directory holding it has been synced. ext4 and XFS usually persist such entries with the
//! next file sync, but nothing promises it, and a data directory whose entries vanish at the
//! first cut takes every acknowledged event with it.

use std::path::{Path, PathBuf};

use crate::disk::{Disk, Open};

/// Creates `dir` and any missing parents, then syncs the parent of every level, so the
/// whole path survives a power cut. Every level, not only those created now: a directory made
/// by an earlier attempt whose parent's sync failed exists but is not durable, and nothing
/// else would ever sync its entry.
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
    }
    if crate::holes::open(crate::holes::Hole::UnsyncedDirectories) {
        return Ok(());
    }
    for level in dir.ancestors().filter(|d| !d.as_os_str().is_empty() && d.parent().is_some()) {
        disk.sync_dir(parent_of(level))?;
    }
    Ok(())
}

/// Writes `dir/name` whole or not at all, durably: the bytes go to a temporary file that is
/// synced and then linked into place, and the directory is synced. A link never replaces a
/// file: if `name` exists the result is `AlreadyExists` and the existing file stays, so when
/// two processes race here both read the same content afterwards.
pub fn write_file(disk: &dyn Disk, dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    // A leftover of a crash here is overwritten: it was never linked.
    let f = disk.open(&tmp, Open::Create)?;
    let written = f.set_len(0).and_then(|_| f.write_all_at(bytes, 0)).and_then(|_| f.sync_all());
    let linked = written.and_then(|_| disk.hard_link(&tmp, &dir.join(name)));
    let removed = disk.remove_file(&tmp);
    linked.and(removed)?;
    disk.sync_dir(dir)
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
    fn a_file_is_written_whole_and_never_replaced() {
        let dir = tempfile::tempdir().expect("dir");
        write_file(&Os, dir.path(), "f", b"first").expect("write");
        let again = write_file(&Os, dir.path(), "f", b"second").expect_err("exists");
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(dir.path().join("f")).expect("read"), b"first");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "no temporary file left");
    }

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
