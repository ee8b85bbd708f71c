//! Decodes arbitrary bodies as a response and as an error body, as a client does with what a
//! server sends. The first two input bytes are the opcode (big-endian, as in the frame header)
//! and the rest is the body.
//!
//! Checked for every input: decoding never panics, aborts or allocates without bound; an
//! unknown opcode is reported as such; and whatever decodes — a response or an `ErrorBody` —
//! survives a round trip: encoding it and decoding the encoding gives the same value, and
//! encoding that again gives the same bytes.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use taskforge_protocol::{
    decode_body, encode_body, ErrorBody, ErrorCode, MessageError, Opcode, Response,
};

fn check_response(opcode: u16, body: &[u8]) {
    let response = match Response::decode(opcode, body) {
        Ok(response) => response,
        Err(MessageError::UnknownOpcode(number)) => {
            assert_eq!(number, opcode);
            assert!(Opcode::from_number(opcode).is_none());
            return;
        }
        Err(MessageError::Malformed { .. }) => return,
    };
    assert_eq!(response.opcode().number(), opcode);

    let mut encoded = BytesMut::new();
    response.encode_body(&mut encoded);
    assert!(
        encoded.len() <= body.len(),
        "the canonical encoding is never longer than the bytes it was read from"
    );
    let decoded = Response::decode(opcode, &encoded).expect("an encoded response decodes");
    assert_eq!(decoded, response);

    let mut encoded_again = BytesMut::new();
    decoded.encode_body(&mut encoded_again);
    assert_eq!(encoded_again, encoded);
}

fn check_error_body(opcode: u16, body: &[u8]) {
    let Ok(error) = decode_body::<ErrorBody>(opcode, body) else {
        return;
    };
    // Every number decodes, known or not; unknown ones read as INTERNAL.
    let expected = ErrorCode::from_number(error.code).unwrap_or(ErrorCode::Internal);
    assert_eq!(error.error_code(), expected);

    let mut encoded = BytesMut::new();
    encode_body(&error, &mut encoded);
    assert!(encoded.len() <= body.len());
    let decoded: ErrorBody = decode_body(opcode, &encoded).expect("an encoded error decodes");
    assert_eq!(decoded, error);

    let mut encoded_again = BytesMut::new();
    encode_body(&decoded, &mut encoded_again);
    assert_eq!(encoded_again, encoded);
}

fuzz_target!(|input: &[u8]| {
    let Some((opcode_bytes, body)) = input.split_first_chunk::<2>() else {
        return;
    };
    let opcode = u16::from_be_bytes(*opcode_bytes);
    check_response(opcode, body);
    check_error_body(opcode, body);
});
