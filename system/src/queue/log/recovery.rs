//! Before the appender starts: find where the log really ends, cut what cannot be trusted,
//! make what is kept durable, and never hand out an offset twice.
//!
//! Only the newest segment can hold a torn write: older ones were complete and synced before
//! the next was created. It is read to its end; a damaged record with a whole one right after
//! it is kept in place and read past (the reader hands it to the worker as damaged, which
//! dead-letters it), and the segment is cut at the first damage it cannot read past. Zeros
//! alone after the last record are the appender's preallocation, not damage: kept.
//!
//! Offsets are never reused. The `durable` file holds the last offset the appender published
//! as durable, and the caller passes the highest position a consumer stored: numbering goes on
//! past both, in a new segment when records they cover are gone. Those acknowledged records
//! are reported by offset, since their payments may never be applied.

use std::path::Path;

use super::{reader, record, segment, LogError};
use crate::disk::{Disk, DiskFile};
use crate::holes::{self, Hole};

/// Written by an appender whose sync failed: `<segment base> <synced length>`. Pages after
/// the synced length may stay readable in the page cache without ever reaching the disk
/// (fsyncgate), so recovery must not read them as durable.
pub const UNSYNCED_FILE: &str = "unsynced";

/// Where the appender continues.
pub struct Tail {
    /// The newest segment, open for appending at its valid end.
    pub file: Box<dyn DiskFile>,
    /// Its first offset.
    pub base: u64,
    /// Its valid length in bytes.
    pub len: u64,
    /// Its size: the valid length and any preallocated zeros after it.
    pub allocated: u64,
    /// The offset the next record gets.
    pub next: u64,
    /// Acknowledged records found damaged.
    pub damage: Damage,
}

/// Acknowledged records that recovery could not keep whole.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// Damaged records kept in place and read past.
    pub unreadable: Vec<u64>,
    /// Offsets, first and last, that were durable (published, or passed by a stored
    /// position) and are no longer in the log.
    pub cut: Option<(u64, u64)>,
}

impl Damage {
    pub fn is_empty(&self) -> bool {
        self.unreadable.is_empty() && self.cut.is_none()
    }

    /// How many acknowledged records are damaged or gone.
    pub fn count(&self) -> u64 {
        self.unreadable.len() as u64 + self.cut.map_or(0, |(first, last)| last - first + 1)
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((first, last)) = self.cut {
            write!(f, "offsets {first}..={last} are gone")?;
        }
        if !self.unreadable.is_empty() {
            let sep = if self.cut.is_some() { "; " } else { "" };
            write!(f, "{sep}damaged records at offsets {:?}", self.unreadable)?;
        }
        Ok(())
    }
}

/// Recovers the log in `dir`; the next offset is at least `at_least` (one past the highest
/// position a consumer stored).
pub fn recover(disk: &dyn Disk, dir: &Path, at_least: u64) -> Result<Tail, LogError> {
    // Entries made before a crash (a new segment, the durable file) are made durable before
    // anything in them is read as durable.
    segment::sync_dir_on(disk, dir)?;
    undo_failed_sync(disk, dir)?;
    let floor = match holes::open(Hole::ReusedOffsets) {
        true => 1,
        false => at_least.max(reader::durable_on(disk, dir)? + 1).max(1),
    };
    let Some(&base) = segment::list_on(disk, dir)?.last() else {
        let damage = Damage { cut: (floor > 1).then_some((1, floor - 1)), ..Damage::default() };
        return start_at(disk, dir, floor, damage);
    };
    let path = segment::path(dir, base);
    let bytes = disk.read(&path).map_err(LogError::io("read segment", &path))?;
    let scan = record::scan(&bytes);
    let file = segment::open_for_write(disk, dir, base)?;
    let rest = &bytes[scan.valid_bytes..];
    let mut allocated = bytes.len() as u64;
    if let (Some(why), false) = (scan.stop, rest.iter().all(|&b| b == 0)) {
        tracing::warn!(file = %path.display(), offset = scan.valid_bytes, bytes_cut = rest.len(), why, "cutting the log's tail at recovery");
        allocated = scan.valid_bytes as u64;
        file.set_len(allocated).map_err(LogError::io("cut segment tail", &path))?;
    }
    // What was read may be pages of a write whose fsync never came (a killed process): it is
    // read as durable from now on, so it is made so first.
    file.sync_all().map_err(LogError::io("sync segment", &path))?;
    let next = base + scan.records;
    let unreadable = scan.damaged.iter().map(|(i, _)| base + i).collect();
    if next >= floor {
        let damage = Damage { unreadable, cut: None };
        return Ok(Tail { file, base, len: scan.valid_bytes as u64, allocated, next, damage });
    }
    // Acknowledged records are gone: the segment ends where it is whole, and numbering goes
    // on past them in a new one.
    file.set_len(scan.valid_bytes as u64).and_then(|_| file.sync_all()).map_err(LogError::io("cut segment tail", &path))?;
    start_at(disk, dir, floor, Damage { unreadable, cut: Some((next, floor - 1)) })
}

fn start_at(disk: &dyn Disk, dir: &Path, base: u64, damage: Damage) -> Result<Tail, LogError> {
    Ok(Tail { file: segment::create(disk, dir, base)?, base, len: 0, allocated: 0, next: base, damage })
}

/// Cuts the segment an appender's failed sync left back to what that appender had synced.
fn undo_failed_sync(disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
    let marker = dir.join(UNSYNCED_FILE);
    let text = match disk.read(&marker) {
        Ok(text) => String::from_utf8_lossy(&text).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LogError::io("read", &marker)(e)),
    };
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(base)), Some(Ok(len))) = (fields.next(), fields.next()) else {
        return Err(LogError::Corrupt { path: marker, at: 0, why: "not `<segment base> <synced length>`" });
    };
    let path = segment::path(dir, base);
    if disk.exists(&path) {
        let file = segment::open_for_write(disk, dir, base)?;
        let size = file.len().map_err(LogError::io("stat segment", &path))?;
        if size > len {
            tracing::warn!(file = %path.display(), synced = len, bytes_cut = size - len, "cutting what a failed sync left unsynced");
            file.set_len(len).and_then(|_| file.sync_all()).map_err(LogError::io("cut segment tail", &path))?;
        }
    }
    disk.remove_file(&marker).map_err(LogError::io("remove", &marker))?;
    segment::sync_dir_on(disk, dir)
}

/// Records, durably, that the segment `base` is synced up to `len` and no further.
/// Written whole or not at all: a marker cut short by the failing disk it reports would stop
/// every later start.
pub fn mark_unsynced(disk: &dyn Disk, dir: &Path, base: u64, len: u64) -> std::io::Result<()> {
    crate::durable_dir::write_file(disk, dir, UNSYNCED_FILE, format!("{base} {len}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Os;

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
        let tail = recover(&Os, dir.path(), 0).expect("recover");
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
        let tail = recover(&Os, dir.path(), 0).expect("recover");
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
        let tail = recover(&Os, dir.path(), 0).expect("recover");
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
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.allocated, tail.next), (records as u64, records as u64, 2));
        assert_eq!(std::fs::metadata(segment::path(dir.path(), 1)).expect("stat").len(), records as u64);
    }

    #[test]
    fn a_damaged_length_cuts_there_and_keeps_everything_before_it() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two", b"three"]);
        let second = record::HEADER + 3;
        buf[second + 2] ^= 0xff;
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (second as u64, 2));
        assert_eq!(std::fs::read(segment::path(dir.path(), 1)).expect("read").len(), second);
    }

    /// A flipped bit in an applied record once cut the log there and numbered new appends
    /// from it again, behind the worker's stored position: 11 of 15 acknowledged events were
    /// never applied.
    #[test]
    fn a_damaged_payload_is_read_past_and_the_records_behind_it_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two", b"three"]);
        buf[record::HEADER + 3 + record::HEADER] ^= 0x01;
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (buf.len() as u64, 4));
        assert_eq!(tail.damage, Damage { unreadable: vec![2], cut: None });
    }

    fn publish(dir: &Path, last: u64) {
        std::fs::write(dir.join(reader::DURABLE_FILE), last.to_le_bytes()).expect("durable file");
    }

    #[test]
    fn offsets_published_as_durable_are_never_given_out_again() {
        let dir = tempfile::tempdir().expect("dir");
        let buf = write_records(dir.path(), 1, &[b"one", b"two", b"three"]);
        publish(dir.path(), 3);
        let mut damaged = buf.clone();
        let last = buf.len() - 1;
        damaged[last] ^= 0x01;
        std::fs::write(segment::path(dir.path(), 1), &damaged).expect("corrupt");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.base, tail.next), (4, 4), "a new segment after the last published offset");
        assert_eq!(tail.damage, Damage { unreadable: vec![], cut: Some((3, 3)) });
        assert_eq!(segment::list(dir.path()).expect("list"), [1, 4]);
        let kept = (2 * record::HEADER + 6) as u64;
        assert_eq!(std::fs::metadata(segment::path(dir.path(), 1)).expect("stat").len(), kept, "the old one ends where it is whole");
    }

    #[test]
    fn numbering_goes_on_past_a_stored_position() {
        let dir = tempfile::tempdir().expect("dir");
        write_records(dir.path(), 1, &[b"one"]);
        let tail = recover(&Os, dir.path(), 21).expect("recover");
        assert_eq!((tail.base, tail.next), (21, 21));
        assert_eq!(tail.damage.cut, Some((2, 20)));
        assert_eq!(tail.damage.count(), 19);
        let empty = tempfile::tempdir().expect("dir");
        publish(empty.path(), 7);
        let tail = recover(&Os, empty.path(), 0).expect("recover");
        assert_eq!((tail.base, tail.next, tail.damage.cut), (8, 8, Some((1, 7))), "every segment vanished");
    }

    #[test]
    fn what_a_failed_sync_left_unsynced_is_cut() {
        let dir = tempfile::tempdir().expect("dir");
        let buf = write_records(dir.path(), 1, &[b"one", b"two"]);
        let synced = (record::HEADER + 3) as u64;
        std::fs::write(dir.path().join(UNSYNCED_FILE), format!("1 {synced}\n")).expect("marker");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (synced, 2), "the second record was never durable: {} bytes", buf.len());
        assert!(!dir.path().join(UNSYNCED_FILE).exists(), "the marker is done with");
    }
}
