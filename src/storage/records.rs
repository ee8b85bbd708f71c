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
///
/// The fields most jobs never set, and the lease that only the jobs being worked on hold,
/// live in a [`JobRare`] behind one pointer, which keeps the record in mimalloc's 96-byte
/// size class instead of its 160-byte one. The stored
/// encoding is unchanged by that: [`Encode`] and [`Decode`] are written by hand to the
/// field order a derived implementation had (checked against one in the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Cancel waiting for the lease holder.
    pub cancel_requested: bool,
    /// Parents not yet finished in a way that releases it; the job is blocked while
    /// this is not zero.
    pub parents_remaining: u32,
    /// What it does when a parent ends dead, cancelled or expired.
    pub on_parent_failure: ParentFailure,
    /// The optional fields, `None` while all of them are unset.
    rare: Option<Box<JobRare>>,
}

/// The fields of a [`JobRecord`] most jobs never set, or set only while leased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRare {
    /// The current lease while leased.
    pub lease: Option<LeaseRecord>,
    /// When it reached a final state.
    pub finished_at_ms: Option<u64>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// It expires unless started by then.
    pub expires_at_ms: Option<u64>,
    /// Its unique key, kept so that the key's hold is rebuilt after a restart.
    pub unique: Option<UniqueKey>,
}

impl JobRare {
    /// True when no field is set: the record then holds no `JobRare` at all.
    fn is_empty(&self) -> bool {
        *self == JobRare::default()
    }
}

impl Encode for JobRecord {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.queue_id.encode(encoder)?;
        self.state.encode(encoder)?;
        self.priority.encode(encoder)?;
        self.run_at_ms.encode(encoder)?;
        self.seq.encode(encoder)?;
        self.attempts.encode(encoder)?;
        self.executions.encode(encoder)?;
        self.max_attempts.encode(encoder)?;
        self.backoff.encode(encoder)?;
        self.lease_ms.encode(encoder)?;
        self.created_at_ms.encode(encoder)?;
        self.updated_at_ms.encode(encoder)?;
        self.finished_at_ms().encode(encoder)?;
        self.lease().encode(encoder)?;
        self.cancel_requested.encode(encoder)?;
        self.last_error().encode(encoder)?;
        self.parents_remaining.encode(encoder)?;
        self.on_parent_failure.encode(encoder)?;
        self.expires_at_ms().encode(encoder)?;
        self.unique().encode(encoder)
    }
}

impl<Context> Decode<Context> for JobRecord {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let queue_id = Decode::decode(decoder)?;
        let state = Decode::decode(decoder)?;
        let priority = Decode::decode(decoder)?;
        let run_at_ms = Decode::decode(decoder)?;
        let seq = Decode::decode(decoder)?;
        let attempts = Decode::decode(decoder)?;
        let executions = Decode::decode(decoder)?;
        let max_attempts = Decode::decode(decoder)?;
        let backoff = Decode::decode(decoder)?;
        let lease_ms = Decode::decode(decoder)?;
        let created_at_ms = Decode::decode(decoder)?;
        let updated_at_ms = Decode::decode(decoder)?;
        let finished_at_ms = Decode::decode(decoder)?;
        let lease = Decode::decode(decoder)?;
        let cancel_requested = Decode::decode(decoder)?;
        let last_error = Decode::decode(decoder)?;
        let parents_remaining = Decode::decode(decoder)?;
        let on_parent_failure = Decode::decode(decoder)?;
        let rare = JobRare {
            lease,
            finished_at_ms,
            last_error,
            expires_at_ms: Decode::decode(decoder)?,
            unique: Decode::decode(decoder)?,
        };
        Ok(JobRecord {
            queue_id,
            state,
            priority,
            run_at_ms,
            seq,
            attempts,
            executions,
            max_attempts,
            backoff,
            lease_ms,
            created_at_ms,
            updated_at_ms,
            cancel_requested,
            parents_remaining,
            on_parent_failure,
            rare: (!rare.is_empty()).then(|| Box::new(rare)),
        })
    }
}

bincode::impl_borrow_decode!(JobRecord);

impl JobRecord {
    /// A pending job's record: never attempted, no lease, no optional field set.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        queue_id: u64,
        priority: i32,
        run_at_ms: u64,
        seq: u64,
        max_attempts: u32,
        backoff: Backoff,
        lease_ms: u32,
        now_ms: u64,
        parents_remaining: u32,
        on_parent_failure: ParentFailure,
    ) -> JobRecord {
        JobRecord {
            queue_id,
            state: StateTag::Pending,
            priority,
            run_at_ms,
            seq,
            attempts: 0,
            executions: 0,
            max_attempts,
            backoff,
            lease_ms,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            cancel_requested: false,
            parents_remaining,
            on_parent_failure,
            rare: None,
        }
    }

    /// The current lease while leased.
    pub fn lease(&self) -> Option<&LeaseRecord> {
        self.rare.as_ref().and_then(|rare| rare.lease.as_ref())
    }

    /// The current lease, to extend it.
    pub fn lease_mut(&mut self) -> Option<&mut LeaseRecord> {
        self.rare.as_mut().and_then(|rare| rare.lease.as_mut())
    }

    /// Grants (`Some`) or ends (`None`) the lease.
    pub fn set_lease(&mut self, lease: Option<LeaseRecord>) {
        self.set_rare(|rare| rare.lease = lease);
    }

    /// When it reached a final state.
    pub fn finished_at_ms(&self) -> Option<u64> {
        self.rare.as_ref().and_then(|rare| rare.finished_at_ms)
    }

    /// The last failure's message.
    pub fn last_error(&self) -> Option<&str> {
        self.rare
            .as_ref()
            .and_then(|rare| rare.last_error.as_deref())
    }

    /// It expires unless started by then.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.rare.as_ref().and_then(|rare| rare.expires_at_ms)
    }

    /// Its unique key.
    pub fn unique(&self) -> Option<&UniqueKey> {
        self.rare.as_ref().and_then(|rare| rare.unique.as_ref())
    }

    /// Changes the optional fields; they take no memory again once all are unset.
    pub fn set_rare(&mut self, change: impl FnOnce(&mut JobRare)) {
        let mut rare = self.rare.take().unwrap_or_default();
        change(&mut rare);
        if !rare.is_empty() {
            self.rare = Some(rare);
        }
    }

    /// Takes the optional fields out (for a record that is being turned into a reply).
    pub fn take_rare(&mut self) -> JobRare {
        self.rare.take().map(|rare| *rare).unwrap_or_default()
    }

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

    /// `JobRecord` as it was declared before its optional fields moved into [`JobRare`],
    /// with the derived encoding every stored job record has.
    #[derive(Debug, Encode, Decode)]
    struct DerivedJobRecord {
        queue_id: u64,
        state: StateTag,
        priority: i32,
        run_at_ms: u64,
        seq: u64,
        attempts: u32,
        executions: u32,
        max_attempts: u32,
        backoff: Backoff,
        lease_ms: u32,
        created_at_ms: u64,
        updated_at_ms: u64,
        finished_at_ms: Option<u64>,
        lease: Option<Box<LeaseRecord>>,
        cancel_requested: bool,
        last_error: Option<String>,
        parents_remaining: u32,
        on_parent_failure: ParentFailure,
        expires_at_ms: Option<u64>,
        unique: Option<Box<UniqueKey>>,
    }

    fn maybe<T>(rng: &mut fastrand::Rng, value: impl FnOnce(&mut fastrand::Rng) -> T) -> Option<T> {
        rng.bool().then(|| value(rng))
    }

    /// A record with every field random, and the same record declared the old way.
    fn random_record(rng: &mut fastrand::Rng) -> (JobRecord, DerivedJobRecord) {
        let derived = DerivedJobRecord {
            queue_id: rng.u64(..),
            state: StateTag::ALL[rng.usize(..StateTag::ALL.len())],
            priority: rng.i32(..),
            run_at_ms: rng.u64(..),
            seq: rng.u64(..),
            attempts: rng.u32(..),
            executions: rng.u32(..),
            max_attempts: rng.u32(..),
            backoff: Backoff {
                initial_ms: rng.u32(..),
                factor_percent: rng.u32(..),
                max_ms: rng.u32(..),
                jitter_percent: rng.u8(..),
            },
            lease_ms: rng.u32(..),
            created_at_ms: rng.u64(..),
            updated_at_ms: rng.u64(..),
            finished_at_ms: maybe(rng, |rng| rng.u64(..)),
            lease: maybe(rng, |rng| {
                Box::new(LeaseRecord {
                    lease_id: rng.u64(..),
                    leased_at_ms: rng.u64(..),
                    deadline_ms: rng.u64(..),
                    worker_id: maybe(rng, |rng| rng.u64(..)),
                })
            }),
            cancel_requested: rng.bool(),
            last_error: maybe(rng, |rng| "e".repeat(rng.usize(0..300))),
            parents_remaining: rng.u32(..),
            on_parent_failure: if rng.bool() {
                ParentFailure::Run
            } else {
                ParentFailure::Cancel
            },
            expires_at_ms: maybe(rng, |rng| rng.u64(..)),
            unique: maybe(rng, |rng| {
                Box::new(UniqueKey {
                    key: "k".repeat(rng.usize(1..40)),
                    until: maybe(rng, |rng| {
                        if rng.bool() {
                            taskforge_protocol::UniqueUntil::Started
                        } else {
                            taskforge_protocol::UniqueUntil::Finished
                        }
                    }),
                    window_ms: maybe(rng, |rng| rng.u64(..)),
                })
            }),
        };
        let mut record = JobRecord::pending(
            derived.queue_id,
            derived.priority,
            derived.run_at_ms,
            derived.seq,
            derived.max_attempts,
            derived.backoff,
            derived.lease_ms,
            derived.created_at_ms,
            derived.parents_remaining,
            derived.on_parent_failure,
        );
        record.state = derived.state;
        record.attempts = derived.attempts;
        record.executions = derived.executions;
        record.updated_at_ms = derived.updated_at_ms;
        record.cancel_requested = derived.cancel_requested;
        record.set_rare(|rare| {
            rare.lease = derived.lease.as_deref().copied();
            rare.finished_at_ms = derived.finished_at_ms;
            rare.last_error = derived.last_error.clone();
            rare.expires_at_ms = derived.expires_at_ms;
            rare.unique = derived.unique.as_deref().cloned();
        });
        (record, derived)
    }

    #[test]
    fn job_records_encode_and_decode_exactly_as_the_derived_layout_did() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2_000 {
            let (record, derived) = random_record(&mut rng);
            let bytes = encode(&record);
            assert_eq!(bytes, encode(&derived), "{record:?}");
            assert_eq!(decode::<JobRecord>("job", &bytes), Ok(record));
        }
    }

    #[test]
    fn unset_optional_fields_take_no_memory() {
        let backoff = Backoff {
            initial_ms: 1,
            factor_percent: 100,
            max_ms: 1,
            jitter_percent: 0,
        };
        let plain = JobRecord::pending(1, 0, 5, 6, 3, backoff, 1_000, 5, 0, ParentFailure::Cancel);
        let mut record = plain.clone();
        record.set_rare(|rare| rare.last_error = Some("boom".into()));
        assert_eq!(record.last_error(), Some("boom"));
        assert_ne!(record, plain);
        record.set_rare(|rare| rare.last_error = None);
        // Equal to the plain record means no empty box is left behind either.
        assert_eq!(record, plain);
        let decoded = decode::<JobRecord>("job", &encode(&plain));
        assert_eq!(decoded, Ok(plain));
    }

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
            std::mem::size_of::<JobRecord>() <= 96,
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
