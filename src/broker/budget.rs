//! Keeping a response within the session's frame: listings return fewer items rather than
//! exceed it.

/// Bound on a response's bytes besides its items (lengths, options, cursor).
pub(super) const RESPONSE_OVERHEAD_BYTES: usize = 64;

/// The encoded size of one item of a listing.
pub(super) fn encoded_bytes<T: bincode::Encode>(item: &T) -> usize {
    let mut out = bytes::BytesMut::new();
    taskforge_protocol::encode_body(item, &mut out);
    out.len()
}

/// Keeps the leading items that fit in `budget_bytes` (at least one, which configuration
/// guarantees fits). Returns whether items were dropped.
pub(super) fn keep_within<T>(
    items: &mut Vec<T>,
    budget_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> bool {
    let mut used_bytes = RESPONSE_OVERHEAD_BYTES;
    let fitting = items
        .iter()
        .position(|item| {
            used_bytes += size(item);
            used_bytes > budget_bytes
        })
        .map_or(items.len(), |first_over| first_over.max(1));
    let dropped = fitting < items.len();
    items.truncate(fitting);
    dropped
}
