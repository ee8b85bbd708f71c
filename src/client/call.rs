//! [`call_expecting!`], the one-liner behind every typed method: it sends
//! `Request::$variant($body)` through [`super::Client::call`] and unpacks
//! `Response::$variant`, turning any other response into [`super::ClientError::Protocol`].
//!
//! A `macro_rules!` macro is visible in the modules declared after it, so `mod.rs` declares
//! this module (with `#[macro_use]`) before every file of typed methods.

/// Calls `$client` with `Request::$variant($body)` and unpacks `Response::$variant`.
macro_rules! call_expecting {
    ($client:expr, $variant:ident, $body:expr) => {
        match $client
            .call(taskforge_protocol::Request::$variant($body))
            .await?
        {
            taskforge_protocol::Response::$variant(response) => Ok(response),
            other => Err($crate::client::unexpected_response(
                taskforge_protocol::Opcode::$variant.name(),
                &other,
            )),
        }
    };
}
