//! Storage migrations through a real server: a data directory at schema version 1 is
//! migrated at start-up to a test-only version 2 (with a backup left behind); a build that
//! knows only version 1 refuses it; rollback brings it back to version 1 with its data.

use std::path::Path;

use taskforge::server::StartError;
use taskforge::storage::maintenance;
use taskforge::storage::migrations::{self, Migration, MigrationError, BASELINE};
use taskforge::storage::{keys, Storage, StorageError, Write};
use taskforge_protocol::QueueSettings;

use crate::admin_http::{scrape, value};
use crate::support::{job, TestServer};

/// Where the test migration records what it saw.
const QUEUE_COUNT_KEY: &[u8] = b"\x00test_v2_queue_count";

/// Test-only v2: counts the queue records into a meta key (so `up` really reads the store).
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

/// Test-only v2's way back.
fn forget_queue_count(_: &dyn Storage) -> Result<Vec<Write>, StorageError> {
    Ok(vec![Write::Delete(QUEUE_COUNT_KEY.to_vec())])
}

fn with_test_v2() -> Vec<Migration> {
    vec![
        BASELINE,
        Migration {
            version: 2,
            description: "test only: record the number of queues",
            up: count_queues,
            down: forget_queue_count,
        },
    ]
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
    drop(client);
    server.stop().await;
    let data_dir = server.config.broker.data_dir.clone();
    assert_eq!(
        stored(&data_dir, keys::META_SCHEMA_VERSION),
        Some(1u64.to_be_bytes().to_vec()),
        "a fresh store is stamped version 1"
    );
    assert!(
        backups(&data_dir).is_empty(),
        "nothing to migrate, no backup"
    );

    // Start-up with the test migration registered: v1 → v2, backup first.
    let running = taskforge::server::start_with_migrations(server.config.clone(), with_test_v2())
        .await
        .expect("start and migrate");
    let metrics = scrape(running.admin_addr()).await;
    assert_eq!(value(&metrics, "taskforge_schema_version", &[]), 2.0);
    running.shutdown().await.expect("shutdown");
    let taken = backups(&data_dir);
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(taken[0].ends_with("-v1"), "{taken:?}");
    assert!(data_dir
        .join("backups")
        .join(&taken[0])
        .join("store.tfdump")
        .is_file());
    assert_eq!(
        stored(&data_dir, keys::META_SCHEMA_VERSION),
        Some(2u64.to_be_bytes().to_vec())
    );
    assert_eq!(
        stored(&data_dir, QUEUE_COUNT_KEY),
        Some(1u64.to_be_bytes().to_vec())
    );

    // A build that knows only version 1 refuses the newer store instead of misreading it.
    match taskforge::server::start(server.config.clone()).await {
        Err(StartError::Migration(MigrationError::NewerThanBuild { stored, latest })) => {
            assert_eq!((stored, latest), (2, 1));
        }
        Err(other) => panic!("expected a refusal of the newer store, got {other}"),
        Ok(_) => panic!("a version-1 build started on a version-2 store"),
    }

    // Rollback, as `taskforge storage rollback` runs it, with this list.
    let report = maintenance::rollback(&data_dir, &with_test_v2()).expect("rollback");
    assert_eq!(report.version, 1);
    assert!(report.backup.is_some(), "rollback backs up first");
    assert_eq!(stored(&data_dir, QUEUE_COUNT_KEY), None);
    assert_eq!(
        migrations::latest_version(&migrations::production()),
        1,
        "production has only the baseline"
    );

    // The version-1 build starts again and every job is still there.
    server.restart().await;
    let stats = server
        .client()
        .await
        .queue_stats("durable")
        .await
        .expect("stats");
    assert_eq!(stats.counts.ready, 3);
    let checked = maintenance::check(&data_dir);
    assert!(
        matches!(checked, Err(maintenance::MaintenanceError::Storage(_))),
        "the running broker holds the store"
    );
}
