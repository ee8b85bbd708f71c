//! The integration suite: one test crate (so it links once) that drives real servers over
//! real TCP on ephemeral ports, with real sled stores in temporary directories.

mod admin_http;
mod bad_input;
mod bench;
mod cli;
mod crash;
mod dependencies;
mod faults;
mod hostile;
mod lifecycle;
mod migration;
mod pipelining;
mod power_loss;
mod quotas;
mod restart;
mod retention;
mod schedules;
mod support;
mod tenancy;
mod worker_runtime;
mod workers;
