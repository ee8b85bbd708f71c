//! Storage migrations through a real server: a store rolled back to schema version 1
//! (live jobs in the stored index, leased ones under their own tag) is migrated at
//! start-up to version 4 (with a backup left behind) and its leased job stays leased; once
//! acknowledged, rolling back to version 3 moves its execution out of its index entry and
//! the execution is still listed; a test-only version 5 shows that a build which does not
//! know a version refuses the store, and that rollback brings it back with its data.

use std::path::Path;

use taskforge::server::StartError;
use taskforge::storage::maintenance;
use taskforge::storage::migrations::{self, Migration, MigrationError};
use taskforge::storage::{keys, Storage, StorageError, Write};
use taskforge_protocol::{
    ExecutionOutcome, FetchRequest, JobId, JobListRequest, JobState, QueueSettings,
};

use crate::admin_http::{scrape, value};
use crate::support::{job, TestServer};

/// Where the test migration records what it saw.
const QUEUE_COUNT_KEY: &[u8] = b"\x00test_v5_queue_count";

/// Test-only v5: counts the queue records into a meta key (so `up` really reads the store).
fn count_queues(storage: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    let mut queues: u64 = 0;
    let (start, end) = keys::queue_range();
    storage.scan(&start, &end, &mut |_, _| {
        queues += 1;
        true
    })?;
    Ok(vec![Write::Put(
        QUEUE_COUNT_KEY.to_vec(),
        queues.to_be_bytes().to_vec(),
    )])
}

/// Test-only v5's way back.
fn forget_queue_count(_: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    Ok(vec![Write::Delete(QUEUE_COUNT_KEY.to_vec())])
}

/// The production list with a test-only version after it.
fn with_test_v5() -> Vec<Migration> {
    let mut migrations = migrations::production();
    migrations.push(Migration {
        version: 5,
        description: "test only: record the number of queues",
        up: count_queues,
        down: forget_queue_count,
    });
    migrations
}

/// The ids of the jobs of queue `durable` in `state`.
async fn listed(server: &TestServer, state: JobState) -> Vec<JobId> {
    let listed = server
        .client()
        .await
        .job_list(JobListRequest {
            queue: "durable".into(),
            state: Some(state),
            after: None,
            limit: 100,
        })
        .await
        .expect("list");
    listed.jobs.iter().map(|job| job.job_id).collect()
}

/// The backup directories under `<data_dir>/backups`.
fn backups(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("backups")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Reads one key of the stopped store.
fn stored(data_dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let storage = maintenance::open_existing(data_dir).expect("open the stopped store");
    let value = storage.get(key).expect("read");
    storage.flush_and_close().expect("close");
    value
}

#[tokio::test]
async fn startup_migrates_with_a_backup_and_rollback_restores_the_old_version() {
    let latest = migrations::latest_version(&migrations::production());
    assert_eq!(
        latest, 4,
        "production: baseline, shared live entry, live jobs in memory, final execution in the index"
    );
    let mut server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("durable", QueueSettings::default())
        .await
        .expect("create");
    for index in 0..3 {
        client
            .enqueue(job("durable", format!("job {index}").as_bytes()))
            .await
            .expect("enqueue");
    }
    let leased = client
        .fetch(FetchRequest {
            queues: vec!["durable".into()],
            max_jobs: 1,
            wait_ms: 0,
            lease_ms: Some(600_000),
            worker_id: None,
            weights: Vec::new(),
        })
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    drop(client);
    server.stop().await;
    let data_dir = server.config.broker.data_dir.clone();
    assert_eq!(
        stored(&data_dir, keys::META_SCHEMA_VERSION),
        Some(latest.to_be_bytes().to_vec()),
        "a fresh store is born at the newest version"
    );
    assert!(
        backups(&data_dir).is_empty(),
        "nothing to migrate, no backup"
    );

    // Back to version 1, as `taskforge storage rollback` does it (one version a call): no
    // job has finished, so nothing moves to version 3; the three live jobs get index
    // entries again, then the leased one its own. A normal start-up migrates to version 4,
    // backup first, and the leased job is still leased.
    let production = migrations::production();
    let report = maintenance::rollback(&data_dir, &production).expect("rollback to v3");
    assert_eq!((report.version, report.steps[0].writes), (3, 0));
    let report = maintenance::rollback(&data_dir, &production).expect("rollback to v2");
    assert_eq!((report.version, report.steps[0].writes), (2, 3));
    let report = maintenance::rollback(&data_dir, &production).expect("rollback to v1");
    assert_eq!((report.version, report.steps[0].writes), (1, 2));
    server.restart().await;
    let metrics = scrape(server.admin_addr()).await;
    assert_eq!(value(&metrics, "taskforge_schema_version", &[]), 4.0);
    let taken = backups(&data_dir);
    assert_eq!(
        taken.len(),
        4,
        "one before each rollback, one before migrating: {taken:?}"
    );
    assert!(taken.iter().any(|name| name.ends_with("-v1")), "{taken:?}");
    assert!(data_dir
        .join("backups")
        .join(&taken[0])
        .join("store.tfdump")
        .is_file());
    assert_eq!(listed(&server, JobState::Leased).await, vec![leased.job_id]);
    assert_eq!(listed(&server, JobState::Ready).await.len(), 2);
    server
        .client()
        .await
        .ack(leased.job_id, leased.lease_id, None)
        .await
        .expect("the lease taken before the migrations still holds");
    server.stop().await;
    let checked = maintenance::check(&data_dir).expect("check");
    assert!(checked.is_consistent(), "{:?}", checked.problems);

    // The ACK stored the execution in the job's index entry; version 3 gives it its key.
    let report = maintenance::rollback(&data_dir, &production).expect("rollback to v3");
    assert_eq!((report.version, report.steps[0].writes), (3, 2));
    let checked = maintenance::check(&data_dir).expect("check");
    assert!(checked.is_consistent(), "{:?}", checked.problems);

    // Start-up with a test-only v5 registered: v3 → v4 → v5.
    let running = taskforge::server::start_with_migrations(server.config.clone(), with_test_v5())
        .await
        .expect("start and migrate");
    let metrics = scrape(running.admin_addr()).await;
    assert_eq!(value(&metrics, "taskforge_schema_version", &[]), 5.0);
    running.shutdown().await.expect("shutdown");
    assert_eq!(
        stored(&data_dir, keys::META_SCHEMA_VERSION),
        Some(5u64.to_be_bytes().to_vec())
    );
    assert_eq!(
        stored(&data_dir, QUEUE_COUNT_KEY),
        Some(1u64.to_be_bytes().to_vec())
    );

    // A build that does not know version 5 refuses the store instead of misreading it.
    match taskforge::server::start(server.config.clone()).await {
        Err(StartError::Migration(MigrationError::NewerThanBuild { stored, latest })) => {
            assert_eq!((stored, latest), (5, 4));
        }
        Err(other) => panic!("expected a refusal of the newer store, got {other}"),
        Ok(_) => panic!("a version-4 build started on a version-5 store"),
    }

    // Rollback with the test list, then the production build starts and every job is
    // still there.
    let report = maintenance::rollback(&data_dir, &with_test_v5()).expect("rollback");
    assert_eq!(report.version, 4);
    assert!(report.backup.is_some(), "rollback backs up first");
    assert_eq!(stored(&data_dir, QUEUE_COUNT_KEY), None);
    server.restart().await;
    let stats = server
        .client()
        .await
        .queue_stats("durable")
        .await
        .expect("stats");
    assert_eq!((stats.counts.ready, stats.counts.succeeded), (2, 1));
    let executions = server
        .client()
        .await
        .execution_list(leased.job_id, None, 10)
        .await
        .expect("executions")
        .executions;
    assert_eq!(
        executions
            .iter()
            .map(|info| (info.execution, info.outcome))
            .collect::<Vec<_>>(),
        vec![(1, Some(ExecutionOutcome::Succeeded))]
    );
    let checked = maintenance::check(&data_dir);
    assert!(
        matches!(checked, Err(maintenance::MaintenanceError::Storage(_))),
        "the running broker holds the store"
    );
}
