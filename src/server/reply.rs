//! Turning answers into frames: the only place the server encodes a body.

use bytes::BytesMut;
use taskforge_protocol::limits::FRAME_BYTES_CEILING;
use taskforge_protocol::{
    encode_body, ErrorBody, ErrorCode, Frame, FrameCodec, FrameKind, Opcode, Response,
};
use tokio_util::codec::Encoder as _;

/// Request id and opcode of error frames that answer no particular request (a broken
/// frame, a refused connection).
pub(crate) const CONNECTION_REQUEST_ID: u32 = 0;

/// Opcode of error frames that answer no particular request.
pub(crate) const CONNECTION_OPCODE: u16 = 0;

/// The SCREAMING_CASE name of `opcode`, for logs.
pub(crate) fn opcode_name(opcode: u16) -> &'static str {
    Opcode::from_number(opcode).map_or("UNKNOWN", Opcode::name)
}

/// A success frame answering `request_id` with `response`. A response too large for any
/// client to read becomes an INTERNAL error instead, so the client is not disconnected.
pub(crate) fn response_frame(request_id: u32, response: &Response) -> Frame {
    let opcode = response.opcode().number();
    let mut body = BytesMut::new();
    response.encode_body(&mut body);
    let frame_bytes = body.len() + taskforge_protocol::frame::HEADER_AFTER_LENGTH_BYTES;
    if frame_bytes > FRAME_BYTES_CEILING as usize {
        tracing::error!(
            request_id,
            opcode = opcode_name(opcode),
            frame_bytes,
            "response is over the protocol's frame ceiling; answering INTERNAL"
        );
        let error = ErrorBody::new(
            ErrorCode::Internal,
            format!("the response of {frame_bytes} bytes is over the frame ceiling"),
        );
        return error_frame(request_id, opcode, &error);
    }
    Frame {
        kind: FrameKind::Response,
        opcode,
        request_id,
        body: body.freeze(),
    }
}

/// An error frame answering `request_id` (with its `opcode` echoed).
pub(crate) fn error_frame(request_id: u32, opcode: u16, error: &ErrorBody) -> Frame {
    let mut body = BytesMut::new();
    encode_body(error, &mut body);
    Frame {
        kind: FrameKind::Error,
        opcode,
        request_id,
        body: body.freeze(),
    }
}

/// An error frame about the connection rather than a request.
pub(crate) fn connection_error_frame(code: ErrorCode, message: impl Into<String>) -> Frame {
    error_frame(
        CONNECTION_REQUEST_ID,
        CONNECTION_OPCODE,
        &ErrorBody::new(code, message),
    )
}

/// `frame` as bytes on the wire, for the few places that write without a codec sink.
pub(crate) fn frame_bytes(frame: Frame) -> BytesMut {
    let mut out = BytesMut::new();
    // Encoding fails only for bodies over 4 GiB; nothing written this way is near that.
    if FrameCodec::new(FRAME_BYTES_CEILING)
        .encode(frame, &mut out)
        .is_err()
    {
        out.clear();
    }
    out
}
