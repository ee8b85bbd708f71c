//! Broker core operations with no storage and no I/O: what one job costs the state
//! machine itself. Run: `cargo bench --bench broker_core`.
//!
//! - `core`: enqueue, fetch + ack and timer promotion of 1 000 jobs.
//! - `core_backlog`: one enqueue, fetch and ack beside a large backlog.
//! - `core_dependencies`: dependency release. `ack_releases_<n>_children` times the one ACK
//!   of a parent whose `n` blocked children it makes ready (throughput in children);
//!   `chain_<n>_jobs` fetches and acks a chain of `n` jobs link by link, each ACK
//!   releasing the next (compare with `core/fetch_ack_1000`, which has no edges).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use taskforge::broker::core::{Core, Delivery, FetchPlan, Settings};
use taskforge_protocol::{NewJob, ParentRef, QueueSettings};

const PROJECT: u64 = 1;
const NOW_MS: u64 = 1_700_000_000_000;
const BATCH_JOBS: usize = 1_000;
/// Children of the one parent in the fan-out cases.
const FAN_OUT_CHILDREN: [usize; 2] = [100, 1_000];
/// Jobs in the chain case, each depending on the one before.
const CHAIN_JOBS: usize = 1_000;

fn job() -> NewJob {
    NewJob {
        queue: "q".into(),
        payload: vec![0u8; 128],
        ..NewJob::default()
    }
}

fn core_with_backlog(backlog: usize) -> Core {
    let mut core = Core::new(1, Settings::default());
    core.queue_create(PROJECT, "q", &QueueSettings::default(), NOW_MS)
        .expect("queue");
    for chunk in (0..backlog).collect::<Vec<_>>().chunks(BATCH_JOBS) {
        core.enqueue(
            PROJECT,
            vec![job(); chunk.len()],
            &Default::default(),
            NOW_MS,
        )
        .expect("enqueue");
    }
    let _ = core.take_writes();
    core
}

fn fetch_one(core: &mut Core) -> Option<Delivery> {
    let queue_id = core.queue_id(PROJECT, "q").expect("queue");
    core.fetch(PROJECT, &FetchPlan::queues(vec![queue_id], 1, None), NOW_MS)
        .expect("fetch")
        .pop()
}

/// A core holding one leased parent and `children` jobs blocked on it, with the parent's
/// delivery (to ack it).
fn core_with_fan_out(children: usize) -> (Core, Delivery) {
    let mut core = core_with_backlog(0);
    let parent = core
        .enqueue(PROJECT, vec![job()], &Default::default(), NOW_MS)
        .expect("enqueue parent")
        .first()
        .expect("the parent was created")
        .job_id;
    let delivery = fetch_one(&mut core).expect("the parent is ready");
    let child = NewJob {
        depends_on: vec![ParentRef::Job(parent)],
        ..job()
    };
    for chunk in (0..children).collect::<Vec<_>>().chunks(BATCH_JOBS) {
        core.enqueue(
            PROJECT,
            vec![child.clone(); chunk.len()],
            &Default::default(),
            NOW_MS,
        )
        .expect("enqueue children");
    }
    assert!(
        fetch_one(&mut core).is_none(),
        "children must start blocked"
    );
    let _ = core.take_writes();
    (core, delivery)
}

/// A core holding a chain of `jobs` jobs, each depending on the one before.
fn core_with_chain(jobs: usize) -> Core {
    let mut core = core_with_backlog(0);
    let chain = (0..jobs)
        .map(|index| NewJob {
            depends_on: index
                .checked_sub(1)
                .map(|before| ParentRef::Batch(before as u32))
                .into_iter()
                .collect(),
            ..job()
        })
        .collect();
    core.enqueue(PROJECT, chain, &Default::default(), NOW_MS)
        .expect("enqueue chain");
    let _ = core.take_writes();
    core
}

fn dependencies(criterion: &mut Criterion) {
    // The measured ACK must release every child, or the figures mean nothing.
    let (mut core, parent) = core_with_fan_out(BATCH_JOBS);
    core.ack(PROJECT, parent.job_id, parent.lease_id, None, NOW_MS)
        .expect("ack parent");
    let queue_id = core.queue_id(PROJECT, "q").expect("queue");
    let released = core
        .fetch(
            PROJECT,
            &FetchPlan::queues(vec![queue_id], BATCH_JOBS, None),
            NOW_MS,
        )
        .expect("fetch children");
    assert_eq!(released.len(), BATCH_JOBS, "the ACK releases every child");

    let mut group = criterion.benchmark_group("core_dependencies");
    for children in FAN_OUT_CHILDREN {
        group.throughput(Throughput::Elements(children as u64));
        group.bench_function(format!("ack_releases_{children}_children"), |bencher| {
            bencher.iter_batched(
                || core_with_fan_out(children),
                |(mut core, parent)| {
                    core.ack(PROJECT, parent.job_id, parent.lease_id, None, NOW_MS)
                        .expect("ack parent");
                    core
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.throughput(Throughput::Elements(CHAIN_JOBS as u64));
    group.bench_function(format!("chain_{CHAIN_JOBS}_jobs"), |bencher| {
        bencher.iter_batched(
            || core_with_chain(CHAIN_JOBS),
            |mut core| {
                for _ in 0..CHAIN_JOBS {
                    let link = fetch_one(&mut core).expect("the next link is ready");
                    core.ack(PROJECT, link.job_id, link.lease_id, None, NOW_MS)
                        .expect("ack link");
                }
                core
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn lifecycle(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("core");
    group.throughput(Throughput::Elements(BATCH_JOBS as u64));
    group.bench_function("enqueue_1000", |bencher| {
        bencher.iter_batched(
            || core_with_backlog(0),
            |mut core| {
                core.enqueue(
                    PROJECT,
                    vec![job(); BATCH_JOBS],
                    &Default::default(),
                    NOW_MS,
                )
                .expect("enqueue");
                core
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("fetch_ack_1000", |bencher| {
        bencher.iter_batched(
            || core_with_backlog(BATCH_JOBS),
            |mut core| {
                let queue_id = core.queue_id(PROJECT, "q").expect("queue");
                let leased = core
                    .fetch(
                        PROJECT,
                        &FetchPlan::queues(vec![queue_id], BATCH_JOBS, None),
                        NOW_MS,
                    )
                    .expect("fetch");
                for delivery in leased {
                    core.ack(PROJECT, delivery.job_id, delivery.lease_id, None, NOW_MS)
                        .expect("ack");
                }
                core
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("timers_promote_1000", |bencher| {
        bencher.iter_batched(
            || {
                let mut core = core_with_backlog(0);
                let delayed = NewJob {
                    delay_ms: Some(1_000),
                    ..job()
                };
                core.enqueue(
                    PROJECT,
                    vec![delayed; BATCH_JOBS],
                    &Default::default(),
                    NOW_MS,
                )
                .expect("enqueue");
                core
            },
            |mut core| {
                core.advance(NOW_MS + 1_000);
                core
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut backlog = criterion.benchmark_group("core_backlog");
    for pending in [10_000usize, 100_000] {
        backlog.throughput(Throughput::Elements(1));
        backlog.bench_function(format!("fetch_ack_with_{pending}_pending"), |bencher| {
            let mut core = core_with_backlog(pending);
            let queue_id = core.queue_id(PROJECT, "q").expect("queue");
            bencher.iter(|| {
                core.enqueue(PROJECT, vec![job()], &Default::default(), NOW_MS)
                    .expect("enqueue");
                let leased = core
                    .fetch(PROJECT, &FetchPlan::queues(vec![queue_id], 1, None), NOW_MS)
                    .expect("fetch");
                for delivery in leased {
                    core.ack(PROJECT, delivery.job_id, delivery.lease_id, None, NOW_MS)
                        .expect("ack");
                }
                let _ = core.take_writes();
            })
        });
    }
    backlog.finish();
}

criterion_group!(benches, lifecycle, dependencies);
criterion_main!(benches);
