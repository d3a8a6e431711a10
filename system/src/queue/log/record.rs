//! The framing of records in a segment.
//!
//! A segment starts with [`MAGIC`], then frames `[len u32 LE][crc32c u32 LE][offset u64 LE][payload]`.
//! The checksum covers the length, the offset and the payload, so a corrupted length or
//! offset is caught too, and a run of zero bytes (a preallocated or torn page) never reads as
//! a record. Each record carrying its own offset (as Kafka's batches and TigerBeetle's headers
//! do) is what lets a reader find its way past damage: the next whole frame says which offsets
//! the damaged bytes before it held, so numbering never slips.
//!
//! The appender syncs one group at a time, and a group's first record carries
//! [`GROUP_START`] in its length: every byte before it in the segment was synced before it
//! was written. That is how a scan tells damage on the medium from a write a power cut tore:
//! pages of the one group whose sync never returned may reach the disk in any order, so its
//! records can be damaged with whole ones after them; but a whole group start after damage
//! proves the damage was synced first.
//!
//! Segments of the previous release ([`Format::V1`]) have no magic and frames without the
//! offset (`[len][crc32c][payload]`, the checksum over length and payload); they are still
//! read, and read past a damaged record only when a whole one follows right after it. The
//! magic's fourth byte is the high byte of a v1 segment's first length, which is at most
//! [`MAX_PAYLOAD`] (0 or 1): no v1 segment can start like a v2 one, and no single flipped bit
//! turns the magic into a v1 length.

use crate::holes::{self, Hole};

/// The first bytes of every segment in the current format.
pub const MAGIC: [u8; 4] = [b'W', b'H', b'L', 0xF2];
/// Bytes before the payload.
pub const HEADER: usize = 16;
/// Bytes before the payload in a [`Format::V1`] segment.
pub const HEADER_V1: usize = 8;
/// Set in the length of a group's first record (see the module's docs).
pub const GROUP_START: u32 = 1 << 31;
/// Larger lengths are corruption: no event comes near this (ingress limits bodies far below).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// How a segment's records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The previous release's frames, without offsets and without a magic.
    V1,
    /// [`MAGIC`], then frames that carry their offsets.
    V2,
}

impl Format {
    /// The format of a segment that starts with `bytes`; `None` while too short to tell.
    pub fn of(bytes: &[u8]) -> Option<Format> {
        let high = *bytes.get(MAGIC.len() - 1)?;
        Some(if high > (MAX_PAYLOAD >> 24) as u8 { Format::V2 } else { Format::V1 })
    }

    /// Where the first record starts.
    pub fn start(self) -> usize {
        match self {
            Format::V1 => 0,
            Format::V2 => MAGIC.len(),
        }
    }

    /// The smallest frame: a header and one byte (an empty payload is never written).
    pub fn min_frame(self) -> usize {
        match self {
            Format::V1 => HEADER_V1 + 1,
            Format::V2 => HEADER + 1,
        }
    }
}

/// Appends one framed record with its offset to `buf`; `group_start` for a group's first.
pub fn encode_into(buf: &mut Vec<u8>, offset: u64, payload: &[u8], group_start: bool) {
    let flag = if group_start { GROUP_START } else { 0 };
    let len = (payload.len() as u32 | flag).to_le_bytes();
    let offset = offset.to_le_bytes();
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&checksum(&len, &offset, payload).to_le_bytes());
    buf.extend_from_slice(&offset);
    buf.extend_from_slice(payload);
}

fn checksum(len: &[u8; 4], offset: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c_append(crc32c::crc32c(len), offset), payload)
}

/// What the bytes at the front of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, checked record, the bytes its frame takes, and whether it starts a group.
    Record { payload: &'a [u8], frame: usize, group_start: bool },
    /// The buffer ends inside a frame: a torn tail, or a write still in progress.
    Incomplete,
    /// The frame is complete but wrong.
    Corrupt(&'static str),
}

/// The record at the front of `buf` in a segment of `format`, which should hold `offset`.
pub fn decode(format: Format, buf: &[u8], offset: u64) -> Decoded<'_> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else { return Decoded::Incomplete };
    let Some((crc, rest)) = rest.split_first_chunk::<4>() else { return Decoded::Incomplete };
    let (n, group_start) = length(format, *len);
    if n == 0 || n > MAX_PAYLOAD {
        return Decoded::Corrupt("impossible length");
    }
    let (stored, rest) = match format {
        Format::V1 => (None, rest),
        Format::V2 => match rest.split_first_chunk::<8>() {
            Some((stored, rest)) => (Some(stored), rest),
            None => return Decoded::Incomplete,
        },
    };
    let Some(payload) = rest.get(..n) else { return Decoded::Incomplete };
    let sum = match stored {
        Some(stored) => checksum(len, stored, payload),
        None => checksum(len, &[], payload),
    };
    if sum != u32::from_le_bytes(*crc) {
        return Decoded::Corrupt("checksum mismatch");
    }
    if stored.is_some_and(|s| u64::from_le_bytes(*s) != offset) {
        return Decoded::Corrupt("record of another offset");
    }
    Decoded::Record { payload, frame: buf.len() - rest.len() + n, group_start }
}

/// A frame's payload length and group flag (v1 frames have no flag: the bit is corruption).
fn length(format: Format, len: [u8; 4]) -> (usize, bool) {
    let raw = u32::from_le_bytes(len);
    match format {
        Format::V1 => (raw as usize, false),
        Format::V2 => ((raw & !GROUP_START) as usize, raw & GROUP_START != 0),
    }
}

/// After a damaged record at the front of `buf` (a v2 segment) that should hold `offset`: the
/// next whole record behind it, as its position in `buf` and its offset. The damaged bytes
/// then held exactly the offsets from `offset` up to that one. Cheap filters come before the
/// checksum: a plausible length that fits, and an offset the bytes skipped could lead to
/// (each record takes at least [`Format::min_frame`] bytes). Accepted no further than `most`.
pub fn resync(buf: &[u8], offset: u64, most: u64) -> Option<(usize, u64)> {
    let min = Format::V2.min_frame();
    (1..buf.len().saturating_sub(HEADER)).find_map(|at| {
        let frame = &buf[at..];
        let (n, _) = length(Format::V2, *frame.first_chunk::<4>()?);
        if n == 0 || n > MAX_PAYLOAD || HEADER + n > frame.len() {
            return None;
        }
        let found = u64::from_le_bytes(*frame[8..].first_chunk::<8>()?);
        let reachable = offset + (at / min) as u64;
        if found <= offset || found > reachable || found > most {
            return None;
        }
        matches!(decode(Format::V2, frame, found), Decoded::Record { .. }).then_some((at, found))
    })
}

/// The frame's length when the record at the front of a v1 segment is damaged but can be read
/// past: its length is plausible and a whole, checked record follows right after it.
pub fn skippable_v1(buf: &[u8]) -> Option<usize> {
    if matches!(decode(Format::V1, buf, 0), Decoded::Record { .. }) {
        return None;
    }
    let n = u32::from_le_bytes(*buf.first_chunk::<4>()?) as usize;
    let frame = HEADER_V1 + n;
    let plausible = n > 0 && n <= MAX_PAYLOAD && frame < buf.len();
    (plausible && matches!(decode(Format::V1, &buf[frame..], 0), Decoded::Record { .. })).then_some(frame)
}

/// How many records, at most, `bytes` could hold whole: those cut from the end of a segment,
/// whose acknowledged records (if any were) must keep their offsets out of reuse. A record's
/// offset is never 0, so a record starts at least 8 bytes (its length and checksum) before a
/// non-zero byte (in v1, at one: its length): trailing zeros hold none.
pub fn most_records(format: Format, bytes: &[u8]) -> u64 {
    let lead = match format {
        Format::V1 => 0,
        Format::V2 => 8,
    };
    bytes.iter().rposition(|&b| b != 0).map_or(0, |last| (last.saturating_sub(lead) / format.min_frame()) as u64 + 1)
}

/// How far a segment is valid: the offsets it holds (damaged ones read past included), the
/// bytes up to its last whole record, and why it stops early if it does (`None` when every
/// byte belongs to a record).
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    pub format: Format,
    pub records: u64,
    pub valid_bytes: usize,
    pub stop: Option<&'static str>,
    /// The indexes of the damaged records read past, and why each is damaged.
    pub damaged: Vec<(u64, &'static str)>,
}

/// Damaged records read past: the first one's index, its byte position, why, and the index
/// of the whole record after them.
struct Run {
    first: u64,
    at: usize,
    why: &'static str,
    next: u64,
}

/// Scans a whole segment whose first offset is `base`: the newest, after a crash. Records
/// below `durable_below` are known to have been synced (published, or passed by a stored
/// position). Damage that no whole record follows, or only records of its own group (the
/// last one, which a power cut may have torn; see [`GROUP_START`]), ends the scan unless it is
/// known synced; other damage is read past.
pub fn scan(buf: &[u8], base: u64, durable_below: u64) -> Scan {
    let format = Format::of(buf).unwrap_or(Format::V2);
    let (mut records, mut at, mut runs) = (0, format.start().min(buf.len()), Vec::new());
    // Where the last whole group start lies: damage before it was synced.
    let mut last_start = 0;
    let mut stop = None;
    while at < buf.len() {
        let why = match decode(format, &buf[at..], base + records) {
            Decoded::Record { frame, group_start, .. } => {
                if group_start {
                    last_start = at;
                }
                records += 1;
                at += frame;
                continue;
            }
            Decoded::Incomplete => "torn record",
            Decoded::Corrupt(why) => why,
        };
        let skipped = match format {
            Format::V1 => skippable_v1(&buf[at..]).map(|frame| (frame, base + records + 1)),
            Format::V2 => resync(&buf[at..], base + records, u64::MAX),
        };
        let Some((frame, next)) = skipped else {
            stop = Some(why);
            break;
        };
        runs.push(Run { first: records, at, why, next: next - base });
        records = next - base;
        at += frame;
    }
    let in_last_group = |r: &Run| format == Format::V2 && r.at > last_start && base + r.first >= durable_below;
    let torn = runs.iter().position(in_last_group).filter(|_| !holes::open(Hole::TornGroupReadPast));
    if let Some(i) = torn {
        (records, at, stop) = (runs[i].first, runs[i].at, Some(runs[i].why));
        runs.truncate(i);
    }
    let damaged = runs.iter().flat_map(|r| (r.first..r.next).map(move |i| (i, r.why))).collect();
    Scan { format, records, valid_bytes: at, stop, damaged }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A v2 segment of `payloads` numbered from `base`: the magic, then the frames, each
    /// record a group of its own (synced before the next was written).
    pub(crate) fn segment(base: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = MAGIC.to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_into(&mut buf, base + i as u64, p, true);
        }
        buf
    }

    /// Appends `payloads` to `buf` as one group numbered from `base`.
    pub(crate) fn group(buf: &mut Vec<u8>, base: u64, payloads: &[&[u8]]) {
        for (i, p) in payloads.iter().enumerate() {
            encode_into(buf, base + i as u64, p, i == 0);
        }
    }

    /// A segment of the previous release, framed as its encoder did.
    pub(crate) fn segment_v1(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            let len = (p.len() as u32).to_le_bytes();
            buf.extend_from_slice(&len);
            buf.extend_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&len), p).to_le_bytes());
            buf.extend_from_slice(p);
        }
        buf
    }

    fn frame(p: &[u8]) -> usize {
        HEADER + p.len()
    }

    #[test]
    fn records_read_back_as_written_and_only_at_their_offset() {
        let buf = segment(7, &[b"one", b"two"]);
        let at = MAGIC.len();
        assert_eq!(decode(Format::V2, &buf[at..], 7), Decoded::Record { payload: b"one", frame: frame(b"one"), group_start: true });
        assert_eq!(decode(Format::V2, &buf[at + frame(b"one")..], 8), Decoded::Record { payload: b"two", frame: frame(b"two"), group_start: true });
        assert_eq!(decode(Format::V2, &buf[at..], 8), Decoded::Corrupt("record of another offset"));
        assert_eq!(scan(&buf, 7, 0), Scan { format: Format::V2, records: 2, valid_bytes: buf.len(), stop: None, damaged: vec![] });
    }

    #[test]
    fn a_segment_of_the_previous_release_is_still_read() {
        let buf = segment_v1(&[b"one", b"two"]);
        assert_eq!(Format::of(&buf), Some(Format::V1));
        assert_eq!(decode(Format::V1, &buf, 1), Decoded::Record { payload: b"one", frame: HEADER_V1 + 3, group_start: false });
        assert_eq!(scan(&buf, 1, 0), Scan { format: Format::V1, records: 2, valid_bytes: buf.len(), stop: None, damaged: vec![] });
        let mut damaged = segment_v1(&[b"one", b"two", b"three"]);
        damaged[HEADER_V1 + 3 + HEADER_V1] ^= 0x10;
        assert_eq!(scan(&damaged, 1, 0).damaged, [(1, "checksum mismatch")]);
    }

    #[test]
    fn no_flipped_bit_makes_the_magic_read_as_a_previous_release_segment() {
        for bit in 0..32 {
            let mut magic = MAGIC;
            magic[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Format::of(&magic), Some(Format::V2), "bit {bit}");
        }
        let mut buf = segment(1, &[b"one", b"two"]);
        buf[1] ^= 0x04;
        assert_eq!(scan(&buf, 1, 0).records, 2, "a damaged magic costs no record");
    }

    #[test]
    fn every_cut_inside_the_last_frame_is_incomplete() {
        let buf = segment(1, &[b"first", b"second"]);
        let first = MAGIC.len() + frame(b"first");
        for cut in first + 1..buf.len() {
            let scan = scan(&buf[..cut], 1, 0);
            assert_eq!((scan.records, scan.valid_bytes, scan.stop), (1, first, Some("torn record")), "cut at {cut}");
        }
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let buf = segment(1, &[b"payload"]);
        for byte in MAGIC.len()..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(!matches!(decode(Format::V2, &bad[MAGIC.len()..], 1), Decoded::Record { .. }), "flip {byte}:{bit} read as a record");
            }
        }
    }

    /// Wherever one bit flips in a record followed by a whole one (its length, its checksum,
    /// its offset or its payload), the scan reads past it and numbers on exactly.
    #[test]
    fn any_flip_in_a_record_with_a_whole_one_after_it_costs_that_record_alone() {
        let buf = segment(10, &[b"one", b"two", b"three"]);
        let second = MAGIC.len() + frame(b"one");
        for byte in second..second + frame(b"two") {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                let scan = scan(&bad, 10, 0);
                assert_eq!((scan.records, scan.valid_bytes, scan.stop), (3, buf.len(), None), "flip {byte}:{bit}");
                assert_eq!(scan.damaged.iter().map(|d| d.0).collect::<Vec<_>>(), [1], "flip {byte}:{bit}");
            }
        }
    }

    #[test]
    fn two_damaged_records_side_by_side_are_both_named_and_numbering_goes_on() {
        let mut buf = segment(1, &[b"one", b"two", b"three", b"four"]);
        let second = MAGIC.len() + frame(b"one");
        buf[second] ^= 0x40; // the second's length
        buf[second + frame(b"two") + HEADER] ^= 0x01; // the third's payload
        let scan = scan(&buf, 1, 0);
        assert_eq!((scan.records, scan.valid_bytes, scan.stop), (4, buf.len(), None));
        assert_eq!(scan.damaged.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn damage_nothing_whole_follows_stops_the_scan_and_bounds_what_it_could_hold() {
        let mut buf = segment(1, &[b"one", b"two"]);
        let end = buf.len() - 1;
        buf[end] ^= 0x10;
        let scan = scan(&buf, 1, 0);
        assert_eq!((scan.records, scan.stop), (1, Some("checksum mismatch")), "nothing whole follows the last record");
        let cut = &buf[scan.valid_bytes..];
        let most = most_records(Format::V2, cut);
        assert!(most >= 1, "the damaged record's offset is kept out of reuse");
        let mut with_zeros = cut.to_vec();
        with_zeros.extend_from_slice(&[0; 4096]);
        assert_eq!(most_records(Format::V2, &with_zeros), most, "preallocated zeros hold no record");
        assert!(most_records(Format::V2, &segment(1, &[b"a", b"b", b"c"])[MAGIC.len()..]) >= 3);
    }

    /// The last group's head page never reached the disk while a later page of it did (a
    /// power cut during its fsync): nothing of it was acknowledged, so it is a torn write, cut
    /// with the whole records behind it, not damage to read past.
    #[test]
    fn damage_in_the_last_group_ends_the_scan_though_records_of_it_follow() {
        let mut buf = segment(1, &[b"one", b"two"]);
        let synced = buf.len();
        group(&mut buf, 3, &[b"three", b"four", b"five"]);
        buf[synced..synced + HEADER + 2].fill(0);
        let end = buf.len();
        let mut preallocated = buf.clone();
        preallocated.resize(end + 4096, 0);
        for buf in [&buf, &preallocated] {
            let scan_ = scan(buf, 1, 0);
            assert_eq!((scan_.records, scan_.valid_bytes, scan_.stop), (2, synced, Some("impossible length")));
            assert_eq!(scan_.damaged, []);
            let known = scan(buf, 1, 4);
            assert_eq!((known.records, known.valid_bytes), (5, end), "offset 3 was published as durable");
            assert_eq!(known.damaged, [(2, "impossible length")]);
        }
    }

    /// A group start written after the damage proves the damaged group was synced before it.
    #[test]
    fn damage_before_a_later_group_is_read_past() {
        let mut buf = MAGIC.to_vec();
        group(&mut buf, 1, &[b"one", b"two", b"three"]);
        group(&mut buf, 4, &[b"four", b"five"]);
        buf[MAGIC.len() + frame(b"one") + HEADER] ^= 0x01;
        let scan = scan(&buf, 1, 0);
        assert_eq!((scan.records, scan.valid_bytes, scan.stop), (5, buf.len(), None));
        assert_eq!(scan.damaged, [(1, "checksum mismatch")]);
    }

    #[test]
    fn the_group_flag_is_read_apart_from_the_length_and_checked() {
        let mut buf = Vec::new();
        group(&mut buf, 1, &[b"one", b"two"]);
        assert_eq!(decode(Format::V2, &buf, 1), Decoded::Record { payload: b"one", frame: frame(b"one"), group_start: true });
        assert_eq!(decode(Format::V2, &buf[frame(b"one")..], 2), Decoded::Record { payload: b"two", frame: frame(b"two"), group_start: false });
        buf[3] ^= 0x80;
        assert_eq!(decode(Format::V2, &buf, 1), Decoded::Corrupt("checksum mismatch"), "a flipped flag is damage");
    }

    #[test]
    fn zeroes_are_not_records() {
        assert_eq!(decode(Format::V2, &[0u8; 64], 1), Decoded::Corrupt("impossible length"));
        assert_eq!(resync(&[0u8; 4096], 1, u64::MAX), None);
    }
}
