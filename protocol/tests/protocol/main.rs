//! Integration tests of the TaskForge wire protocol, in one test crate (one binary links
//! faster than one per file).
//!
//! - `encoding_rules`: the bincode rules PROTOCOL.md states, checked against real bytes.
//! - `vectors` (with `fixtures`): the golden frames in `protocol/vectors/`, both directions.
//! - `spec_document`: PROTOCOL.md covers every opcode, error code and limit.
//! - `properties`: proptest round trips and no-panic decoding of arbitrary input.
//! - `hostile`: hostile length fields are refused without allocating.
//! - `job_id_text`: the text form of job ids.
//! - `size_classes`: legitimate bodies at the protocol's limits fit the decode byte limit.

mod encoding_rules;
mod fixtures;
mod hostile;
mod job_id_text;
mod properties;
mod size_classes;
mod spec_document;
mod vectors;
