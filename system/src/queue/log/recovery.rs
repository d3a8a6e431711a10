//! Before the appender starts: find where the log really ends and cut whatever follows.
//!
//! Only the newest segment can hold a torn write: older ones were complete and synced before
//! the next was created. It is read to its first incomplete or corrupt record and cut there,
//! records after a corrupt one included, since nothing beyond it can be trusted in order.
//! Zeros alone after the last record are the appender's preallocation, not damage: kept.

use std::fs::File;
use std::path::Path;

use super::{record, segment, LogError};

/// Where the appender continues.
pub struct Tail {
    /// The newest segment, open for appending at its valid end.
    pub file: File,
    /// Its first offset.
    pub base: u64,
    /// Its valid length in bytes.
    pub len: u64,
    /// Its size: the valid length and any preallocated zeros after it.
    pub allocated: u64,
    /// The offset the next record gets.
    pub next: u64,
}

pub fn recover(dir: &Path) -> Result<Tail, LogError> {
    let Some(&base) = segment::list(dir)?.last() else {
        return Ok(Tail { file: segment::create(dir, 1)?, base: 1, len: 0, allocated: 0, next: 1 });
    };
    let path = segment::path(dir, base);
    let bytes = std::fs::read(&path).map_err(LogError::io("read segment", &path))?;
    let scan = record::scan(&bytes);
    let file = segment::open_for_write(dir, base)?;
    let rest = &bytes[scan.valid_bytes..];
    let mut allocated = bytes.len() as u64;
    if let (Some(why), false) = (scan.stop, rest.iter().all(|&b| b == 0)) {
        tracing::warn!(file = %path.display(), offset = scan.valid_bytes, bytes_cut = rest.len(), why, "cutting the log's tail at recovery");
        file.set_len(scan.valid_bytes as u64)
            .and_then(|_| file.sync_all())
            .map_err(LogError::io("cut segment tail", &path))?;
        allocated = scan.valid_bytes as u64;
    }
    Ok(Tail { file, base, len: scan.valid_bytes as u64, allocated, next: base + scan.records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_records(dir: &Path, base: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            record::encode_into(&mut buf, p);
        }
        std::fs::write(segment::path(dir, base), &buf).expect("write segment");
        buf
    }

    #[test]
    fn an_empty_directory_starts_at_offset_one() {
        let dir = tempfile::tempdir().expect("dir");
        let tail = recover(dir.path()).expect("recover");
        assert_eq!((tail.base, tail.len, tail.next), (1, 0, 1));
        assert_eq!(segment::list(dir.path()).expect("list"), [1]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_records_before_it_kept() {
        let dir = tempfile::tempdir().expect("dir");
        write_records(dir.path(), 1, &[b"a", b"b"]);
        let full = write_records(dir.path(), 3, &[b"c", b"dd", b"eee"]);
        let torn = full.len() - 2;
        std::fs::write(segment::path(dir.path(), 3), &full[..torn]).expect("tear");
        let tail = recover(dir.path()).expect("recover");
        let kept = (2 * record::HEADER + 3) as u64;
        assert_eq!((tail.base, tail.len, tail.next), (3, kept, 5));
        assert_eq!(std::fs::metadata(segment::path(dir.path(), 3)).expect("stat").len(), kept);
    }

    #[test]
    fn zeros_after_the_last_record_are_preallocation_and_stay() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"a", b"bb"]);
        let records = buf.len() as u64;
        buf.resize(4096, 0);
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("preallocate");
        let tail = recover(dir.path()).expect("recover");
        assert_eq!((tail.len, tail.allocated, tail.next), (records, 4096, 3));
        assert_eq!(std::fs::metadata(segment::path(dir.path(), 1)).expect("stat").len(), 4096);
    }

    #[test]
    fn a_torn_write_into_preallocated_zeros_is_cut_with_them() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"a"]);
        let records = buf.len();
        buf.resize(4096, 0);
        buf[records..records + 6].copy_from_slice(&[9, 0, 0, 0, 0xAB, 0xCD]);
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("tear");
        let tail = recover(dir.path()).expect("recover");
        assert_eq!((tail.len, tail.allocated, tail.next), (records as u64, records as u64, 2));
        assert_eq!(std::fs::metadata(segment::path(dir.path(), 1)).expect("stat").len(), records as u64);
    }

    #[test]
    fn corruption_in_the_middle_keeps_everything_before_it() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two", b"three"]);
        let second = record::HEADER + 3;
        buf[second + record::HEADER] ^= 0xff;
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
        let tail = recover(dir.path()).expect("recover");
        assert_eq!((tail.len, tail.next), (second as u64, 2));
        assert_eq!(std::fs::read(segment::path(dir.path(), 1)).expect("read").len(), second);
    }
}
