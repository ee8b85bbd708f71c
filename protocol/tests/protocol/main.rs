//! Integration tests of the TaskForge wire protocol, in one test crate (one binary links
//! faster than one per file).
//!
//! - `encoding_rules`: the bincode rules PROTOCOL.md states, checked against real bytes.
//! - `vectors` (with `fixtures`, `tenancy_fixtures`, `worker_fixtures` and
//!   `dependency_fixtures`): the golden frames in `protocol/vectors/`, both directions.
//! - `spec_document`: PROTOCOL.md covers every opcode, error code and limit.
//! - `properties`: proptest round trips and no-panic decoding of arbitrary input.
//! - `hostile`: hostile length fields are refused without allocating.
//! - `job_id_text`: the text form of job ids.
//! - `tenancy_rules`: the tenancy vectors follow the formats and rules PROTOCOL.md states.
//! - `size_classes`: legitimate bodies at the protocol's limits fit the decode byte limit.
//! - `worker_rules`: the worker and execution vectors follow the rules PROTOCOL.md states.
//! - `dependency_rules`: every job, queue and enqueue reply in the vectors follows the rules
//!   PROTOCOL.md states for dependencies, unique keys, expiry and flow limits.
//! - `schedule_fixtures`: the values behind the schedule vectors (0x05xx).

mod dependency_fixtures;
mod dependency_rules;
mod encoding_rules;
mod fixtures;
mod hostile;
mod job_id_text;
mod properties;
mod schedule_fixtures;
mod size_classes;
mod spec_document;
mod tenancy_fixtures;
mod tenancy_rules;
mod vectors;
mod worker_fixtures;
mod worker_rules;
