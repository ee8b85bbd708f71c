//! in progress
/// placeholder
pub struct SledStorage;
/// placeholder
pub struct SledOptions;
