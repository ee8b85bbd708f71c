//! TaskForge: a durable, multi-tenant background-job broker.
#![warn(missing_docs)]

pub mod admin_http;
pub mod auth;
pub mod bench;
pub mod broker;
pub mod client;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod server;
pub mod storage;
