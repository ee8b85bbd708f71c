//! Strategies for the schedule operations (0x05xx), a child of `properties` so it uses the
//! same biased integers, texts and job strategies.

use proptest::prelude::*;
use taskforge_protocol::*;

use super::{arb_job_id, arb_new_job, arb_text, arb_u32, arb_u64};

fn arb_overlap() -> impl Strategy<Value = OverlapPolicy> {
    prop::sample::select(vec![OverlapPolicy::Skip, OverlapPolicy::Allow])
}

fn arb_missed() -> impl Strategy<Value = MissedRunPolicy> {
    prop::sample::select(vec![MissedRunPolicy::RunOnce, MissedRunPolicy::Skip])
}

fn arb_schedule_key() -> impl Strategy<Value = ScheduleKey> {
    prop_oneof![
        arb_u64().prop_map(ScheduleKey::Id),
        arb_text().prop_map(ScheduleKey::Name),
    ]
}

fn arb_schedule_info() -> impl Strategy<Value = ScheduleInfo> {
    (
        (
            arb_u64(),
            arb_text(),
            arb_text(),
            arb_text(),
            arb_text(),
            arb_new_job(),
            arb_overlap(),
            arb_missed(),
            any::<bool>(),
        ),
        (
            arb_u64(),
            arb_u64(),
            proptest::option::of(arb_u64()),
            proptest::option::of(arb_u64()),
            proptest::option::of(arb_job_id()),
            arb_u64(),
            arb_u64(),
            proptest::option::of(arb_u64()),
            proptest::option::of(arb_text()),
        ),
    )
        .prop_map(
            |(
                (schedule_id, name, cron, time_zone, queue, template, overlap, missed_runs, paused),
                (
                    created_at_ms,
                    updated_at_ms,
                    next_fire_at_ms,
                    last_fired_at_ms,
                    last_job_id,
                    fired_count,
                    skipped_count,
                    last_skipped_at_ms,
                    last_skip_reason,
                ),
            )| ScheduleInfo {
                schedule_id,
                name,
                cron,
                time_zone,
                queue,
                template,
                overlap,
                missed_runs,
                paused,
                created_at_ms,
                updated_at_ms,
                next_fire_at_ms,
                last_fired_at_ms,
                last_job_id,
                fired_count,
                skipped_count,
                last_skipped_at_ms,
                last_skip_reason,
            },
        )
}

/// Requests of the schedule operations.
pub fn arb_schedule_request_for(opcode: Opcode) -> BoxedStrategy<Request> {
    match opcode {
        Opcode::ScheduleCreate => (
            (arb_text(), arb_text(), arb_text(), arb_text()),
            arb_new_job(),
            arb_overlap(),
            arb_missed(),
            any::<bool>(),
        )
            .prop_map(
                |((name, cron, time_zone, queue), template, overlap, missed_runs, paused)| {
                    Request::ScheduleCreate(ScheduleCreate {
                        name,
                        cron,
                        time_zone,
                        queue,
                        template,
                        overlap,
                        missed_runs,
                        paused,
                    })
                },
            )
            .boxed(),
        Opcode::ScheduleGet => arb_schedule_key()
            .prop_map(|schedule| Request::ScheduleGet(ScheduleRef { schedule }))
            .boxed(),
        Opcode::ScheduleList => (
            proptest::option::of(arb_text()),
            proptest::option::of(arb_u64()),
            arb_u32(),
        )
            .prop_map(|(queue, after, limit)| {
                Request::ScheduleList(ScheduleListRequest {
                    queue,
                    after,
                    limit,
                })
            })
            .boxed(),
        Opcode::ScheduleUpdate => (
            arb_schedule_key(),
            (
                proptest::option::of(arb_text()),
                proptest::option::of(arb_text()),
                proptest::option::of(arb_text()),
                proptest::option::of(arb_text()),
            ),
            proptest::option::of(arb_new_job()),
            proptest::option::of(arb_overlap()),
            proptest::option::of(arb_missed()),
        )
            .prop_map(
                |(schedule, (name, cron, time_zone, queue), template, overlap, missed_runs)| {
                    Request::ScheduleUpdate(ScheduleUpdate {
                        schedule,
                        name,
                        cron,
                        time_zone,
                        queue,
                        template,
                        overlap,
                        missed_runs,
                    })
                },
            )
            .boxed(),
        Opcode::ScheduleDelete => arb_schedule_key()
            .prop_map(|schedule| Request::ScheduleDelete(ScheduleRef { schedule }))
            .boxed(),
        Opcode::SchedulePause => arb_schedule_key()
            .prop_map(|schedule| Request::SchedulePause(ScheduleRef { schedule }))
            .boxed(),
        Opcode::ScheduleResume => arb_schedule_key()
            .prop_map(|schedule| Request::ScheduleResume(ScheduleRef { schedule }))
            .boxed(),
        other => unreachable!("{} is not a schedule operation", other.name()),
    }
}

/// Responses of the schedule operations.
pub fn arb_schedule_response_for(opcode: Opcode) -> BoxedStrategy<Response> {
    match opcode {
        Opcode::ScheduleCreate => arb_schedule_info()
            .prop_map(Response::ScheduleCreate)
            .boxed(),
        Opcode::ScheduleGet => arb_schedule_info().prop_map(Response::ScheduleGet).boxed(),
        Opcode::ScheduleList => (
            prop::collection::vec(arb_schedule_info(), 0..3),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(schedules, next_after)| {
                Response::ScheduleList(ScheduleList {
                    schedules,
                    next_after,
                })
            })
            .boxed(),
        Opcode::ScheduleUpdate => arb_schedule_info()
            .prop_map(Response::ScheduleUpdate)
            .boxed(),
        Opcode::ScheduleDelete => Just(Response::ScheduleDelete(Empty {})).boxed(),
        Opcode::SchedulePause => arb_schedule_info()
            .prop_map(Response::SchedulePause)
            .boxed(),
        Opcode::ScheduleResume => arb_schedule_info()
            .prop_map(Response::ScheduleResume)
            .boxed(),
        other => unreachable!("{} is not a schedule operation", other.name()),
    }
}
