//! Broker core operations with no storage and no I/O: what one job costs the state
//! machine itself. Run: `cargo bench --bench broker_core`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use taskforge::broker::core::{Core, FetchPlan, Settings};
use taskforge_protocol::{NewJob, QueueSettings};

const PROJECT: u64 = 1;
const NOW_MS: u64 = 1_700_000_000_000;
const BATCH_JOBS: usize = 1_000;

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

criterion_group!(benches, lifecycle);
criterion_main!(benches);
