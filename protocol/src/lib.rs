//! TaskForge wire protocol v1.
//!
//! This crate is the whole contract between the broker and its clients, in any language:
//! the frame codec ([`frame`]), every request and response body and the opcode table
//! ([`message`]), the value types they share ([`types`]), the error codes ([`error`]) and
//! the limits ([`limits`]). It depends on nothing of the broker. The written spec beside it,
//! `PROTOCOL.md`, and the golden frames in `vectors/` describe the same bytes for authors of
//! clients in other languages.
//!
//! # Layout
//! - `frame.rs`: the 11-byte header, [`FrameCodec`] (a tokio-util `Decoder`/`Encoder`).
//! - `message.rs`: request/response bodies, [`Opcode`], [`Request`], [`Response`],
//!   body encoding with a decode byte limit.
//! - `types.rs`: ids, job and queue views shared by several messages.
//! - `tenancy.rs`: organizations, users, subscriptions, projects and API keys.
//! - `schedules.rs`: cron schedules (0x05xx).
//! - `error.rs`: [`ErrorCode`] and [`ErrorBody`].
//! - `limits.rs`: every limit, with its unit in its name.

#![warn(missing_docs)]

pub mod error;
pub mod executions;
pub mod frame;
pub mod limits;
pub mod message;
pub mod schedules;
pub mod tenancy;
pub mod types;
pub mod workers;

pub use error::{ErrorBody, ErrorCode, ErrorDetails};
pub use executions::*;
pub use frame::{Frame, FrameCodec, FrameError, FrameKind};
pub use message::*;
pub use schedules::*;
pub use tenancy::*;
pub use types::*;
pub use workers::*;
