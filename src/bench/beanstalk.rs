//! The few beanstalkd commands the bench needs (`use`, `watch`, `ignore`, `put`,
//! `reserve-with-timeout`, `delete`), after beanstalkd's `doc/protocol.txt`.
//!
//! Every reply is one `\r\n`-terminated line; `RESERVED <id> <bytes>` (and `FOUND`, `OK`)
//! are followed by `<bytes>` of data and another `\r\n`.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use super::pipeline::{ReplyParser, REPLY_BYTES_MAX};

/// Longest reply line accepted (the longest real one, `RESERVED <id> <bytes>`, is < 64).
const LINE_BYTES_MAX: usize = 224;

/// Priority of bench jobs; all equal, so beanstalkd serves them in FIFO order.
const PUT_PRIORITY: u32 = 1_024;

/// Time to run in seconds: far beyond a bench run, so no job is handed out twice because
/// its reservation ran out.
pub(crate) const TIME_TO_RUN_S: u32 = 3_600;

/// One beanstalkd reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BeanstalkReply {
    /// The reply line without its `\r\n`, e.g. `INSERTED 7`.
    pub(crate) line: String,
    /// The data block after `RESERVED`, `FOUND` or `OK`.
    pub(crate) data: Option<Bytes>,
}

impl BeanstalkReply {
    /// The first word of the line.
    pub(crate) fn status(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }

    /// The `index`-th word after the status parsed as a number.
    pub(crate) fn number(&self, index: usize) -> Result<u64, String> {
        self.line
            .split(' ')
            .nth(index + 1)
            .and_then(|word| word.parse().ok())
            .ok_or_else(|| format!("beanstalkd reply {:?} lacks a number", self.line))
    }
}

/// Parses beanstalkd replies.
#[derive(Debug, Default)]
pub(crate) struct BeanstalkParser;

impl ReplyParser for BeanstalkParser {
    type Reply = BeanstalkReply;

    fn parse(&mut self, buffer: &mut BytesMut) -> Result<Option<BeanstalkReply>, String> {
        let Some(line_end) = buffer.windows(2).position(|pair| pair == b"\r\n") else {
            if buffer.len() > LINE_BYTES_MAX {
                return Err("beanstalkd reply line too long".into());
            }
            return Ok(None);
        };
        if line_end > LINE_BYTES_MAX {
            return Err("beanstalkd reply line too long".into());
        }
        let line = std::str::from_utf8(&buffer[..line_end])
            .map_err(|_| "beanstalkd reply line is not UTF-8".to_string())?
            .to_string();
        let mut reply = BeanstalkReply { line, data: None };
        let data_bytes = match reply.status() {
            "RESERVED" | "FOUND" => Some(reply.number(1)?),
            "OK" => Some(reply.number(0)?),
            _ => None,
        };
        let Some(data_bytes) = data_bytes else {
            buffer.advance(line_end + 2);
            return Ok(Some(reply));
        };
        let data_bytes = usize::try_from(data_bytes)
            .ok()
            .filter(|bytes| *bytes <= REPLY_BYTES_MAX)
            .ok_or_else(|| format!("beanstalkd data block of {data_bytes} bytes"))?;
        let total_bytes = line_end + 2 + data_bytes + 2;
        if buffer.len() < total_bytes {
            return Ok(None);
        }
        if &buffer[total_bytes - 2..total_bytes] != b"\r\n" {
            return Err("beanstalkd data block not followed by CRLF".into());
        }
        buffer.advance(line_end + 2);
        reply.data = Some(buffer.split_to(data_bytes).freeze());
        buffer.advance(2);
        Ok(Some(reply))
    }
}

/// `put` with the bench's priority, no delay and [`TIME_TO_RUN_S`].
pub(crate) fn put(payload: &[u8]) -> Bytes {
    let mut command = BytesMut::with_capacity(payload.len() + 48);
    command.put_slice(
        format!("put {PUT_PRIORITY} 0 {TIME_TO_RUN_S} {}\r\n", payload.len()).as_bytes(),
    );
    command.put_slice(payload);
    command.put_slice(b"\r\n");
    command.freeze()
}

/// A command made of one text line.
pub(crate) fn line(text: &str) -> Bytes {
    Bytes::from(format!("{text}\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_data_blocks_split_anywhere() {
        let stream = b"USING t\r\nRESERVED 12 4\r\nab\r\n\r\nTIMED_OUT\r\n";
        for split in 0..stream.len() {
            let mut parser = BeanstalkParser;
            let mut buffer = BytesMut::from(&stream[..split]);
            let mut replies = Vec::new();
            while let Some(reply) = parser.parse(&mut buffer).expect("valid") {
                replies.push(reply);
            }
            buffer.extend_from_slice(&stream[split..]);
            while let Some(reply) = parser.parse(&mut buffer).expect("valid") {
                replies.push(reply);
            }
            assert_eq!(replies.len(), 3, "split at {split}");
            assert_eq!(replies[1].number(0), Ok(12));
            assert_eq!(replies[1].data.as_deref(), Some(&b"ab\r\n"[..]));
            assert_eq!(replies[2].status(), "TIMED_OUT");
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn rejects_garbage() {
        let mut buffer = BytesMut::from(&b"RESERVED 1 2\r\nabXY"[..]);
        assert!(BeanstalkParser.parse(&mut buffer).is_err());
        let mut buffer = BytesMut::from(&[b'x'; LINE_BYTES_MAX + 1][..]);
        assert!(BeanstalkParser.parse(&mut buffer).is_err());
    }
}
