//! Just enough RESP2 (the Redis protocol) for the reliable-queue pattern: commands are
//! arrays of bulk strings; replies are simple strings, errors, integers, bulk strings and
//! arrays (nesting allowed), with `$-1` and `*-1` as nulls.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use super::pipeline::{ReplyParser, REPLY_BYTES_MAX};

/// Longest header line accepted (`$<length>` or `*<count>`), and of simple strings and
/// errors.
const LINE_BYTES_MAX: usize = 4 * 1024;

/// Deepest array nesting accepted; the bench's commands never nest.
const NESTING_MAX: usize = 4;

/// Most elements in one array reply; the bench's replies have at most a few.
const ARRAY_ELEMENTS_MAX: i64 = 1_024;

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RespReply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:5`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Bytes),
    /// `$-1` or `*-1`.
    Null,
    /// `*2\r\n...`.
    Array(Vec<RespReply>),
}

/// Parses RESP replies.
#[derive(Debug, Default)]
pub(crate) struct RespParser;

impl ReplyParser for RespParser {
    type Reply = RespReply;

    fn parse(&mut self, buffer: &mut BytesMut) -> Result<Option<RespReply>, String> {
        let mut position = 0;
        match parse_at(buffer, &mut position, 0)? {
            Some(reply) => {
                buffer.advance(position);
                Ok(Some(reply))
            }
            None => Ok(None),
        }
    }
}

/// Parses one value starting at `*position`, advancing it past the value on success.
fn parse_at(
    buffer: &[u8],
    position: &mut usize,
    depth: usize,
) -> Result<Option<RespReply>, String> {
    if depth > NESTING_MAX {
        return Err("RESP reply nested too deeply".into());
    }
    let start = *position;
    let Some(relative_end) = buffer[start..].windows(2).position(|pair| pair == b"\r\n") else {
        if buffer.len() - start > LINE_BYTES_MAX {
            return Err("RESP line too long".into());
        }
        return Ok(None);
    };
    if relative_end == 0 || relative_end > LINE_BYTES_MAX {
        return Err("RESP line empty or too long".into());
    }
    let line = &buffer[start + 1..start + relative_end];
    let text = std::str::from_utf8(line).map_err(|_| "RESP line is not UTF-8".to_string())?;
    let after_line = start + relative_end + 2;
    let number = || -> Result<i64, String> {
        text.parse()
            .map_err(|_| format!("RESP length {text:?} is not a number"))
    };
    let reply = match buffer[start] {
        b'+' => RespReply::Simple(text.to_string()),
        b'-' => RespReply::Error(text.to_string()),
        b':' => RespReply::Integer(number()?),
        b'$' => {
            let length = number()?;
            if length < 0 {
                RespReply::Null
            } else {
                let length = usize::try_from(length)
                    .ok()
                    .filter(|length| *length <= REPLY_BYTES_MAX)
                    .ok_or_else(|| format!("RESP bulk of {length} bytes"))?;
                let end = after_line + length;
                if buffer.len() < end + 2 {
                    return Ok(None);
                }
                if &buffer[end..end + 2] != b"\r\n" {
                    return Err("RESP bulk not followed by CRLF".into());
                }
                *position = end + 2;
                return Ok(Some(RespReply::Bulk(Bytes::copy_from_slice(
                    &buffer[after_line..end],
                ))));
            }
        }
        b'*' => {
            let count = number()?;
            if count < 0 {
                RespReply::Null
            } else if count > ARRAY_ELEMENTS_MAX {
                return Err(format!("RESP array of {count} elements"));
            } else {
                let mut inner = after_line;
                let mut elements = Vec::new();
                for _ in 0..count {
                    match parse_at(buffer, &mut inner, depth + 1)? {
                        Some(element) => elements.push(element),
                        None => return Ok(None),
                    }
                }
                *position = inner;
                return Ok(Some(RespReply::Array(elements)));
            }
        }
        other => return Err(format!("RESP reply starts with byte {other:#04x}")),
    };
    *position = after_line;
    Ok(Some(reply))
}

/// Encodes a command as an array of bulk strings.
pub(crate) fn command(arguments: &[&[u8]]) -> Bytes {
    let payload_bytes: usize = arguments.iter().map(|argument| argument.len() + 16).sum();
    let mut encoded = BytesMut::with_capacity(payload_bytes + 16);
    encoded.put_slice(format!("*{}\r\n", arguments.len()).as_bytes());
    for argument in arguments {
        encoded.put_slice(format!("${}\r\n", argument.len()).as_bytes());
        encoded.put_slice(argument);
        encoded.put_slice(b"\r\n");
    }
    encoded.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_kind_split_anywhere() {
        let stream = b"+OK\r\n:3\r\n$2\r\n\r\n\r\n$-1\r\n*2\r\n$1\r\na\r\n:7\r\n*-1\r\n-ERR no\r\n";
        for split in 0..stream.len() {
            let mut parser = RespParser;
            let mut buffer = BytesMut::from(&stream[..split]);
            let mut replies = Vec::new();
            while let Some(reply) = parser.parse(&mut buffer).expect("valid") {
                replies.push(reply);
            }
            buffer.extend_from_slice(&stream[split..]);
            while let Some(reply) = parser.parse(&mut buffer).expect("valid") {
                replies.push(reply);
            }
            assert_eq!(
                replies,
                [
                    RespReply::Simple("OK".into()),
                    RespReply::Integer(3),
                    RespReply::Bulk(Bytes::from_static(b"\r\n")),
                    RespReply::Null,
                    RespReply::Array(vec![
                        RespReply::Bulk(Bytes::from_static(b"a")),
                        RespReply::Integer(7)
                    ]),
                    RespReply::Null,
                    RespReply::Error("ERR no".into()),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for garbage in [&b"?x\r\n"[..], b"$abc\r\n", b"$1\r\nabc\r\n", b"*99999\r\n"] {
            let mut buffer = BytesMut::from(garbage);
            assert!(RespParser.parse(&mut buffer).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(
            &command(&[b"LPUSH", b"q", b"v"])[..],
            b"*3\r\n$5\r\nLPUSH\r\n$1\r\nq\r\n$1\r\nv\r\n"
        );
    }
}
