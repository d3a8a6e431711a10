//! Segment files: `<first offset, 20 digits>.seg` in the log's directory, so a sorted listing
//! is the log in order and a record's offset is its segment's name plus its index in it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::LogError;

const SUFFIX: &str = ".seg";

pub fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}{SUFFIX}"))
}

/// The first offsets of the segments in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(LogError::io("list segments", dir))? {
        let entry = entry.map_err(LogError::io("list segments", dir))?;
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)).and_then(|n| n.parse().ok()) else { continue };
        bases.push(base);
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Creates an empty segment and makes its name durable: a file whose directory entry was
/// never synced can vanish at a power cut with every record fsync'd into it.
pub fn create(dir: &Path, base: u64) -> Result<File, LogError> {
    let file = create_file(dir, base)?;
    sync_dir(dir)?;
    Ok(file)
}

/// Creates an empty segment whose name is not durable yet: the caller syncs the directory.
pub fn create_file(dir: &Path, base: u64) -> Result<File, LogError> {
    let p = path(dir, base);
    OpenOptions::new().create_new(true).write(true).open(&p).map_err(LogError::io("create segment", &p))
}

/// Opens the newest segment for the appender, which writes at positions it keeps itself.
pub fn open_for_write(dir: &Path, base: u64) -> Result<File, LogError> {
    let p = path(dir, base);
    OpenOptions::new().write(true).open(&p).map_err(LogError::io("open segment", &p))
}

pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    crate::durable_dir::sync(dir).map_err(LogError::io("sync directory", dir))
}

/// Deletes every segment whose records all lie at or before `through`; never the newest,
/// which the appender writes. Returns how many were deleted.
pub fn delete_through(dir: &Path, through: u64) -> Result<usize, LogError> {
    let bases = list(dir)?;
    let mut deleted = 0;
    for pair in bases.windows(2) {
        // A segment ends just before the next one begins.
        if pair[1] - 1 > through {
            break;
        }
        let p = path(dir, pair[0]);
        std::fs::remove_file(&p).map_err(LogError::io("delete segment", &p))?;
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
            create(dir.path(), base).expect("create");
        }
        std::fs::write(dir.path().join("log.id"), "x").expect("other file");
        assert_eq!(list(dir.path()).expect("list"), [1, 51, 101]);
        assert_eq!(delete_through(dir.path(), 49).expect("delete"), 0, "segment 1 still holds offset 50");
        assert_eq!(delete_through(dir.path(), 50).expect("delete"), 1);
        assert_eq!(delete_through(dir.path(), 10_000).expect("delete"), 1, "the newest segment stays");
        assert_eq!(list(dir.path()).expect("list"), [101]);
    }

    #[test]
    fn a_segment_is_never_created_twice() {
        let dir = tempfile::tempdir().expect("dir");
        create(dir.path(), 1).expect("create");
        assert!(create(dir.path(), 1).is_err());
    }
}
