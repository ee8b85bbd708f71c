//! Authentication material the server owns before the broker starts.
//!
//! Checking credentials is the broker's job ([`crate::broker::Broker::authenticate`]);
//! this module only produces the root token the broker is opened with.

pub mod root_token;

pub use root_token::{resolve_root_token, RootToken, RootTokenError, RootTokenSource};
