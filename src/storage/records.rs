//! Stored record types and their encoding.
//!
//! Records are bincode `standard()` bodies behind a one-byte record version, decoded with a
//! byte limit (stored bytes are not trusted more than network bytes: a corrupt value must
//! give an error, never an abort). Migrations bump the version.

use bincode::{Decode, Encode};
use taskforge_protocol::{
    ApiKeyInfo, Backoff, LeaseId, ParentFailure, QueueDefaults, UniqueKey, User,
};

use super::StorageError;

/// Version byte written before every record.
pub const RECORD_VERSION: u8 = 1;

/// Largest stored value we will decode; larger is corruption.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

const RECORD_CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<RECORD_BYTES_MAX>,
> = bincode::config::standard().with_limit::<RECORD_BYTES_MAX>();

/// Encodes a record with its version byte.
pub fn encode<T: Encode>(record: &T) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    bytes.push(RECORD_VERSION);
    // Encoding into a Vec cannot fail for our types.
    bincode::encode_into_std_write(record, &mut bytes, RECORD_CONFIG)
        .expect("encoding a record into memory cannot fail");
    bytes
}

/// Decodes a record, checking its version byte.
pub fn decode<T: Decode<()>>(what: &'static str, bytes: &[u8]) -> Result<T, StorageError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => bincode::decode_from_slice(body, RECORD_CONFIG)
            .map(|(record, _)| record)
            .map_err(|error| StorageError::new("read", format!("corrupt {what} record: {error}"))),
        Some((version, _)) => Err(StorageError::new(
            "read",
            format!("{what} record has version {version}; this build reads {RECORD_VERSION}"),
        )),
        None => Err(StorageError::new("read", format!("empty {what} record"))),
    }
}

/// Decodes every record under `prefix`, one result per record (so a caller can stop at
/// the first bad one, or report them all). Fails only if storage itself fails.
pub fn scan_decoded<T: Decode<()>>(
    storage: &dyn super::Storage,
    prefix: u8,
    what: &'static str,
) -> Result<Vec<Result<T, StorageError>>, StorageError> {
    let (start, end) = super::keys::prefix_range(prefix);
    let mut decoded = Vec::new();
    storage.scan(&start, &end, &mut |_, value| {
        decoded.push(decode::<T>(what, value));
        true
    })?;
    Ok(decoded)
}

/// A queue as stored.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct QueueRecord {
    /// Stable internal id, used in index keys and job records.
    pub queue_id: u64,
    /// The name, unique in the project.
    pub name: String,
    /// Defaults for new jobs.
    pub defaults: QueueDefaults,
    /// Deliveries stopped.
    pub paused: bool,
    /// Creation time.
    pub created_at_ms: u64,
}

/// A job's stored state, as far as the index keys need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[repr(u8)]
pub enum StateTag {
    /// Scheduled or ready: which one depends only on `run_at_ms` versus now, so promoting a
    /// delayed job costs no write.
    Pending = 0,
    /// Leased to a worker.
    Leased = 1,
    /// Acknowledged.
    Succeeded = 2,
    /// Dead letter.
    Dead = 3,
    /// Cancelled.
    Cancelled = 4,
    /// Expired.
    Expired = 5,
}

impl StateTag {
    /// Every tag in key order.
    pub const ALL: [StateTag; 6] = [
        StateTag::Pending,
        StateTag::Leased,
        StateTag::Succeeded,
        StateTag::Dead,
        StateTag::Cancelled,
        StateTag::Expired,
    ];

    /// True for final states (the job is no longer held in memory).
    pub fn is_finished(self) -> bool {
        !matches!(self, StateTag::Pending | StateTag::Leased)
    }

    /// The states with entries in the stored per-queue index, in key order: the final
    /// ones. Live (pending and leased) jobs are held in memory, where the broker lists them
    /// from, so enqueue, fetch and the end of a lease move no index key.
    pub const INDEXED: [StateTag; 4] = [
        StateTag::Succeeded,
        StateTag::Dead,
        StateTag::Cancelled,
        StateTag::Expired,
    ];
}

/// The lease a leased job is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct LeaseRecord {
    /// The fencing token.
    pub lease_id: LeaseId,
    /// When it was granted.
    pub leased_at_ms: u64,
    /// When it ends unless extended.
    pub deadline_ms: u64,
    /// The registered worker that fetched it, if the FETCH named one.
    pub worker_id: Option<u64>,
}

/// A job's mutable state. Live jobs keep exactly this in memory; every transition rewrites
/// it. The payload lives apart in [`JobBody`] so transitions never copy it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct JobRecord {
    /// The queue it belongs to.
    pub queue_id: u64,
    /// Its stored state.
    pub state: StateTag,
    /// Higher first.
    pub priority: i32,
    /// Deliverable from this time.
    pub run_at_ms: u64,
    /// FIFO tie-breaker among equal priority and run time; new at every return to pending.
    pub seq: u64,
    /// Attempts started.
    pub attempts: u32,
    /// Deliveries so far; the current or last execution's number. Unlike `attempts` it
    /// never goes back, so execution records are never overwritten.
    pub executions: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Retry delays, fixed at enqueue.
    pub backoff: Backoff,
    /// Default lease, fixed at enqueue.
    pub lease_ms: u32,
    /// Enqueue time.
    pub created_at_ms: u64,
    /// Last transition time.
    pub updated_at_ms: u64,
    /// When it reached a final state.
    pub finished_at_ms: Option<u64>,
    /// The current lease while leased.
    pub lease: Option<Box<LeaseRecord>>,
    /// Cancel waiting for the lease holder.
    pub cancel_requested: bool,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Parents not yet finished in a way that releases it; the job is blocked while
    /// this is not zero.
    pub parents_remaining: u32,
    /// What it does when a parent ends dead, cancelled or expired.
    pub on_parent_failure: ParentFailure,
    /// It expires unless started by then.
    pub expires_at_ms: Option<u64>,
    /// Its unique key, kept so that the key's hold is rebuilt after a restart. Boxed so
    /// that the many jobs without one pay a pointer, not the key, in memory.
    pub unique: Option<Box<UniqueKey>>,
}

impl JobRecord {
    /// The state a client sees at `now_ms`: pending splits into blocked, scheduled and
    /// ready.
    pub fn visible_state(&self, now_ms: u64) -> taskforge_protocol::JobState {
        use taskforge_protocol::JobState;
        match self.state {
            StateTag::Pending if self.parents_remaining > 0 => JobState::Blocked,
            StateTag::Pending if self.run_at_ms > now_ms => JobState::Scheduled,
            StateTag::Pending => JobState::Ready,
            StateTag::Leased => JobState::Leased,
            StateTag::Succeeded => JobState::Succeeded,
            StateTag::Dead => JobState::Dead,
            StateTag::Cancelled => JobState::Cancelled,
            StateTag::Expired => JobState::Expired,
        }
    }
}

/// A job's immutable part, written once at enqueue.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct JobBody {
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// Metadata pairs.
    pub metadata: Vec<(String, String)>,
    /// The jobs it depends on, in the order named.
    pub parents: Vec<taskforge_protocol::JobId>,
}

/// A user as stored: the password's Argon2id hash (PHC string) lives only here.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct UserRecord {
    /// The user as shown.
    pub user: User,
    /// Argon2id hash of the password.
    pub password_hash: String,
}

/// An API key as stored: only keyed hashes of its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ApiKeyRecord {
    /// The key as listed.
    pub info: ApiKeyInfo,
    /// BLAKE3 keyed (with the server's pepper) hash of the current secret.
    pub secret_hash: [u8; 32],
    /// After a rotation: the old secret's hash and until when it still works.
    pub previous: Option<([u8; 32], u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_bad_versions() {
        let body = JobBody {
            payload: vec![1, 2, 3],
            metadata: vec![("k".into(), "v".into())],
            parents: vec![taskforge_protocol::JobId([7; 16])],
        };
        let bytes = encode(&body);
        assert_eq!(decode::<JobBody>("body", &bytes), Ok(body));
        let mut wrong = bytes.clone();
        wrong[0] = 99;
        assert!(decode::<JobBody>("body", &wrong).is_err());
        assert!(decode::<JobBody>("body", &[]).is_err());
    }

    #[test]
    fn a_live_job_record_stays_small_in_memory() {
        // Every pending job holds one of these in memory (plus its map entry): the memory
        // bar per pending job depends on it. Optional parts are boxed or small.
        assert!(
            std::mem::size_of::<JobRecord>() <= 160,
            "JobRecord grew to {} bytes",
            std::mem::size_of::<JobRecord>()
        );
    }

    #[test]
    fn hostile_lengths_in_stored_bytes_are_errors() {
        // A payload length claiming 2^60 bytes.
        let mut bytes = vec![RECORD_VERSION, 0xFD];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<JobBody>("body", &bytes).is_err());
    }
}
