//! Cron schedules through a real server on a manual clock: fire instants (in UTC and across
//! both DST changes in Europe/Berlin), overlap and missed-run policies (across restarts),
//! pause and resume, validation, tenancy, and the CLI.

use std::time::Duration;

use assert_cmd::Command;
use taskforge::client::{Client, ClientError};
use taskforge_protocol::{
    ErrorCode, FetchRequest, LeasedJob, MissedRunPolicy, NewJob, OverlapPolicy, QueueSettings,
    ScheduleCreate, ScheduleInfo, ScheduleKey, ScheduleUpdate, Scope, FIRE_AT_METADATA_KEY,
    SCHEDULE_ID_METADATA_KEY,
};

use crate::support::{code, eventually, TestServer, ROOT_TOKEN};
use crate::tenancy::{key, org, project, with_key, ALL_SCOPES};

fn utc_ms(text: &str) -> u64 {
    let time: chrono::DateTime<chrono::Utc> = text.parse().expect("an RFC 3339 time");
    time.timestamp_millis() as u64
}

fn utc_text(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .expect("valid ms")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn schedule(
    name: &str,
    cron: &str,
    zone: &str,
    overlap: OverlapPolicy,
    missed_runs: MissedRunPolicy,
) -> ScheduleCreate {
    ScheduleCreate {
        name: name.into(),
        cron: cron.into(),
        time_zone: zone.into(),
        queue: "cron".into(),
        template: NewJob {
            queue: "cron".into(),
            payload: name.as_bytes().to_vec(),
            metadata: vec![("origin".into(), "test".into())],
            ..NewJob::default()
        },
        overlap,
        missed_runs,
        paused: false,
    }
}

fn named(name: &str) -> ScheduleKey {
    ScheduleKey::Name(name.into())
}

/// A manual-clock server with queue `cron`, the clock set to `start_ms`.
async fn server_at(start_ms: u64) -> (TestServer, Client) {
    let server = TestServer::start_with_manual_clock().await;
    set_clock(&server, start_ms);
    let client = server.client().await;
    client
        .queue_create("cron", QueueSettings::default())
        .await
        .expect("queue");
    (server, client)
}

fn set_clock(server: &TestServer, at_ms: u64) {
    server.clock.as_ref().expect("a manual clock").set(at_ms);
}

async fn get(client: &Client, name: &str) -> ScheduleInfo {
    client.schedule_get(named(name)).await.expect("get")
}

/// Waits until the schedule has handled more fire times than `seen` (fired or skipped).
async fn handled_after(client: &Client, name: &str, seen: u64) -> ScheduleInfo {
    eventually("the schedule's fire time to be handled", || async {
        let info = get(client, name).await;
        (info.fired_count + info.skipped_count > seen).then_some(info)
    })
    .await
}

/// Moves the clock to each next fire time of the named schedules until `until_ms` and
/// returns `name@instant` (UTC) for each fire time handled, in order. Checks that nothing
/// fires 1 ms early and that each fire happens at its instant.
async fn fire_times_until(
    server: &TestServer,
    client: &Client,
    names: &[&str],
    until_ms: u64,
) -> Vec<String> {
    let mut fired = Vec::new();
    loop {
        let mut earliest: Option<(u64, &str, ScheduleInfo)> = None;
        for name in names {
            let info = get(client, name).await;
            if let Some(next_ms) = info.next_fire_at_ms.filter(|next_ms| *next_ms <= until_ms) {
                if earliest
                    .as_ref()
                    .is_none_or(|(best_ms, _, _)| next_ms < *best_ms)
                {
                    earliest = Some((next_ms, name, info));
                }
            }
        }
        let Some((next_ms, name, before)) = earliest else {
            return fired;
        };
        set_clock(server, next_ms - 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            get(client, name).await.fired_count,
            before.fired_count,
            "{name} fired before {}",
            utc_text(next_ms)
        );
        set_clock(server, next_ms);
        let after = handled_after(client, name, before.fired_count + before.skipped_count).await;
        assert_eq!(after.last_fired_at_ms, Some(next_ms), "{name}");
        fired.push(format!("{name}@{}", utc_text(next_ms)));
    }
}

async fn fetch_all(client: &Client) -> Vec<LeasedJob> {
    client
        .fetch(FetchRequest {
            queues: vec!["cron".into()],
            max_jobs: 100,
            wait_ms: 0,
            lease_ms: None,
            worker_id: None,
            weights: Vec::new(),
        })
        .await
        .expect("fetch")
        .jobs
}

fn metadata<'a>(job: &'a LeasedJob, key: &str) -> Option<&'a str> {
    job.metadata
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn a_schedule_fires_at_its_instants_and_its_jobs_say_which() {
    let start_ms = utc_ms("2027-02-01T10:00:03Z");
    let (server, client) = server_at(start_ms).await;
    let created = client
        .schedule_create(schedule(
            "ten-seconds",
            "*/10 * * * * *",
            "UTC",
            OverlapPolicy::Allow,
            MissedRunPolicy::Skip,
        ))
        .await
        .expect("create");
    assert_eq!(
        created.next_fire_at_ms,
        Some(utc_ms("2027-02-01T10:00:10Z"))
    );
    assert_eq!(
        fire_times_until(
            &server,
            &client,
            &["ten-seconds"],
            utc_ms("2027-02-01T10:00:30Z")
        )
        .await,
        [
            "ten-seconds@2027-02-01T10:00:10Z",
            "ten-seconds@2027-02-01T10:00:20Z",
            "ten-seconds@2027-02-01T10:00:30Z"
        ]
    );
    let jobs = fetch_all(&client).await;
    assert_eq!(jobs.len(), 3);
    let id_text = created.schedule_id.to_string();
    for (job, fire_at) in jobs.iter().zip(["10:00:10", "10:00:20", "10:00:30"]) {
        assert_eq!(job.payload, b"ten-seconds");
        assert_eq!(metadata(job, "origin"), Some("test"));
        assert_eq!(
            metadata(job, SCHEDULE_ID_METADATA_KEY),
            Some(id_text.as_str())
        );
        let fire_ms = utc_ms(&format!("2027-02-01T{fire_at}Z"));
        assert_eq!(
            metadata(job, FIRE_AT_METADATA_KEY),
            Some(fire_ms.to_string().as_str())
        );
        assert_eq!(job.created_at_ms, fire_ms);
    }
    let info = get(&client, "ten-seconds").await;
    assert_eq!(info.last_job_id, Some(jobs[2].job_id));
    assert_eq!(info.fired_count, 3);
}

#[tokio::test]
async fn fire_times_follow_europe_berlin_at_spring_forward() {
    // 2027-03-28: 02:00 CET jumps to 03:00 CEST, so 02:00-02:59 do not exist that day.
    let (server, client) = server_at(utc_ms("2027-03-26T12:00:00Z")).await;
    for (name, cron) in [("night", "0 30 2 * * *"), ("hourly", "0 0 * * * *")] {
        client
            .schedule_create(schedule(
                name,
                cron,
                "Europe/Berlin",
                OverlapPolicy::Allow,
                MissedRunPolicy::Skip,
            ))
            .await
            .expect("create");
    }
    client
        .schedule_pause(named("hourly"))
        .await
        .expect("pause hourly for now");
    assert_eq!(
        fire_times_until(&server, &client, &["night"], utc_ms("2027-03-30T12:00:00Z")).await,
        [
            "night@2027-03-27T01:30:00Z", // 02:30 CET
            "night@2027-03-28T01:00:00Z", // 03:00 CEST, the first time after the gap
            "night@2027-03-29T00:30:00Z", // 02:30 CEST
            "night@2027-03-30T00:30:00Z",
        ]
    );
    // An hourly schedule skips the hour that does not exist: 01:00 CET, then 03:00 CEST.
    set_clock(&server, utc_ms("2027-03-27T23:30:00Z"));
    client
        .schedule_resume(named("hourly"))
        .await
        .expect("resume");
    assert_eq!(
        fire_times_until(
            &server,
            &client,
            &["hourly"],
            utc_ms("2027-03-28T02:00:00Z")
        )
        .await,
        [
            "hourly@2027-03-28T00:00:00Z", // 01:00 CET
            "hourly@2027-03-28T01:00:00Z", // 03:00 CEST
            "hourly@2027-03-28T02:00:00Z", // 04:00 CEST
        ]
    );
}

#[tokio::test]
async fn fire_times_follow_europe_berlin_at_fall_back() {
    // 2027-10-31: 03:00 CEST falls back to 02:00 CET, so 02:00-02:59 happen twice.
    let (server, client) = server_at(utc_ms("2027-10-30T12:00:00Z")).await;
    for (name, cron) in [("night", "0 30 2 * * *"), ("hourly", "0 0 * * * *")] {
        client
            .schedule_create(schedule(
                name,
                cron,
                "Europe/Berlin",
                OverlapPolicy::Allow,
                MissedRunPolicy::Skip,
            ))
            .await
            .expect("create");
    }
    set_clock(&server, utc_ms("2027-10-30T22:30:00Z"));
    // Nothing was due between the start and now except hourly's 13:00 ... 22:00 CEST: move
    // on from the fire time that is due now.
    handled_after(&client, "hourly", 0).await;
    assert_eq!(
        fire_times_until(
            &server,
            &client,
            &["night", "hourly"],
            utc_ms("2027-11-01T01:30:00Z")
        )
        .await[..7],
        [
            "hourly@2027-10-30T23:00:00Z", // 01:00 CEST
            "hourly@2027-10-31T00:00:00Z", // 02:00 CEST
            "night@2027-10-31T00:30:00Z",  // 02:30 CEST: once, at the first occurrence
            "hourly@2027-10-31T01:00:00Z", // 02:00 CET: the repeated hour fires again
            "hourly@2027-10-31T02:00:00Z", // 03:00 CET
            "hourly@2027-10-31T03:00:00Z", // 04:00 CET
            "hourly@2027-10-31T04:00:00Z", // 05:00 CET
        ]
    );
    let night = get(&client, "night").await;
    assert_eq!(night.fired_count, 2, "no second 02:30 in the repeated hour");
    assert_eq!(night.last_fired_at_ms, Some(utc_ms("2027-11-01T01:30:00Z")));
}

#[tokio::test]
async fn overlap_skip_waits_for_the_previous_job_and_allow_does_not() {
    let start_ms = utc_ms("2027-02-01T10:00:00Z");
    let (server, client) = server_at(start_ms).await;
    for (name, overlap) in [
        ("skip", OverlapPolicy::Skip),
        ("allow", OverlapPolicy::Allow),
    ] {
        client
            .schedule_create(schedule(
                name,
                "0 * * * * *",
                "UTC",
                overlap,
                MissedRunPolicy::Skip,
            ))
            .await
            .expect("create");
    }
    for minute in 1..=2 {
        set_clock(&server, start_ms + minute * 60_000);
        for name in ["skip", "allow"] {
            handled_after(&client, name, minute - 1).await;
        }
    }
    let skip = get(&client, "skip").await;
    assert_eq!((skip.fired_count, skip.skipped_count), (1, 1));
    assert!(skip
        .last_skip_reason
        .as_deref()
        .is_some_and(|reason| reason.contains("still live")));
    let allow = get(&client, "allow").await;
    assert_eq!((allow.fired_count, allow.skipped_count), (2, 0));
    // Finish every job: the next fire time enqueues again for both.
    for job in fetch_all(&client).await {
        client
            .ack(job.job_id, job.lease_id, None)
            .await
            .expect("ack");
    }
    set_clock(&server, start_ms + 180_000);
    for name in ["skip", "allow"] {
        handled_after(&client, name, 2).await;
    }
    assert_eq!(get(&client, "skip").await.fired_count, 2);
    assert_eq!(get(&client, "allow").await.fired_count, 3);
}

#[tokio::test]
async fn missed_runs_run_once_or_skip_after_a_restart_and_nothing_fires_twice() {
    let start_ms = utc_ms("2027-02-01T10:00:00Z");
    let (mut server, client) = server_at(start_ms).await;
    for (name, missed) in [
        ("run-once", MissedRunPolicy::RunOnce),
        ("skip", MissedRunPolicy::Skip),
    ] {
        client
            .schedule_create(schedule(
                name,
                "0 * * * * *",
                "UTC",
                OverlapPolicy::Allow,
                missed,
            ))
            .await
            .expect("create");
    }
    set_clock(&server, start_ms + 60_000);
    for name in ["run-once", "skip"] {
        handled_after(&client, name, 0).await;
    }
    // A restart right after a fire does not fire it again.
    server.restart().await;
    let client = server.client().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    for name in ["run-once", "skip"] {
        let info = get(&client, name).await;
        assert_eq!((info.fired_count, info.skipped_count), (1, 0), "{name}");
    }
    // Down for 10:01:30 to 10:05:30: the fire times 10:02 to 10:05 are missed.
    set_clock(&server, start_ms + 90_000);
    server.stop().await;
    set_clock(&server, start_ms + 330_000);
    server.restart().await;
    let client = server.client().await;
    let run_once = handled_after(&client, "run-once", 1).await;
    assert_eq!(run_once.fired_count, 2, "exactly one catch-up job");
    assert_eq!(run_once.last_fired_at_ms, Some(start_ms + 330_000));
    assert_eq!(run_once.next_fire_at_ms, Some(start_ms + 360_000));
    let skip = get(&client, "skip").await;
    assert_eq!((skip.fired_count, skip.skipped_count), (1, 1));
    assert_eq!(skip.next_fire_at_ms, Some(start_ms + 360_000));
    let jobs = fetch_all(&client).await;
    let catch_up: Vec<&LeasedJob> = jobs
        .iter()
        .filter(|job| job.payload == b"run-once")
        .collect();
    assert_eq!(catch_up.len(), 2);
    let first_missed = (start_ms + 120_000).to_string();
    assert_eq!(
        metadata(catch_up[1], FIRE_AT_METADATA_KEY),
        Some(first_missed.as_str())
    );
    assert_eq!(jobs.len(), 3, "the skip schedule made up nothing");
    // Both go on at the next fire time.
    set_clock(&server, start_ms + 360_000);
    assert_eq!(handled_after(&client, "run-once", 2).await.fired_count, 3);
    assert_eq!(handled_after(&client, "skip", 2).await.fired_count, 2);
}

#[tokio::test]
async fn paused_schedules_do_not_fire_and_resume_from_now() {
    let start_ms = utc_ms("2027-02-01T10:00:00Z");
    let (mut server, client) = server_at(start_ms).await;
    let mut paused = schedule(
        "paused",
        "0 * * * * *",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::RunOnce,
    );
    paused.paused = true;
    let created = client.schedule_create(paused).await.expect("create");
    assert!(created.paused);
    assert_eq!(created.next_fire_at_ms, None);
    set_clock(&server, start_ms + 130_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&client, "paused").await.fired_count, 0);
    // Not made up after a restart either, even with RunOnce.
    server.restart().await;
    let client = server.client().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&client, "paused").await.fired_count, 0);
    let resumed = client
        .schedule_resume(ScheduleKey::Id(created.schedule_id))
        .await
        .expect("resume");
    assert!(!resumed.paused);
    assert_eq!(resumed.next_fire_at_ms, Some(start_ms + 180_000));
    set_clock(&server, start_ms + 180_000);
    handled_after(&client, "paused", 0).await;
    let again = client.schedule_pause(named("paused")).await.expect("pause");
    assert!(again.paused && again.next_fire_at_ms.is_none());
    set_clock(&server, start_ms + 300_000);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&client, "paused").await.fired_count, 1);
}

#[tokio::test]
async fn bad_expressions_zones_names_and_templates_are_invalid_argument() {
    let (_server, client) = server_at(utc_ms("2027-02-01T10:00:00Z")).await;
    let valid = schedule(
        "valid",
        "0 * * * * *",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    );
    let cases: Vec<(&str, ScheduleCreate)> = vec![
        (
            "cron",
            ScheduleCreate {
                cron: "* * * * *".into(),
                ..valid.clone()
            },
        ),
        (
            "cron",
            ScheduleCreate {
                cron: "0 61 * * * *".into(),
                ..valid.clone()
            },
        ),
        (
            "cron",
            ScheduleCreate {
                cron: "0 0 0 30 2 *".into(),
                ..valid.clone()
            },
        ),
        (
            "time_zone",
            ScheduleCreate {
                time_zone: "Europe/Berlln".into(),
                ..valid.clone()
            },
        ),
        (
            "name",
            ScheduleCreate {
                name: "123".into(),
                ..valid.clone()
            },
        ),
        (
            "template.queue",
            ScheduleCreate {
                template: NewJob {
                    queue: "other".into(),
                    ..valid.template.clone()
                },
                ..valid.clone()
            },
        ),
        (
            "template.run_at_ms",
            ScheduleCreate {
                template: NewJob {
                    delay_ms: Some(1_000),
                    ..valid.template.clone()
                },
                ..valid.clone()
            },
        ),
        (
            "template.metadata",
            ScheduleCreate {
                template: NewJob {
                    metadata: vec![(SCHEDULE_ID_METADATA_KEY.into(), "1".into())],
                    ..valid.template.clone()
                },
                ..valid.clone()
            },
        ),
    ];
    for (field, request) in cases {
        let body = match client.schedule_create(request).await {
            Err(ClientError::Server(body)) => body,
            other => panic!("{field}: expected a refusal, got {other:?}"),
        };
        assert_eq!(body.error_code(), ErrorCode::InvalidArgument, "{field}");
        assert!(body.message.starts_with(field), "{field}: {}", body.message);
    }
    let mut missing_queue = valid.clone();
    missing_queue.queue = "nope".into();
    missing_queue.template.queue = "nope".into();
    assert_eq!(
        code(client.schedule_create(missing_queue).await),
        ErrorCode::NotFound
    );
    client.schedule_create(valid.clone()).await.expect("create");
    assert_eq!(
        code(client.schedule_create(valid).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            client
                .schedule_update(ScheduleUpdate {
                    schedule: named("valid"),
                    name: None,
                    cron: Some("nonsense".into()),
                    time_zone: None,
                    queue: None,
                    template: None,
                    overlap: None,
                    missed_runs: None,
                })
                .await
        ),
        ErrorCode::InvalidArgument
    );
    // Nothing refused was stored.
    let page = client.schedule_list(None, None, 100).await.expect("list");
    assert_eq!(page.schedules.len(), 1);
}

#[tokio::test]
async fn another_projects_key_cannot_see_the_schedule_and_scopes_apply() {
    let server = TestServer::start_with_manual_clock().await;
    let root = server.client().await;
    let org_id = org(&root, "cron-org").await;
    let project_a = project(&root, org_id, "cron-a").await;
    let project_b = project(&root, org_id, "cron-b").await;
    let a = with_key(
        &server,
        &key(&root, project_a.project_id, &ALL_SCOPES, None).await,
    )
    .await;
    let b = with_key(
        &server,
        &key(&root, project_b.project_id, &ALL_SCOPES, None).await,
    )
    .await;
    let reader = with_key(
        &server,
        &key(&root, project_a.project_id, &[Scope::Read], None).await,
    )
    .await;
    for client in [&a, &b] {
        client
            .queue_create("cron", QueueSettings::default())
            .await
            .expect("queue");
    }
    let created = a
        .schedule_create(schedule(
            "secret",
            "0 * * * * *",
            "UTC",
            OverlapPolicy::Allow,
            MissedRunPolicy::Skip,
        ))
        .await
        .expect("create");
    for schedule_ref in [ScheduleKey::Id(created.schedule_id), named("secret")] {
        assert_eq!(
            code(b.schedule_get(schedule_ref.clone()).await),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(b.schedule_pause(schedule_ref.clone()).await),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(b.schedule_delete(schedule_ref.clone()).await),
            ErrorCode::NotFound
        );
    }
    assert!(b
        .schedule_list(None, None, 100)
        .await
        .expect("list")
        .schedules
        .is_empty());
    // The same name is free in the other project.
    b.schedule_create(schedule(
        "secret",
        "0 * * * * *",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    ))
    .await
    .expect("b's own schedule");
    // A read key reads but does not manage.
    assert_eq!(
        reader
            .schedule_get(named("secret"))
            .await
            .expect("read")
            .schedule_id,
        created.schedule_id
    );
    assert_eq!(
        code(reader.schedule_pause(named("secret")).await),
        ErrorCode::Forbidden
    );
    // A queue a schedule enqueues into cannot be deleted.
    assert_eq!(code(a.queue_delete("cron").await), ErrorCode::Conflict);
    a.schedule_delete(named("secret")).await.expect("delete");
    a.queue_delete("cron").await.expect("delete the queue");
}

/// Runs the real binary against `server` with `args`, expecting success, and parses its
/// `--json` output.
async fn cli_json(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let home = tempfile::tempdir().expect("temp home");
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskforge"));
    command
        .env_clear()
        .env("HOME", home.path())
        .env("TASKFORGE_ADDR", server.addr().to_string())
        .env("TASKFORGE_ROOT_TOKEN", ROOT_TOKEN)
        .args(args)
        .arg("--json")
        .timeout(Duration::from_secs(30));
    let output = tokio::task::spawn_blocking(move || command.output().expect("run taskforge"))
        .await
        .expect("the CLI thread");
    assert!(
        output.status.success(),
        "taskforge {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

#[tokio::test]
async fn the_cli_manages_schedules() {
    let (server, _client) = server_at(utc_ms("2027-02-01T10:00:00Z")).await;
    let created = cli_json(
        &server,
        &[
            "schedule",
            "create",
            "nightly",
            "--cron",
            "0 30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--queue",
            "cron",
            "--payload",
            "build",
            "--meta",
            "team=finance",
            "--overlap",
            "skip",
            "--missed-runs",
            "skip",
        ],
    )
    .await;
    assert_eq!(created["name"], "nightly");
    assert_eq!(created["overlap"], "skip");
    assert_eq!(created["missed_runs"], "skip");
    assert_eq!(created["next_fire_at_ms"], utc_ms("2027-02-02T01:30:00Z"));
    let id = created["schedule_id"].as_u64().expect("an id").to_string();
    let listed = cli_json(&server, &["schedule", "list", "--queue", "cron"]).await;
    assert_eq!(listed["schedules"].as_array().map(Vec::len), Some(1));
    let updated = cli_json(
        &server,
        &[
            "schedule",
            "update",
            &id,
            "--cron",
            "0 0 3 * * *",
            "--priority",
            "7",
        ],
    )
    .await;
    assert_eq!(updated["cron"], "0 0 3 * * *");
    assert_eq!(updated["template"]["priority"], 7);
    assert_eq!(updated["template"]["payload"], serde_json::json!(b"build"));
    let paused = cli_json(&server, &["schedule", "pause", "nightly"]).await;
    assert_eq!(paused["paused"], true);
    let resumed = cli_json(&server, &["schedule", "resume", "nightly"]).await;
    assert_eq!(resumed["paused"], false);
    let got = cli_json(&server, &["schedule", "get", &id]).await;
    assert_eq!(got["next_fire_at_ms"], utc_ms("2027-02-02T02:00:00Z"));
    let deleted = cli_json(&server, &["schedule", "delete", "nightly"]).await;
    assert_eq!(deleted["deleted"], "nightly");
}
