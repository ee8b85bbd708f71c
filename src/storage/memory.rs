//! in progress
/// placeholder
pub struct MemoryStorage;
