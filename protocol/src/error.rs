//! Stable error codes and the error body every failed request carries.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// A stable numeric error code. Numbers never change meaning; new codes are appended.
/// A client that meets a code it does not know treats it like [`ErrorCode::Internal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
#[repr(u16)]
pub enum ErrorCode {
    /// Credentials missing, unknown or wrong. The handshake fails and the server closes.
    Unauthenticated = 1,
    /// The session's principal may not do this.
    Forbidden = 2,
    /// The named queue or job does not exist for this session's project.
    NotFound = 3,
    /// A field is out of range, malformed or missing; the message names it.
    InvalidArgument = 4,
    /// The frame's length field is over the session's limit; the server closes.
    FrameTooLarge = 5,
    /// The frame or its body could not be decoded.
    MalformedFrame = 6,
    /// The opcode is not one this server knows.
    UnknownOpcode = 7,
    /// A quota of the tenant's plan is exhausted; details say which.
    QuotaExceeded = 8,
    /// Too many requests; details carry how long to wait.
    RateLimited = 9,
    /// The lease id is not the job's current lease: it expired, was re-leased or the job
    /// was cancelled. Nothing was changed.
    LeaseLost = 10,
    /// The request conflicts with the current state (a queue that exists, a queue not empty).
    Conflict = 11,
    /// The broker cannot serve this now (storage failure, shutting down). Retry later; the
    /// outcome of a state-changing request that got this is unknown.
    Unavailable = 12,
    /// A bug in the broker. Logged on the server with the request id.
    Internal = 13,
    /// A request other than HELLO or PING arrived before the handshake.
    HandshakeRequired = 14,
    /// The client's protocol version is not supported; the server closes.
    UnsupportedVersion = 15,
    /// The request id is already in flight on this connection.
    DuplicateRequestId = 16,
}

impl ErrorCode {
    /// Every code, in numeric order. Tests use it to check the spec and vectors cover all.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::InvalidArgument,
        ErrorCode::FrameTooLarge,
        ErrorCode::MalformedFrame,
        ErrorCode::UnknownOpcode,
        ErrorCode::QuotaExceeded,
        ErrorCode::RateLimited,
        ErrorCode::LeaseLost,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::HandshakeRequired,
        ErrorCode::UnsupportedVersion,
        ErrorCode::DuplicateRequestId,
    ];

    /// The stable number on the wire.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// The code for a number, if this version knows it.
    pub fn from_number(number: u16) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.number() == number)
    }

    /// The SCREAMING_CASE name used in logs and in `PROTOCOL.md`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ErrorCode::MalformedFrame => "MALFORMED_FRAME",
            ErrorCode::UnknownOpcode => "UNKNOWN_OPCODE",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::LeaseLost => "LEASE_LOST",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::HandshakeRequired => "HANDSHAKE_REQUIRED",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::DuplicateRequestId => "DUPLICATE_REQUEST_ID",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Structured detail attached to some errors.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub enum ErrorDetails {
    /// Nothing beyond the message.
    None,
    /// Which quota was hit, its current value and its maximum.
    Quota {
        /// The quota's name, e.g. `pending_jobs`.
        limit: String,
        /// The value now.
        current: u64,
        /// The plan's maximum.
        max: u64,
    },
    /// Wait this long before retrying.
    RetryAfter {
        /// Milliseconds to wait.
        retry_after_ms: u64,
    },
    /// The index of the offending item in a batch.
    BatchItem {
        /// Zero-based position in the request's list.
        index: u32,
    },
}

/// The body of every error response (frame kind 2).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code, as its number (so unknown future codes still decode).
    pub code: u16,
    /// A human-readable sentence saying what went wrong and what to do.
    pub message: String,
    /// Structured detail for codes that have it.
    pub details: ErrorDetails,
}

impl ErrorBody {
    /// An error with a message and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: code.number(),
            message: message.into(),
            details: ErrorDetails::None,
        }
    }

    /// The same error with details attached.
    pub fn with_details(mut self, details: ErrorDetails) -> ErrorBody {
        self.details = details;
        self
    }

    /// The code if this version knows it, else [`ErrorCode::Internal`].
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_number(self.code).unwrap_or(ErrorCode::Internal)
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_code(), self.message)
    }
}

impl std::error::Error for ErrorBody {}
