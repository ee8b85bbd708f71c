//! Unit tests of the pure core: no storage, no clock, no runtime.

use taskforge_protocol::{Backoff, JobState, NewJob, QueueSettings, Retry};

use super::*;

const PROJECT: ProjectId = 1;
const T0: u64 = 1_700_000_000_000;

fn core_with_queue(settings: QueueSettings) -> Core {
    let mut core = Core::new(7, Settings::default());
    core.queue_create(PROJECT, "q", &settings, T0)
        .expect("create queue");
    core
}

fn job(payload: &[u8]) -> NewJob {
    NewJob {
        queue: "q".into(),
        payload: payload.to_vec(),
        ..NewJob::default()
    }
}

fn enqueue(core: &mut Core, new_job: NewJob, now_ms: u64) -> JobId {
    core.enqueue(PROJECT, vec![new_job], &Default::default(), now_ms)
        .expect("enqueue")[0]
        .job_id
}

fn fetch(core: &mut Core, max_jobs: usize, now_ms: u64) -> Vec<Delivery> {
    let queue_id = core.queue_id(PROJECT, "q").expect("queue");
    core.fetch(
        PROJECT,
        &FetchPlan::queues(vec![queue_id], max_jobs, None),
        now_ms,
    )
    .expect("fetch")
}

#[test]
fn enqueue_fetch_ack_leaves_no_live_job() {
    let mut core = core_with_queue(QueueSettings::default());
    let job_id = enqueue(&mut core, job(b"a"), T0);
    let leased = fetch(&mut core, 10, T0);
    assert_eq!(leased.len(), 1);
    assert_eq!((leased[0].job_id, leased[0].attempt), (job_id, 1));
    core.ack(
        PROJECT,
        job_id,
        leased[0].lease_id,
        Some(b"ok".to_vec()),
        T0,
    )
    .expect("ack");
    assert_eq!(core.live_jobs(), 0);
    assert_eq!(
        core.queue_get(PROJECT, "q")
            .expect("queue")
            .counts
            .succeeded,
        1
    );
    core.check_invariants().expect("invariants");
}

#[test]
fn priority_first_then_fifo() {
    let mut core = core_with_queue(QueueSettings::default());
    let low = enqueue(&mut core, job(b"low"), T0);
    let high = enqueue(
        &mut core,
        NewJob {
            priority: Some(5),
            ..job(b"high")
        },
        T0,
    );
    let low_later = enqueue(&mut core, job(b"low2"), T0);
    let order: Vec<JobId> = fetch(&mut core, 10, T0)
        .into_iter()
        .map(|d| d.job_id)
        .collect();
    assert_eq!(order, vec![high, low, low_later]);
}

#[test]
fn delayed_jobs_become_ready_when_their_timer_fires() {
    let mut core = core_with_queue(QueueSettings::default());
    let job_id = enqueue(
        &mut core,
        NewJob {
            delay_ms: Some(500),
            ..job(b"later")
        },
        T0,
    );
    assert!(fetch(&mut core, 1, T0).is_empty());
    assert_eq!(core.next_timer_at(), Some(T0 + 500));
    core.advance(T0 + 499);
    assert!(fetch(&mut core, 1, T0 + 499).is_empty());
    core.advance(T0 + 500);
    assert_eq!(fetch(&mut core, 1, T0 + 500)[0].job_id, job_id);
}

#[test]
fn failures_back_off_then_go_dead() {
    let backoff = Backoff {
        initial_ms: 100,
        factor_percent: 200,
        max_ms: 1_000,
        jitter_percent: 0,
    };
    let settings = QueueSettings {
        max_attempts: Some(3),
        backoff: Some(backoff),
        ..QueueSettings::default()
    };
    let mut core = core_with_queue(settings);
    let job_id = enqueue(&mut core, job(b"x"), T0);
    let mut now_ms = T0;
    for (attempt, delay_ms) in [(1u32, 100u64), (2, 200)] {
        let leased = fetch(&mut core, 1, now_ms);
        assert_eq!(leased[0].attempt, attempt);
        let outcome = core
            .fail(
                PROJECT,
                job_id,
                leased[0].lease_id,
                Failure::new("boom", Retry::Backoff),
                now_ms,
            )
            .expect("fail");
        assert_eq!(outcome.state, JobState::Scheduled);
        assert_eq!(outcome.run_at_ms, Some(now_ms + delay_ms));
        now_ms += delay_ms;
        core.advance(now_ms);
    }
    let leased = fetch(&mut core, 1, now_ms);
    let outcome = core
        .fail(
            PROJECT,
            job_id,
            leased[0].lease_id,
            Failure::new("boom", Retry::Backoff),
            now_ms,
        )
        .expect("fail");
    assert_eq!((outcome.state, outcome.attempts), (JobState::Dead, 3));
    assert_eq!(core.queue_get(PROJECT, "q").expect("queue").counts.dead, 1);
    core.check_invariants().expect("invariants");
}

#[test]
fn stale_leases_are_refused_and_change_nothing() {
    let mut core = core_with_queue(QueueSettings {
        lease_ms: Some(1_000),
        ..Default::default()
    });
    let job_id = enqueue(&mut core, job(b"x"), T0);
    let first = fetch(&mut core, 1, T0).remove(0);
    core.advance(T0 + 1_000);
    let second = fetch(&mut core, 1, T0 + 1_000).remove(0);
    assert_eq!(second.attempt, 2);
    assert_ne!(first.lease_id, second.lease_id);
    let _ = core.take_writes();
    let now_ms = T0 + 1_001;
    assert_eq!(
        core.ack(PROJECT, job_id, first.lease_id, None, now_ms),
        Err(CoreError::LeaseLost)
    );
    assert_eq!(
        core.fail(
            PROJECT,
            job_id,
            first.lease_id,
            Failure::new("e", Retry::Never),
            now_ms
        ),
        Err(CoreError::LeaseLost)
    );
    assert_eq!(
        core.extend(PROJECT, job_id, first.lease_id, 5_000, now_ms),
        Err(CoreError::LeaseLost)
    );
    assert!(
        !core.has_writes(),
        "a refused stale operation must not write"
    );
    core.ack(PROJECT, job_id, second.lease_id, None, now_ms)
        .expect("current lease acks");
}

#[test]
fn cancel_in_every_live_state() {
    let mut core = core_with_queue(QueueSettings::default());
    let ready = enqueue(&mut core, job(b"r"), T0);
    let scheduled = enqueue(
        &mut core,
        NewJob {
            delay_ms: Some(1_000),
            ..job(b"s")
        },
        T0,
    );
    assert_eq!(
        core.cancel(PROJECT, ready, T0).expect("cancel").state,
        JobState::Cancelled
    );
    assert_eq!(
        core.cancel(PROJECT, scheduled, T0).expect("cancel").state,
        JobState::Cancelled
    );
    core.advance(T0 + 2_000);
    assert!(
        fetch(&mut core, 10, T0 + 2_000).is_empty(),
        "cancelled jobs are never delivered"
    );
    let leased_id = enqueue(&mut core, job(b"l"), T0);
    let leased = fetch(&mut core, 1, T0).remove(0);
    let response = core.cancel(PROJECT, leased_id, T0).expect("cancel");
    assert!(response.cancel_requested);
    let extended = core
        .extend(PROJECT, leased_id, leased.lease_id, 1_000, T0)
        .expect("extend");
    assert!(extended.cancel_requested);
    assert_eq!(
        core.ack(PROJECT, leased_id, leased.lease_id, None, T0),
        Err(CoreError::LeaseLost)
    );
    assert_eq!(core.cancel(PROJECT, leased_id, T0), Err(CoreError::NotLive));
    assert_eq!(
        core.queue_get(PROJECT, "q")
            .expect("queue")
            .counts
            .cancelled,
        3
    );
    core.check_invariants().expect("invariants");
}

#[test]
fn paused_queues_deliver_nothing_until_resumed() {
    let mut core = core_with_queue(QueueSettings::default());
    core.queue_set_paused(PROJECT, "q", true, T0)
        .expect("pause");
    enqueue(&mut core, job(b"x"), T0);
    assert!(fetch(&mut core, 1, T0).is_empty());
    core.queue_set_paused(PROJECT, "q", false, T0)
        .expect("resume");
    assert_eq!(fetch(&mut core, 1, T0).len(), 1);
}

#[test]
fn waiters_get_new_jobs_handed_over_in_arrival_order() {
    let mut core = core_with_queue(QueueSettings::default());
    let queue_id = core.queue_id(PROJECT, "q").expect("queue");
    core.add_waiter(1, PROJECT, FetchPlan::queues(vec![queue_id], 5, None));
    core.add_waiter(2, PROJECT, FetchPlan::queues(vec![queue_id], 5, None));
    core.enqueue(PROJECT, vec![job(b"a"), job(b"b")], &Default::default(), T0)
        .expect("enqueue");
    let handoffs = core.take_handoffs();
    assert_eq!(handoffs.len(), 1);
    assert_eq!(
        (handoffs[0].waiter_id, handoffs[0].deliveries.len()),
        (1, 2)
    );
    assert!(core.remove_waiter(2));
    assert!(
        !core.remove_waiter(1),
        "a served waiter is no longer registered"
    );
    core.release(&handoffs[0].deliveries, T0);
    assert_eq!(
        fetch(&mut core, 5, T0).iter().map(|d| d.attempt).max(),
        Some(1)
    );
    core.check_invariants().expect("invariants");
}

#[test]
fn other_projects_see_nothing() {
    let mut core = core_with_queue(QueueSettings::default());
    let job_id = enqueue(&mut core, job(b"x"), T0);
    assert!(matches!(core.queue_id(2, "q"), Err(CoreError::NotFound(_))));
    assert_eq!(core.cancel(2, job_id, T0), Err(CoreError::NotLive));
    let leased = fetch(&mut core, 1, T0).remove(0);
    assert_eq!(
        core.ack(2, job_id, leased.lease_id, None, T0),
        Err(CoreError::NotLive)
    );
}

#[test]
fn lease_ids_never_repeat_after_a_restore() {
    let mut core = core_with_queue(QueueSettings::default());
    enqueue(&mut core, job(b"x"), T0);
    let first = fetch(&mut core, 1, T0).remove(0);
    let (writes, force_sync) = core.take_writes();
    assert!(force_sync, "a lease block reservation must be synced");
    let reserved = writes.iter().find_map(|write| match write {
        Write::Put(key, value) if key == keys::META_LEASE_RESERVED => Some(u64::from_be_bytes(
            value.as_slice().try_into().expect("8 bytes"),
        )),
        _ => None,
    });
    let mut restored = Core::new(7, Settings::default());
    restored.restore_counters(reserved, None);
    restored
        .queue_create(PROJECT, "q", &QueueSettings::default(), T0)
        .expect("queue");
    restored
        .enqueue(PROJECT, vec![job(b"y")], &Default::default(), T0)
        .expect("enqueue");
    let queue_id = restored.queue_id(PROJECT, "q").expect("queue");
    let second = restored
        .fetch(PROJECT, &FetchPlan::queues(vec![queue_id], 1, None), T0)
        .expect("fetch")
        .remove(0);
    assert!(second.lease_id > first.lease_id);
}

#[test]
fn oldest_ready_age_looks_across_priorities() {
    let mut core = core_with_queue(QueueSettings::default());
    enqueue(
        &mut core,
        NewJob {
            priority: Some(9),
            ..job(b"new")
        },
        T0 + 500,
    );
    enqueue(&mut core, job(b"old"), T0);
    enqueue(
        &mut core,
        NewJob {
            priority: Some(-3),
            ..job(b"mid")
        },
        T0 + 200,
    );
    let stats = core.queue_stats(PROJECT, "q", T0 + 1_000).expect("stats");
    assert_eq!(stats.oldest_ready_age_ms, Some(1_000));
    assert_eq!(stats.counts.ready, 3);
}

#[test]
fn job_ids_increase_within_one_millisecond_and_after_a_restore() {
    let mut core = core_with_queue(QueueSettings::default());
    let created = core
        .enqueue(PROJECT, vec![job(b"x"); 500], &Default::default(), T0)
        .expect("enqueue");
    let ids: Vec<JobId> = created.iter().map(|enqueued| enqueued.job_id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids follow enqueue order"
    );
    assert!(
        ids.iter()
            .all(|id| id.0[6] >> 4 == 7 && id.0[8] >> 6 == 0b10),
        "still UUID v7"
    );
    let last = *ids.last().expect("ids");
    let record = core.jobs.get(&last).expect("live").clone();
    let mut restored = Core::new(8, Settings::default());
    restored.restore_queue(
        PROJECT,
        core.queues
            .get(&record.queue_id)
            .expect("queue")
            .record
            .clone(),
    );
    restored.restore_job(last, *record, T0);
    restored.finish_restore();
    let next = restored
        .enqueue(PROJECT, vec![job(b"y")], &Default::default(), T0)
        .expect("enqueue")[0]
        .job_id;
    assert!(
        next > last,
        "a restored core continues after the ids it found"
    );
}

#[test]
fn a_restored_core_indexes_its_live_jobs_as_the_original_did() {
    let mut core = core_with_queue(QueueSettings::default());
    core.queue_create(PROJECT, "other", &QueueSettings::default(), T0)
        .expect("create queue");
    for n in 0..300u32 {
        let mut new_job = job(&n.to_be_bytes());
        new_job.priority = Some((n % 7) as i32 - 3);
        if n % 5 == 0 {
            new_job.delay_ms = Some(60_000);
        }
        if n % 3 == 0 {
            new_job.queue = "other".into();
        }
        enqueue(&mut core, new_job, T0);
    }
    let leased = fetch(&mut core, 40, T0);
    assert_eq!(leased.len(), 40);
    let mut restored = Core::new(8, Settings::default());
    for (queue_id, queue) in &core.queues {
        assert!(queue.live.len() > 40, "queue {queue_id} holds live jobs");
        restored.restore_queue(PROJECT, queue.record.clone());
    }
    for (job_id, record) in &core.jobs {
        assert!(restored.restore_job(*job_id, (**record).clone(), T0));
    }
    restored.finish_restore();
    for (queue_id, queue) in &core.queues {
        let again = &restored.queues[queue_id];
        assert_eq!(again.live, queue.live, "live jobs of queue {queue_id}");
        assert_eq!(again.ready, queue.ready, "ready jobs of queue {queue_id}");
    }
}
