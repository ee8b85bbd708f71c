//! The pre-handshake phase of a connection. Until HELLO succeeds the connection may send
//! only HELLO and PING, in frames of at most `HANDSHAKE_FRAME_BYTES_MAX` bytes, and must
//! finish within the handshake deadline. Any other request, a wrong protocol version or
//! refused credentials get one error frame and the connection is closed.

use std::sync::Arc;

use futures::StreamExt as _;
use taskforge_protocol::limits::PROTOCOL_VERSION;
use taskforge_protocol::{
    decode_body, ErrorBody, ErrorCode, ErrorDetails, Frame, FrameKind, HelloRequest, HelloResponse,
    Opcode, Pong, Response,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Session;

use super::connection::{frame_error_reply, CloseReason, Frames};
use super::reply::{error_frame, opcode_name, response_frame};
use super::writer::Outbox;
use super::ConnectionContext;

/// Runs the pre-handshake phase: answers PINGs, then completes HELLO. Returns the session,
/// or why the connection must close (after the error frame, if any, was queued).
pub(crate) async fn perform(
    frames: &mut Frames,
    outbox: &Outbox,
    context: &ConnectionContext,
    shutdown: &CancellationToken,
    peer: std::net::IpAddr,
) -> Result<Session, CloseReason> {
    let deadline = Instant::now() + context.handshake_timeout;
    loop {
        let next = tokio::select! {
            biased;
            _ = outbox.closed() => return Err(CloseReason::WriterStopped),
            _ = shutdown.cancelled() => return Err(CloseReason::Shutdown),
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(timeout = ?context.handshake_timeout, "handshake deadline passed");
                return Err(CloseReason::HandshakeTimeout);
            }
            next = frames.next() => next,
        };
        let frame = match next {
            None => return Err(CloseReason::PeerClosed),
            Some(Err(error)) => return Err(frame_error_reply(outbox, error).await),
            Some(Ok(frame)) => frame,
        };
        if frame.kind != FrameKind::Request {
            return Err(refuse(
                outbox,
                &frame,
                ErrorCode::MalformedFrame,
                "expected a request frame",
            )
            .await);
        }
        // Only HELLO and PING are even decoded before the handshake.
        match Opcode::from_number(frame.opcode) {
            Some(Opcode::Ping) => {
                // Answered here, not by the broker: it needs no session (health checks).
                let pong = Response::Ping(Pong {
                    server_time_ms: context.dispatcher.now_ms(),
                });
                outbox
                    .send(response_frame(frame.request_id, &pong))
                    .await
                    .map_err(|_| CloseReason::WriterStopped)?;
            }
            Some(Opcode::Hello) => {
                let hello = match decode_body::<HelloRequest>(frame.opcode, &frame.body) {
                    Ok(hello) => hello,
                    Err(error) => {
                        let message = error.to_string();
                        return Err(
                            refuse(outbox, &frame, ErrorCode::MalformedFrame, message).await
                        );
                    }
                };
                return hello_exchange(outbox, context, frame.request_id, hello, deadline, peer)
                    .await;
            }
            _ => {
                return Err(refuse(
                    outbox,
                    &frame,
                    ErrorCode::HandshakeRequired,
                    "only HELLO and PING are accepted before the handshake",
                )
                .await)
            }
        }
    }
}

/// Checks the version and credentials of a HELLO and answers it.
async fn hello_exchange(
    outbox: &Outbox,
    context: &ConnectionContext,
    request_id: u32,
    hello: HelloRequest,
    deadline: Instant,
    peer: std::net::IpAddr,
) -> Result<Session, CloseReason> {
    let hello_opcode = Opcode::Hello.number();
    if let Some(wait) = context
        .failed_handshakes
        .wait_for(peer, Instant::now().into_std())
    {
        tracing::info!(%peer, "handshake refused: too many failed handshakes from this address");
        let error = ErrorBody::new(
            ErrorCode::RateLimited,
            "too many failed handshakes from this address; wait and retry",
        )
        .with_details(ErrorDetails::RetryAfter {
            retry_after_ms: wait.as_millis() as u64,
        });
        return Err(send_and_close(
            outbox,
            error_frame(request_id, hello_opcode, &error),
            ErrorCode::RateLimited,
        )
        .await);
    }
    if hello.protocol_version != PROTOCOL_VERSION {
        tracing::info!(
            client_version = hello.protocol_version,
            "handshake refused: unsupported protocol version"
        );
        let error = ErrorBody::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
                hello.protocol_version
            ),
        );
        return Err(send_and_close(
            outbox,
            error_frame(request_id, hello_opcode, &error),
            ErrorCode::UnsupportedVersion,
        )
        .await);
    }
    let client_name = hello.client_name.clone();
    let client_version = hello.client_version.clone();
    // On a blocking thread: checking a password hashes it (tens of ms), and a panic there
    // must not take the connection task down without an answer.
    let dispatcher = Arc::clone(&context.dispatcher);
    let authenticating = tokio::task::spawn_blocking(move || dispatcher.authenticate(&hello));
    let outcome = match tokio::time::timeout_at(deadline, authenticating).await {
        Err(_) => return Err(CloseReason::HandshakeTimeout),
        Ok(Ok(outcome)) => outcome,
        Ok(Err(join_error)) => {
            tracing::error!(
                panicked = join_error.is_panic(),
                "authentication failed internally"
            );
            Err(ErrorBody::new(
                ErrorCode::Internal,
                "internal error while authenticating",
            ))
        }
    };
    match outcome {
        Ok(session) => {
            let hello_response = Response::Hello(HelloResponse {
                protocol_version: PROTOCOL_VERSION,
                server_version: env!("CARGO_PKG_VERSION").to_string(),
                principal_kind: session.principal_kind(),
                project_id: session.project_id,
                limits: context.session_limits.clone(),
                org_id: session.org_id(),
                user_id: session.user_id(),
            });
            outbox
                .send(response_frame(request_id, &hello_response))
                .await
                .map_err(|_| CloseReason::WriterStopped)?;
            tracing::info!(
                principal_kind = ?session.principal_kind(),
                project_id = session.project_id,
                client_name = ?client_name,
                client_version = ?client_version,
                "handshake complete"
            );
            Ok(session)
        }
        Err(error) => {
            tracing::warn!(
                code = %error.error_code(),
                client_name = ?client_name,
                "handshake refused"
            );
            let code = error.error_code();
            if code == ErrorCode::Unauthenticated {
                context
                    .failed_handshakes
                    .record(peer, Instant::now().into_std());
            }
            Err(send_and_close(outbox, error_frame(request_id, hello_opcode, &error), code).await)
        }
    }
}

/// Answers `frame` with an error and reports the close that follows.
async fn refuse(
    outbox: &Outbox,
    frame: &Frame,
    code: ErrorCode,
    message: impl Into<String>,
) -> CloseReason {
    let message = message.into();
    tracing::warn!(
        request_id = frame.request_id,
        opcode = opcode_name(frame.opcode),
        code = %code,
        %message,
        "protocol error before the handshake"
    );
    let error = ErrorBody::new(code, message);
    send_and_close(
        outbox,
        error_frame(frame.request_id, frame.opcode, &error),
        code,
    )
    .await
}

async fn send_and_close(outbox: &Outbox, frame: Frame, code: ErrorCode) -> CloseReason {
    match outbox.send(frame).await {
        Ok(()) => CloseReason::HandshakeRefused(code),
        Err(_) => CloseReason::WriterStopped,
    }
}
