//! Unit tests of cron schedules in the pure core: time comes in as `now_ms`, restarts are
//! a rebuild from the writes the core produced.

use chrono::{DateTime, Utc};
use taskforge_protocol::{
    MissedRunPolicy, NewJob, OverlapPolicy, ProjectId, ScheduleCreate, ScheduleInfo, ScheduleKey,
    ScheduleUpdate, FIRE_AT_METADATA_KEY, SCHEDULE_ID_METADATA_KEY,
};

use super::super::{Core, CoreError, FetchPlan, Settings};
use crate::broker::recovery;
use crate::storage::records::{self, JobBody};
use crate::storage::{keys, MemoryStorage, Storage, Write};

const PROJECT: ProjectId = 1;
const OTHER_PROJECT: ProjectId = 2;

fn utc_ms(text: &str) -> u64 {
    let time: DateTime<Utc> = text.parse().expect("an RFC 3339 time");
    time.timestamp_millis() as u64
}

fn utc_text(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .expect("valid ms")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn core_at(now_ms: u64) -> Core {
    let mut core = Core::new(11, Settings::default());
    core.queue_create(PROJECT, "reports", &Default::default(), now_ms)
        .expect("queue");
    core
}

fn create(
    cron: &str,
    zone: &str,
    overlap: OverlapPolicy,
    missed: MissedRunPolicy,
) -> ScheduleCreate {
    ScheduleCreate {
        name: "nightly".into(),
        cron: cron.into(),
        time_zone: zone.into(),
        queue: "reports".into(),
        template: NewJob {
            queue: "reports".into(),
            payload: b"build".to_vec(),
            metadata: vec![("kind".into(), "report".into())],
            ..NewJob::default()
        },
        overlap,
        missed_runs: missed,
        paused: false,
    }
}

fn by_name() -> ScheduleKey {
    ScheduleKey::Name("nightly".into())
}

fn info(core: &Core) -> ScheduleInfo {
    core.schedule_get(PROJECT, &by_name()).expect("schedule")
}

/// Moves time from timer to timer until `until_ms`, returning the fire times (UTC text) of
/// the jobs the schedule enqueued.
fn run_until(core: &mut Core, until_ms: u64) -> Vec<String> {
    let mut fired = Vec::new();
    while let Some(at_ms) = core.next_timer_at().filter(|at_ms| *at_ms <= until_ms) {
        let before = info(core).fired_count;
        core.advance(at_ms);
        if info(core).fired_count > before {
            fired.push(utc_text(at_ms));
        }
    }
    fired
}

/// The bodies of the jobs enqueued by `writes`.
fn bodies(writes: &[Write]) -> Vec<JobBody> {
    writes
        .iter()
        .filter_map(|write| match write {
            Write::Put(key, value) if key.first() == Some(&keys::BODY) => {
                Some(records::decode::<JobBody>("body", value).expect("a body"))
            }
            _ => None,
        })
        .collect()
}

fn metadata<'a>(body: &'a JobBody, key: &str) -> Option<&'a str> {
    body.metadata
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// Commits everything the core wrote to `storage` and rebuilds a core from it at `now_ms`,
/// as a restart does.
fn restart(core: &mut Core, storage: &MemoryStorage, now_ms: u64) -> Core {
    let (writes, _) = core.take_writes();
    storage.apply(&writes).expect("apply");
    let (rebuilt, _) =
        recovery::rebuild(storage, 99, Settings::default(), now_ms).expect("rebuild");
    rebuilt
}

fn finish_all(core: &mut Core, now_ms: u64) {
    let queue_id = core.queue_id(PROJECT, "reports").expect("queue");
    let plan = FetchPlan::queues(vec![queue_id], 100, None);
    for delivery in core.fetch(PROJECT, &plan, now_ms).expect("fetch") {
        core.ack(PROJECT, delivery.job_id, delivery.lease_id, None, now_ms)
            .expect("ack");
    }
}

#[test]
fn fires_at_each_fire_time_with_the_schedule_and_fire_time_in_metadata() {
    let t0 = utc_ms("2026-01-05T09:00:03Z");
    let mut core = core_at(t0);
    let created = core
        .schedule_create(
            PROJECT,
            create(
                "*/10 * * * * *",
                "UTC",
                OverlapPolicy::Allow,
                MissedRunPolicy::Skip,
            ),
            t0,
        )
        .expect("create");
    assert_eq!(
        created.next_fire_at_ms,
        Some(utc_ms("2026-01-05T09:00:10Z"))
    );
    assert_eq!(core.next_timer_at(), created.next_fire_at_ms);
    let _ = core.take_writes();
    core.advance(utc_ms("2026-01-05T09:00:09.999Z"));
    assert_eq!(core.live_jobs(), 0, "nothing before the fire time");
    let fire_ms = utc_ms("2026-01-05T09:00:10Z");
    core.advance(fire_ms);
    assert_eq!(core.live_jobs(), 1);
    let after = info(&core);
    assert_eq!(after.fired_count, 1);
    assert_eq!(after.last_fired_at_ms, Some(fire_ms));
    assert_eq!(after.next_fire_at_ms, Some(fire_ms + 10_000));
    let (writes, _) = core.take_writes();
    let bodies = bodies(&writes);
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0].payload, b"build");
    assert_eq!(metadata(&bodies[0], "kind"), Some("report"));
    assert_eq!(
        metadata(&bodies[0], SCHEDULE_ID_METADATA_KEY),
        Some(created.schedule_id.to_string().as_str())
    );
    assert_eq!(
        metadata(&bodies[0], FIRE_AT_METADATA_KEY),
        Some(fire_ms.to_string().as_str())
    );
    // The fire and the schedule's new state are one batch.
    assert!(writes
        .iter()
        .any(|write| matches!(write, Write::Put(key, _) if key.first() == Some(&keys::SCHEDULE))));
    assert_eq!(
        run_until(&mut core, utc_ms("2026-01-05T09:00:40Z")),
        [
            "2026-01-05T09:00:20Z",
            "2026-01-05T09:00:30Z",
            "2026-01-05T09:00:40Z"
        ]
    );
    core.check_invariants().expect("invariants");
}

#[test]
fn a_late_timer_fires_once_and_moves_to_the_next_time_after_now() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let mut core = core_at(t0);
    core.schedule_create(
        PROJECT,
        create(
            "* * * * * *",
            "UTC",
            OverlapPolicy::Allow,
            MissedRunPolicy::Skip,
        ),
        t0,
    )
    .expect("create");
    core.advance(t0 + 5_500);
    let after = info(&core);
    assert_eq!(after.fired_count, 1);
    assert_eq!(after.next_fire_at_ms, Some(t0 + 6_000));
}

#[test]
fn berlin_spring_forward_moves_a_time_in_the_gap_to_just_after_it() {
    // 2026-03-29: Europe/Berlin jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist.
    let t0 = utc_ms("2026-03-27T12:00:00Z");
    let mut core = core_at(t0);
    core.schedule_create(
        PROJECT,
        create(
            "0 30 2 * * *",
            "Europe/Berlin",
            OverlapPolicy::Allow,
            MissedRunPolicy::Skip,
        ),
        t0,
    )
    .expect("create");
    assert_eq!(
        run_until(&mut core, utc_ms("2026-03-31T12:00:00Z")),
        [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 03:00 CEST: right after the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
            "2026-03-31T00:30:00Z",
        ]
    );
}

#[test]
fn berlin_fall_back_fires_an_hourly_schedule_every_real_hour() {
    // 2026-10-25: Europe/Berlin goes back from 03:00 CEST to 02:00 CET; 02:00 happens twice.
    let t0 = utc_ms("2026-10-24T22:30:00Z");
    let mut core = core_at(t0);
    core.schedule_create(
        PROJECT,
        create(
            "0 0 * * * *",
            "Europe/Berlin",
            OverlapPolicy::Allow,
            MissedRunPolicy::Skip,
        ),
        t0,
    )
    .expect("create");
    assert_eq!(
        run_until(&mut core, utc_ms("2026-10-25T03:00:00Z")),
        [
            "2026-10-24T23:00:00Z", // 01:00 CEST
            "2026-10-25T00:00:00Z", // 02:00 CEST
            "2026-10-25T01:00:00Z", // 02:00 CET
            "2026-10-25T02:00:00Z", // 03:00 CET
            "2026-10-25T03:00:00Z", // 04:00 CET
        ]
    );
}

#[test]
fn overlap_skip_waits_for_the_previous_job_and_allow_does_not() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    for overlap in [OverlapPolicy::Skip, OverlapPolicy::Allow] {
        let mut core = core_at(t0);
        core.schedule_create(
            PROJECT,
            create("0 * * * * *", "UTC", overlap, MissedRunPolicy::Skip),
            t0,
        )
        .expect("create");
        run_until(&mut core, t0 + 60_000);
        run_until(&mut core, t0 + 120_000);
        let after = info(&core);
        match overlap {
            OverlapPolicy::Skip => {
                assert_eq!((after.fired_count, after.skipped_count), (1, 1));
                assert!(after
                    .last_skip_reason
                    .as_deref()
                    .is_some_and(|reason| reason.contains("still live")));
                assert_eq!(core.live_jobs(), 1);
            }
            OverlapPolicy::Allow => {
                assert_eq!((after.fired_count, after.skipped_count), (2, 0));
                assert_eq!(core.live_jobs(), 2);
            }
        }
        // Once the previous job is finished, Skip fires again.
        finish_all(&mut core, t0 + 150_000);
        run_until(&mut core, t0 + 180_000);
        let fired = info(&core).fired_count;
        assert_eq!(
            fired,
            match overlap {
                OverlapPolicy::Skip => 2,
                OverlapPolicy::Allow => 3,
            }
        );
    }
}

#[test]
fn run_once_enqueues_exactly_one_job_for_fire_times_missed_while_down() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let storage = MemoryStorage::new();
    let mut core = core_at(t0);
    core.schedule_create(
        PROJECT,
        create(
            "0 * * * * *",
            "UTC",
            OverlapPolicy::Allow,
            MissedRunPolicy::RunOnce,
        ),
        t0,
    )
    .expect("create");
    assert_eq!(run_until(&mut core, t0 + 60_000).len(), 1);
    // Down from just after 09:01 until 09:05:30: 09:02, 09:03, 09:04 and 09:05 are missed.
    let up_ms = t0 + 330_000;
    let mut core = restart(&mut core, &storage, up_ms);
    let restored = info(&core);
    assert_eq!(
        restored.next_fire_at_ms,
        Some(t0 + 120_000),
        "the first missed time"
    );
    assert!(core.next_timer_at().is_some_and(|at_ms| at_ms <= up_ms));
    core.advance(up_ms);
    let after = info(&core);
    assert_eq!(after.fired_count, 2, "exactly one catch-up job");
    assert_eq!(after.last_fired_at_ms, Some(up_ms));
    assert_eq!(after.next_fire_at_ms, Some(t0 + 360_000));
    let (writes, _) = core.take_writes();
    let catch_up = bodies(&writes);
    assert_eq!(catch_up.len(), 1);
    let first_missed = (t0 + 120_000).to_string();
    assert_eq!(
        metadata(&catch_up[0], FIRE_AT_METADATA_KEY),
        Some(first_missed.as_str())
    );
    core.advance(up_ms + 1_000);
    assert_eq!(info(&core).fired_count, 2);
}

#[test]
fn skip_waits_for_the_next_fire_time_after_downtime() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let storage = MemoryStorage::new();
    let mut core = core_at(t0);
    core.schedule_create(
        PROJECT,
        create(
            "0 * * * * *",
            "UTC",
            OverlapPolicy::Allow,
            MissedRunPolicy::Skip,
        ),
        t0,
    )
    .expect("create");
    assert_eq!(run_until(&mut core, t0 + 60_000).len(), 1);
    let up_ms = t0 + 330_000;
    let mut core = restart(&mut core, &storage, up_ms);
    let restored = info(&core);
    assert_eq!(restored.next_fire_at_ms, Some(t0 + 360_000));
    assert_eq!(restored.skipped_count, 1);
    assert!(restored
        .last_skip_reason
        .as_deref()
        .is_some_and(|reason| reason.contains("missed while the broker was down")));
    core.advance(up_ms);
    assert_eq!(info(&core).fired_count, 1, "nothing for the missed times");
    assert_eq!(run_until(&mut core, t0 + 360_000), ["2026-01-05T09:06:00Z"]);
    // The skip was written, so a second restart does not count it again.
    let core = restart(&mut core, &storage, t0 + 365_000);
    assert_eq!(info(&core).skipped_count, 1);
}

#[test]
fn a_restart_right_after_a_fire_does_not_fire_it_again() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    for missed in [MissedRunPolicy::RunOnce, MissedRunPolicy::Skip] {
        let storage = MemoryStorage::new();
        let mut core = core_at(t0);
        core.schedule_create(
            PROJECT,
            create("0 * * * * *", "UTC", OverlapPolicy::Allow, missed),
            t0,
        )
        .expect("create");
        core.advance(t0 + 60_000);
        let mut core = restart(&mut core, &storage, t0 + 60_001);
        core.advance(t0 + 60_001);
        let after = info(&core);
        assert_eq!(
            (after.fired_count, after.skipped_count),
            (1, 0),
            "{missed:?}"
        );
        assert_eq!(core.live_jobs(), 1);
        assert_eq!(after.next_fire_at_ms, Some(t0 + 120_000));
    }
}

#[test]
fn paused_schedules_do_not_fire_and_resume_without_catching_up() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let mut core = core_at(t0);
    core.schedule_create(
        PROJECT,
        create(
            "0 * * * * *",
            "UTC",
            OverlapPolicy::Allow,
            MissedRunPolicy::RunOnce,
        ),
        t0,
    )
    .expect("create");
    let paused = core
        .schedule_set_paused(PROJECT, &by_name(), true, t0 + 1_000)
        .expect("pause");
    assert!(paused.paused);
    assert_eq!(paused.next_fire_at_ms, None);
    core.advance(t0 + 300_000);
    assert_eq!(info(&core).fired_count, 0);
    let resumed = core
        .schedule_set_paused(PROJECT, &by_name(), false, t0 + 330_000)
        .expect("resume");
    assert_eq!(resumed.next_fire_at_ms, Some(t0 + 360_000));
    core.advance(t0 + 330_000);
    assert_eq!(info(&core).fired_count, 0);
    core.advance(t0 + 360_000);
    assert_eq!(info(&core).fired_count, 1);
    // A paused schedule is not caught up after a restart either.
    let storage = MemoryStorage::new();
    core.schedule_set_paused(PROJECT, &by_name(), true, t0 + 361_000)
        .expect("pause");
    let mut core = restart(&mut core, &storage, t0 + 900_000);
    core.advance(t0 + 900_000);
    assert_eq!(info(&core).fired_count, 1);
    assert!(info(&core).paused);
}

#[test]
fn updates_retime_rename_and_check_the_template_queue() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let mut core = core_at(t0);
    core.queue_create(PROJECT, "emails", &Default::default(), t0)
        .expect("queue");
    let created = core
        .schedule_create(
            PROJECT,
            create(
                "0 0 * * * *",
                "UTC",
                OverlapPolicy::Allow,
                MissedRunPolicy::Skip,
            ),
            t0,
        )
        .expect("create");
    let mut other = create(
        "0 0 * * * *",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    );
    other.name = "other".into();
    core.schedule_create(PROJECT, other, t0).expect("create");
    let blank = ScheduleUpdate {
        schedule: ScheduleKey::Id(created.schedule_id),
        name: None,
        cron: None,
        time_zone: None,
        queue: None,
        template: None,
        overlap: None,
        missed_runs: None,
    };
    let taken = core.schedule_update(
        PROJECT,
        ScheduleUpdate {
            name: Some("other".into()),
            ..blank.clone()
        },
        t0,
    );
    assert!(matches!(taken, Err(CoreError::Conflict(_))));
    let mismatch = core.schedule_update(
        PROJECT,
        ScheduleUpdate {
            template: Some(NewJob {
                queue: "emails".into(),
                ..NewJob::default()
            }),
            ..blank.clone()
        },
        t0,
    );
    assert!(matches!(mismatch, Err(CoreError::InvalidArgument(_))));
    let updated = core
        .schedule_update(
            PROJECT,
            ScheduleUpdate {
                name: Some("every-minute".into()),
                cron: Some("30 * * * * *".into()),
                queue: Some("emails".into()),
                overlap: Some(OverlapPolicy::Skip),
                ..blank
            },
            t0 + 1_000,
        )
        .expect("update");
    assert_eq!(updated.name, "every-minute");
    assert_eq!(updated.next_fire_at_ms, Some(t0 + 30_000));
    assert_eq!(updated.template.queue, "emails");
    assert_eq!(updated.overlap, OverlapPolicy::Skip);
    assert!(core.schedule_get(PROJECT, &by_name()).is_err());
    // The old hourly timer is stale: only the new time fires.
    core.advance(t0 + 30_000);
    let fired = core
        .schedule_get(PROJECT, &ScheduleKey::Name("every-minute".into()))
        .expect("renamed");
    assert_eq!(fired.fired_count, 1);
    assert_eq!(fired.next_fire_at_ms, Some(t0 + 90_000));
}

#[test]
fn bad_expressions_zones_and_names_are_refused() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let mut core = core_at(t0);
    let bad_cron = create(
        "* * * * *",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    );
    assert!(matches!(
        core.schedule_create(PROJECT, bad_cron, t0),
        Err(CoreError::InvalidArgument(message)) if message.starts_with("cron")
    ));
    let bad_zone = create(
        "0 * * * * *",
        "Moon/Base",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    );
    assert!(matches!(
        core.schedule_create(PROJECT, bad_zone, t0),
        Err(CoreError::InvalidArgument(message)) if message.starts_with("time_zone")
    ));
    let past = create(
        "0 0 0 1 1 * 2020",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    );
    assert!(matches!(
        core.schedule_create(PROJECT, past, t0),
        Err(CoreError::InvalidArgument(message)) if message.contains("no fire time")
    ));
    let mut missing_queue = create(
        "0 * * * * *",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    );
    missing_queue.queue = "nope".into();
    missing_queue.template.queue = "nope".into();
    assert!(matches!(
        core.schedule_create(PROJECT, missing_queue, t0),
        Err(CoreError::NotFound(_))
    ));
    let good = create(
        "0 * * * * *",
        "UTC",
        OverlapPolicy::Allow,
        MissedRunPolicy::Skip,
    );
    core.schedule_create(PROJECT, good.clone(), t0)
        .expect("create");
    assert!(matches!(
        core.schedule_create(PROJECT, good, t0),
        Err(CoreError::Conflict(_))
    ));
    let (writes, _) = core.take_writes();
    assert_eq!(
        writes
            .iter()
            .filter(
                |write| matches!(write, Write::Put(key, _) if key.first() == Some(&keys::SCHEDULE))
            )
            .count(),
        1,
        "refusals store nothing"
    );
}

#[test]
fn another_project_sees_nothing_and_targeted_queues_cannot_be_deleted() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let mut core = core_at(t0);
    core.queue_create(OTHER_PROJECT, "reports", &Default::default(), t0)
        .expect("queue");
    let created = core
        .schedule_create(
            PROJECT,
            create(
                "0 * * * * *",
                "UTC",
                OverlapPolicy::Allow,
                MissedRunPolicy::Skip,
            ),
            t0,
        )
        .expect("create");
    let by_id = ScheduleKey::Id(created.schedule_id);
    for schedule in [&by_id, &by_name()] {
        assert!(matches!(
            core.schedule_get(OTHER_PROJECT, schedule),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            core.schedule_delete(OTHER_PROJECT, schedule),
            Err(CoreError::NotFound(_))
        ));
        assert!(matches!(
            core.schedule_set_paused(OTHER_PROJECT, schedule, true, t0),
            Err(CoreError::NotFound(_))
        ));
    }
    assert!(core
        .schedule_list(OTHER_PROJECT, None, None, 10)
        .0
        .is_empty());
    assert_eq!(core.schedule_list(PROJECT, None, None, 10).0.len(), 1);
    // The other project's queue of the same name can go; this project's cannot.
    core.queue_delete(OTHER_PROJECT, "reports").expect("delete");
    assert!(matches!(
        core.queue_delete(PROJECT, "reports"),
        Err(CoreError::Conflict(message)) if message.contains("nightly")
    ));
    core.schedule_delete(PROJECT, &by_id).expect("delete");
    core.queue_delete(PROJECT, "reports").expect("delete");
    // The deleted schedule's timer is stale and fires nothing.
    core.advance(t0 + 60_000);
    assert_eq!(core.live_jobs(), 0);
}

#[test]
fn schedule_ids_survive_restarts_and_are_never_reused() {
    let t0 = utc_ms("2026-01-05T09:00:00Z");
    let storage = MemoryStorage::new();
    let mut core = core_at(t0);
    let first = core
        .schedule_create(
            PROJECT,
            create(
                "0 * * * * *",
                "UTC",
                OverlapPolicy::Allow,
                MissedRunPolicy::Skip,
            ),
            t0,
        )
        .expect("create");
    core.schedule_delete(PROJECT, &by_name()).expect("delete");
    let mut core = restart(&mut core, &storage, t0 + 1);
    let second = core
        .schedule_create(
            PROJECT,
            create(
                "0 * * * * *",
                "UTC",
                OverlapPolicy::Allow,
                MissedRunPolicy::Skip,
            ),
            t0 + 1,
        )
        .expect("create");
    assert!(second.schedule_id > first.schedule_id);
    assert!(storage
        .get(&keys::schedule(PROJECT, first.schedule_id))
        .expect("read")
        .is_none());
}
