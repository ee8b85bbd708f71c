//! Authentication material: the root token and the API key pepper the broker is opened
//! with, the API key format, and password hashing. Checking a handshake's credentials is
//! the broker's job ([`crate::broker::Broker::authenticate`]).

pub mod api_key;
pub mod password;
pub mod root_token;

pub use root_token::{
    resolve_key_pepper, resolve_root_token, RootToken, RootTokenError, RootTokenSource,
};
