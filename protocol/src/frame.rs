//! Frames: the unit on the wire, and the tokio-util codec that reads and writes them.
//!
//! Every frame is laid out as follows (all header integers big-endian):
//!
//! | offset | size | field        | meaning                                                   |
//! |-------:|-----:|--------------|-----------------------------------------------------------|
//! | 0      | 4    | `length`     | bytes that follow this field: 7 + body length             |
//! | 4      | 1    | `kind`       | 0 request, 1 response, 2 error response, 3 event          |
//! | 5      | 2    | `opcode`     | the operation (see [`crate::Opcode`])                     |
//! | 7      | 4    | `request_id` | chosen by the client, echoed by every response to it      |
//! | 11     | n    | `body`       | bincode `standard()` encoding of the kind's body type     |
//!
//! The decoder checks `length` against its limit *before* it buffers the body, so a peer
//! announcing a 4 GiB frame costs the server nothing beyond the 11-byte header.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Size of the `length` field.
pub const LENGTH_FIELD_BYTES: usize = 4;

/// Header bytes counted by `length`: kind (1) + opcode (2) + request id (4).
pub const HEADER_AFTER_LENGTH_BYTES: usize = 7;

/// Whole header, length field included.
pub const HEADER_BYTES: usize = LENGTH_FIELD_BYTES + HEADER_AFTER_LENGTH_BYTES;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Client to server: a request whose body is the opcode's request type.
    Request = 0,
    /// Server to client: success; the body is the opcode's response type.
    Response = 1,
    /// Server to client: failure; the body is an [`crate::ErrorBody`].
    Error = 2,
    /// Server to client, unsolicited or one of several for a streaming request.
    Event = 3,
}

impl FrameKind {
    /// The kind for a header byte, if valid.
    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            0 => Some(FrameKind::Request),
            1 => Some(FrameKind::Response),
            2 => Some(FrameKind::Error),
            3 => Some(FrameKind::Event),
            _ => None,
        }
    }
}

/// One decoded frame. The body is still encoded; [`crate::Request::decode`] and
/// [`crate::Response::decode`] turn it into a typed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request, response, error or event.
    pub kind: FrameKind,
    /// The operation number (kept raw so an unknown opcode can still be answered).
    pub opcode: u16,
    /// The client's id for the request this frame belongs to.
    pub request_id: u32,
    /// The encoded body.
    pub body: Bytes,
}

/// Why a byte stream could not be read as frames. Every variant means the stream can no
/// longer be trusted and the connection should be closed after an optional error reply.
#[derive(Debug)]
pub enum FrameError {
    /// The `length` field announced more than the current limit.
    TooLarge {
        /// Bytes the peer announced.
        announced_bytes: u64,
        /// The limit in force.
        max_bytes: u32,
    },
    /// The `length` field is smaller than the fixed header.
    TooShort {
        /// Bytes the peer announced.
        announced_bytes: u32,
    },
    /// The kind byte is not a known [`FrameKind`].
    UnknownKind(u8),
    /// The stream ended in the middle of a frame.
    Truncated {
        /// Bytes of the partial frame that were received.
        buffered_bytes: usize,
    },
    /// The socket failed.
    Io(std::io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge {
                announced_bytes,
                max_bytes,
            } => {
                write!(
                    f,
                    "frame of {announced_bytes} bytes is over the {max_bytes}-byte limit"
                )
            }
            FrameError::TooShort { announced_bytes } => {
                write!(
                    f,
                    "frame length {announced_bytes} is shorter than the 7-byte header"
                )
            }
            FrameError::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            FrameError::Truncated { buffered_bytes } => {
                write!(
                    f,
                    "connection closed inside a frame ({buffered_bytes} bytes buffered)"
                )
            }
            FrameError::Io(error) => write!(f, "i/o error: {error}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<std::io::Error> for FrameError {
    fn from(error: std::io::Error) -> FrameError {
        FrameError::Io(error)
    }
}

/// Reads and writes [`Frame`]s on a byte stream, enforcing a frame-size limit that the
/// server raises after the handshake.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    /// Largest `length` accepted; checked before any body byte is buffered.
    frame_bytes_max: u32,
}

impl FrameCodec {
    /// A codec that accepts frames whose `length` is at most `frame_bytes_max`.
    pub fn new(frame_bytes_max: u32) -> FrameCodec {
        FrameCodec { frame_bytes_max }
    }

    /// The limit in force.
    pub fn frame_bytes_max(&self) -> u32 {
        self.frame_bytes_max
    }

    /// Changes the limit, e.g. from the handshake limit to the session limit.
    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: u32) {
        self.frame_bytes_max = frame_bytes_max;
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < HEADER_BYTES {
            // Check the length as soon as it is readable, so an oversized announcement is
            // refused before the peer sends anything more.
            if src.len() >= LENGTH_FIELD_BYTES {
                let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
                self.check_length(length)?;
            }
            return Ok(None);
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        self.check_length(length)?;
        let kind = FrameKind::from_byte(src[4]).ok_or(FrameError::UnknownKind(src[4]))?;
        let total_bytes = LENGTH_FIELD_BYTES + length as usize;
        if src.len() < total_bytes {
            // Deliberately no `reserve(total_bytes)`: the buffer grows only with bytes that
            // actually arrive, so memory follows what the peer sent, not what it claimed.
            return Ok(None);
        }
        let mut frame_bytes = src.split_to(total_bytes);
        frame_bytes.advance(LENGTH_FIELD_BYTES + 1);
        let opcode = frame_bytes.get_u16();
        let request_id = frame_bytes.get_u32();
        Ok(Some(Frame {
            kind,
            opcode,
            request_id,
            body: frame_bytes.freeze(),
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                buffered_bytes: src.len(),
            }),
        }
    }
}

impl FrameCodec {
    fn check_length(&self, length: u32) -> Result<(), FrameError> {
        if length > self.frame_bytes_max {
            return Err(FrameError::TooLarge {
                announced_bytes: u64::from(length),
                max_bytes: self.frame_bytes_max,
            });
        }
        if (length as usize) < HEADER_AFTER_LENGTH_BYTES {
            return Err(FrameError::TooShort {
                announced_bytes: length,
            });
        }
        Ok(())
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        write_frame_header(
            frame.kind,
            frame.opcode,
            frame.request_id,
            frame.body.len(),
            dst,
        )?;
        dst.extend_from_slice(&frame.body);
        Ok(())
    }
}

/// Writes a frame header for a body of `body_bytes` bytes. Used by the codec and by callers
/// that encode a body straight into the output buffer to avoid a copy.
pub fn write_frame_header(
    kind: FrameKind,
    opcode: u16,
    request_id: u32,
    body_bytes: usize,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let length = HEADER_AFTER_LENGTH_BYTES + body_bytes;
    let length = u32::try_from(length).map_err(|_| FrameError::TooLarge {
        announced_bytes: length as u64,
        max_bytes: u32::MAX,
    })?;
    dst.reserve(HEADER_BYTES + body_bytes);
    dst.put_u32(length);
    dst.put_u8(kind as u8);
    dst.put_u16(opcode);
    dst.put_u32(request_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: Frame) -> BytesMut {
        let mut out = BytesMut::new();
        FrameCodec::new(1024)
            .encode(frame, &mut out)
            .expect("encode");
        out
    }

    #[test]
    fn round_trips_and_splits_partial_input() {
        let frame = Frame {
            kind: FrameKind::Request,
            opcode: 0x0202,
            request_id: 7,
            body: Bytes::from_static(b"abc"),
        };
        let bytes = encoded(frame.clone());
        assert_eq!(
            &bytes[..HEADER_BYTES],
            &[0, 0, 0, 10, 0, 0x02, 0x02, 0, 0, 0, 7]
        );
        let mut codec = FrameCodec::new(1024);
        let mut partial = BytesMut::new();
        for byte in bytes.iter() {
            assert!(codec.decode(&mut partial).expect("no error").is_none());
            partial.put_u8(*byte);
        }
        assert_eq!(codec.decode(&mut partial).expect("decode"), Some(frame));
        assert!(partial.is_empty());
    }

    #[test]
    fn refuses_oversized_length_before_buffering() {
        let mut codec = FrameCodec::new(64);
        let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        match codec.decode(&mut src) {
            Err(FrameError::TooLarge {
                announced_bytes,
                max_bytes,
            }) => {
                assert_eq!(announced_bytes, u64::from(u32::MAX));
                assert_eq!(max_bytes, 64);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(
            src.capacity() < 1024,
            "the codec must not reserve the announced size"
        );
    }

    #[test]
    fn refuses_short_length_and_unknown_kind() {
        let mut codec = FrameCodec::new(64);
        let mut short = BytesMut::from(&[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut short),
            Err(FrameError::TooShort { .. })
        ));
        let mut bad_kind = BytesMut::from(&[0, 0, 0, 7, 9, 0, 1, 0, 0, 0, 1][..]);
        assert!(matches!(
            codec.decode(&mut bad_kind),
            Err(FrameError::UnknownKind(9))
        ));
    }

    #[test]
    fn truncated_stream_is_an_error_at_eof() {
        let mut codec = FrameCodec::new(64);
        let mut src = BytesMut::from(&[0, 0, 0, 20, 0, 0, 1][..]);
        assert!(matches!(
            codec.decode_eof(&mut src),
            Err(FrameError::Truncated { buffered_bytes: 7 })
        ));
    }
}
