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

/// How far a buffer of records is valid: the records' count and bytes, and why it stops
/// early if it does (`None` when every byte belongs to a whole record).
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    pub records: u64,
    pub valid_bytes: usize,
    pub stop: Option<&'static str>,
}

pub fn scan(buf: &[u8]) -> Scan {
    let (mut records, mut at) = (0, 0);
    while at < buf.len() {
        match decode(&buf[at..]) {
            Decoded::Record { frame, .. } => {
                records += 1;
                at += frame;
            }
            Decoded::Incomplete => return Scan { records, valid_bytes: at, stop: Some("torn record") },
            Decoded::Corrupt(why) => return Scan { records, valid_bytes: at, stop: Some(why) },
        }
    }
    Scan { records, valid_bytes: at, stop: None }
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
        assert_eq!(scan(&buf), Scan { records: 2, valid_bytes: buf.len(), stop: None });
    }

    #[test]
    fn every_cut_inside_the_last_frame_is_incomplete() {
        let buf = framed(&[b"first", b"second"]);
        let first = HEADER + 5;
        for cut in first + 1..buf.len() {
            assert_eq!(scan(&buf[..cut]), Scan { records: 1, valid_bytes: first, stop: Some("torn record") }, "cut at {cut}");
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
    fn zeroes_are_not_records() {
        assert_eq!(decode(&[0u8; 64]), Decoded::Corrupt("impossible length"));
    }
}
