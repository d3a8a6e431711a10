//! Segment files: `<first offset, 20 digits>.seg` in the log's directory, so a sorted listing
//! is the log in order and a record's offset is its segment's name plus its index in it (the
//! record carries it too: [`record`]). A segment starts with [`record::MAGIC`].

use std::path::{Path, PathBuf};

use super::{record, LogError};
use crate::disk::{Disk, DiskFile, Open, Os};

const SUFFIX: &str = ".seg";

pub fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SUFFIX}"))
}

/// The first offsets of the segments in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<u64>, LogError> {
    list_on(&Os, dir)
}

/// [`list`] on `disk`.
pub fn list_on(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>, LogError> {
    let names = disk.list(dir).map_err(LogError::io("list segments", dir))?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| n.to_str()?.strip_suffix(SUFFIX)?.parse().ok()).collect();
    bases.sort_unstable();
    Ok(bases)
}

/// Creates an empty segment and makes its name durable: a file whose directory entry was
/// never synced can vanish at a power cut with every record fsync'd into it.
pub fn create(disk: &dyn Disk, dir: &Path, base: u64) -> Result<Box<dyn DiskFile>, LogError> {
    let file = create_file(disk, dir, base)?;
    sync_dir_on(disk, dir)?;
    Ok(file)
}

/// Creates a segment holding only its magic, neither synced nor with a durable name: the
/// caller syncs the file (its first group does) and the directory.
pub fn create_file(disk: &dyn Disk, dir: &Path, base: u64) -> Result<Box<dyn DiskFile>, LogError> {
    let p = path(dir, base);
    let file = disk.open(&p, Open::CreateNew).map_err(LogError::io("create segment", &p))?;
    if let Err(e) = file.write_all_at(&record::MAGIC, 0) {
        // Left behind, a segment the writer never used would sit among the offsets of the
        // one before it: readers would take it for the next segment, and a later roll to
        // the same offset could never create it.
        drop(file);
        if let Err(gone) = disk.remove_file(&p) {
            return Err(LogError::Failed(format!("write segment header {}: {e}; removing it failed too: {gone}", p.display())));
        }
        return Err(LogError::io("write segment header", &p)(e));
    }
    Ok(file)
}

/// Opens the newest segment for the appender, which writes at positions it keeps itself.
pub fn open_for_write(disk: &dyn Disk, dir: &Path, base: u64) -> Result<Box<dyn DiskFile>, LogError> {
    let p = path(dir, base);
    disk.open(&p, Open::Write).map_err(LogError::io("open segment", &p))
}

pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    sync_dir_on(&Os, dir)
}

/// [`sync_dir`] on `disk`.
pub fn sync_dir_on(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    disk.sync_dir(dir).map_err(LogError::io("sync directory", dir))
}

/// Deletes every segment whose records all lie at or before `through`; never the newest,
/// which the appender writes. Returns how many were deleted.
pub fn delete_through(disk: &dyn Disk, dir: &Path, through: u64) -> Result<usize, LogError> {
    let bases = list_on(disk, dir)?;
    let mut deleted = 0;
    for pair in bases.windows(2) {
        // A segment ends just before the next one begins.
        if pair[1] - 1 > through {
            break;
        }
        let p = path(dir, pair[0]);
        disk.remove_file(&p).map_err(LogError::io("delete segment", &p))?;
        deleted += 1;
    }
    // Not synced: a deleted segment that reappears after a power cut lies behind the
    // consumer's position and goes at the next deletion.
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_offset_order_and_deletes_only_whole_consumed_segments() {
        let dir = tempfile::tempdir().expect("dir");
        for base in [101, 1, 51] {
            create(&Os, dir.path(), base).expect("create");
        }
        std::fs::write(dir.path().join("log.id"), "x").expect("other file");
        assert_eq!(list(dir.path()).expect("list"), [1, 51, 101]);
        assert_eq!(delete_through(&Os, dir.path(), 49).expect("delete"), 0, "segment 1 still holds offset 50");
        assert_eq!(delete_through(&Os, dir.path(), 50).expect("delete"), 1);
        assert_eq!(delete_through(&Os, dir.path(), 10_000).expect("delete"), 1, "the newest segment stays");
        assert_eq!(list(dir.path()).expect("list"), [101]);
    }

    #[test]
    fn a_segment_is_never_created_twice() {
        let dir = tempfile::tempdir().expect("dir");
        create(&Os, dir.path(), 1).expect("create");
        assert!(create(&Os, dir.path(), 1).is_err());
    }
}
