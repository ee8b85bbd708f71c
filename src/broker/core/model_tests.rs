//! Deterministic model test: random operation sequences (enqueue, fetch as an anonymous
//! consumer or as a registered worker, ack, fail, extend, cancel, heartbeats, clock jumps
//! that expire leases and lose the worker, restarts from storage) run against the core and
//! against a
//! small reference model; every step checks the core's invariants and that both agree on
//! every job's state. A failure prints its seed; `TASKFORGE_MODEL_SEED` replays it and
//! `TASKFORGE_MODEL_SEEDS` runs more seeds.

use std::collections::BTreeMap;

use taskforge_protocol::{
    Heartbeat, JobId, LeaseId, NewJob, QueueAssignment, QueueSettings, Retry, WorkerId,
    WorkerRegister,
};

use super::{Core, CoreError, Failure, FetchPlan, Settings};
use crate::broker::recovery;
use crate::storage::records::{self, JobRecord, StateTag};
use crate::storage::{keys, MemoryStorage, Storage};

const PROJECT: u64 = 1;
const STEPS_PER_SEED: usize = 400;
const MAX_ATTEMPTS: u32 = 3;
const LEASE_MS: u32 = 1_000;
/// The worker is lost after this long without a heartbeat (about two clock jumps).
const HEARTBEAT_TIMEOUT_MS: u64 = 1_500;

fn settings() -> Settings {
    Settings {
        heartbeat_timeout_ms: HEARTBEAT_TIMEOUT_MS,
        ..Settings::default()
    }
}

/// What the model knows of the one registered worker.
struct WorkerModel {
    worker_id: WorkerId,
    last_heartbeat_ms: u64,
    lost: bool,
}

/// What the model expects of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Pending {
        run_at_ms: u64,
    },
    Leased {
        lease_id: LeaseId,
        deadline_ms: u64,
        cancel_requested: bool,
        by_worker: bool,
    },
    Finished(StateTag),
}

struct Model {
    jobs: BTreeMap<JobId, (Expected, u32)>,
    worker: WorkerModel,
    /// Every lease ever issued, with its job, to try stale operations.
    leases: Vec<(JobId, LeaseId)>,
}

/// Where a lease ends without word from its holder: cancelled, dead or back to pending.
fn released(cancel_requested: bool, attempts: u32, now_ms: u64) -> Expected {
    if cancel_requested {
        Expected::Finished(StateTag::Cancelled)
    } else if attempts >= MAX_ATTEMPTS {
        Expected::Finished(StateTag::Dead)
    } else {
        Expected::Pending { run_at_ms: now_ms }
    }
}

impl Model {
    /// Time passes to `now_ms`: leases run out first, then a silent worker is lost and the
    /// leases it still holds are released (the core's order).
    fn advance(&mut self, now_ms: u64) {
        self.expire(now_ms);
        if !self.worker.lost && now_ms >= self.worker.last_heartbeat_ms + HEARTBEAT_TIMEOUT_MS {
            self.worker.lost = true;
            for (expected, attempts) in self.jobs.values_mut() {
                if let Expected::Leased {
                    cancel_requested,
                    by_worker: true,
                    ..
                } = *expected
                {
                    *expected = released(cancel_requested, *attempts, now_ms);
                }
            }
        }
    }

    fn expire(&mut self, now_ms: u64) {
        for (expected, attempts) in self.jobs.values_mut() {
            if let Expected::Leased {
                deadline_ms,
                cancel_requested,
                ..
            } = *expected
            {
                if deadline_ms <= now_ms {
                    *expected = released(cancel_requested, *attempts, now_ms);
                }
            }
        }
    }

    fn current_lease(&self, job_id: JobId) -> Option<LeaseId> {
        match self.jobs.get(&job_id) {
            Some((Expected::Leased { lease_id, .. }, _)) => Some(*lease_id),
            _ => None,
        }
    }
}

fn stored(storage: &MemoryStorage, job_id: JobId) -> JobRecord {
    let bytes = storage
        .get(&keys::job(PROJECT, job_id))
        .expect("read")
        .expect("stored job");
    records::decode("job", &bytes).expect("decodes")
}

fn run_seed(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let storage = MemoryStorage::new();
    let mut now_ms: u64 = 1_800_000_000_000;
    let mut core = Core::new(seed, settings());
    let queue_settings = QueueSettings {
        max_attempts: Some(MAX_ATTEMPTS),
        lease_ms: Some(LEASE_MS),
        ..QueueSettings::default()
    };
    core.queue_create(PROJECT, "q", &queue_settings, now_ms)
        .expect("queue");
    let queue_id = core.queue_id(PROJECT, "q").expect("queue id");
    let mut restarts = 0u64;
    let registered = core
        .register_worker(
            PROJECT,
            WorkerRegister {
                name: "model".into(),
                hostname: "host".into(),
                pid: 1,
                version: "1".into(),
                labels: Vec::new(),
                concurrency: 4,
                queues: vec![QueueAssignment {
                    queue: "q".into(),
                    weight: 1,
                    active: true,
                }],
            },
            now_ms,
        )
        .expect("register");
    let mut model = Model {
        jobs: BTreeMap::new(),
        worker: WorkerModel {
            worker_id: registered.worker_id,
            last_heartbeat_ms: now_ms,
            lost: false,
        },
        leases: Vec::new(),
    };
    for step in 0..STEPS_PER_SEED {
        let pick = |rng: &mut fastrand::Rng, model: &Model| -> Option<JobId> {
            let ids: Vec<JobId> = model.jobs.keys().copied().collect();
            (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())])
        };
        let context = format!("seed {seed} step {step}");
        match rng.u8(..11) {
            0 | 1 => {
                let count = rng.usize(1..4);
                let jobs: Vec<NewJob> = (0..count)
                    .map(|_| NewJob {
                        queue: "q".into(),
                        payload: vec![rng.u8(..)],
                        priority: Some(rng.i32(-2..3)),
                        delay_ms: rng.bool().then(|| rng.u64(0..3_000)),
                        ..NewJob::default()
                    })
                    .collect();
                let delays: Vec<u64> = jobs.iter().map(|job| job.delay_ms.unwrap_or(0)).collect();
                let created = core
                    .enqueue(PROJECT, jobs, &Default::default(), now_ms)
                    .expect(&context);
                for (enqueued, delay_ms) in created.into_iter().zip(delays) {
                    let job_id = enqueued.job_id;
                    model.jobs.insert(
                        job_id,
                        (
                            Expected::Pending {
                                run_at_ms: now_ms + delay_ms,
                            },
                            0,
                        ),
                    );
                }
            }
            2 | 3 => {
                let max_jobs = rng.usize(1..5);
                let due = model
                    .jobs
                    .values()
                    .filter(|(expected, _)| matches!(expected, Expected::Pending { run_at_ms } if *run_at_ms <= now_ms))
                    .count();
                let by_worker = rng.bool();
                let mut plan = FetchPlan::queues(vec![queue_id], max_jobs, None);
                if by_worker {
                    plan.worker_id = Some(model.worker.worker_id);
                }
                let outcome = core.fetch(PROJECT, &plan, now_ms);
                if by_worker && model.worker.lost {
                    assert!(
                        matches!(outcome, Err(CoreError::Conflict(_))),
                        "{context}: a lost worker fetched: {outcome:?}"
                    );
                    continue;
                }
                let delivered = outcome.expect(&context);
                assert_eq!(delivered.len(), due.min(max_jobs), "{context}: fetch size");
                for delivery in delivered {
                    let entry = model.jobs.get_mut(&delivery.job_id).expect("known job");
                    assert!(
                        matches!(entry.0, Expected::Pending { run_at_ms } if run_at_ms <= now_ms),
                        "{context}: delivered a job that was {:?}",
                        entry.0
                    );
                    entry.1 += 1;
                    assert_eq!(delivery.attempt, entry.1, "{context}: attempt number");
                    entry.0 = Expected::Leased {
                        lease_id: delivery.lease_id,
                        deadline_ms: delivery.lease_deadline_ms,
                        cancel_requested: false,
                        by_worker,
                    };
                    assert!(
                        model
                            .leases
                            .iter()
                            .all(|(_, lease_id)| *lease_id != delivery.lease_id),
                        "{context}: lease id reused"
                    );
                    model.leases.push((delivery.job_id, delivery.lease_id));
                }
            }
            4 | 5 => {
                // ACK or FAIL with the current lease, or a stale one.
                let target = if rng.bool() || model.leases.is_empty() {
                    pick(&mut rng, &model)
                        .and_then(|job_id| model.current_lease(job_id).map(|lease| (job_id, lease)))
                } else {
                    Some(model.leases[rng.usize(..model.leases.len())])
                };
                let Some((job_id, lease_id)) = target else {
                    continue;
                };
                let current = model.current_lease(job_id) == Some(lease_id);
                let fail = rng.bool();
                let outcome = if fail {
                    core.fail(
                        PROJECT,
                        job_id,
                        lease_id,
                        Failure::new("e", Retry::Backoff),
                        now_ms,
                    )
                    .map(|response| response.run_at_ms)
                } else {
                    core.ack(PROJECT, job_id, lease_id, None, now_ms)
                        .map(|()| None)
                };
                let entry = model.jobs.get_mut(&job_id).expect("known job");
                match (current, entry.0, outcome) {
                    (false, Expected::Finished(_), Err(CoreError::NotLive)) => {}
                    (false, _, Err(CoreError::LeaseLost)) => {}
                    (
                        true,
                        Expected::Leased {
                            cancel_requested: true,
                            ..
                        },
                        Err(CoreError::LeaseLost),
                    ) => {
                        entry.0 = Expected::Finished(StateTag::Cancelled);
                    }
                    (true, _, Ok(None)) if !fail => {
                        entry.0 = Expected::Finished(StateTag::Succeeded)
                    }
                    (true, _, Ok(None)) => {
                        assert!(
                            entry.1 >= MAX_ATTEMPTS,
                            "{context}: dead before attempts ran out"
                        );
                        entry.0 = Expected::Finished(StateTag::Dead);
                    }
                    (true, _, Ok(Some(run_at_ms))) => {
                        assert!(
                            entry.1 < MAX_ATTEMPTS,
                            "{context}: retried after the last attempt"
                        );
                        entry.0 = Expected::Pending { run_at_ms };
                    }
                    other => panic!("{context}: unexpected ack/fail outcome {other:?}"),
                }
            }
            6 => {
                let Some(job_id) = pick(&mut rng, &model) else {
                    continue;
                };
                let entry = model.jobs.get_mut(&job_id).expect("known job");
                match (entry.0, core.cancel(PROJECT, job_id, now_ms)) {
                    (Expected::Pending { .. }, Ok(_)) => {
                        entry.0 = Expected::Finished(StateTag::Cancelled)
                    }
                    (
                        Expected::Leased {
                            lease_id,
                            deadline_ms,
                            by_worker,
                            ..
                        },
                        Ok(response),
                    ) => {
                        assert!(response.cancel_requested, "{context}");
                        entry.0 = Expected::Leased {
                            lease_id,
                            deadline_ms,
                            cancel_requested: true,
                            by_worker,
                        };
                    }
                    (Expected::Finished(_), Err(CoreError::NotLive)) => {}
                    other => panic!("{context}: unexpected cancel outcome {other:?}"),
                }
            }
            7 => {
                let Some(job_id) = pick(&mut rng, &model) else {
                    continue;
                };
                let Some(lease_id) = model.current_lease(job_id) else {
                    continue;
                };
                let response = core
                    .extend(PROJECT, job_id, lease_id, LEASE_MS, now_ms)
                    .expect(&context);
                if let Some((Expected::Leased { deadline_ms, .. }, _)) = model.jobs.get_mut(&job_id)
                {
                    *deadline_ms = response.lease_deadline_ms;
                }
            }
            8 => {
                now_ms += rng.u64(0..1_500);
                core.advance(now_ms);
                model.advance(now_ms);
            }
            9 => {
                let heartbeat = Heartbeat {
                    worker_id: model.worker.worker_id,
                    in_flight: 0,
                    assignments_version: 1,
                    leaving: false,
                };
                core.heartbeat(PROJECT, &heartbeat, now_ms).expect(&context);
                // A lost worker comes back; its released leases stay released.
                model.worker.last_heartbeat_ms = now_ms;
                model.worker.lost = false;
            }
            _ => {
                // Restart: everything written so far is durable; rebuild from storage.
                let (writes, _) = core.take_writes();
                storage.apply(&writes).expect("apply");
                restarts += 1;
                let incarnation_seed = seed.wrapping_add(restarts);
                let (rebuilt, _) =
                    recovery::rebuild(&storage, incarnation_seed, settings(), now_ms)
                        .expect(&context);
                core = rebuilt;
                // A live worker's heartbeat timeout starts again at the restart.
                if !model.worker.lost {
                    model.worker.last_heartbeat_ms = now_ms;
                }
                core.advance(now_ms);
                model.advance(now_ms);
            }
        }
        let _ = core.take_handoffs();
        core.check_invariants()
            .unwrap_or_else(|error| panic!("{context}: {error}"));
        let (writes, _) = core.take_writes();
        storage.apply(&writes).expect("apply");
        for (job_id, (expected, attempts)) in &model.jobs {
            let record = stored(&storage, *job_id);
            assert_eq!(
                record.attempts, *attempts,
                "{context}: attempts of {job_id}"
            );
            let agrees = match *expected {
                Expected::Pending { run_at_ms } => {
                    record.state == StateTag::Pending && record.run_at_ms == run_at_ms
                }
                Expected::Leased {
                    lease_id,
                    deadline_ms,
                    cancel_requested,
                    by_worker,
                } => {
                    let holder = by_worker.then_some(model.worker.worker_id);
                    record.state == StateTag::Leased
                        && record.lease().is_some_and(|lease| {
                            lease.lease_id == lease_id
                                && lease.deadline_ms == deadline_ms
                                && lease.worker_id == holder
                        })
                        && record.cancel_requested == cancel_requested
                }
                Expected::Finished(tag) => record.state == tag,
            };
            assert!(
                agrees,
                "{context}: {job_id} expected {expected:?}, stored {record:?}"
            );
        }
    }
}

#[test]
fn random_operation_sequences_match_the_model() {
    let seeds: Vec<u64> = match std::env::var("TASKFORGE_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        Some(seed) => vec![seed],
        None => {
            let count = std::env::var("TASKFORGE_MODEL_SEEDS")
                .ok()
                .and_then(|count| count.parse().ok())
                .unwrap_or(32);
            let base = fastrand::u64(..);
            (0..count)
                .map(|offset: u64| base.wrapping_add(offset))
                .collect()
        }
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| run_seed(seed));
        if outcome.is_err() {
            panic!("model test failed; replay with TASKFORGE_MODEL_SEED={seed}");
        }
    }
}
