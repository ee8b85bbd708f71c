//! TaskForge: a durable, multi-tenant background-job broker.
//!
//! A request travels [`server`] (framing, handshake, sessions) → [`broker`] (the service:
//! validation, authorization, one core operation under a lock, then the commit barrier) →
//! [`broker::core`] (the pure state machine: queues, jobs, leases, timers, workers,
//! executions; no I/O, injected time) → the group committer → [`storage`] (one journal
//! record and one fsync per round; a checkpointer moves the journal into sled, one tree). [`client`] is the Rust client with its worker
//! runtime; [`admin_http`] the health, metrics and JSON port; `src/cli/` the admin nouns of
//! the binary. README.md holds the full codemap and the architecture invariants;
//! `protocol/PROTOCOL.md` the wire contract.
#![warn(missing_docs)]

pub mod admin_http;
pub mod auth;
pub mod bench;
pub mod broker;
pub mod burst;
pub mod client;
pub mod clock;
pub mod config;
pub mod metrics;
pub mod server;
pub mod storage;
