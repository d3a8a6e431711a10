//! Reading the log in order, across segments, no further than what is durable.
//!
//! The appender publishes the last synced offset in the `durable` file after each group, for
//! readers in its process and in others alike (one `pread` per read). Bytes past that offset may be a group still
//! being written, or one that failed and was cut off, so they are never trusted: a record is
//! taken from the buffer only if the buffer was read after the record was known durable.
//!
//! A durable record that cannot be read whole is handed out as [`Damaged`], never skipped in
//! silence: damaged records with a whole one somewhere after them (whose offset says how many
//! they were), and the offsets a finished segment lost to damage before the next segment's
//! first offset. The worker dead-letters them with what could be read. Offsets missing after
//! a segment's clean end were cut by recovery, which reported them when it cut them (as gone,
//! or as possibly acknowledged when a torn write cannot be told from damage); they are passed
//! over with a warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{self, Decoded, Format};
use super::{segment, LogError};
use crate::disk::{Disk, DiskFile, Open, Os};
use crate::holes::{self, Hole};

/// The file holding the last durable offset (8 bytes, little endian).
pub const DURABLE_FILE: &str = "durable";
/// Bytes read from a segment at a time (more when one record is larger). The newest segment
/// is preallocated ahead of its records, so a reader that follows the appender reads this
/// much, mostly zeros, for every group: small enough to cost little, large enough for a
/// reader catching up to take hundreds of records a read.
const CHUNK: usize = 64 << 10;

/// A durable record that could not be read whole, with why and the bytes found for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    pub why: String,
    pub raw: Vec<u8>,
}

/// What a read hands out: each offset with its payload, or what is known of its damage.
pub type Entry = (u64, Result<Vec<u8>, Damaged>);

/// A reader positioned after an offset; it follows new records as they become durable.
pub struct Reader {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// The `durable` file, once it exists.
    durable: Option<Box<dyn DiskFile>>,
    /// The offset of the next record to hand out.
    next: u64,
    segment: Option<OpenSegment>,
    /// Bytes of the open segment from `Open::pos` on.
    buf: Vec<u8>,
    /// Where the next record starts in `buf`.
    at: usize,
    /// Records up to this offset in `buf` can be trusted: it was read after they were durable.
    trusted: u64,
    /// Damaged records to hand out: offsets from `next` up to (not including) this one, why,
    /// and the bytes found for the first.
    span: Option<(u64, String, Vec<u8>)>,
    /// The first offset the damaged bytes at the position held, once some were handed out
    /// with no whole record after them yet.
    damage_from: Option<u64>,
    /// While positioning: the offset to stop before. A jump over a gap that lands at or past
    /// it stops there, so the record it lands on is handed out, not passed over.
    skipping_to: Option<u64>,
}

struct OpenSegment {
    base: u64,
    file: Box<dyn DiskFile>,
    path: PathBuf,
    /// Byte position in the file of `buf[at]`.
    pos: u64,
    /// Known once its first bytes are read.
    format: Option<Format>,
}

impl Reader {
    /// A reader whose first record is the one after `after` (0: from the start).
    pub fn open(dir: &Path, after: u64) -> Self {
        Self::open_on(Arc::new(Os), dir, after)
    }

    /// [`Reader::open`] on `disk`.
    pub fn open_on(disk: Arc<dyn Disk>, dir: &Path, after: u64) -> Self {
        Self { disk, dir: dir.to_owned(), durable: None, next: after + 1, segment: None, buf: Vec::new(), at: 0, trusted: 0, span: None, damage_from: None, skipping_to: None }
    }

    /// The offset of the last durable record (0 if none, or if the log is not there yet).
    pub fn durable(&mut self) -> Result<u64, LogError> {
        if self.durable.is_none() {
            let path = self.dir.join(DURABLE_FILE);
            match self.disk.open(&path, Open::Read) {
                Ok(f) => self.durable = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(LogError::io("open", &path)(e)),
            }
        }
        self.durable.as_deref().map_or(Ok(0), |f| read_durable(f, &self.dir))
    }

    /// The last offset handed out or passed over as holding no record (a gap recovery numbered
    /// past): every offset up to it is behind the reader.
    pub fn passed(&self) -> u64 {
        self.next - 1
    }

    /// The first offset of the segment being read, once one is open.
    pub fn segment_base(&self) -> Option<u64> {
        self.segment.as_ref().map(|s| s.base)
    }

    /// Up to `max` durable records after the position, with their offsets; none if caught up.
    /// Records taken before an error are handed out; the error comes back at the next read,
    /// since the position stops right before the record that failed.
    pub fn read(&mut self, max: usize) -> Result<Vec<Entry>, LogError> {
        let limit = self.durable()?;
        let mut out = Vec::new();
        while out.len() < max && self.next <= limit {
            match self.step(limit) {
                Ok(Some(payload)) => out.push((self.next - 1, payload)),
                Ok(None) => break,
                Err(e) if !out.is_empty() && !holes::open(Hole::DroppedOnReadError) => {
                    tracing::debug!(error = %e, "log read stopped early; handing out what was read");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The record at `next`, which is durable (`next <= limit`).
    fn step(&mut self, limit: u64) -> Result<Option<Result<Vec<u8>, Damaged>>, LogError> {
        if self.segment.is_none() && !self.locate()? {
            return Ok(None);
        }
        // Locating a position inside damage may leave some of it to hand out.
        if let Some(damaged) = self.take_spanned() {
            return Ok(Some(Err(damaged)));
        }
        if self.next <= self.trusted {
            if let Some(payload) = self.take() {
                return Ok(Some(Ok(payload)));
            }
        }
        self.refill_or_close(limit, false)?;
        if let Some(payload) = self.take() {
            return Ok(Some(Ok(payload)));
        }
        // The next whole record may lie further than one chunk past damage.
        self.refill_or_close(limit, true)?;
        if let Some(payload) = self.take() {
            return Ok(Some(Ok(payload)));
        }
        if self.read_past_damage(limit) {
            return self.step(limit);
        }
        // Nothing more can be read here: a finished segment, or damage no record follows.
        let clean = self.unread().iter().all(|&b| b == 0);
        let format = self.segment.as_ref().and_then(|s| s.format);
        match self.following()? {
            Some(base) if base == self.next => {
                self.open_segment(base)?;
                self.step(limit)
            }
            Some(base) if base > self.next && clean => {
                tracing::warn!(first = self.next, last = base - 1, log = %self.dir.display(), "passing over offsets a restart's recovery cut from the log's end and reported then");
                self.next = base;
                self.open_segment(base)?;
                match base <= limit && self.skipping_to.is_none_or(|target| base < target) {
                    true => self.step(limit),
                    false => Ok(None),
                }
            }
            // A finished segment was whole when the next one began: what it lacks is damage.
            Some(base) if base > self.next => {
                let why = format!("record gone: {} holds no whole record from here to the next segment, which starts at offset {base}", self.place());
                Ok(self.hand_out_damaged(base, why, Vec::new()).map(Err))
            }
            // The newest segment: every record up to the durable end was synced whole, so with
            // none whole after the damage, all of them are damaged.
            None if !clean && format == Some(Format::V2) => {
                let why = format!("record unreadable: {} holds no whole record from here to the durable end, offset {limit}", self.place());
                Ok(self.hand_out_damaged(limit + 1, why, Vec::new()).map(Err))
            }
            _ => Err(self.corrupt()),
        }
    }

    fn refill_or_close(&mut self, limit: u64, to_end: bool) -> Result<(), LogError> {
        self.refill(limit, to_end).inspect_err(|_| {
            // Opened again by the next step: the file may be back by then.
            self.segment = None;
        })
    }

    /// Hands out the offsets from `next` up to (not including) `end` as damaged, one a step,
    /// the first with `raw`; the bytes at the position stay theirs until read past.
    fn hand_out_damaged(&mut self, end: u64, why: String, raw: Vec<u8>) -> Option<Damaged> {
        self.damage_from.get_or_insert(self.next);
        self.span = Some((end, why, raw));
        self.take_spanned()
    }

    /// The next offset of a damaged span.
    fn take_spanned(&mut self) -> Option<Damaged> {
        let (end, why, raw) = self.span.take()?;
        if self.next >= end {
            return None;
        }
        self.next += 1;
        if self.next < end {
            self.span = Some((end, why.clone(), Vec::new()));
        }
        Some(Damaged { why, raw })
    }

    /// Moves past damaged bytes at the front to the next whole record, when one follows, and
    /// queues the offsets they held to be handed out as damaged. Only records up to `limit`
    /// are durable: a whole record further on may be part of a group still being written,
    /// which says nothing yet of what lies before it.
    fn read_past_damage(&mut self, limit: u64) -> bool {
        let Some(format) = self.format() else { return false };
        // The damage here may have been handed out up to the durable end already.
        let from = self.damage_from.unwrap_or(self.next);
        let found = match format {
            Format::V1 => record::skippable_v1(self.unread()).map(|frame| (frame, self.next + 1)),
            Format::V2 => record::resync(self.unread(), from, limit + 1),
        };
        let Some((frame, end)) = found else { return false };
        let header = match format {
            Format::V1 => record::HEADER_V1,
            Format::V2 => record::HEADER,
        };
        let raw = match from == self.next {
            true => self.unread().get(header..frame).unwrap_or_default().to_vec(),
            false => Vec::new(),
        };
        let why = self.corrupt().to_string();
        if end > self.next + 1 {
            tracing::error!(first = self.next, last = end - 1, log = %self.dir.display(), "damaged records side by side in the log");
        }
        self.skip(frame);
        self.damage_from = None;
        self.span = Some((end, why, raw));
        true
    }

    /// The open segment's format, read from its first bytes (and its magic passed over) once
    /// they are in the buffer.
    fn format(&mut self) -> Option<Format> {
        let s = self.segment.as_mut()?;
        if s.format.is_none() && s.pos == 0 {
            let format = Format::of(&self.buf[self.at..])?;
            s.format = Some(format);
            self.at += format.start();
            s.pos += format.start() as u64;
        }
        s.format
    }

    /// The open segment and the byte position in it, for messages.
    fn place(&self) -> String {
        self.segment.as_ref().map(|s| format!("{} at byte {}", s.path.display(), s.pos)).unwrap_or_default()
    }

    /// The first offset of the segment after the open one, if there is one.
    fn following(&self) -> Result<Option<u64>, LogError> {
        let Some(open) = &self.segment else { return Ok(None) };
        // A segment named below the next offset holds none: the open one reached past its name.
        Ok(segment::list_on(&*self.disk, &self.dir)?.into_iter().find(|&b| b > open.base && b >= self.next))
    }

    /// Decodes the record at the front of the buffer.
    fn take(&mut self) -> Option<Vec<u8>> {
        let format = self.format()?;
        let Decoded::Record { payload, frame, .. } = record::decode(format, self.unread(), self.next) else { return None };
        let payload = payload.to_vec();
        self.advance(frame);
        Some(payload)
    }

    fn advance(&mut self, frame: usize) {
        self.skip(frame);
        self.next += 1;
    }

    fn skip(&mut self, bytes: usize) {
        self.at += bytes;
        if let Some(s) = &mut self.segment {
            s.pos += bytes as u64;
        }
    }

    /// Re-reads from the current record on (to the file's end with `to_end`), dropping bytes
    /// that were read before they were durable.
    fn refill(&mut self, limit: u64, to_end: bool) -> Result<(), LogError> {
        let Some(s) = &self.segment else { return Ok(()) };
        // The record at the front and a chunk after it.
        let want = match (to_end, self.unread().first_chunk::<4>()) {
            (true, _) => usize::MAX,
            (false, Some(len)) => (record::HEADER + u32::from_le_bytes(*len) as usize).min(record::HEADER + record::MAX_PAYLOAD) + CHUNK,
            (false, None) => CHUNK,
        };
        // Whatever fails, no bytes of an earlier position stay behind to be decoded as this one.
        self.at = 0;
        self.buf.clear();
        self.trusted = 0;
        // No more than the file holds: the buffer is zeroed up to `want` before each read.
        let len = s.file.len().map_err(LogError::io("stat segment", &s.path))?;
        let want = want.min(len.saturating_sub(s.pos) as usize);
        self.buf.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            match s.file.read_at(&mut self.buf[filled..], s.pos + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.clear();
                    return Err(LogError::io("read segment", &s.path)(e));
                }
            }
        }
        self.buf.truncate(filled);
        self.trusted = limit;
        Ok(())
    }

    /// Opens the segment holding `next` and skips to it.
    fn locate(&mut self) -> Result<bool, LogError> {
        let bases = segment::list_on(&*self.disk, &self.dir)?;
        let Some(&base) = bases.iter().rev().find(|&&b| b <= self.next) else {
            return match bases.first() {
                // Segments beyond the position exist but not the one holding it: deleted.
                Some(&first) => Err(LogError::OutOfRange { position: self.next - 1, first, last: self.durable()? }),
                None => Ok(false),
            };
        };
        let target = self.next;
        let found = self.skip_to(base, target, bases[0]);
        if found.is_err() {
            // The next locate starts over: no record before the position is ever handed out.
            self.segment = None;
            self.span = None;
            self.damage_from = None;
            self.next = target;
        }
        found
    }

    /// Opens the segment `base` and reads up to `target`.
    fn skip_to(&mut self, base: u64, target: u64, first: u64) -> Result<bool, LogError> {
        self.next = base;
        self.open_segment(base)?;
        let limit = self.durable()?;
        while self.next < target {
            if self.next > limit {
                return Err(LogError::OutOfRange { position: target - 1, first, last: limit });
            }
            self.skipping_to = Some(target);
            let stepped = self.step(limit);
            self.skipping_to = None;
            if stepped?.is_none() && self.next < target {
                return Err(LogError::OutOfRange { position: target - 1, first, last: limit });
            }
        }
        Ok(true)
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.at..]
    }

    fn open_segment(&mut self, base: u64) -> Result<(), LogError> {
        let path = segment::path(&self.dir, base);
        let file = self.disk.open(&path, Open::Read).map_err(LogError::io("open segment", &path))?;
        self.segment = Some(OpenSegment { base, file, path, pos: 0, format: None });
        self.damage_from = None;
        self.buf.clear();
        self.at = 0;
        self.trusted = 0;
        Ok(())
    }

    fn corrupt(&self) -> LogError {
        let format = self.segment.as_ref().and_then(|s| s.format);
        let why = match format.map(|f| record::decode(f, self.unread(), self.next)) {
            Some(Decoded::Corrupt(why)) => why,
            _ => "durable record missing",
        };
        let (path, at) = self.segment.as_ref().map(|s| (s.path.clone(), s.pos)).unwrap_or_default();
        LogError::Corrupt { path, at, why }
    }
}

/// The last durable offset of the log in `dir`, as its appender last published it.
pub fn durable(dir: &Path) -> Result<u64, LogError> {
    durable_on(&Os, dir)
}

/// [`durable`] on `disk`.
pub fn durable_on(disk: &dyn Disk, dir: &Path) -> Result<u64, LogError> {
    let path = dir.join(DURABLE_FILE);
    let file = match disk.open(&path, Open::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(LogError::io("open", &path)(e)),
    };
    read_durable(&*file, dir)
}

fn read_durable(file: &dyn DiskFile, dir: &Path) -> Result<u64, LogError> {
    let mut bytes = [0u8; 8];
    match file.read_at(&mut bytes, 0) {
        Ok(8) => Ok(u64::from_le_bytes(bytes)),
        Ok(_) => Ok(0),
        Err(e) => Err(LogError::io("read", &dir.join(DURABLE_FILE))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::queue::log::appender::{start_in, Appender, AppenderConfig};
    use crate::queue::log::WriterLock;

    async fn log_of(dir: &Path, n: usize, segment_bytes: u64) -> Appender {
        let appender = start_in(dir, &AppenderConfig { segment_bytes, max_pending: 1000, min_sync_interval: std::time::Duration::ZERO }, Metrics::new(), Default::default()).expect("start");
        for i in 1..=n {
            appender.append(format!("record {i}").into_bytes()).await.expect("append");
        }
        appender
    }

    fn texts(records: &[Entry]) -> Vec<(u64, String)> {
        let text = |p: &Result<Vec<u8>, Damaged>| match p {
            Ok(p) => String::from_utf8_lossy(p).into_owned(),
            Err(d) => format!("damaged: {}", d.why),
        };
        records.iter().map(|(o, p)| (*o, text(p))).collect()
    }

    #[tokio::test]
    async fn reads_across_segments_from_any_position() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 20, 64).await;
        assert!(segment::list(dir.path()).expect("list").len() > 3, "small segments roll often");
        for after in [0, 1, 7, 19, 20] {
            let mut reader = Reader::open(dir.path(), after);
            let got = texts(&reader.read(100).expect("read"));
            let want: Vec<_> = (after + 1..=20).map(|i| (i, format!("record {i}"))).collect();
            assert_eq!(got, want, "after {after}");
        }
    }

    /// A reader placed behind a gap a restart's recovery left (numbering going on past a stored
    /// position) once passed over the gap and the first record after it in one step, so that
    /// record, acknowledged, was never handed out.
    #[tokio::test]
    async fn positioning_across_a_gap_keeps_the_first_record_after_it() {
        let dir = tempfile::tempdir().expect("dir");
        drop(log_of(dir.path(), 5, 1 << 20).await);
        let cfg = AppenderConfig { segment_bytes: 1 << 20, max_pending: 1000, min_sync_interval: std::time::Duration::ZERO };
        let appender = Appender::start(WriterLock::acquire(dir.path()).expect("lock"), 15, &cfg, Metrics::new(), Default::default()).expect("start");
        for i in 15..=17 {
            appender.append(format!("record {i}").into_bytes()).await.expect("append");
        }
        let mut reader = Reader::open(dir.path(), 6);
        let got: Vec<u64> = reader.read(100).expect("read").into_iter().map(|(o, _)| o).collect();
        assert_eq!(got, [15, 16, 17]);
    }

    #[tokio::test]
    async fn a_reader_follows_new_records_through_the_durable_file() {
        let dir = tempfile::tempdir().expect("dir");
        let appender = log_of(dir.path(), 3, 64).await;
        let mut reader = Reader::open(dir.path(), 0);
        assert_eq!(reader.read(2).expect("read").len(), 2, "at most max");
        assert_eq!(texts(&reader.read(10).expect("read")), [(3, "record 3".to_owned())]);
        assert!(reader.read(10).expect("read").is_empty(), "caught up");
        for i in 4..=9 {
            appender.append(format!("record {i}").into_bytes()).await.expect("append");
        }
        let got: Vec<u64> = reader.read(100).expect("read").into_iter().map(|(o, _)| o).collect();
        assert_eq!(got, (4..=9).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn bytes_past_the_durable_offset_are_not_handed_out() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 2, 1 << 20).await;
        // A record written but not (yet) synced: as if a group were in flight.
        let mut extra = Vec::new();
        record::encode_into(&mut extra, 3, b"unsynced", true);
        let path = segment::path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(&extra);
        std::fs::write(&path, &bytes).expect("write");
        let mut reader = Reader::open(dir.path(), 0);
        assert_eq!(reader.read(10).expect("read").len(), 2);
    }

    #[tokio::test]
    async fn a_position_behind_deleted_segments_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 20, 64).await;
        segment::delete_through(&crate::disk::Os, dir.path(), 10).expect("delete");
        let first = segment::list(dir.path()).expect("list")[0];
        assert!(first > 1 && first <= 11);
        let mut behind = Reader::open(dir.path(), first - 2);
        assert!(matches!(behind.read(10), Err(LogError::OutOfRange { .. })));
        let mut resumed = Reader::open(dir.path(), 10);
        assert_eq!(resumed.read(100).expect("read").first().map(|r| r.0), Some(11));
        let mut beyond = Reader::open(dir.path(), 25);
        assert!(beyond.read(10).expect("read").is_empty(), "nothing durable there yet");
        assert_eq!(beyond.durable().expect("durable"), 20);
    }

    /// Where the second record of a segment of `record N` payloads starts.
    const SECOND: usize = record::MAGIC.len() + record::HEADER + "record 1".len();

    fn damaged_offsets(read: &[Entry]) -> Vec<(u64, bool)> {
        read.iter().map(|(o, p)| (*o, p.is_ok())).collect()
    }

    #[tokio::test]
    async fn a_damaged_record_is_handed_out_as_damaged_and_the_next_one_read() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 3, 1 << 20).await;
        let path = segment::path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).expect("read");
        let second = SECOND;
        bytes[second + record::HEADER + 1] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let mut reader = Reader::open(dir.path(), 0);
        let read = reader.read(10).expect("read");
        assert_eq!(damaged_offsets(&read), [(1, true), (2, false), (3, true)]);
        let Err(damaged) = &read[1].1 else { panic!("record 2 is damaged") };
        assert!(damaged.why.contains("checksum mismatch"), "{}", damaged.why);
        assert_eq!(damaged.raw, b"record 2".iter().enumerate().map(|(i, b)| if i == 1 { b ^ 0x40 } else { *b }).collect::<Vec<_>>());
    }

    /// A flipped length once hid every record behind it; two damaged records side by side
    /// were never read past.
    #[tokio::test]
    async fn damaged_lengths_and_records_side_by_side_are_handed_out_and_numbering_goes_on() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 5, 1 << 20).await;
        let path = segment::path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).expect("read");
        let frame = record::HEADER + "record 1".len();
        bytes[SECOND] ^= 0x40;
        bytes[SECOND + frame + record::HEADER + 2] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        let read = Reader::open(dir.path(), 0).read(10).expect("read");
        assert_eq!(damaged_offsets(&read), [(1, true), (2, false), (3, false), (4, true), (5, true)]);
        let mut resumed = Reader::open(dir.path(), 2);
        assert_eq!(damaged_offsets(&resumed.read(10).expect("read")), [(3, false), (4, true), (5, true)], "from a position inside the damage");
    }

    /// In the newest segment every record up to the durable end was synced whole: with none
    /// whole after the damage, each is handed out as damaged, and the records appended later
    /// are found past it.
    #[tokio::test]
    async fn damage_that_nothing_follows_is_handed_out_to_the_durable_end_and_the_log_goes_on() {
        let dir = tempfile::tempdir().expect("dir");
        let appender = log_of(dir.path(), 3, 1 << 20).await;
        let path = segment::path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[SECOND + record::HEADER + "record 2".len()] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let mut reader = Reader::open(dir.path(), 0);
        assert_eq!(damaged_offsets(&reader.read(10).expect("read")), [(1, true), (2, true), (3, false)]);
        assert!(reader.read(10).expect("read").is_empty(), "caught up");
        appender.append(b"record 4".to_vec()).await.expect("append");
        assert_eq!(texts(&reader.read(10).expect("read")), [(4, "record 4".to_owned())]);
    }

    /// In a finished segment the next one's first offset bounds the damage.
    #[tokio::test]
    async fn damage_at_the_end_of_a_finished_segment_is_handed_out_up_to_the_next_one() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 20, 100).await;
        let bases = segment::list(dir.path()).expect("list");
        let (victim, following) = (bases[1], bases[2]);
        let path = segment::path(dir.path(), victim);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x02;
        std::fs::write(&path, &bytes).expect("write");
        let read = Reader::open(dir.path(), 0).read(100).expect("read");
        assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>(), "every offset, in order");
        let gone: Vec<u64> = read.iter().filter(|r| r.1.is_err()).map(|r| r.0).collect();
        assert_eq!(gone, [following - 1]);
    }

    /// The previous release's segments are read as they were written.
    #[tokio::test]
    async fn a_segment_of_the_previous_release_is_read_and_the_log_goes_on_after_it() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(segment::path(dir.path(), 1), record::tests::segment_v1(&[b"old 1", b"old 2"])).expect("write");
        let appender = log_of(dir.path(), 0, 1 << 20).await;
        appender.append(b"new".to_vec()).await.expect("append");
        assert_eq!(segment::list(dir.path()).expect("list"), [1, 3]);
        let got = texts(&Reader::open(dir.path(), 0).read(10).expect("read"));
        assert_eq!(got, [(1, "old 1".to_owned()), (2, "old 2".to_owned()), (3, "new".to_owned())]);
    }

    /// Offsets recovery cut from the end of the log (and reported) leave a segment that ends
    /// cleanly before the next one begins: passed over, not dead-lettered one by one.
    #[tokio::test]
    async fn offsets_recovery_cut_are_passed_over() {
        let dir = tempfile::tempdir().expect("dir");
        drop(log_of(dir.path(), 3, 1 << 20).await);
        let path = segment::path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[SECOND + record::HEADER + "record 2".len() + 1] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        std::fs::remove_file(dir.path().join(DURABLE_FILE)).expect("a durable file lost to a power cut");
        let appender = log_of(dir.path(), 0, 1 << 20).await;
        let after = appender.append(b"after".to_vec()).await.expect("append");
        assert!(after > 3, "offset 3 may have been acknowledged: never reused");
        let got = texts(&Reader::open(dir.path(), 0).read(10).expect("read"));
        assert_eq!(got, [(1, "record 1".to_owned()), (2, "record 2".to_owned()), (after, "after".to_owned())]);
    }

    /// Offsets that a finished segment should hold and does not (recovery cut them, or
    /// damage left nothing readable before the next segment) are handed out as gone.
    #[tokio::test]
    async fn offsets_missing_before_the_next_segment_are_handed_out_as_gone() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 20, 64).await;
        let bases = segment::list(dir.path()).expect("list");
        let (victim, following) = (bases[2], bases[3]);
        let path = segment::path(dir.path(), victim);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.truncate(record::HEADER + 2);
        std::fs::write(&path, &bytes).expect("write");
        let mut reader = Reader::open(dir.path(), 0);
        let read = reader.read(100).expect("read");
        assert_eq!(read.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>(), "every offset, in order");
        let gone: Vec<u64> = read.iter().filter(|r| r.1.is_err()).map(|r| r.0).collect();
        assert_eq!(gone, (victim..following).collect::<Vec<_>>());
    }

    /// A short write while preallocating at a full disk once left zeros at the end of a
    /// finished segment, and the reader stopped there for good.
    #[tokio::test]
    async fn zeros_after_the_last_record_of_a_finished_segment_are_not_records() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 10, 64).await;
        let first = segment::path(dir.path(), 1);
        let mut bytes = std::fs::read(&first).expect("read");
        bytes.extend_from_slice(&[0; 4096]);
        std::fs::write(&first, &bytes).expect("write");
        let mut reader = Reader::open(dir.path(), 0);
        let read = reader.read(100).expect("read");
        assert!(read.iter().all(|r| r.1.is_ok()));
        assert_eq!(read.len(), 10);
    }

    /// A read that fails after records were taken (here the next segment cannot be read)
    /// once dropped them, and the next read went on after them.
    #[tokio::test]
    async fn records_taken_before_a_read_error_are_handed_out() {
        let dir = tempfile::tempdir().expect("dir");
        let _appender = log_of(dir.path(), 10, 64).await;
        let bases = segment::list(dir.path()).expect("list");
        let broken = segment::path(dir.path(), bases[1]);
        let saved = std::fs::read(&broken).expect("read");
        std::fs::remove_file(&broken).expect("remove");
        std::fs::create_dir(&broken).expect("a directory reads with EISDIR");
        let mut reader = Reader::open(dir.path(), 0);
        let first = reader.read(100).expect("what comes before the broken segment");
        assert_eq!(first.iter().map(|r| r.0).collect::<Vec<_>>(), (1..bases[1]).collect::<Vec<_>>());
        assert!(reader.read(100).is_err(), "the error comes back");
        std::fs::remove_dir(&broken).expect("remove");
        std::fs::write(&broken, saved).expect("restore");
        let rest = reader.read(100).expect("read");
        assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), (bases[1]..=10).collect::<Vec<_>>(), "nothing skipped");
    }
}
