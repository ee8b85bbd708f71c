//! Registration, heartbeats and the broker's orders: quiet, terminate, new assignments,
//! cancelled jobs, a forgotten worker.

use super::*;

#[tokio::test]
async fn worker_registers_heartbeats_fetches_as_itself_and_leaves_on_shutdown() {
    let state = state_with_jobs(&["one"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let mut options = test_options(3);
    options.fetch_batch = 3;
    options.queues = vec!["emails".to_string(), "sms".to_string()];
    options.weights = vec![2, 1];
    let options = options
        .with_name("mailer")
        .with_version("9.9.9")
        .with_label("zone", "eu");
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, options, ok_handler, &shutdown);

    wait_until("the job is acked and two heartbeats were sent", || {
        let state = lock(&state);
        state.acked.len() == 1 && state.heartbeats.len() >= 2
    })
    .await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");
    assert_eq!(report.succeeded, 1);

    let state = lock(&state);
    assert_eq!(state.registrations.len(), 1);
    let registration = &state.registrations[0];
    assert_eq!(registration.name, "mailer");
    assert_eq!(registration.version, "9.9.9");
    assert_eq!(
        registration.labels,
        [("zone".to_string(), "eu".to_string())]
    );
    assert_eq!(registration.concurrency, 3);
    assert_eq!(registration.pid, std::process::id());
    assert!(!registration.hostname.is_empty());
    assert_eq!(
        registration.queues,
        [
            QueueAssignment {
                queue: "emails".to_string(),
                weight: 2,
                active: true
            },
            QueueAssignment {
                queue: "sms".to_string(),
                weight: 1,
                active: true
            }
        ]
    );
    assert_eq!(
        state.events[0], "WORKER_REGISTER",
        "registers before anything"
    );
    assert!(state.fetches.iter().all(|fetch| {
        fetch.worker_id == Some(1) && fetch.queues == ["emails", "sms"] && fetch.weights == [2, 1]
    }));
    let (last, earlier) = state.heartbeats.split_last().expect("heartbeats");
    assert!(last.leaving, "the last heartbeat says the worker leaves");
    assert!(earlier.iter().all(|heartbeat| !heartbeat.leaving
        && heartbeat.worker_id == 1
        && heartbeat.assignments_version == 1));
    assert_eq!(last.in_flight, 0);
    assert_eq!(state.worker_id, None, "the broker saw the worker leave");
}

#[tokio::test]
async fn heartbeats_count_the_jobs_in_flight() {
    let state = state_with_jobs(&["slow"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let handler = |_context: JobContext| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(None)
    };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(2), handler, &shutdown);

    wait_until("a heartbeat counts the running job", || {
        lock(&state)
            .heartbeats
            .iter()
            .any(|heartbeat| heartbeat.in_flight == 1)
    })
    .await;
    wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    run.await.expect("worker task").expect("worker run");
}

#[tokio::test]
async fn quiet_stops_fetching_but_finishes_running_jobs_and_keeps_heartbeating() {
    let state = state_with_jobs(&["slow"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let started = Arc::new(AtomicBool::new(false));
    let handler = slow_handler(&started);
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(2), handler, &shutdown);

    wait_until("the handler runs", || started.load(Ordering::SeqCst)).await;
    let heartbeats_at_quiet = {
        let mut state = lock(&state);
        state.command = WorkerCommand::Quiet;
        state.heartbeats.len()
    };
    // Three heartbeats later the worker has applied the order and any FETCH sent before
    // it has been answered (they are shorter than a heartbeat interval).
    wait_until("three more heartbeats", || {
        lock(&state).heartbeats.len() >= heartbeats_at_quiet + 3
    })
    .await;
    let fetches_when_quiet = {
        let mut state = lock(&state);
        state.ready.push_back(job_in("emails", 9, "late"));
        state.fetches.len()
    };
    wait_until("the running job is acked", || lock(&state).acked.len() == 1).await;
    let heartbeats_after_ack = lock(&state).heartbeats.len();
    wait_until("the worker keeps heartbeating while quiet", || {
        lock(&state).heartbeats.len() >= heartbeats_after_ack + 3
    })
    .await;
    assert!(
        !run.is_finished(),
        "a quiet worker runs until it is stopped"
    );
    {
        let state = lock(&state);
        assert_eq!(
            state.fetches.len(),
            fetches_when_quiet,
            "no FETCH while quiet"
        );
        assert_eq!(state.ready.len(), 1, "the late job was not fetched");
    }
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");
    assert_eq!(report.succeeded, 1);
    assert!(!report.terminated);
    assert!(lock(&state).heartbeats.last().expect("heartbeat").leaving);
}

#[tokio::test]
async fn terminate_fails_unfinished_jobs_at_the_deadline_and_returns() {
    let state = state_with_jobs(&["quick", "stuck 1", "stuck 2"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let stuck_started = Arc::new(AtomicUsize::new(0));
    let tokens_fired = Arc::new(AtomicUsize::new(0));
    let (started, fired) = (Arc::clone(&stuck_started), Arc::clone(&tokens_fired));
    let handler = move |context: JobContext| {
        let (started, fired) = (Arc::clone(&started), Arc::clone(&fired));
        async move {
            if context.payload() == b"quick" {
                return Ok(None);
            }
            started.fetch_add(1, Ordering::SeqCst);
            // Work the handler hands off sees the token fire even though the handler
            // itself ignores it.
            let token = context.cancellation().clone();
            tokio::spawn(async move {
                token.cancelled().await;
                fired.fetch_add(1, Ordering::SeqCst);
            });
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(None)
        }
    };
    let mut options = test_options(3);
    options.shutdown_timeout = Duration::from_secs(20);
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, options, handler, &shutdown);

    wait_until("both stuck handlers run and the quick job is acked", || {
        stuck_started.load(Ordering::SeqCst) == 2 && lock(&state).acked.len() == 1
    })
    .await;
    let grace = Duration::from_millis(400);
    let ordered_at = Instant::now();
    {
        let mut state = lock(&state);
        state.command = WorkerCommand::Terminate {
            deadline_ms: now_ms() + u64::try_from(grace.as_millis()).expect("fits"),
        };
        state.ready.push_back(job_in("emails", 9, "never fetched"));
    }
    let report = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run() returns soon after the deadline")
        .expect("worker task")
        .expect("worker run");
    let took = ordered_at.elapsed();

    assert!(
        took >= grace - Duration::from_millis(50),
        "returned before the deadline: {took:?}"
    );
    assert!(
        took < grace + Duration::from_secs(2),
        "returned late: {took:?}"
    );
    assert_eq!(
        report,
        WorkerReport {
            succeeded: 1,
            interrupted: 2,
            terminated: true,
            ..WorkerReport::default()
        }
    );
    assert_eq!(tokens_fired.load(Ordering::SeqCst), 2);
    let state = lock(&state);
    assert_eq!(state.failed.len(), 2);
    assert!(state
        .failed
        .iter()
        .all(|fail| fail.error == TERMINATED_ERROR && fail.retry == Retry::Backoff));
    assert_eq!(state.ready.len(), 1, "nothing fetched after the order");
    assert!(state.heartbeats.last().expect("heartbeat").leaving);
    assert_eq!(
        state.events.last(),
        Some(&"HEARTBEAT"),
        "the leaving heartbeat comes after the FAILs"
    );
}

#[tokio::test]
async fn terminate_returns_at_once_when_nothing_runs() {
    let state = state_with_jobs(&[]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), ok_handler, &shutdown);

    wait_until("a heartbeat", || !lock(&state).heartbeats.is_empty()).await;
    lock(&state).command = WorkerCommand::Terminate {
        deadline_ms: now_ms() + 60_000,
    };
    let report = tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .expect("an idle worker leaves without waiting for the deadline")
        .expect("worker task")
        .expect("worker run");
    assert!(report.terminated);
    assert!(lock(&state).heartbeats.last().expect("heartbeat").leaving);
}

#[tokio::test]
async fn new_assignments_switch_the_queues_and_weights_fetched() {
    let state = state_with_jobs(&[]);
    lock(&state).ready.push_back(job_in("sms", 1, "text me"));
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), ok_handler, &shutdown);

    wait_until("a FETCH from emails", || !lock(&state).fetches.is_empty()).await;
    {
        let mut state = lock(&state);
        state.assignments = vec![
            QueueAssignment {
                queue: "sms".to_string(),
                weight: 3,
                active: true,
            },
            QueueAssignment {
                queue: "paused".to_string(),
                weight: 5,
                active: false,
            },
            QueueAssignment {
                queue: "emails".to_string(),
                weight: 1,
                active: true,
            },
        ];
        state.assignments_version = 2;
    }
    wait_until("the sms job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    run.await.expect("worker task").expect("worker run");

    let state = lock(&state);
    let first_switched = state
        .fetches
        .iter()
        .position(|fetch| fetch.queues != ["emails"])
        .expect("a FETCH with the new queues");
    assert!(state.fetches[..first_switched]
        .iter()
        .all(|fetch| fetch.weights.is_empty()));
    assert!(state.fetches[first_switched..]
        .iter()
        .all(|fetch| fetch.queues == ["sms", "emails"] && fetch.weights == [3, 1]));
    let versions: Vec<u64> = state
        .heartbeats
        .iter()
        .map(|heartbeat| heartbeat.assignments_version)
        .collect();
    assert_eq!(versions.first(), Some(&1));
    assert_eq!(
        versions.last(),
        Some(&2),
        "the worker reports the version it took"
    );
}

#[tokio::test]
async fn cancelled_jobs_in_a_heartbeat_fire_the_job_token() {
    let state = state_with_jobs(&["cancel me"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&saw_cancel);
    let handler = move |context: JobContext| {
        let seen = Arc::clone(&seen);
        async move {
            tokio::select! {
                () = context.cancellation().cancelled() => {
                    seen.store(true, Ordering::SeqCst);
                    Err(JobError::new("stopped on request"))
                }
                () = tokio::time::sleep(Duration::from_secs(10)) => Ok(None),
            }
        }
    };
    let mut options = test_options(1);
    // Long leases: no EXTEND tells the handler first.
    options.lease_ms = 60_000;
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, options, handler, &shutdown);

    wait_until("the job is leased", || !lock(&state).leased.is_empty()).await;
    let job_id = *lock(&state).leased.keys().next().expect("leased");
    lock(&state).cancelled_by_heartbeat.push(job_id);
    wait_until("the handler sees the cancel", || {
        saw_cancel.load(Ordering::SeqCst)
    })
    .await;
    wait_until("the FAIL arrives", || lock(&state).failed.len() == 1).await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");
    assert_eq!(report.failed, 1);
    assert_eq!(lock(&state).extends, 0);
}

#[tokio::test]
async fn a_forgotten_worker_registers_again_and_fetches_under_its_new_id() {
    let state = state_with_jobs(&[]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), ok_handler, &shutdown);

    wait_until("a heartbeat", || !lock(&state).heartbeats.is_empty()).await;
    lock(&state).forget_worker = true;
    wait_until("a second registration", || {
        lock(&state).registrations.len() == 2
    })
    .await;
    lock(&state).ready.push_back(job_in("emails", 1, "after"));
    wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    run.await.expect("worker task").expect("worker run");

    let state = lock(&state);
    assert_eq!(state.registrations[1].queues, state.registrations[0].queues);
    // The fake broker leases only to its current worker id, so the ACK already shows a
    // FETCH under the new id; a FETCH under the old id may still arrive after it (one
    // NOT_FOUND is retried), so the last one need not be the new id's.
    assert!(
        state.fetches.iter().any(|fetch| fetch.worker_id == Some(2)),
        "fetches under the new id"
    );
    assert_eq!(state.heartbeats.last().expect("heartbeat").worker_id, 2);
}

#[tokio::test]
async fn one_not_found_fetch_of_a_known_worker_is_retried() {
    let state = state_with_jobs(&[]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), ok_handler, &shutdown);

    wait_until("a heartbeat", || !lock(&state).heartbeats.is_empty()).await;
    lock(&state).fetch_not_found_once = true;
    let fetches = lock(&state).fetches.len();
    wait_until("two more FETCHes", || {
        lock(&state).fetches.len() >= fetches + 2
    })
    .await;
    lock(&state).ready.push_back(job_in("emails", 1, "after"));
    wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    run.await.expect("worker task").expect("not fatal");
    assert_eq!(lock(&state).registrations.len(), 1);
}
