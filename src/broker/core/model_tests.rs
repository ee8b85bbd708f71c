//! Deterministic model test: random operation sequences (enqueue, fetch, ack, fail,
//! extend, cancel, clock jumps, restarts from storage) run against the core and against a
//! small reference model; every step checks the core's invariants and that both agree on
//! every job's state. A failure prints its seed; `TASKFORGE_MODEL_SEED` replays it and
//! `TASKFORGE_MODEL_SEEDS` runs more seeds.

use std::collections::BTreeMap;

use taskforge_protocol::{JobId, LeaseId, NewJob, QueueSettings, Retry};

use super::{Core, CoreError, Failure, FetchPlan, Settings};
use crate::broker::recovery;
use crate::storage::records::{self, JobRecord, StateTag};
use crate::storage::{keys, MemoryStorage, Storage};

const PROJECT: u64 = 1;
const STEPS_PER_SEED: usize = 400;
const MAX_ATTEMPTS: u32 = 3;
const LEASE_MS: u32 = 1_000;

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
    },
    Finished(StateTag),
}

struct Model {
    jobs: BTreeMap<JobId, (Expected, u32)>,
    /// Every lease ever issued, with its job, to try stale operations.
    leases: Vec<(JobId, LeaseId)>,
}

impl Model {
    fn expire(&mut self, now_ms: u64) {
        for (expected, attempts) in self.jobs.values_mut() {
            if let Expected::Leased {
                deadline_ms,
                cancel_requested,
                ..
            } = *expected
            {
                if deadline_ms <= now_ms {
                    *expected = if cancel_requested {
                        Expected::Finished(StateTag::Cancelled)
                    } else if *attempts >= MAX_ATTEMPTS {
                        Expected::Finished(StateTag::Dead)
                    } else {
                        Expected::Pending { run_at_ms: now_ms }
                    };
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
    let mut core = Core::new(seed, Settings::default());
    let settings = QueueSettings {
        max_attempts: Some(MAX_ATTEMPTS),
        lease_ms: Some(LEASE_MS),
        ..QueueSettings::default()
    };
    core.queue_create(PROJECT, "q", &settings, now_ms)
        .expect("queue");
    let queue_id = core.queue_id(PROJECT, "q").expect("queue id");
    let mut restarts = 0u64;
    let mut model = Model {
        jobs: BTreeMap::new(),
        leases: Vec::new(),
    };
    for step in 0..STEPS_PER_SEED {
        let pick = |rng: &mut fastrand::Rng, model: &Model| -> Option<JobId> {
            let ids: Vec<JobId> = model.jobs.keys().copied().collect();
            (!ids.is_empty()).then(|| ids[rng.usize(..ids.len())])
        };
        let context = format!("seed {seed} step {step}");
        match rng.u8(..10) {
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
                let delivered = core
                    .fetch(
                        PROJECT,
                        &FetchPlan::queues(vec![queue_id], max_jobs, None),
                        now_ms,
                    )
                    .expect(&context);
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
                            ..
                        },
                        Ok(response),
                    ) => {
                        assert!(response.cancel_requested, "{context}");
                        entry.0 = Expected::Leased {
                            lease_id,
                            deadline_ms,
                            cancel_requested: true,
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
                model.expire(now_ms);
            }
            _ => {
                // Restart: everything written so far is durable; rebuild from storage.
                let (writes, _) = core.take_writes();
                storage.apply(&writes).expect("apply");
                restarts += 1;
                let incarnation_seed = seed.wrapping_add(restarts);
                let (rebuilt, _) =
                    recovery::rebuild(&storage, incarnation_seed, Settings::default(), now_ms)
                        .expect(&context);
                core = rebuilt;
                core.advance(now_ms);
                model.expire(now_ms);
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
                } => {
                    record.state == StateTag::Leased
                        && record.lease.is_some_and(|lease| {
                            lease.lease_id == lease_id && lease.deadline_ms == deadline_ms
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
