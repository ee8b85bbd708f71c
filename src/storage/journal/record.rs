//! One journal record: a whole [`Write`] batch, framed so that a torn or damaged tail is
//! recognised rather than replayed.
//!
//! ```text
//! record = body_len: u32 LE | crc32(body): u32 LE | body
//! body   = write_count: u32 LE | write*
//! write  = 1 | key_len: u32 LE | key | value_len: u32 LE | value     (put)
//!        | 2 | key_len: u32 LE | key                                (delete)
//!        | 3 | start_len: u32 LE | start | end_len: u32 LE | end    (delete range)
//! ```
//!
//! A body is never empty (it holds at least its count), so zeroes never read as a record:
//! the zeroes a file is preallocated with (see `files::create`) read as its end.

use crate::storage::Write;

/// Bytes before a record's body: its length and its checksum.
pub const RECORD_HEADER_BYTES: usize = 8;

/// The largest body a record may have; a batch larger than this is refused by `encode`.
pub const RECORD_BODY_BYTES_MAX: usize = u32::MAX as usize;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_DELETE_RANGE: u8 = 3;

/// Appends the record for `batch` to `out`. Fails only for a batch over
/// [`RECORD_BODY_BYTES_MAX`].
pub fn encode(batch: &[Write], out: &mut Vec<u8>) -> Result<(), String> {
    let record_start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    let count = u32::try_from(batch.len()).map_err(|_| too_large(batch.len()))?;
    out.extend_from_slice(&count.to_le_bytes());
    for write in batch {
        match write {
            Write::Put(key, value) => {
                out.push(TAG_PUT);
                put_bytes(out, key)?;
                put_bytes(out, value)?;
            }
            Write::Delete(key) => {
                out.push(TAG_DELETE);
                put_bytes(out, key)?;
            }
            Write::DeleteRange(start, end) => {
                out.push(TAG_DELETE_RANGE);
                put_bytes(out, start)?;
                put_bytes(out, end)?;
            }
        }
    }
    let body_len = out.len() - record_start - RECORD_HEADER_BYTES;
    let body_len_field = u32::try_from(body_len).map_err(|_| too_large(body_len))?;
    let crc = crc32fast::hash(&out[record_start + RECORD_HEADER_BYTES..]);
    out[record_start..record_start + 4].copy_from_slice(&body_len_field.to_le_bytes());
    out[record_start + 4..record_start + RECORD_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn too_large(bytes: usize) -> String {
    format!("a batch of {bytes} bytes or writes is too large for one journal record")
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = u32::try_from(bytes.len()).map_err(|_| too_large(bytes.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, intact record and the bytes it took.
    Record(Vec<Write>, usize),
    /// Nothing left: the buffer is empty or holds only zeroes (preallocated, never written).
    End,
    /// An incomplete or damaged record: what a crash in the middle of a write leaves.
    Torn(&'static str),
}

/// Reads the record at the start of `buffer`. A record whose checksum matches but whose
/// body does not parse can only come from a bug or deliberate damage; it is reported as
/// `Err`.
pub fn decode(buffer: &[u8]) -> Result<Decoded, String> {
    if buffer.iter().all(|byte| *byte == 0) {
        return Ok(Decoded::End);
    }
    if buffer.len() < RECORD_HEADER_BYTES {
        return Ok(Decoded::Torn("a record header is cut short"));
    }
    let body_len = read_u32(buffer, 0) as usize;
    let crc = read_u32(buffer, 4);
    if body_len < 4 {
        return Ok(Decoded::Torn("a record header names an impossible length"));
    }
    let Some(body) = buffer.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + body_len) else {
        return Ok(Decoded::Torn("a record body is cut short"));
    };
    if crc32fast::hash(body) != crc {
        return Ok(Decoded::Torn("a record's checksum does not match"));
    }
    let writes = parse_body(body)?;
    Ok(Decoded::Record(writes, RECORD_HEADER_BYTES + body_len))
}

fn read_u32(buffer: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&buffer[at..at + 4]);
    u32::from_le_bytes(bytes)
}

/// A cursor over a checksummed body.
struct Body<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Body<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let slice = self
            .at
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| "a journal record with a valid checksum does not parse".to_string())?;
        self.at += len;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(read_u32(bytes, 0))
    }

    fn field(&mut self) -> Result<Vec<u8>, String> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
}

fn parse_body(bytes: &[u8]) -> Result<Vec<Write>, String> {
    let mut body = Body { bytes, at: 0 };
    let count = body.u32()? as usize;
    // Each write takes at least 5 bytes, so a count beyond that cannot be honest; checking
    // first keeps a damaged count from reserving memory.
    if count > bytes.len() / 5 {
        return Err(format!(
            "a journal record with a valid checksum claims {count} writes in {} bytes",
            bytes.len()
        ));
    }
    let mut writes = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = body.take(1)?[0];
        writes.push(match tag {
            TAG_PUT => Write::Put(body.field()?, body.field()?),
            TAG_DELETE => Write::Delete(body.field()?),
            TAG_DELETE_RANGE => Write::DeleteRange(body.field()?, body.field()?),
            other => {
                return Err(format!(
                    "a journal record holds an unknown write tag {other}"
                ))
            }
        });
    }
    if body.at != bytes.len() {
        return Err("a journal record has bytes after its last write".to_string());
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Write> {
        vec![
            Write::Put(b"job/1".to_vec(), b"payload".to_vec()),
            Write::Delete(b"job/0".to_vec()),
            Write::DeleteRange(b"h/1/".to_vec(), b"h/1/\xff".to_vec()),
            Write::Put(Vec::new(), Vec::new()),
        ]
    }

    #[test]
    fn a_record_round_trips_and_reports_its_length() {
        let mut buffer = Vec::new();
        encode(&sample(), &mut buffer).expect("encode");
        encode(&[], &mut buffer).expect("an empty batch is a record too");
        let Ok(Decoded::Record(writes, used)) = decode(&buffer) else {
            panic!("first record")
        };
        assert_eq!(writes, sample());
        assert_eq!(
            decode(&buffer[used..]),
            Ok(Decoded::Record(Vec::new(), RECORD_HEADER_BYTES + 4))
        );
        assert_eq!(decode(&buffer[buffer.len()..]), Ok(Decoded::End));
    }

    #[test]
    fn every_cut_and_every_flipped_bit_reads_as_torn_never_as_a_record() {
        let mut buffer = Vec::new();
        encode(&sample(), &mut buffer).expect("encode");
        for cut in 1..buffer.len() {
            assert!(
                matches!(decode(&buffer[..cut]), Ok(Decoded::Torn(_))),
                "cut at {cut}"
            );
        }
        for bit in 0..buffer.len() * 8 {
            let mut damaged = buffer.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&damaged), Ok(Decoded::Record(..))),
                "bit {bit} flipped still decoded"
            );
        }
    }

    #[test]
    fn zeroes_are_the_end_not_an_empty_record_and_a_record_cut_into_zeroes_is_torn() {
        assert_eq!(decode(&[0; 64]), Ok(Decoded::End));
        let mut buffer = Vec::new();
        encode(&[Write::Delete(b"k".to_vec())], &mut buffer).expect("encode");
        let last = buffer.len() - 1;
        buffer[last] = 0;
        buffer.extend_from_slice(&[0; 64]);
        assert!(matches!(decode(&buffer), Ok(Decoded::Torn(_))));
    }

    #[test]
    fn a_checksummed_body_that_does_not_parse_is_an_error() {
        let body = [1, 0, 0, 0, 9, 0, 0, 0, 0];
        let mut record = Vec::new();
        record.extend_from_slice(&(body.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        record.extend_from_slice(&body);
        assert!(decode(&record).is_err());
    }
}
