//! The one error type every client call returns.

use taskforge_protocol::{ErrorBody, ErrorCode};

/// Why a client call failed.
///
/// The variants separate what the caller can act on: a [`ClientError::Server`] is a definite
/// answer (nothing happened, or the error says what did), while [`ClientError::Disconnected`]
/// and [`ClientError::Timeout`] leave the outcome of a state-changing request unknown, and
/// the caller decides whether retrying it is safe.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered the request with an error.
    #[error("server error {0}")]
    Server(ErrorBody),
    /// The server refused the handshake (bad credentials, unsupported version, ...).
    #[error("handshake refused: {0}")]
    Handshake(ErrorBody),
    /// Connecting or talking to the server failed at the socket level, including after the
    /// reconnect attempts ran out.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// No answer came within the request timeout (or the connect timeout while connecting).
    /// The request may still take effect on the server.
    #[error("request timed out")]
    Timeout,
    /// The connection was lost while the request was in flight. The request may or may not
    /// have taken effect; the next call reconnects.
    #[error("connection lost while the request was in flight")]
    Disconnected,
    /// The server sent something this client cannot make sense of: an undecodable body, or a
    /// response of the wrong type for the request.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The request encodes to a frame larger than the session allows, so it was not sent.
    #[error(
        "request frame of {frame_bytes} bytes is over the session's {frame_bytes_max}-byte limit"
    )]
    RequestTooLarge {
        /// Bytes the frame would have had after its length field.
        frame_bytes: usize,
        /// The session's limit (`SessionLimits::frame_bytes_max`).
        frame_bytes_max: u32,
    },
}

impl ClientError {
    /// The server's error code, for [`ClientError::Server`] and [`ClientError::Handshake`].
    /// Codes this client version does not know read as [`ErrorCode::Internal`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(body) | ClientError::Handshake(body) => Some(body.error_code()),
            _ => None,
        }
    }

    /// True when trying again later may succeed without changing anything: the connection
    /// failed, the server was slow, or the server (or its handshake) said it is unavailable
    /// or rate limited. Configuration mistakes (unknown queue, bad credentials, invalid
    /// argument) are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Timeout | ClientError::Disconnected => true,
            // A broker that is starting or shutting down may refuse a handshake this way too.
            ClientError::Server(body) | ClientError::Handshake(body) => {
                matches!(
                    body.error_code(),
                    ErrorCode::Unavailable | ErrorCode::RateLimited
                )
            }
            ClientError::Protocol(_) | ClientError::RequestTooLarge { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_reads_server_and_handshake_errors_only() {
        let not_found = ClientError::Server(ErrorBody::new(ErrorCode::NotFound, "no queue"));
        assert_eq!(not_found.code(), Some(ErrorCode::NotFound));
        let refused = ClientError::Handshake(ErrorBody::new(ErrorCode::Unauthenticated, "no"));
        assert_eq!(refused.code(), Some(ErrorCode::Unauthenticated));
        assert_eq!(ClientError::Disconnected.code(), None);
        let unknown = ClientError::Server(ErrorBody {
            code: 999,
            message: "from the future".into(),
            details: taskforge_protocol::ErrorDetails::None,
        });
        assert_eq!(unknown.code(), Some(ErrorCode::Internal));
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        assert!(ClientError::Disconnected.is_transient());
        assert!(ClientError::Timeout.is_transient());
        assert!(ClientError::Server(ErrorBody::new(ErrorCode::Unavailable, "busy")).is_transient());
        assert!(!ClientError::Server(ErrorBody::new(ErrorCode::NotFound, "no")).is_transient());
        assert!(!ClientError::Protocol("bad".into()).is_transient());
        let refused = ErrorBody::new(ErrorCode::Unauthenticated, "no");
        assert!(!ClientError::Handshake(refused).is_transient());
        let starting = ErrorBody::new(ErrorCode::Unavailable, "starting");
        assert!(ClientError::Handshake(starting).is_transient());
    }
}
