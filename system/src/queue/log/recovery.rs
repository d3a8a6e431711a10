//! Before the appender starts: find where the log really ends, cut what cannot be trusted,
//! make what is kept durable, and never hand out an offset twice.
//!
//! Only the newest segment can hold a torn write, and only in its last group: older segments
//! were complete and synced before the next was created, and the appender writes a group only
//! once the one before it is synced. It is read to its end. Damage that a later group's first
//! record follows, or at an offset known durable, is the medium's: kept in place and read past
//! (the next whole record's offset says which offsets it held; the reader hands each to the
//! worker as damaged, which dead-letters it). The segment is cut at other damage: in the last
//! group, whose pages a power cut during its fsync may have written back in any order (whole
//! records of it after the damage were never acknowledged either), or with nothing whole
//! after it ([`record::scan`]). Zeros alone after the last record are the appender's
//! preallocation, not damage: kept.
//!
//! Offsets are never reused. The `durable` file holds the last offset the appender published
//! as durable (not synced, so after a power cut it may be stale or gone), and the caller
//! passes the highest position a consumer stored: numbering goes on past both, and those
//! acknowledged records, when gone, are reported by offset, since their payments may never be
//! applied. Bytes cut at the end cannot be told from a write the crash tore, though they may
//! be acknowledged records damaged on the medium: numbering also goes on past every offset
//! they could have held, and those are reported as possibly acknowledged. Either way the
//! appender continues in a new segment, and a segment of the previous release's format is
//! finished the same way, since the appender writes only the current one.

use std::path::Path;

use super::record::{self, Format};
use super::{reader, segment, LogError};
use crate::disk::{Disk, DiskFile};
use crate::holes::{self, Hole};

/// Written by an appender whose sync failed: `<segment base> <synced length>`. Pages after
/// the synced length may stay readable in the page cache without ever reaching the disk
/// (fsyncgate), so recovery must not read them as durable.
pub const UNSYNCED_FILE: &str = "unsynced";

/// Files `damage-<offset>` are written before recovery cuts what it reports and removed by the
/// next recovery: the `cut`/`possibly` ranges of a recovery that may have failed half-way and
/// the cut it was about to make, so that the one that finishes still reports them and makes
/// the cut.
pub const DAMAGE_PREFIX: &str = "damage-";

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
    /// Offsets, first and last, beyond those, that bytes cut at the log's end could have held:
    /// a torn write, or acknowledged records damaged where nothing whole follows. Never reused.
    pub possibly: Option<(u64, u64)>,
}

impl Damage {
    /// Whether no acknowledged record is known damaged or gone (some may be `possibly`).
    pub fn is_empty(&self) -> bool {
        self.unreadable.is_empty() && self.cut.is_none()
    }

    /// Takes in the `cut` and `possibly` ranges of another recovery.
    fn widen(&mut self, cut: Option<(u64, u64)>, possibly: Option<(u64, u64)>) {
        self.cut = widest(self.cut, cut);
        self.possibly = widest(self.possibly, possibly);
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
    let (earlier, markers) = read_damage(disk, dir)?;
    if !holes::open(Hole::UnfinishedCut) {
        finish_earlier_cuts(disk, dir, &earlier.cuts)?;
    }
    let mut tail = recover_tail(disk, dir, at_least)?;
    tail.damage.widen(earlier.damage.cut, earlier.damage.possibly);
    for marker in markers {
        disk.remove_file(&marker).map_err(LogError::io("remove", &marker))?;
    }
    Ok(tail)
}

fn widest(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (a, b) => a.or(b),
    }
}

/// What earlier, unfinished recoveries were about to cut, and the files that say so.
fn read_damage(disk: &dyn Disk, dir: &Path) -> Result<(Earlier, Vec<std::path::PathBuf>), LogError> {
    let names = disk.list(dir).map_err(LogError::io("list", dir))?;
    let mut earlier = Earlier::default();
    let mut markers = Vec::new();
    for name in names.iter().filter_map(|n| n.to_str()).filter(|n| n.starts_with(DAMAGE_PREFIX) && !n.ends_with(".tmp")) {
        let marker = dir.join(name);
        let text = String::from_utf8_lossy(&disk.read(&marker).map_err(LogError::io("read", &marker))?).into_owned();
        let range = |kind: &str| {
            let mut n = text.lines().find_map(|l| l.strip_prefix(kind))?.split_whitespace().map(str::parse::<u64>);
            match (n.next(), n.next()) {
                (Some(Ok(a)), Some(Ok(b))) => Some((a, b)),
                _ => None,
            }
        };
        earlier.damage.widen(range("cut "), range("possibly "));
        earlier.cuts.extend(range("segment "));
        markers.push(marker);
    }
    Ok((earlier, markers))
}

/// What unfinished recoveries were about to do.
#[derive(Default)]
struct Earlier {
    /// The ranges they were about to cut (`cut` and `possibly`).
    damage: Damage,
    /// Segments to cut, by first offset, and the length each keeps.
    cuts: Vec<(u64, u64)>,
}

/// Records, durably, the ranges a recovery is about to cut before it cuts them, and the cut:
/// segment `base` keeps `keep` bytes. `resume`, where it goes on, names the file, so a
/// recovery tried again finds its own already written.
fn note_damage(disk: &dyn Disk, dir: &Path, resume: u64, damage: &Damage, (base, keep): (u64, u64)) -> Result<(), LogError> {
    let mut text = format!("segment {base} {keep}\n");
    for (kind, range) in [("cut", damage.cut), ("possibly", damage.possibly)] {
        if let Some((a, b)) = range {
            text.push_str(&format!("{kind} {a} {b}\n"));
        }
    }
    let name = format!("{DAMAGE_PREFIX}{resume}");
    match crate::durable_dir::write_file(disk, dir, &name, text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(LogError::io("write", &dir.join(&name))(e)),
        _ => Ok(()),
    }
}

fn recover_tail(disk: &dyn Disk, dir: &Path, at_least: u64) -> Result<Tail, LogError> {
    // Entries made before a crash (a new segment, the durable file) are made durable before
    // anything in them is read as durable.
    segment::sync_dir_on(disk, dir)?;
    undo_failed_sync(disk, dir)?;
    let reuse = holes::open(Hole::ReusedOffsets);
    let floor = match reuse {
        true => 1,
        false => at_least.max(reader::durable_on(disk, dir)? + 1).max(1),
    };
    let Some(&base) = segment::list_on(disk, dir)?.last() else {
        let damage = Damage { cut: (floor > 1).then_some((1, floor - 1)), ..Damage::default() };
        return start_at(disk, dir, floor, damage);
    };
    let path = segment::path(dir, base);
    let bytes = disk.read(&path).map_err(LogError::io("read segment", &path))?;
    let scan = record::scan(&bytes, base, floor);
    let file = segment::open_for_write(disk, dir, base)?;
    let rest = &bytes[scan.valid_bytes..];
    let cut_bytes = scan.stop.is_some() && !rest.iter().all(|&b| b == 0);
    if let (Some(why), true) = (scan.stop, cut_bytes) {
        tracing::warn!(file = %path.display(), offset = scan.valid_bytes, bytes_cut = rest.len(), why, "cutting the log's tail at recovery");
    }
    // What was read may be pages of a write whose fsync never came (a killed process): it is
    // read as durable from now on, so it is made so first.
    file.sync_all().map_err(LogError::io("sync segment", &path))?;
    let next = base + scan.records;
    let possible = match cut_bytes && !reuse {
        true => record::most_records(scan.format, rest),
        false => 0,
    };
    let (known, end) = (floor.max(next), next + possible);
    let damage = Damage {
        unreadable: scan.damaged.iter().map(|(i, _)| base + i).collect(),
        cut: (floor > next).then(|| (next, floor - 1)),
        possibly: (end > known).then(|| (known, end - 1)),
    };
    let resume = known.max(end);
    let len = scan.valid_bytes as u64;
    match (resume == next, scan.format == Format::V2 && scan.valid_bytes >= record::MAGIC.len()) {
        (true, true) => {
            let allocated = match cut_bytes {
                true => {
                    file.set_len(len).and_then(|_| file.sync_all()).map_err(LogError::io("cut segment tail", &path))?;
                    len
                }
                false => bytes.len() as u64,
            };
            Ok(Tail { file, base, len, allocated, next, damage })
        }
        // Nothing in it, not even the whole magic (a new segment the crash caught before its
        // first sync): it starts again.
        (true, false) if next == base => {
            let magic = record::MAGIC.len() as u64;
            file.set_len(0)
                .and_then(|_| file.write_all_at(&record::MAGIC, 0))
                .and_then(|_| file.sync_all())
                .map_err(LogError::io("write segment header", &path))?;
            Ok(Tail { file, base, len: magic, allocated: magic, next, damage })
        }
        // The segment ends where it is whole (empty, when it holds no record: a reader passes
        // over an empty file as it does over a clean end), and numbering goes on in a new one.
        // The new segment comes first: a recovery that fails after cutting would leave
        // nothing behind to report the cut offsets by, while an uncut tail behind a newer
        // segment is read as damage and reported then.
        _ => {
            let keep = if next == base { 0 } else { len };
            note_damage(disk, dir, resume, &damage, (base, keep))?;
            let tail = start_at(disk, dir, resume, damage)?;
            file.set_len(keep).and_then(|_| file.sync_all()).map_err(LogError::io("cut segment tail", &path))?;
            Ok(tail)
        }
    }
}

/// A recovery that failed after starting its new segment left the one before it uncut: a
/// torn write in it that a reader would take for damage to acknowledged records. The cut is
/// finished here as that recovery noted it (`cuts`: segment, length kept); what it kept it
/// had synced, so damage there since is the medium's and stays for the reader to report.
fn finish_earlier_cuts(disk: &dyn Disk, dir: &Path, cuts: &[(u64, u64)]) -> Result<(), LogError> {
    let bases = segment::list_on(disk, dir)?;
    for &(base, keep) in cuts {
        // The newest segment (the new one never made it) is recovered as such.
        if !bases.contains(&base) || bases.last() == Some(&base) {
            continue;
        }
        let path = segment::path(dir, base);
        let file = segment::open_for_write(disk, dir, base)?;
        cut_to(&*file, &path, keep, "finishing the cut of an earlier recovery that failed half-way")?;
    }
    Ok(())
}

fn start_at(disk: &dyn Disk, dir: &Path, base: u64, damage: Damage) -> Result<Tail, LogError> {
    let file = segment::create(disk, dir, base)?;
    let path = segment::path(dir, base);
    file.sync_all().map_err(LogError::io("sync segment", &path))?;
    let magic = record::MAGIC.len() as u64;
    Ok(Tail { file, base, len: magic, allocated: magic, next: base, damage })
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
        cut_to(&*file, &path, len, "cutting what a failed sync left unsynced")?;
    }
    disk.remove_file(&marker).map_err(LogError::io("remove", &marker))?;
    segment::sync_dir_on(disk, dir)
}

/// Cuts a segment back to `keep` bytes, durably. Synced even when it is that size already: an
/// earlier attempt whose sync failed may have cut it in the page cache only, and its note is
/// about to go.
fn cut_to(file: &dyn DiskFile, path: &Path, keep: u64, why: &str) -> Result<(), LogError> {
    let size = file.len().map_err(LogError::io("stat segment", path))?;
    if size > keep {
        tracing::warn!(file = %path.display(), keep, bytes_cut = size - keep, "{why}");
        file.set_len(keep).map_err(LogError::io("cut segment tail", path))?;
    }
    file.sync_all().map_err(LogError::io("sync segment", path))
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
    use record::{HEADER, MAGIC};

    fn write_records(dir: &Path, base: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let buf = record::tests::segment(base, payloads);
        std::fs::write(segment::path(dir, base), &buf).expect("write segment");
        buf
    }

    fn size(dir: &Path, base: u64) -> u64 {
        std::fs::metadata(segment::path(dir, base)).expect("stat").len()
    }

    #[test]
    fn an_empty_directory_starts_at_offset_one() {
        let dir = tempfile::tempdir().expect("dir");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.base, tail.len, tail.next), (1, MAGIC.len() as u64, 1));
        assert_eq!(segment::list(dir.path()).expect("list"), [1]);
        assert_eq!(std::fs::read(segment::path(dir.path(), 1)).expect("read"), MAGIC);
    }

    /// A write the crash tore looks like a damaged last record: both are cut, and the
    /// offsets the cut bytes could have held are never given out again.
    #[test]
    fn a_torn_tail_is_cut_the_records_before_it_kept_and_its_offsets_never_reused() {
        let dir = tempfile::tempdir().expect("dir");
        write_records(dir.path(), 1, &[b"a", b"b"]);
        let full = write_records(dir.path(), 3, &[b"c", b"dd", b"eee"]);
        let torn = full.len() - 2;
        std::fs::write(segment::path(dir.path(), 3), &full[..torn]).expect("tear");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        let kept = (MAGIC.len() + 2 * HEADER + 3) as u64;
        assert_eq!(size(dir.path(), 3), kept);
        assert_eq!((tail.base, tail.next), (6, 6), "offset 5 may have been acknowledged");
        assert_eq!(tail.damage, Damage { possibly: Some((5, 5)), ..Damage::default() });
        assert!(tail.damage.is_empty(), "nothing is known lost");
    }

    /// Recovery cut offsets `first` to at least `last` as possibly acknowledged, numbers past
    /// them, and knows of nothing lost.
    fn assert_possibly(tail: &Tail, first: u64, last: u64) {
        let Some((from, to)) = tail.damage.possibly else { panic!("the cut offsets are not reported: {:?}", tail.damage) };
        assert_eq!(from, first);
        assert!(to >= last, "offsets {first} to {last} are never reused: {to}");
        assert_eq!((tail.base, tail.next), (to + 1, to + 1));
        assert!(tail.damage.is_empty(), "nothing is known lost: {}", tail.damage);
    }

    /// Records 1 and 2 synced, then a group of 3 to 5 whose first page never reached the
    /// disk, and preallocated zeros: the segment's records and where the group starts.
    fn torn_group(dir: &Path) -> (Vec<u8>, usize) {
        let mut buf = write_records(dir, 1, &[b"one", b"two"]);
        let synced = buf.len();
        record::tests::group(&mut buf, 3, &[b"three", b"four", b"five"]);
        buf[synced..synced + HEADER].fill(0);
        std::fs::write(segment::path(dir, 1), [buf.clone(), vec![0; 4096]].concat()).expect("tear");
        (buf, synced)
    }

    /// A power cut during a group's fsync wrote back a later page of it and not its first:
    /// whole records follow the damage, but none was acknowledged. Once read past and
    /// dead-lettered as damaged acknowledged records (CI, faultfs seed 6): now cut as a torn
    /// write, its offsets never reused.
    #[test]
    fn a_group_torn_by_a_power_cut_is_cut_though_whole_records_of_it_follow() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, synced) = torn_group(dir.path());
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!(size(dir.path(), 1), synced as u64);
        assert_possibly(&tail, 3, 5);
    }

    /// The same bytes, but the group was published as durable: its damage is the medium's.
    #[test]
    fn damage_in_a_published_group_is_read_past() {
        let dir = tempfile::tempdir().expect("dir");
        let (buf, _) = torn_group(dir.path());
        publish(dir.path(), 5);
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (buf.len() as u64, 6));
        assert_eq!(tail.damage, Damage { unreadable: vec![3], ..Damage::default() });
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
        assert_eq!(size(dir.path(), 1), 4096);
        assert_eq!(tail.damage, Damage::default());
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
        assert_eq!(size(dir.path(), 1), records as u64);
        assert_eq!((tail.base, tail.next, tail.damage.possibly), (3, 3, Some((2, 2))));
    }

    /// A flipped length once cut the segment there: every record behind it vanished, without
    /// a report when the `durable` file was stale, and their offsets were given out again.
    #[test]
    fn a_damaged_length_is_read_past_and_the_records_behind_it_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two", b"three", b"four"]);
        let second = MAGIC.len() + HEADER + 3;
        buf[second + 2] ^= 0xff;
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (buf.len() as u64, 5));
        assert_eq!(tail.damage, Damage { unreadable: vec![2], ..Damage::default() });
        assert_eq!(std::fs::read(segment::path(dir.path(), 1)).expect("read"), buf, "nothing cut");
    }

    #[test]
    fn two_damaged_records_side_by_side_are_both_reported_and_numbering_goes_on() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two", b"three", b"four"]);
        let second = MAGIC.len() + HEADER + 3;
        buf[second + 1] ^= 0x01;
        buf[second + HEADER + 3 + HEADER + 2] ^= 0x20;
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (buf.len() as u64, 5));
        assert_eq!(tail.damage, Damage { unreadable: vec![2, 3], ..Damage::default() });
    }

    /// A flipped bit in an applied record once cut the log there and numbered new appends
    /// from it again, behind the worker's stored position: 11 of 15 acknowledged events were
    /// never applied.
    #[test]
    fn a_damaged_payload_is_read_past_and_the_records_behind_it_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two", b"three"]);
        buf[MAGIC.len() + HEADER + 3 + HEADER] ^= 0x01;
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (buf.len() as u64, 4));
        assert_eq!(tail.damage, Damage { unreadable: vec![2], ..Damage::default() });
    }

    #[test]
    fn a_damaged_magic_costs_no_record() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two"]);
        for bit in [0x01, 0x80] {
            buf[3] ^= bit;
            std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
            let tail = recover(&Os, dir.path(), 0).expect("recover");
            assert_eq!((tail.base, tail.len, tail.next), (1, buf.len() as u64, 3), "bit {bit:#x}");
            assert_eq!(tail.damage, Damage::default());
        }
    }

    /// A data directory of the previous release: its newest segment, framed without offsets,
    /// is kept whole and finished, and the appender goes on in a new one.
    #[test]
    fn a_segment_of_the_previous_release_is_kept_and_numbering_goes_on_in_a_new_one() {
        let dir = tempfile::tempdir().expect("dir");
        let v1 = record::tests::segment_v1(&[b"one", b"two"]);
        let mut preallocated = v1.clone();
        preallocated.resize(4096, 0);
        std::fs::write(segment::path(dir.path(), 1), &preallocated).expect("write");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.base, tail.len, tail.next), (3, MAGIC.len() as u64, 3));
        assert_eq!(tail.damage, Damage::default());
        assert_eq!(std::fs::read(segment::path(dir.path(), 1)).expect("read"), v1, "ends at its last record");
    }

    /// A new segment the crash caught before its first sync: its magic may be gone too.
    #[test]
    fn a_segment_without_its_magic_or_records_starts_again() {
        for left in [&[][..], &[0u8; 512][..], &MAGIC[..2]] {
            let dir = tempfile::tempdir().expect("dir");
            write_records(dir.path(), 1, &[b"one"]);
            std::fs::write(segment::path(dir.path(), 2), left).expect("write");
            let tail = recover(&Os, dir.path(), 0).expect("recover");
            assert_eq!((tail.base, tail.len, tail.next), (2, MAGIC.len() as u64, 2), "{left:?}");
            assert_eq!(std::fs::read(segment::path(dir.path(), 2)).expect("read"), MAGIC);
        }
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
        assert_eq!(tail.damage, Damage { cut: Some((3, 3)), ..Damage::default() });
        assert_eq!(segment::list(dir.path()).expect("list"), [1, 4]);
        assert_eq!(size(dir.path(), 1), (MAGIC.len() + 2 * HEADER + 6) as u64, "the old one ends where it is whole");
    }

    /// The `durable` file is stale after a power cut: damage to the last records cannot be
    /// proven to have cost acknowledged ones, but their offsets are kept out of reuse and
    /// reported as possibly acknowledged.
    #[test]
    fn damage_at_the_end_past_a_stale_durable_offset_is_reported_as_possibly_acknowledged() {
        let dir = tempfile::tempdir().expect("dir");
        let mut buf = write_records(dir.path(), 1, &[b"one", b"two", b"three", b"four"]);
        publish(dir.path(), 2);
        let third = MAGIC.len() + 2 * (HEADER + 3);
        buf[third] ^= 0x40;
        let end = buf.len() - 1;
        buf[end] ^= 0x01;
        std::fs::write(segment::path(dir.path(), 1), &buf).expect("corrupt");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_possibly(&tail, 3, 4);
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
        let synced = (MAGIC.len() + HEADER + 3) as u64;
        std::fs::write(dir.path().join(UNSYNCED_FILE), format!("1 {synced}\n")).expect("marker");
        let tail = recover(&Os, dir.path(), 0).expect("recover");
        assert_eq!((tail.len, tail.next), (synced, 2), "the second record was never durable: {} bytes", buf.len());
        assert_eq!(tail.damage, Damage::default());
        assert!(!dir.path().join(UNSYNCED_FILE).exists(), "the marker is done with");
    }
}
