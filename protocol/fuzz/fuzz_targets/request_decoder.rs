//! Decodes arbitrary bodies as requests. The first two input bytes are the opcode (big-endian,
//! as in the frame header) and the rest is the body, so every opcode — known or not — is
//! reached.
//!
//! Checked for every input: decoding never panics, aborts or allocates without bound (libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` catch the latter); an unknown opcode is reported as
//! such; and a request that decodes survives a round trip: encoding it and decoding the encoding
//! gives the same request, and encoding that again gives the same bytes.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use taskforge_protocol::{MessageError, Opcode, Request};

fuzz_target!(|input: &[u8]| {
    let Some((opcode_bytes, body)) = input.split_first_chunk::<2>() else {
        return;
    };
    let opcode = u16::from_be_bytes(*opcode_bytes);
    let request = match Request::decode(opcode, body) {
        Ok(request) => request,
        Err(MessageError::UnknownOpcode(number)) => {
            assert_eq!(number, opcode);
            assert!(Opcode::from_number(opcode).is_none());
            return;
        }
        Err(MessageError::Malformed { .. }) => return,
    };
    assert_eq!(request.opcode().number(), opcode);

    let mut encoded = BytesMut::new();
    request.encode_body(&mut encoded);
    assert!(
        encoded.len() <= body.len(),
        "the canonical encoding is never longer than the bytes it was read from"
    );
    let decoded = Request::decode(opcode, &encoded).expect("an encoded request decodes");
    assert_eq!(decoded, request);

    let mut encoded_again = BytesMut::new();
    decoded.encode_body(&mut encoded_again);
    assert_eq!(encoded_again, encoded);
});
