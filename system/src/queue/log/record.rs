//! The framing of one record: `[len u32 LE][crc32c u32 LE][payload]`.
//!
//! The checksum covers the length bytes as well as the payload, so a corrupted length is
//! caught too, and a run of zero bytes (a preallocated or torn page) never reads as a record.

/// Bytes before the payload.
pub const HEADER: usize = 8;
/// Larger lengths are corruption: no event comes near this (ingress limits bodies far below).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Appends one framed record to `buf`.
pub fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&checksum(&len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

fn checksum(len: &[u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len), payload)
}

/// What the bytes at the front of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, checked record and the bytes its frame takes.
    Record { payload: &'a [u8], frame: usize },
    /// The buffer ends inside a frame: a torn tail, or a write still in progress.
    Incomplete,
    /// The frame is complete but wrong.
    Corrupt(&'static str),
}

pub fn decode(buf: &[u8]) -> Decoded<'_> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else { return Decoded::Incomplete };
    let Some((crc, rest)) = rest.split_first_chunk::<4>() else { return Decoded::Incomplete };
    let n = u32::from_le_bytes(*len) as usize;
    if n == 0 || n > MAX_PAYLOAD {
        return Decoded::Corrupt("impossible length");
    }
    let Some(payload) = rest.get(..n) else { return Decoded::Incomplete };
    if checksum(len, payload) != u32::from_le_bytes(*crc) {
        return Decoded::Corrupt("checksum mismatch");
    }
    Decoded::Record { payload, frame: HEADER + n }
}

/// The frame's length when the record at the front is damaged but can be read past: its
/// length is plausible and a whole, checked record follows right after it. A flipped bit in
/// a payload then costs that one record, not every record behind it.
pub fn skippable(buf: &[u8]) -> Option<usize> {
    if matches!(decode(buf), Decoded::Record { .. }) {
        return None;
    }
    let n = u32::from_le_bytes(*buf.first_chunk::<4>()?) as usize;
    let frame = HEADER + n;
    let plausible = n > 0 && n <= MAX_PAYLOAD && frame < buf.len();
    (plausible && matches!(decode(&buf[frame..]), Decoded::Record { .. })).then_some(frame)
}

/// How far a buffer of records is valid: the records' count (damaged ones that could be read
/// past included) and bytes, and why it stops early if it does (`None` when every byte
/// belongs to a record).
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    pub records: u64,
    pub valid_bytes: usize,
    pub stop: Option<&'static str>,
    /// The indexes of the damaged records read past, and why each is damaged.
    pub damaged: Vec<(u64, &'static str)>,
}

pub fn scan(buf: &[u8]) -> Scan {
    let (mut records, mut at, mut damaged) = (0, 0, Vec::new());
    while at < buf.len() {
        let stop = match decode(&buf[at..]) {
            Decoded::Record { frame, .. } => {
                records += 1;
                at += frame;
                continue;
            }
            Decoded::Incomplete => "torn record",
            Decoded::Corrupt(why) => why,
        };
        match skippable(&buf[at..]) {
            Some(frame) => {
                damaged.push((records, stop));
                records += 1;
                at += frame;
            }
            None => return Scan { records, valid_bytes: at, stop: Some(stop), damaged },
        }
    }
    Scan { records, valid_bytes: at, stop: None, damaged }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            encode_into(&mut buf, p);
        }
        buf
    }

    #[test]
    fn records_read_back_as_written() {
        let buf = framed(&[b"one", b"two"]);
        let Decoded::Record { payload, frame } = decode(&buf) else { panic!("first record") };
        assert_eq!((payload, frame), (&b"one"[..], HEADER + 3));
        assert_eq!(decode(&buf[frame..]), Decoded::Record { payload: b"two", frame: HEADER + 3 });
        assert_eq!(scan(&buf), Scan { records: 2, valid_bytes: buf.len(), stop: None, damaged: vec![] });
    }

    #[test]
    fn every_cut_inside_the_last_frame_is_incomplete() {
        let buf = framed(&[b"first", b"second"]);
        let first = HEADER + 5;
        for cut in first + 1..buf.len() {
            assert_eq!(scan(&buf[..cut]), Scan { records: 1, valid_bytes: first, stop: Some("torn record"), damaged: vec![] }, "cut at {cut}");
        }
    }

    #[test]
    fn any_flipped_bit_is_caught() {
        let buf = framed(&[b"payload"]);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(!matches!(decode(&bad), Decoded::Record { .. }), "flip {byte}:{bit} read as a record");
            }
        }
    }

    #[test]
    fn a_damaged_record_followed_by_a_whole_one_is_read_past() {
        let mut buf = framed(&[b"one", b"two", b"three"]);
        buf[HEADER + 3 + HEADER] ^= 0x10;
        let scan = scan(&buf);
        assert_eq!((scan.records, scan.valid_bytes, scan.stop), (3, buf.len(), None));
        assert_eq!(scan.damaged, [(1, "checksum mismatch")]);
        let mut last = framed(&[b"one", b"two"]);
        let end = last.len() - 1;
        last[end] ^= 0x10;
        assert_eq!(super::scan(&last).stop, Some("checksum mismatch"), "nothing whole follows the last record");
    }

    #[test]
    fn zeroes_are_not_records() {
        assert_eq!(decode(&[0u8; 64]), Decoded::Corrupt("impossible length"));
    }
}
