//! Feeds arbitrary bytes to [`FrameCodec`] as a stream, under each frame limit a server
//! uses (the handshake limit, the default session limit, and a tiny one), once all at once
//! and once a byte at a time.
//!
//! Checked for every input: decoding never panics; both feeding patterns yield the same
//! frames and the same outcome; every frame is within the limit and re-encodes to exactly
//! the bytes it was read from; a refused stream never yields a frame past the refusal.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use taskforge_protocol::frame::{HEADER_BYTES, LENGTH_FIELD_BYTES};
use taskforge_protocol::limits::{FRAME_BYTES_MAX_DEFAULT, HANDSHAKE_FRAME_BYTES_MAX};
use taskforge_protocol::{Frame, FrameCodec, FrameError};
use tokio_util::codec::{Decoder, Encoder};

/// A limit just above the header, so that short inputs also reach the "too large" path.
const TINY_FRAME_BYTES_MAX: u32 = 16;

/// Every limit each input is decoded under.
const LIMITS_BYTES: [u32; 3] = [
    HANDSHAKE_FRAME_BYTES_MAX,
    FRAME_BYTES_MAX_DEFAULT,
    TINY_FRAME_BYTES_MAX,
];

/// How decoding a stream ended: the frames read, then the error that stopped it (as its
/// `Debug` text, since `FrameError` holds an `io::Error` and is not `PartialEq`), if any.
type Outcome = (Vec<Frame>, Option<String>);

/// Decodes `stream` arriving in chunks of `chunk_bytes`, then signals end of stream.
fn decode_stream(limit_bytes: u32, stream: &[u8], chunk_bytes: usize) -> Outcome {
    let mut codec = FrameCodec::new(limit_bytes);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in stream.chunks(chunk_bytes) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(describe(&error))),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buffer) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(describe(&error))),
        }
    }
}

fn describe(error: &FrameError) -> String {
    assert!(
        !matches!(error, FrameError::Io(_)),
        "decoding memory cannot fail with an i/o error"
    );
    format!("{error:?}")
}

fuzz_target!(|stream: &[u8]| {
    for limit_bytes in LIMITS_BYTES {
        let (frames, error) = decode_stream(limit_bytes, stream, stream.len().max(1));
        let byte_at_a_time = decode_stream(limit_bytes, stream, 1);
        assert_eq!(
            (&frames, &error),
            (&byte_at_a_time.0, &byte_at_a_time.1),
            "feeding pattern changed the outcome"
        );

        let mut offset = 0;
        for frame in frames {
            let frame_bytes = HEADER_BYTES + frame.body.len();
            let length = frame_bytes - LENGTH_FIELD_BYTES;
            assert!(
                length <= limit_bytes as usize,
                "a frame over the limit was read"
            );
            let mut encoded = BytesMut::new();
            FrameCodec::new(limit_bytes)
                .encode(frame, &mut encoded)
                .expect("a decoded frame re-encodes");
            assert_eq!(
                &encoded[..],
                &stream[offset..offset + frame_bytes],
                "re-encoding differs from the bytes read"
            );
            offset += frame_bytes;
        }
        if error.is_none() {
            assert_eq!(offset, stream.len(), "bytes left over without an error");
        }
    }
});
