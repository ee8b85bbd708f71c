//! The job state machine. It owns the in-memory indexes (queues, live jobs, ready sets,
//! timers, long-poll waiters) and turns each operation into new state plus the storage
//! writes that make it durable.
//!
//! Architecture invariants:
//! - No I/O and no clock: every operation takes `now_ms`; randomness comes from a seeded
//!   generator. The same seed and inputs give the same outputs, so simulations replay.
//! - Memory mirrors storage: every change to a live job's record is also appended to
//!   [`Core::take_writes`]'s batch, in order, and the batch is committed as one unit.
//! - Only live jobs (pending or leased) are in memory; finished jobs exist only in storage
//!   (plus their counts), so memory is bounded by the backlog, not by history.

mod dependencies;
mod executions;
mod fetch;
mod jobs;
pub mod metrics;
mod queues;
mod quotas;
mod schedules;
pub mod tenants;
mod unique;
mod workers;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::ops::Bound;

use taskforge_protocol::{
    ErrorBody, ErrorCode, ErrorDetails, ExecutionInfo, JobId, LeaseId, ProjectId,
};

use crate::storage::keys;
use crate::storage::records::{self, JobRecord, QueueRecord, StateTag};
use crate::storage::Write;

pub use executions::open_execution;
pub use fetch::{Delivery, FetchPlan, Handoff, WaiterId};
pub use jobs::{Enqueued, Failure, StoredParents, PARENT_MOVED_ERROR};

/// Settings of the core that come from the broker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A live worker silent this long is lost and its leases are released.
    pub heartbeat_timeout_ms: u64,
    /// Lost and stopped workers stay listed this long (from their last heartbeat).
    pub worker_retention_ms: u64,
    /// Most log lines one execution may write.
    pub log_lines_per_execution_max: u32,
    /// How long finished jobs are kept when neither their queue nor a plan says.
    pub retention_ms_default: u64,
}

/// Finished jobs are kept this long by default (seven days).
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;

/// How long lost and stopped workers stay listed by default (one hour).
pub const WORKER_RETENTION_MS_DEFAULT: u64 = 60 * 60 * 1000;

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            heartbeat_timeout_ms: u64::from(
                taskforge_protocol::limits::HEARTBEAT_TIMEOUT_MS_DEFAULT,
            ),
            worker_retention_ms: WORKER_RETENTION_MS_DEFAULT,
            log_lines_per_execution_max:
                taskforge_protocol::limits::LOG_LINES_PER_EXECUTION_MAX_DEFAULT,
            retention_ms_default: RETENTION_MS_DEFAULT,
        }
    }
}

/// The bits of a job id's last eight bytes below the RFC 9562 variant bits.
const COUNTER_MASK: u64 = (1 << 62) - 1;

/// Lease ids are reserved in blocks of this many; each reservation is one small write that
/// is forced to disk before any id of the block is handed out, so ids never repeat, even
/// after a crash under a relaxed fsync policy.
pub const LEASE_ID_BLOCK: u64 = 1 << 20;

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The queue or job does not exist in this project.
    NotFound(String),
    /// The job is not in memory: finished or unknown. The service layer reads storage to
    /// tell which, so that the answer is NOT_FOUND or LEASE_LOST as appropriate.
    NotLive,
    /// The lease is not the job's current lease.
    LeaseLost,
    /// The request conflicts with current state.
    Conflict(String),
    /// The request is not valid for current state.
    InvalidArgument(String),
    /// The principal or the organization's state does not allow this.
    Forbidden(String),
    /// The project's enqueue rate is used up for now.
    RateLimited {
        /// How long until the request would pass.
        retry_after_ms: u64,
    },
    /// A quota of the organization's plan is exhausted.
    Quota {
        /// The quota's name.
        limit: &'static str,
        /// Its value now.
        current: u64,
        /// Its maximum.
        max: u64,
    },
}

impl CoreError {
    /// The wire error for this refusal.
    pub fn to_error_body(&self) -> ErrorBody {
        match self {
            CoreError::NotFound(what) => ErrorBody::new(ErrorCode::NotFound, what.clone()),
            CoreError::NotLive => ErrorBody::new(ErrorCode::NotFound, "job not found"),
            CoreError::LeaseLost => ErrorBody::new(
                ErrorCode::LeaseLost,
                "the lease is no longer current: it expired, the job was re-leased or cancelled",
            ),
            CoreError::Conflict(what) => ErrorBody::new(ErrorCode::Conflict, what.clone()),
            CoreError::InvalidArgument(what) => {
                ErrorBody::new(ErrorCode::InvalidArgument, what.clone())
            }
            CoreError::Forbidden(what) => ErrorBody::new(ErrorCode::Forbidden, what.clone()),
            CoreError::RateLimited { retry_after_ms } => ErrorBody::new(
                ErrorCode::RateLimited,
                format!("the project's enqueue rate is used up; retry in {retry_after_ms} ms"),
            )
            .with_details(ErrorDetails::RetryAfter {
                retry_after_ms: *retry_after_ms,
            }),
            CoreError::Quota {
                limit,
                current,
                max,
            } => ErrorBody::new(
                ErrorCode::QuotaExceeded,
                format!("the plan allows {max} {limit}; there are {current}"),
            )
            .with_details(ErrorDetails::Quota {
                limit: (*limit).to_owned(),
                current: *current,
                max: *max,
            }),
        }
    }
}

/// Orders ready jobs: higher priority first, then earlier run time, then enqueue order.
type ReadyKey = (Reverse<i32>, u64, u64);

/// What a timer is for. Timers are never removed: a stale one is recognised and skipped
/// when it fires, which keeps cancel and extend O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// A scheduled job's run time.
    Promote,
    /// A lease's deadline.
    LeaseExpiry,
    /// A job's expiry, if it has not started by then.
    Expire,
}

/// A queue in memory.
#[derive(Debug)]
struct QueueState {
    /// The project that owns it.
    project_id: ProjectId,
    /// Its stored form.
    record: QueueRecord,
    /// Ready jobs in delivery order.
    ready: BTreeMap<ReadyKey, JobId>,
    /// Long-polling FETCHes waiting on this queue, oldest first (may hold stale ids).
    waiters: VecDeque<WaiterId>,
    /// Jobs per stored state (pending counts scheduled, blocked and ready together).
    counts: [u64; 6],
    /// Pending jobs waiting for parents.
    blocked: u64,
    /// Live (pending and leased) jobs in id order, for listing: the stored index holds
    /// only finished jobs.
    live: BTreeSet<JobId>,
    /// Delivery tokens when the queue has a delivery rate: (tokens, when computed).
    delivery_tokens: Option<(f64, u64)>,
}

impl QueueState {
    /// Jobs per visible state; scheduled and ready split the stored pending count by the
    /// ready set.
    fn job_counts(&self) -> taskforge_protocol::JobCounts {
        let pending = self.counts[StateTag::Pending as usize];
        let ready = self.ready.len() as u64;
        taskforge_protocol::JobCounts {
            scheduled: pending.saturating_sub(ready).saturating_sub(self.blocked),
            blocked: self.blocked,
            ready,
            leased: self.counts[StateTag::Leased as usize],
            succeeded: self.counts[StateTag::Succeeded as usize],
            dead: self.counts[StateTag::Dead as usize],
            cancelled: self.counts[StateTag::Cancelled as usize],
            expired: self.counts[StateTag::Expired as usize],
        }
    }

    /// True when the queue's flow limits allow one more delivery now.
    fn may_deliver(&mut self, now_ms: u64) -> bool {
        let defaults = &self.record.defaults;
        let in_flight_ok = defaults
            .in_flight_max
            .is_none_or(|max| self.counts[StateTag::Leased as usize] < u64::from(max));
        in_flight_ok
            && self
                .refill_tokens(now_ms)
                .is_none_or(|tokens| tokens >= 1.0)
    }

    /// Takes one delivery if the flow limits allow it.
    fn take_delivery(&mut self, now_ms: u64) -> bool {
        if !self.may_deliver(now_ms) {
            return false;
        }
        if let Some((tokens, _)) = self.delivery_tokens.as_mut() {
            *tokens -= 1.0;
        }
        true
    }

    /// When the next delivery token is due, if the queue is waiting for one.
    fn next_token_at(&mut self, now_ms: u64) -> Option<u64> {
        let rate = self.record.defaults.deliveries_per_second?;
        let tokens = self.refill_tokens(now_ms)?;
        (tokens < 1.0).then(|| now_ms + ((1.0 - tokens) * 1000.0 / f64::from(rate)).ceil() as u64)
    }

    /// Brings the delivery token bucket (a second's worth of deliveries at most) up to
    /// `now_ms`; `None` when the queue has no delivery rate.
    fn refill_tokens(&mut self, now_ms: u64) -> Option<f64> {
        let Some(rate) = self.record.defaults.deliveries_per_second else {
            self.delivery_tokens = None;
            return None;
        };
        let burst = f64::from(rate);
        let (tokens, updated_ms) = self.delivery_tokens.get_or_insert((burst, now_ms));
        let elapsed_ms = now_ms.saturating_sub(*updated_ms) as f64;
        *tokens = (*tokens + elapsed_ms * burst / 1000.0).min(burst);
        *updated_ms = (*updated_ms).max(now_ms);
        Some(*tokens)
    }

    /// A queue with no jobs and no waiters yet.
    fn new(project_id: ProjectId, record: QueueRecord) -> QueueState {
        QueueState {
            project_id,
            record,
            ready: BTreeMap::new(),
            waiters: VecDeque::new(),
            counts: [0; 6],
            blocked: 0,
            live: BTreeSet::new(),
            delivery_tokens: None,
        }
    }
}

/// The broker's in-memory state. See the module docs for its invariants.
pub struct Core {
    /// Queue id → queue.
    queues: HashMap<u64, QueueState>,
    /// Project → queue name → queue id, in name order for listing.
    queue_names: HashMap<ProjectId, BTreeMap<String, u64>>,
    /// Live (pending or leased) jobs. Records are boxed: a hash table keeps up to half of
    /// its slots empty after growing, and an empty slot of an unboxed record costs its
    /// whole size (about 210 bytes); boxed, it costs a pointer.
    jobs: HashMap<JobId, Box<JobRecord>>,
    /// Pending run times and lease deadlines, earliest first.
    timers: BinaryHeap<Reverse<(u64, TimerKind, JobId)>>,
    /// True when a timer earlier than all others was added since the last check, so the
    /// timer task must re-arm.
    timers_lowered: bool,
    /// Long-poll registrations.
    waiters: HashMap<WaiterId, fetch::Waiter>,
    /// Waiters served since the last [`Core::take_handoffs`].
    handoffs: Vec<Handoff>,
    /// Live jobs restored since recovery started (queue, job, its ready key if ready),
    /// built into the queues' indexes by [`Core::finish_restore`].
    restoring: Vec<(u64, JobId, Option<ReadyKey>)>,
    /// Queues where jobs became ready (or that resumed) during the current operation.
    dirty_queues: Vec<u64>,
    /// Writes since the last [`Core::take_writes`].
    writes: Vec<Write>,
    /// True when the pending writes must be synced even under a relaxed fsync policy.
    force_sync: bool,
    /// Next FIFO sequence number.
    seq_next: u64,
    /// Next lease id to hand out.
    lease_next: LeaseId,
    /// First lease id not covered by a durable reservation.
    lease_reserved: LeaseId,
    /// Next queue id.
    queue_id_next: u64,
    /// The greatest job id made or restored, so new ids sort after it.
    last_job_id: JobId,
    /// Organizations, users, projects and API keys.
    directory: tenants::Directory,
    /// Enqueue rate buckets per project.
    buckets: quotas::Buckets,
    /// Registered workers by id.
    workers: BTreeMap<taskforge_protocol::WorkerId, workers::Worker>,
    /// Heartbeat deadlines and retention ends of workers (may hold stale entries).
    worker_timers: BinaryHeap<Reverse<(u64, taskforge_protocol::WorkerId)>>,
    /// Next worker id.
    worker_id_next: taskforge_protocol::WorkerId,
    /// Cron schedules and their fire-time timers.
    schedules: schedules::Schedules,
    /// Lines logged by each running execution that logged any.
    log_lines: HashMap<JobId, u32>,
    /// Jobs whose log or execution changed since the last [`Core::take_log_events`].
    log_events: Vec<JobId>,
    /// Configured timeouts and caps.
    settings: Settings,
    /// Children of live parents, to release or cancel when the parent finishes.
    children: HashMap<JobId, Vec<JobId>>,
    /// Finished parents whose children are still to be settled.
    settle_queue: Vec<(JobId, StateTag)>,
    /// True while [`Core::settle_queue`] is being drained, so nested finishes only queue.
    settling: bool,
    /// Unique keys that may still hold, by queue and key.
    unique: HashMap<(u64, String), unique::Hold>,
    /// Size of [`Core::unique`] after its last pruning.
    unique_pruned_len: usize,
    /// When rate-limited queues get their next delivery token (may hold stale entries).
    queue_timers: BinaryHeap<Reverse<(u64, u64)>>,
    /// Leases that ran out since this core was built (kept across rebuilds by the caller's
    /// counters only; a metric, not state).
    lease_expiries: u64,
    /// Jobs that expired before they started since this core was built (a metric).
    jobs_expired: u64,
    /// Workers found lost since this core was built (a metric, like `lease_expiries`).
    workers_lost: u64,
    /// Jitter and id randomness.
    rng: fastrand::Rng,
}

impl Core {
    /// An empty core. `seed` drives jitter and job-id randomness; every core of a broker's
    /// life (including one rebuilt after a failure) needs its own seed, or job ids made in
    /// the same millisecond would repeat.
    pub fn new(seed: u64, settings: Settings) -> Core {
        Core {
            queues: HashMap::new(),
            queue_names: HashMap::new(),
            jobs: HashMap::new(),
            timers: BinaryHeap::new(),
            timers_lowered: false,
            waiters: HashMap::new(),
            handoffs: Vec::new(),
            restoring: Vec::new(),
            dirty_queues: Vec::new(),
            writes: Vec::new(),
            force_sync: false,
            seq_next: 1,
            lease_next: 1,
            lease_reserved: 1,
            queue_id_next: 1,
            last_job_id: JobId([0; 16]),
            directory: tenants::Directory::default(),
            buckets: quotas::Buckets::default(),
            workers: BTreeMap::new(),
            worker_timers: BinaryHeap::new(),
            worker_id_next: 1,
            schedules: schedules::Schedules::default(),
            log_lines: HashMap::new(),
            log_events: Vec::new(),
            settings,
            children: HashMap::new(),
            settle_queue: Vec::new(),
            settling: false,
            unique: HashMap::new(),
            unique_pruned_len: 0,
            queue_timers: BinaryHeap::new(),
            lease_expiries: 0,
            jobs_expired: 0,
            workers_lost: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Restores the stored counters. Called once by recovery before any operation.
    pub fn restore_counters(&mut self, lease_reserved: Option<u64>, queue_id_next: Option<u64>) {
        if let Some(lease_reserved) = lease_reserved {
            // Every id below the reservation may have been handed out before the restart.
            self.lease_next = lease_reserved.max(1);
            self.lease_reserved = self.lease_next;
        }
        if let Some(queue_id_next) = queue_id_next {
            self.queue_id_next = queue_id_next.max(1);
        }
    }

    /// Restores one stored queue.
    pub fn restore_queue(&mut self, project_id: ProjectId, record: QueueRecord) {
        self.queue_id_next = self.queue_id_next.max(record.queue_id + 1);
        self.queue_names
            .entry(project_id)
            .or_default()
            .insert(record.name.clone(), record.queue_id);
        self.queues
            .insert(record.queue_id, QueueState::new(project_id, record));
    }

    /// Restores one stored job. Returns false (and ignores it) when its queue is unknown,
    /// which recovery reports as an inconsistency. A live job is listed and delivered only
    /// once [`Core::finish_restore`] ran.
    pub fn restore_job(&mut self, job_id: JobId, record: JobRecord, now_ms: u64) -> bool {
        if !self.queues.contains_key(&record.queue_id) {
            return false;
        }
        if record.unique().is_some() {
            self.restore_unique(record.queue_id, job_id, &record, now_ms);
        }
        let Some(queue) = self.queues.get_mut(&record.queue_id) else {
            return false;
        };
        queue.counts[record.state as usize] += 1;
        self.last_job_id = self.last_job_id.max(job_id);
        if record.state.is_finished() {
            return true;
        }
        let mut ready_key = None;
        self.seq_next = self.seq_next.max(record.seq + 1);
        if let Some(expires_at_ms) = record.expires_at_ms().filter(|_| record.executions == 0) {
            self.timers
                .push(Reverse((expires_at_ms, TimerKind::Expire, job_id)));
        }
        match record.state {
            StateTag::Pending if record.parents_remaining > 0 => {
                if let Some(queue) = self.queues.get_mut(&record.queue_id) {
                    queue.blocked += 1;
                }
            }
            StateTag::Pending => {
                if record.run_at_ms <= now_ms {
                    ready_key = Some((Reverse(record.priority), record.run_at_ms, record.seq));
                } else {
                    self.timers
                        .push(Reverse((record.run_at_ms, TimerKind::Promote, job_id)));
                }
            }
            StateTag::Leased => {
                // A lease whose deadline passed while the broker was down fires on the
                // first timer pass; its holder may still ACK until then.
                let deadline_ms = record.lease().map_or(now_ms, |lease| lease.deadline_ms);
                self.attach_lease(record.lease().and_then(|lease| lease.worker_id), job_id);
                self.timers
                    .push(Reverse((deadline_ms, TimerKind::LeaseExpiry, job_id)));
            }
            _ => {}
        }
        self.restoring.push((record.queue_id, job_id, ready_key));
        self.jobs.insert(job_id, Box::new(record));
        true
    }

    /// Builds the queues' ordered indexes of live and ready jobs from the jobs restored,
    /// once recovery restored the last one. Built from sorted entries, std's B-tree nodes
    /// are full; inserted one by one in key order, as jobs are restored, they stay a little
    /// over half full (a full node splits at its middle): 42 instead of 78 bytes per ready
    /// job and 18 instead of 34 per live job.
    pub fn finish_restore(&mut self) {
        let mut restored = std::mem::take(&mut self.restoring);
        restored.sort_unstable_by_key(|&(queue_id, job_id, _)| (queue_id, job_id));
        for jobs in restored.chunk_by(|a, b| a.0 == b.0) {
            let Some(queue) = self.queues.get_mut(&jobs[0].0) else {
                unreachable!("restore_job keeps only jobs of known queues")
            };
            let mut live = jobs.iter().map(|&(_, job_id, _)| job_id).collect();
            queue.live.append(&mut live);
            let mut ready = jobs
                .iter()
                .filter_map(|&(_, job_id, key)| Some((key?, job_id)))
                .collect();
            queue.ready.append(&mut ready);
        }
    }

    /// Takes the writes accumulated since the last call, and whether they must be synced
    /// whatever the fsync policy.
    pub fn take_writes(&mut self) -> (Vec<Write>, bool) {
        debug_assert!(
            self.restoring.is_empty(),
            "restored jobs were never indexed"
        );
        let force_sync = std::mem::take(&mut self.force_sync);
        (std::mem::take(&mut self.writes), force_sync)
    }

    /// True when writes are waiting to be taken.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// True when the writes waiting to be taken must be synced whatever the fsync policy.
    pub fn sync_forced(&self) -> bool {
        self.force_sync
    }

    /// Takes the long-poll waiters served since the last call.
    pub fn take_handoffs(&mut self) -> Vec<Handoff> {
        std::mem::take(&mut self.handoffs)
    }

    /// The earliest timer, if any.
    pub fn next_timer_at(&self) -> Option<u64> {
        [
            self.timers.peek().map(|Reverse((at_ms, _, _))| *at_ms),
            self.worker_timers.peek().map(|Reverse((at_ms, _))| *at_ms),
            self.queue_timers.peek().map(|Reverse((at_ms, _))| *at_ms),
            self.schedules.next_timer_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// True (once) when a timer earlier than the previous earliest was added.
    pub fn take_timers_lowered(&mut self) -> bool {
        std::mem::take(&mut self.timers_lowered)
    }

    /// Leases that ran out since this core was built.
    pub fn lease_expiries(&self) -> u64 {
        self.lease_expiries
    }

    /// Jobs that expired before they started since this core was built.
    pub fn jobs_expired(&self) -> u64 {
        self.jobs_expired
    }

    /// Workers found lost since this core was built.
    pub fn workers_lost(&self) -> u64 {
        self.workers_lost
    }

    /// Number of live jobs held in memory.
    pub fn live_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Up to `limit` live jobs of a queue in id order after `after`, those that `keep`
    /// accepts.
    pub fn live_job_ids(
        &self,
        queue_id: u64,
        after: Option<JobId>,
        limit: usize,
        keep: impl Fn(&JobRecord) -> bool,
    ) -> Vec<JobId> {
        let Some(queue) = self.queues.get(&queue_id) else {
            return Vec::new();
        };
        let range = match after {
            Some(after) => queue.live.range((Bound::Excluded(after), Bound::Unbounded)),
            None => queue.live.range(..),
        };
        range
            .filter(|job_id| self.jobs.get(job_id).is_some_and(|record| keep(record)))
            .take(limit)
            .copied()
            .collect()
    }

    /// Fires every timer due at `now_ms`: promotes scheduled jobs, expires leases, loses
    /// silent workers and fires cron schedules.
    pub fn advance(&mut self, now_ms: u64) {
        while let Some(Reverse((at_ms, kind, job_id))) = self.timers.peek().copied() {
            if at_ms > now_ms {
                break;
            }
            self.timers.pop();
            let Some(record) = self.jobs.get(&job_id) else {
                continue;
            };
            match kind {
                TimerKind::Expire => {
                    let due = record.state == StateTag::Pending
                        && record.executions == 0
                        && record.expires_at_ms() == Some(at_ms);
                    if due {
                        self.jobs_expired += 1;
                        self.unready(job_id);
                        self.finish(
                            job_id,
                            StateTag::Expired,
                            Some(jobs::EXPIRED_ERROR.to_owned()),
                            None,
                            now_ms,
                        );
                    }
                }
                TimerKind::Promote => {
                    let blocked = record.parents_remaining > 0;
                    if record.state == StateTag::Pending && record.run_at_ms == at_ms && !blocked {
                        let key = (Reverse(record.priority), record.run_at_ms, record.seq);
                        let queue_id = record.queue_id;
                        if let Some(queue) = self.queues.get_mut(&queue_id) {
                            queue.ready.insert(key, job_id);
                            self.dirty_queues.push(queue_id);
                        }
                    }
                }
                TimerKind::LeaseExpiry => {
                    let current = record.state == StateTag::Leased
                        && record
                            .lease()
                            .is_some_and(|lease| lease.deadline_ms == at_ms);
                    if current {
                        self.expire_lease(job_id, now_ms);
                    }
                }
            }
        }
        self.advance_workers(now_ms);
        while let Some(Reverse((at_ms, queue_id))) = self.queue_timers.peek().copied() {
            if at_ms > now_ms {
                break;
            }
            self.queue_timers.pop();
            self.dirty_queues.push(queue_id);
        }
        self.advance_schedules(now_ms);
        self.dispatch_waiters(now_ms);
    }

    /// Adds a timer, noting whether it is now the earliest.
    fn push_timer(&mut self, at_ms: u64, kind: TimerKind, job_id: JobId) {
        if self
            .next_timer_at()
            .is_none_or(|earliest_ms| at_ms < earliest_ms)
        {
            self.timers_lowered = true;
        }
        self.timers.push(Reverse((at_ms, kind, job_id)));
    }

    /// Hands out the next lease id, reserving a new durable block when needed.
    fn next_lease_id(&mut self) -> LeaseId {
        if self.lease_next >= self.lease_reserved {
            self.lease_reserved = self.lease_next + LEASE_ID_BLOCK;
            self.writes.push(Write::Put(
                keys::META_LEASE_RESERVED.to_vec(),
                self.lease_reserved.to_be_bytes().to_vec(),
            ));
            self.force_sync = true;
        }
        let lease_id = self.lease_next;
        self.lease_next += 1;
        lease_id
    }

    /// Next FIFO sequence number.
    fn next_seq(&mut self) -> u64 {
        let seq = self.seq_next;
        self.seq_next += 1;
        seq
    }

    /// Appends the writes that store `record` for `job_id`, moving the queue's counts, its
    /// live set and the finished jobs' index entry when the state changed. `previous` is
    /// `None` for a new job.
    fn persist(&mut self, job_id: JobId, previous: Option<StateTag>, record: &JobRecord) {
        self.persist_ending(job_id, previous, record, None);
    }

    /// [`Core::persist`] for a job whose state change ended an execution: a finished job's
    /// index entry holds that execution's record (only [`Core::finish`] passes one).
    fn persist_ending(
        &mut self,
        job_id: JobId,
        previous: Option<StateTag>,
        record: &JobRecord,
        ended: Option<&ExecutionInfo>,
    ) {
        debug_assert!(ended.is_none() || record.state.is_finished());
        let Some(queue) = self.queues.get_mut(&record.queue_id) else {
            // Jobs are only created in existing queues and queues with jobs cannot be
            // deleted, so this is a broken invariant, not an operating error.
            panic!("job {job_id} refers to missing queue {}", record.queue_id);
        };
        let project_id = queue.project_id;
        if previous != Some(record.state) {
            if let Some(previous) = previous {
                queue.counts[previous as usize] -= 1;
            }
            queue.counts[record.state as usize] += 1;
            let was_finished = previous.filter(|previous| previous.is_finished());
            let is_finished = Some(record.state).filter(|state| state.is_finished());
            if is_finished.is_some() {
                queue.live.remove(&job_id);
            } else {
                queue.live.insert(job_id);
            }
            if let Some(was) = was_finished {
                self.writes.push(Write::Delete(keys::queue_index(
                    record.queue_id,
                    was,
                    job_id,
                )));
            }
            if let Some(is) = is_finished {
                self.writes.push(Write::Put(
                    keys::queue_index(record.queue_id, is, job_id),
                    ended.map(records::encode).unwrap_or_default(),
                ));
            }
            // A lease ending frees a place under the queue's in-flight limit.
            if previous == Some(StateTag::Leased) && queue.record.defaults.in_flight_max.is_some() {
                self.dirty_queues.push(record.queue_id);
            }
        }
        self.writes.push(Write::Put(
            keys::job(project_id, job_id),
            records::encode(record),
        ));
    }

    /// Puts a pending job where it belongs: the ready set if due, else a timer.
    fn schedule_pending(&mut self, job_id: JobId, now_ms: u64) {
        let Some(record) = self.jobs.get(&job_id) else {
            return;
        };
        let (queue_id, run_at_ms) = (record.queue_id, record.run_at_ms);
        if record.parents_remaining > 0 {
            // Blocked: its last parent's release schedules it.
        } else if run_at_ms <= now_ms {
            let key = (Reverse(record.priority), run_at_ms, record.seq);
            if let Some(queue) = self.queues.get_mut(&queue_id) {
                queue.ready.insert(key, job_id);
                self.dirty_queues.push(queue_id);
            }
        } else {
            self.push_timer(run_at_ms, TimerKind::Promote, job_id);
        }
    }

    /// Removes a pending job from its queue's ready set, if it is there.
    fn unready(&mut self, job_id: JobId) {
        if let Some(record) = self.jobs.get(&job_id) {
            let key = (Reverse(record.priority), record.run_at_ms, record.seq);
            if let Some(queue) = self.queues.get_mut(&record.queue_id) {
                queue.ready.remove(&key);
            }
        }
    }

    /// The project owning a queue.
    fn project_of(&self, queue_id: u64) -> ProjectId {
        self.queues
            .get(&queue_id)
            .map_or(0, |queue| queue.project_id)
    }

    /// Looks up a live job of `project_id`; a job of another project is reported exactly
    /// like a missing one.
    fn live_job(&self, project_id: ProjectId, job_id: JobId) -> Result<&JobRecord, CoreError> {
        match self.jobs.get(&job_id) {
            Some(record) if self.project_of(record.queue_id) == project_id => Ok(record),
            _ => Err(CoreError::NotLive),
        }
    }

    /// A fresh job id: a UUID v7 (48-bit ms timestamp, random bits from the seeded
    /// generator) that is also strictly greater than every id this core made before, so id
    /// order is enqueue order even within one millisecond. Within a millisecond the next id
    /// adds a random step to the previous one's random bits (like RFC 9562's "monotonic
    /// random" method), so ids stay unguessable.
    fn new_job_id(&mut self, now_ms: u64) -> JobId {
        let mut random = [0u8; 10];
        self.rng.fill(&mut random);
        let mut candidate = *uuid::Builder::from_unix_timestamp_millis(now_ms, &random)
            .into_uuid()
            .as_bytes();
        if candidate <= self.last_job_id.0 {
            candidate = self.last_job_id.0;
            // The low 62 bits (below the variant bits) count; a step of up to 2^32 keeps
            // them random-looking and cannot overflow for billions of ids per millisecond.
            let low = u64::from_be_bytes(candidate[8..16].try_into().expect("8 bytes"));
            let step = self.rng.u64(1..1 << 32);
            let counter = (low & COUNTER_MASK)
                .checked_add(step)
                .filter(|next| *next <= COUNTER_MASK);
            match counter {
                Some(next) => {
                    let bytes = ((low & !COUNTER_MASK) | next).to_be_bytes();
                    candidate[8..16].copy_from_slice(&bytes);
                }
                None => {
                    // Exhausted within this millisecond: borrow the next one.
                    let last_ms = u64::from_be_bytes([
                        0,
                        0,
                        candidate[0],
                        candidate[1],
                        candidate[2],
                        candidate[3],
                        candidate[4],
                        candidate[5],
                    ]);
                    return self.new_job_id(last_ms + 1);
                }
            }
        }
        self.last_job_id = JobId(candidate);
        JobId(candidate)
    }

    /// Checks internal consistency; used by tests and simulations after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counted = HashMap::<u64, [u64; 3]>::new();
        for (job_id, record) in &self.jobs {
            let Some(queue) = self.queues.get(&record.queue_id) else {
                return Err(format!("job {job_id} in unknown queue {}", record.queue_id));
            };
            let key = (Reverse(record.priority), record.run_at_ms, record.seq);
            let in_ready = queue.ready.get(&key) == Some(job_id);
            match record.state {
                StateTag::Pending => {
                    if record.lease().is_some() {
                        return Err(format!("pending job {job_id} holds a lease"));
                    }
                    if record.parents_remaining > 0 {
                        if in_ready {
                            return Err(format!("blocked job {job_id} is ready"));
                        }
                        counted.entry(record.queue_id).or_default()[2] += 1;
                    }
                    counted.entry(record.queue_id).or_default()[0] += 1;
                }
                StateTag::Leased => {
                    if record.lease().is_none() || in_ready {
                        return Err(format!("leased job {job_id} without lease or ready"));
                    }
                    counted.entry(record.queue_id).or_default()[1] += 1;
                }
                state => return Err(format!("job {job_id} in memory in final state {state:?}")),
            }
        }
        for (queue_id, queue) in &self.queues {
            let [pending, leased, blocked] = counted.get(queue_id).copied().unwrap_or_default();
            if queue.counts[StateTag::Pending as usize] != pending
                || queue.counts[StateTag::Leased as usize] != leased
                || queue.blocked != blocked
            {
                return Err(format!(
                    "queue {} counts {:?} but holds {pending} pending and {leased} leased",
                    queue.record.name, queue.counts
                ));
            }
            for job_id in queue.ready.values() {
                match self.jobs.get(job_id) {
                    Some(record) if record.state == StateTag::Pending => {}
                    _ => return Err(format!("ready set of {} holds {job_id}", queue.record.name)),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod dag_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
