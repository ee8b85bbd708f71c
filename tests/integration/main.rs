//! The integration suite: one test crate (so it links once) that drives real servers over
//! real TCP on ephemeral ports, with real sled stores in temporary directories.

mod bad_input;
mod crash;
mod lifecycle;
mod pipelining;
mod quotas;
mod restart;
mod support;
mod tenancy;
