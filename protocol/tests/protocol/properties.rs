//! Property tests: every message survives encode → decode, the frame codec reassembles frames
//! split anywhere, and no input — random or a mangled valid body — makes a decoder panic.
//!
//! proptest prints the seed of a failing case and stores it under `proptest-regressions/`,
//! so a failure replays.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use taskforge_protocol::limits::FRAME_BYTES_CEILING;
use taskforge_protocol::*;
use tokio_util::codec::{Decoder, Encoder};

#[path = "schedule_properties.rs"]
mod schedules;

/// Integers biased toward the varint boundaries: one-byte, `fb` + u16, `fc` + u32, and for
/// u64 `fd` + u64, plus the boundary values themselves.
fn arb_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        0..251u32,
        251..65_536u32,
        any::<u32>(),
        prop::sample::select(vec![0, 250, 251, 65_535, 65_536, u32::MAX]),
    ]
}

fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..251u64,
        251..65_536u64,
        65_536..=u64::from(u32::MAX),
        any::<u64>(),
        prop::sample::select(vec![0, 251, 65_536, 1 << 32, u64::MAX]),
    ]
}

fn arb_u16() -> impl Strategy<Value = u16> {
    prop_oneof![0..251u16, any::<u16>()]
}

fn arb_i32() -> impl Strategy<Value = i32> {
    prop_oneof![
        -130..130i32,
        any::<i32>(),
        prop::sample::select(vec![i32::MIN, i32::MAX])
    ]
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9._:-]{0,16}", "\\PC{0,24}"]
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        prop::collection::vec(any::<u8>(), 240..320),
    ]
}

fn arb_metadata() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((arb_text(), arb_text()), 0..4)
}

fn arb_job_id() -> impl Strategy<Value = JobId> {
    any::<[u8; 16]>().prop_map(JobId)
}

fn arb_job_state() -> impl Strategy<Value = JobState> {
    prop::sample::select(JobState::ALL.to_vec())
}

fn arb_backoff() -> impl Strategy<Value = Backoff> {
    (arb_u32(), arb_u32(), arb_u32(), any::<u8>()).prop_map(
        |(initial_ms, factor_percent, max_ms, jitter_percent)| Backoff {
            initial_ms,
            factor_percent,
            max_ms,
            jitter_percent,
        },
    )
}

fn arb_queue_settings() -> impl Strategy<Value = QueueSettings> {
    (
        proptest::option::of(arb_i32()),
        proptest::option::of(arb_u32()),
        proptest::option::of(arb_backoff()),
        proptest::option::of(arb_u32()),
        proptest::option::of(arb_u64()),
        proptest::option::of(arb_u32()),
        proptest::option::of(arb_u32()),
    )
        .prop_map(
            |(
                priority,
                max_attempts,
                backoff,
                lease_ms,
                retention_ms,
                in_flight_max,
                deliveries_per_second,
            )| QueueSettings {
                priority,
                max_attempts,
                backoff,
                lease_ms,
                retention_ms,
                in_flight_max,
                deliveries_per_second,
            },
        )
}

fn arb_queue_defaults() -> impl Strategy<Value = QueueDefaults> {
    (
        arb_i32(),
        arb_u32(),
        arb_backoff(),
        arb_u32(),
        proptest::option::of(arb_u64()),
        proptest::option::of(arb_u32()),
        proptest::option::of(arb_u32()),
    )
        .prop_map(
            |(
                priority,
                max_attempts,
                backoff,
                lease_ms,
                retention_ms,
                in_flight_max,
                deliveries_per_second,
            )| QueueDefaults {
                priority,
                max_attempts,
                backoff,
                lease_ms,
                retention_ms,
                in_flight_max,
                deliveries_per_second,
            },
        )
}

fn arb_job_counts() -> impl Strategy<Value = JobCounts> {
    prop::array::uniform8(arb_u64()).prop_map(|values| JobCounts {
        scheduled: values[0],
        blocked: values[1],
        ready: values[2],
        leased: values[3],
        succeeded: values[4],
        dead: values[5],
        cancelled: values[6],
        expired: values[7],
    })
}

fn arb_queue_info() -> impl Strategy<Value = QueueInfo> {
    (
        arb_text(),
        arb_queue_defaults(),
        any::<bool>(),
        arb_u64(),
        arb_job_counts(),
    )
        .prop_map(
            |(name, defaults, paused, created_at_ms, counts)| QueueInfo {
                name,
                defaults,
                paused,
                created_at_ms,
                counts,
            },
        )
}

fn arb_parent_ref() -> impl Strategy<Value = ParentRef> {
    prop_oneof![
        arb_job_id().prop_map(ParentRef::Job),
        arb_u32().prop_map(ParentRef::Batch),
    ]
}

fn arb_parent_failure() -> impl Strategy<Value = ParentFailure> {
    prop::sample::select(vec![ParentFailure::Cancel, ParentFailure::Run])
}

fn arb_unique_key() -> impl Strategy<Value = UniqueKey> {
    (
        arb_text(),
        proptest::option::of(prop::sample::select(vec![
            UniqueUntil::Started,
            UniqueUntil::Finished,
        ])),
        proptest::option::of(arb_u64()),
    )
        .prop_map(|(key, until, window_ms)| UniqueKey {
            key,
            until,
            window_ms,
        })
}

fn arb_new_job() -> impl Strategy<Value = NewJob> {
    let settings = (
        arb_text(),
        arb_bytes(),
        proptest::option::of(arb_i32()),
        proptest::option::of(arb_u64()),
        proptest::option::of(arb_u64()),
        proptest::option::of(arb_u32()),
        proptest::option::of(arb_backoff()),
        proptest::option::of(arb_u32()),
        arb_metadata(),
    );
    let flow = (
        prop::collection::vec(arb_parent_ref(), 0..4),
        arb_parent_failure(),
        proptest::option::of(arb_unique_key()),
        proptest::option::of(arb_u64()),
        proptest::option::of(arb_u64()),
    );
    (settings, flow).prop_map(
        |(
            (
                queue,
                payload,
                priority,
                run_at_ms,
                delay_ms,
                max_attempts,
                backoff,
                lease_ms,
                metadata,
            ),
            (depends_on, on_parent_failure, unique, expires_at_ms, ttl_ms),
        )| NewJob {
            queue,
            payload,
            priority,
            run_at_ms,
            delay_ms,
            max_attempts,
            backoff,
            lease_ms,
            metadata,
            depends_on,
            on_parent_failure,
            unique,
            expires_at_ms,
            ttl_ms,
        },
    )
}

fn arb_leased_job() -> impl Strategy<Value = LeasedJob> {
    (
        arb_job_id(),
        arb_u64(),
        arb_text(),
        arb_bytes(),
        arb_u32(),
        arb_u32(),
        arb_i32(),
        arb_u64(),
        arb_u64(),
        arb_metadata(),
    )
        .prop_map(
            |(
                job_id,
                lease_id,
                queue,
                payload,
                attempt,
                max_attempts,
                priority,
                lease_deadline_ms,
                created_at_ms,
                metadata,
            )| LeasedJob {
                job_id,
                lease_id,
                queue,
                payload,
                attempt,
                max_attempts,
                priority,
                lease_deadline_ms,
                created_at_ms,
                metadata,
            },
        )
}

fn arb_job_info() -> impl Strategy<Value = JobInfo> {
    let identity = (
        arb_job_id(),
        arb_text(),
        arb_job_state(),
        arb_i32(),
        arb_bytes(),
        arb_metadata(),
    );
    let settings = (arb_u32(), arb_u32(), arb_backoff(), arb_u32());
    let times = (
        arb_u64(),
        arb_u64(),
        arb_u64(),
        proptest::option::of(arb_u64()),
        proptest::option::of(arb_u64()),
    );
    let outcome = (
        any::<bool>(),
        proptest::option::of(arb_text()),
        proptest::option::of(arb_bytes()),
    );
    let executions = (
        arb_u32(),
        proptest::option::of(arb_execution_info()),
        proptest::option::of(arb_progress_info()),
    );
    let dependencies = (
        prop::collection::vec(arb_job_id(), 0..4),
        arb_u32(),
        arb_parent_failure(),
        prop::collection::vec(arb_job_id(), 0..4),
        proptest::option::of(arb_text()),
        proptest::option::of(arb_u64()),
    );
    (identity, settings, times, outcome, executions, dependencies).prop_map(
        |(
            (job_id, queue, state, priority, payload, metadata),
            (attempts, max_attempts, backoff, lease_ms),
            (created_at_ms, run_at_ms, updated_at_ms, finished_at_ms, lease_deadline_ms),
            (cancel_requested, last_error, result),
            (executions, latest_execution, progress),
            (parents, parents_remaining, on_parent_failure, children, unique_key, expires_at_ms),
        )| JobInfo {
            job_id,
            queue,
            state,
            priority,
            payload,
            metadata,
            attempts,
            max_attempts,
            backoff,
            lease_ms,
            created_at_ms,
            run_at_ms,
            updated_at_ms,
            finished_at_ms,
            lease_deadline_ms,
            cancel_requested,
            last_error,
            result,
            executions,
            latest_execution: latest_execution.map(Box::new),
            progress,
            parents,
            parents_remaining,
            on_parent_failure,
            children,
            unique_key,
            expires_at_ms,
        },
    )
}

fn arb_job_summary() -> impl Strategy<Value = JobSummary> {
    (
        arb_job_id(),
        arb_text(),
        arb_job_state(),
        arb_i32(),
        arb_u32(),
        arb_u32(),
        (arb_u64(), arb_u64(), arb_u64()),
        proptest::option::of(arb_text()),
    )
        .prop_map(
            |(
                job_id,
                queue,
                state,
                priority,
                attempts,
                max_attempts,
                (created_at_ms, run_at_ms, updated_at_ms),
                last_error,
            )| JobSummary {
                job_id,
                queue,
                state,
                priority,
                attempts,
                max_attempts,
                created_at_ms,
                run_at_ms,
                updated_at_ms,
                last_error,
            },
        )
}

fn arb_job_list_response() -> impl Strategy<Value = JobListResponse> {
    (
        prop::collection::vec(arb_job_summary(), 0..4),
        proptest::option::of(arb_job_id()),
    )
        .prop_map(|(jobs, next_after)| JobListResponse { jobs, next_after })
}

fn arb_credentials() -> impl Strategy<Value = Credentials> {
    prop_oneof![
        arb_text().prop_map(Credentials::RootToken),
        arb_text().prop_map(Credentials::ApiKey),
        (arb_text(), arb_text())
            .prop_map(|(email, password)| Credentials::Password { email, password }),
    ]
}

fn arb_error_details() -> impl Strategy<Value = ErrorDetails> {
    prop_oneof![
        Just(ErrorDetails::None),
        (arb_text(), arb_u64(), arb_u64()).prop_map(|(limit, current, max)| ErrorDetails::Quota {
            limit,
            current,
            max
        }),
        arb_u64().prop_map(|retry_after_ms| ErrorDetails::RetryAfter { retry_after_ms }),
        arb_u32().prop_map(|index| ErrorDetails::BatchItem { index }),
    ]
}

fn arb_error_body() -> impl Strategy<Value = ErrorBody> {
    (arb_u16(), arb_text(), arb_error_details()).prop_map(|(code, message, details)| ErrorBody {
        code,
        message,
        details,
    })
}

fn arb_queue_name() -> impl Strategy<Value = QueueName> {
    arb_text().prop_map(|name| QueueName { name })
}

fn arb_queue_write() -> impl Strategy<Value = QueueWrite> {
    (arb_text(), arb_queue_settings()).prop_map(|(name, settings)| QueueWrite { name, settings })
}

fn arb_ack() -> impl Strategy<Value = AckRequest> {
    (arb_job_id(), arb_u64(), proptest::option::of(arb_bytes())).prop_map(
        |(job_id, lease_id, result)| AckRequest {
            job_id,
            lease_id,
            result,
        },
    )
}

fn arb_retry() -> impl Strategy<Value = Retry> {
    prop_oneof![
        Just(Retry::Backoff),
        arb_u64().prop_map(Retry::At),
        Just(Retry::Never)
    ]
}

fn arb_dead_bulk() -> impl Strategy<Value = DeadBulkRequest> {
    (arb_text(), prop::collection::vec(arb_job_id(), 0..4))
        .prop_map(|(queue, job_ids)| DeadBulkRequest { queue, job_ids })
}

fn arb_bulk_response() -> impl Strategy<Value = BulkResponse> {
    (arb_u64(), arb_u64()).prop_map(|(affected, remaining)| BulkResponse {
        affected,
        remaining,
    })
}

fn arb_org_status() -> impl Strategy<Value = OrgStatus> {
    prop::sample::select(vec![OrgStatus::Active, OrgStatus::Suspended])
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![Role::Owner, Role::Admin, Role::Member, Role::Viewer])
}

fn arb_plan() -> impl Strategy<Value = Plan> {
    prop::sample::select(vec![Plan::Free, Plan::Pro, Plan::Enterprise, Plan::Custom])
}

fn arb_subscription_status() -> impl Strategy<Value = SubscriptionStatus> {
    prop::sample::select(vec![
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::Cancelled,
    ])
}

fn arb_scopes() -> impl Strategy<Value = Vec<Scope>> {
    prop::collection::vec(
        prop::sample::select(vec![
            Scope::Produce,
            Scope::Consume,
            Scope::Manage,
            Scope::Read,
        ]),
        0..5,
    )
}

fn arb_organization() -> impl Strategy<Value = Organization> {
    (
        arb_u64(),
        arb_text(),
        arb_text(),
        arb_u64(),
        arb_org_status(),
    )
        .prop_map(|(org_id, name, slug, created_at_ms, status)| Organization {
            org_id,
            name,
            slug,
            created_at_ms,
            status,
        })
}

fn arb_user() -> impl Strategy<Value = User> {
    (
        arb_u64(),
        arb_u64(),
        arb_text(),
        arb_role(),
        arb_u64(),
        proptest::option::of(arb_u64()),
        any::<bool>(),
    )
        .prop_map(
            |(user_id, org_id, email, role, created_at_ms, last_login_at_ms, disabled)| User {
                user_id,
                org_id,
                email,
                role,
                created_at_ms,
                last_login_at_ms,
                disabled,
            },
        )
}

fn arb_plan_limits() -> impl Strategy<Value = PlanLimits> {
    (prop::array::uniform7(arb_u32()), arb_u64(), arb_u64()).prop_map(
        |(small, pending_jobs_max, retention_ms)| PlanLimits {
            projects_max: small[0],
            queues_per_project_max: small[1],
            pending_jobs_max,
            payload_bytes_max: small[2],
            enqueue_rate_per_second: small[3],
            enqueue_burst: small[4],
            connections_max: small[5],
            workers_max: small[6],
            retention_ms,
        },
    )
}

fn arb_subscription() -> impl Strategy<Value = Subscription> {
    (
        arb_u64(),
        arb_plan(),
        arb_subscription_status(),
        arb_u64(),
        arb_u64(),
        arb_plan_limits(),
    )
        .prop_map(
            |(org_id, plan, status, period_start_ms, period_end_ms, limits)| Subscription {
                org_id,
                plan,
                status,
                period_start_ms,
                period_end_ms,
                limits,
            },
        )
}

fn arb_project() -> impl Strategy<Value = Project> {
    (arb_u64(), arb_u64(), arb_text(), arb_text(), arb_u64()).prop_map(
        |(project_id, org_id, name, slug, created_at_ms)| Project {
            project_id,
            org_id,
            name,
            slug,
            created_at_ms,
        },
    )
}

fn arb_api_key_info() -> impl Strategy<Value = ApiKeyInfo> {
    (
        arb_text(),
        arb_u64(),
        arb_text(),
        arb_scopes(),
        arb_u64(),
        prop::array::uniform3(proptest::option::of(arb_u64())),
    )
        .prop_map(
            |(key_id, project_id, name, scopes, created_at_ms, [last_used, expires, revoked])| {
                ApiKeyInfo {
                    key_id,
                    project_id,
                    name,
                    scopes,
                    created_at_ms,
                    last_used_at_ms: last_used,
                    expires_at_ms: expires,
                    revoked_at_ms: revoked,
                }
            },
        )
}

fn arb_api_key_secret() -> impl Strategy<Value = ApiKeySecret> {
    (arb_api_key_info(), arb_text()).prop_map(|(key, secret)| ApiKeySecret { key, secret })
}

fn arb_org_ref() -> impl Strategy<Value = OrgRef> {
    arb_u64().prop_map(|org_id| OrgRef { org_id })
}

fn arb_org_page() -> impl Strategy<Value = OrgPage> {
    (arb_u64(), proptest::option::of(arb_u64()), arb_u32()).prop_map(|(org_id, after, limit)| {
        OrgPage {
            org_id,
            after,
            limit,
        }
    })
}

fn arb_project_ref() -> impl Strategy<Value = ProjectRef> {
    arb_u64().prop_map(|project_id| ProjectRef { project_id })
}

fn arb_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    arb_metadata()
}

fn arb_worker_state() -> impl Strategy<Value = WorkerState> {
    prop::sample::select(vec![
        WorkerState::Active,
        WorkerState::Quiet,
        WorkerState::Terminating,
        WorkerState::Lost,
        WorkerState::Stopped,
    ])
}

fn arb_worker_command() -> impl Strategy<Value = WorkerCommand> {
    prop_oneof![
        Just(WorkerCommand::Run),
        Just(WorkerCommand::Quiet),
        arb_u64().prop_map(|deadline_ms| WorkerCommand::Terminate { deadline_ms }),
    ]
}

fn arb_execution_outcome() -> impl Strategy<Value = ExecutionOutcome> {
    prop::sample::select(vec![
        ExecutionOutcome::Succeeded,
        ExecutionOutcome::Failed,
        ExecutionOutcome::LeaseExpired,
        ExecutionOutcome::WorkerLost,
        ExecutionOutcome::Cancelled,
    ])
}

fn arb_log_level() -> impl Strategy<Value = LogLevel> {
    prop::sample::select(vec![
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ])
}

fn arb_queue_assignment() -> impl Strategy<Value = QueueAssignment> {
    (arb_text(), arb_u32(), any::<bool>()).prop_map(|(queue, weight, active)| QueueAssignment {
        queue,
        weight,
        active,
    })
}

fn arb_queue_assignments() -> impl Strategy<Value = Vec<QueueAssignment>> {
    prop::collection::vec(arb_queue_assignment(), 0..4)
}

fn arb_assignment() -> impl Strategy<Value = Assignment> {
    (
        arb_u64(),
        arb_text(),
        arb_text(),
        arb_u32(),
        arb_u32(),
        any::<bool>(),
        arb_u64(),
    )
        .prop_map(
            |(worker_id, worker_name, queue, weight, position, active, since_ms)| Assignment {
                worker_id,
                worker_name,
                queue,
                weight,
                position,
                active,
                since_ms,
            },
        )
}

fn arb_worker_info() -> impl Strategy<Value = WorkerInfo> {
    let identity = (
        arb_u64(),
        arb_text(),
        arb_text(),
        arb_u32(),
        arb_text(),
        arb_pairs(),
        arb_u32(),
        arb_worker_state(),
    );
    let life = (
        arb_u64(),
        arb_u64(),
        arb_u32(),
        arb_u32(),
        proptest::option::of(arb_u64()),
        arb_u64(),
        prop::collection::vec(arb_assignment(), 0..3),
    );
    (identity, life).prop_map(
        |(
            (worker_id, name, hostname, pid, version, labels, concurrency, state),
            (
                registered_at_ms,
                last_heartbeat_at_ms,
                in_flight,
                leased_jobs,
                terminate_deadline_ms,
                assignments_version,
                assignments,
            ),
        )| WorkerInfo {
            worker_id,
            name,
            hostname,
            pid,
            version,
            labels,
            concurrency,
            state,
            registered_at_ms,
            last_heartbeat_at_ms,
            in_flight,
            leased_jobs,
            terminate_deadline_ms,
            assignments_version,
            assignments,
        },
    )
}

fn arb_worker_ref() -> impl Strategy<Value = WorkerRef> {
    arb_u64().prop_map(|worker_id| WorkerRef { worker_id })
}

fn arb_execution_info() -> impl Strategy<Value = ExecutionInfo> {
    (
        (
            arb_u32(),
            arb_u32(),
            proptest::option::of(arb_u64()),
            arb_u64(),
            arb_u64(),
            arb_u64(),
        ),
        (
            proptest::option::of(arb_u64()),
            proptest::option::of(arb_execution_outcome()),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_u64()),
        ),
    )
        .prop_map(
            |(
                (execution, attempt, worker_id, lease_id, leased_at_ms, lease_deadline_ms),
                (finished_at_ms, outcome, error, error_details, duration_ms),
            )| ExecutionInfo {
                execution,
                attempt,
                worker_id,
                lease_id,
                leased_at_ms,
                lease_deadline_ms,
                finished_at_ms,
                outcome,
                error,
                error_details,
                duration_ms,
            },
        )
}

fn arb_progress_info() -> impl Strategy<Value = ProgressInfo> {
    (arb_u32(), any::<u8>(), arb_text(), arb_u64()).prop_map(
        |(execution, percent, message, updated_at_ms)| ProgressInfo {
            execution,
            percent,
            message,
            updated_at_ms,
        },
    )
}

fn arb_new_log_line() -> impl Strategy<Value = NewLogLine> {
    (arb_log_level(), arb_text(), arb_pairs()).prop_map(|(level, message, fields)| NewLogLine {
        level,
        message,
        fields,
    })
}

fn arb_log_line() -> impl Strategy<Value = LogLine> {
    (arb_u32(), arb_u64(), arb_new_log_line()).prop_map(|(seq, at_ms, line)| LogLine {
        seq,
        at_ms,
        level: line.level,
        message: line.message,
        fields: line.fields,
    })
}

fn arb_job_result() -> impl Strategy<Value = JobResult> {
    (
        arb_job_id(),
        arb_job_state(),
        proptest::option::of(arb_bytes()),
    )
        .prop_map(|(job_id, state, result)| JobResult {
            job_id,
            state,
            result,
        })
}

/// Requests of the worker and execution operations (0x020A..=0x020E, 0x04xx).
fn arb_worker_request_for(opcode: Opcode) -> BoxedStrategy<Request> {
    match opcode {
        Opcode::Progress => (arb_job_id(), arb_u64(), any::<u8>(), arb_text())
            .prop_map(|(job_id, lease_id, percent, message)| {
                Request::Progress(ProgressRequest {
                    job_id,
                    lease_id,
                    percent,
                    message,
                })
            })
            .boxed(),
        Opcode::Log => (
            arb_job_id(),
            arb_u64(),
            prop::collection::vec(arb_new_log_line(), 0..4),
        )
            .prop_map(|(job_id, lease_id, lines)| {
                Request::Log(LogRequest {
                    job_id,
                    lease_id,
                    lines,
                })
            })
            .boxed(),
        Opcode::LogTail => (
            arb_job_id(),
            proptest::option::of(arb_u32()),
            arb_u32(),
            proptest::option::of(arb_u32()),
            arb_u32(),
        )
            .prop_map(|(job_id, execution, lines, after_seq, wait_ms)| {
                Request::LogTail(LogTailRequest {
                    job_id,
                    execution,
                    lines,
                    after_seq,
                    wait_ms,
                })
            })
            .boxed(),
        Opcode::ExecutionList => (arb_job_id(), proptest::option::of(arb_u32()), arb_u32())
            .prop_map(|(job_id, after, limit)| {
                Request::ExecutionList(ExecutionListRequest {
                    job_id,
                    after,
                    limit,
                })
            })
            .boxed(),
        Opcode::JobResults => arb_job_id()
            .prop_map(|job_id| Request::JobResults(JobRef { job_id }))
            .boxed(),
        Opcode::WorkerRegister => (
            arb_text(),
            arb_text(),
            arb_u32(),
            arb_text(),
            arb_pairs(),
            arb_u32(),
            arb_queue_assignments(),
        )
            .prop_map(
                |(name, hostname, pid, version, labels, concurrency, queues)| {
                    Request::WorkerRegister(WorkerRegister {
                        name,
                        hostname,
                        pid,
                        version,
                        labels,
                        concurrency,
                        queues,
                    })
                },
            )
            .boxed(),
        Opcode::Heartbeat => (arb_u64(), arb_u32(), arb_u64(), any::<bool>())
            .prop_map(|(worker_id, in_flight, assignments_version, leaving)| {
                Request::Heartbeat(Heartbeat {
                    worker_id,
                    in_flight,
                    assignments_version,
                    leaving,
                })
            })
            .boxed(),
        Opcode::WorkerList => (
            proptest::option::of(arb_worker_state()),
            proptest::option::of(arb_u64()),
            arb_u32(),
        )
            .prop_map(|(state, after, limit)| {
                Request::WorkerList(WorkerListRequest {
                    state,
                    after,
                    limit,
                })
            })
            .boxed(),
        Opcode::WorkerGet => arb_worker_ref().prop_map(Request::WorkerGet).boxed(),
        Opcode::WorkerQuiet => arb_worker_ref().prop_map(Request::WorkerQuiet).boxed(),
        Opcode::WorkerTerminate => (arb_u64(), proptest::option::of(arb_u32()))
            .prop_map(|(worker_id, grace_ms)| {
                Request::WorkerTerminate(WorkerTerminate {
                    worker_id,
                    grace_ms,
                })
            })
            .boxed(),
        Opcode::WorkerAssign => (arb_u64(), arb_queue_assignments())
            .prop_map(|(worker_id, queues)| {
                Request::WorkerAssign(WorkerAssign { worker_id, queues })
            })
            .boxed(),
        Opcode::AssignmentList => (
            proptest::option::of(arb_text()),
            proptest::option::of(arb_u64()),
            proptest::option::of(arb_u64()),
            arb_u32(),
        )
            .prop_map(|(queue, worker_id, after, limit)| {
                Request::AssignmentList(AssignmentListRequest {
                    queue,
                    worker_id,
                    after,
                    limit,
                })
            })
            .boxed(),
        other => unreachable!("{} is not a worker or execution operation", other.name()),
    }
}

/// Responses of the worker and execution operations (0x020A..=0x020E, 0x04xx).
fn arb_worker_response_for(opcode: Opcode) -> BoxedStrategy<Response> {
    match opcode {
        Opcode::Progress => Just(Response::Progress(Empty {})).boxed(),
        Opcode::Log => (arb_u32(), arb_u32())
            .prop_map(|(execution, first_seq)| {
                Response::Log(LogResponse {
                    execution,
                    first_seq,
                })
            })
            .boxed(),
        Opcode::LogTail => (
            arb_u32(),
            prop::collection::vec(arb_log_line(), 0..4),
            arb_u32(),
            any::<bool>(),
        )
            .prop_map(|(execution, lines, next_after, open)| {
                Response::LogTail(LogTail {
                    execution,
                    lines,
                    next_after,
                    open,
                })
            })
            .boxed(),
        Opcode::ExecutionList => (
            prop::collection::vec(arb_execution_info(), 0..4),
            proptest::option::of(arb_u32()),
        )
            .prop_map(|(executions, next_after)| {
                Response::ExecutionList(ExecutionList {
                    executions,
                    next_after,
                })
            })
            .boxed(),
        Opcode::JobResults => (
            arb_job_result(),
            prop::collection::vec(arb_job_result(), 0..4),
        )
            .prop_map(|(job, parents)| Response::JobResults(JobResults { job, parents }))
            .boxed(),
        Opcode::WorkerRegister => arb_worker_info().prop_map(Response::WorkerRegister).boxed(),
        Opcode::Heartbeat => (
            arb_worker_command(),
            arb_u32(),
            arb_u64(),
            proptest::option::of(arb_queue_assignments()),
            prop::collection::vec(arb_job_id(), 0..4),
        )
            .prop_map(
                |(
                    command,
                    heartbeat_interval_ms,
                    assignments_version,
                    assignments,
                    cancelled_jobs,
                )| {
                    Response::Heartbeat(HeartbeatResponse {
                        command,
                        heartbeat_interval_ms,
                        assignments_version,
                        assignments,
                        cancelled_jobs,
                    })
                },
            )
            .boxed(),
        Opcode::WorkerList => (
            prop::collection::vec(arb_worker_info(), 0..3),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(workers, next_after)| {
                Response::WorkerList(WorkerList {
                    workers,
                    next_after,
                })
            })
            .boxed(),
        Opcode::WorkerGet => arb_worker_info().prop_map(Response::WorkerGet).boxed(),
        Opcode::WorkerQuiet => arb_worker_info().prop_map(Response::WorkerQuiet).boxed(),
        Opcode::WorkerTerminate => arb_worker_info()
            .prop_map(Response::WorkerTerminate)
            .boxed(),
        Opcode::WorkerAssign => arb_worker_info().prop_map(Response::WorkerAssign).boxed(),
        Opcode::AssignmentList => (
            prop::collection::vec(arb_assignment(), 0..4),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(assignments, next_after)| {
                Response::AssignmentList(AssignmentList {
                    assignments,
                    next_after,
                })
            })
            .boxed(),
        other => unreachable!("{} is not a worker or execution operation", other.name()),
    }
}

/// Tenancy requests (opcodes 0x06xx).
fn arb_tenancy_request_for(opcode: Opcode) -> BoxedStrategy<Request> {
    match opcode {
        Opcode::OrgCreate => (arb_text(), arb_text(), arb_plan())
            .prop_map(|(name, slug, plan)| Request::OrgCreate(OrgCreate { name, slug, plan }))
            .boxed(),
        Opcode::OrgGet => arb_org_ref().prop_map(Request::OrgGet).boxed(),
        Opcode::OrgList => (proptest::option::of(arb_u64()), arb_u32())
            .prop_map(|(after, limit)| Request::OrgList(IdPage { after, limit }))
            .boxed(),
        Opcode::OrgUpdate => (
            arb_u64(),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_org_status()),
        )
            .prop_map(|(org_id, name, status)| {
                Request::OrgUpdate(OrgUpdate {
                    org_id,
                    name,
                    status,
                })
            })
            .boxed(),
        Opcode::OrgDelete => arb_org_ref().prop_map(Request::OrgDelete).boxed(),
        Opcode::UserCreate => (arb_u64(), arb_text(), arb_text(), arb_role())
            .prop_map(|(org_id, email, password, role)| {
                Request::UserCreate(UserCreate {
                    org_id,
                    email,
                    password,
                    role,
                })
            })
            .boxed(),
        Opcode::UserGet => arb_u64()
            .prop_map(|user_id| Request::UserGet(UserRef { user_id }))
            .boxed(),
        Opcode::UserList => arb_org_page().prop_map(Request::UserList).boxed(),
        Opcode::UserUpdate => (
            arb_u64(),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_role()),
        )
            .prop_map(|(user_id, email, role)| {
                Request::UserUpdate(UserUpdate {
                    user_id,
                    email,
                    role,
                })
            })
            .boxed(),
        Opcode::UserDisable => (arb_u64(), any::<bool>())
            .prop_map(|(user_id, disabled)| Request::UserDisable(UserDisable { user_id, disabled }))
            .boxed(),
        Opcode::UserSetPassword => (arb_u64(), arb_text())
            .prop_map(|(user_id, password)| {
                Request::UserSetPassword(UserSetPassword { user_id, password })
            })
            .boxed(),
        Opcode::SubscriptionGet => arb_org_ref().prop_map(Request::SubscriptionGet).boxed(),
        Opcode::SubscriptionSet => (
            arb_u64(),
            arb_plan(),
            arb_subscription_status(),
            arb_u64(),
            arb_u64(),
            proptest::option::of(arb_plan_limits()),
        )
            .prop_map(
                |(org_id, plan, status, period_start_ms, period_end_ms, limits)| {
                    Request::SubscriptionSet(SubscriptionSet {
                        org_id,
                        plan,
                        status,
                        period_start_ms,
                        period_end_ms,
                        limits,
                    })
                },
            )
            .boxed(),
        Opcode::ProjectCreate => (arb_u64(), arb_text(), arb_text())
            .prop_map(|(org_id, name, slug)| {
                Request::ProjectCreate(ProjectCreate { org_id, name, slug })
            })
            .boxed(),
        Opcode::ProjectGet => arb_project_ref().prop_map(Request::ProjectGet).boxed(),
        Opcode::ProjectList => arb_org_page().prop_map(Request::ProjectList).boxed(),
        Opcode::ProjectUpdate => (arb_u64(), arb_text())
            .prop_map(|(project_id, name)| {
                Request::ProjectUpdate(ProjectUpdate { project_id, name })
            })
            .boxed(),
        Opcode::ProjectDelete => arb_project_ref().prop_map(Request::ProjectDelete).boxed(),
        Opcode::ApiKeyCreate => (
            arb_u64(),
            arb_text(),
            arb_scopes(),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(project_id, name, scopes, expires_at_ms)| {
                Request::ApiKeyCreate(ApiKeyCreate {
                    project_id,
                    name,
                    scopes,
                    expires_at_ms,
                })
            })
            .boxed(),
        Opcode::ApiKeyList => (arb_u64(), proptest::option::of(arb_text()), arb_u32())
            .prop_map(|(project_id, after, limit)| {
                Request::ApiKeyList(ProjectPage {
                    project_id,
                    after,
                    limit,
                })
            })
            .boxed(),
        Opcode::ApiKeyRevoke => arb_text()
            .prop_map(|key_id| Request::ApiKeyRevoke(ApiKeyRef { key_id }))
            .boxed(),
        Opcode::ApiKeyRotate => (arb_text(), proptest::option::of(arb_u64()))
            .prop_map(|(key_id, grace_ms)| Request::ApiKeyRotate(ApiKeyRotate { key_id, grace_ms }))
            .boxed(),
        other => unreachable!("{} is not a tenancy operation", other.name()),
    }
}

/// Tenancy responses (opcodes 0x06xx).
fn arb_tenancy_response_for(opcode: Opcode) -> BoxedStrategy<Response> {
    match opcode {
        Opcode::OrgCreate => arb_organization().prop_map(Response::OrgCreate).boxed(),
        Opcode::OrgGet => arb_organization().prop_map(Response::OrgGet).boxed(),
        Opcode::OrgList => (
            prop::collection::vec(arb_organization(), 0..4),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(orgs, next_after)| Response::OrgList(OrgList { orgs, next_after }))
            .boxed(),
        Opcode::OrgUpdate => arb_organization().prop_map(Response::OrgUpdate).boxed(),
        Opcode::OrgDelete => Just(Response::OrgDelete(Empty {})).boxed(),
        Opcode::UserCreate => arb_user().prop_map(Response::UserCreate).boxed(),
        Opcode::UserGet => arb_user().prop_map(Response::UserGet).boxed(),
        Opcode::UserList => (
            prop::collection::vec(arb_user(), 0..4),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(users, next_after)| Response::UserList(UserList { users, next_after }))
            .boxed(),
        Opcode::UserUpdate => arb_user().prop_map(Response::UserUpdate).boxed(),
        Opcode::UserDisable => arb_user().prop_map(Response::UserDisable).boxed(),
        Opcode::UserSetPassword => Just(Response::UserSetPassword(Empty {})).boxed(),
        Opcode::SubscriptionGet => arb_subscription()
            .prop_map(Response::SubscriptionGet)
            .boxed(),
        Opcode::SubscriptionSet => arb_subscription()
            .prop_map(Response::SubscriptionSet)
            .boxed(),
        Opcode::ProjectCreate => arb_project().prop_map(Response::ProjectCreate).boxed(),
        Opcode::ProjectGet => arb_project().prop_map(Response::ProjectGet).boxed(),
        Opcode::ProjectList => (
            prop::collection::vec(arb_project(), 0..4),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(projects, next_after)| {
                Response::ProjectList(ProjectList {
                    projects,
                    next_after,
                })
            })
            .boxed(),
        Opcode::ProjectUpdate => arb_project().prop_map(Response::ProjectUpdate).boxed(),
        Opcode::ProjectDelete => Just(Response::ProjectDelete(Empty {})).boxed(),
        Opcode::ApiKeyCreate => arb_api_key_secret()
            .prop_map(Response::ApiKeyCreate)
            .boxed(),
        Opcode::ApiKeyList => (
            prop::collection::vec(arb_api_key_info(), 0..4),
            proptest::option::of(arb_text()),
        )
            .prop_map(|(keys, next_after)| Response::ApiKeyList(ApiKeyList { keys, next_after }))
            .boxed(),
        Opcode::ApiKeyRevoke => arb_api_key_info().prop_map(Response::ApiKeyRevoke).boxed(),
        Opcode::ApiKeyRotate => arb_api_key_secret()
            .prop_map(Response::ApiKeyRotate)
            .boxed(),
        other => unreachable!("{} is not a tenancy operation", other.name()),
    }
}

/// Requests of one operation. Exhaustive, so a new opcode must get a strategy.
fn arb_request_for(opcode: Opcode) -> BoxedStrategy<Request> {
    match opcode {
        Opcode::Hello => (
            arb_u16(),
            arb_text(),
            arb_text(),
            arb_credentials(),
            proptest::option::of(arb_u64()),
        )
            .prop_map(
                |(protocol_version, client_name, client_version, credentials, project_id)| {
                    Request::Hello(HelloRequest {
                        protocol_version,
                        client_name,
                        client_version,
                        credentials,
                        project_id,
                    })
                },
            )
            .boxed(),
        Opcode::Ping => Just(Request::Ping(Empty {})).boxed(),
        Opcode::Bye => Just(Request::Bye(Empty {})).boxed(),
        Opcode::QueueCreate => arb_queue_write().prop_map(Request::QueueCreate).boxed(),
        Opcode::QueueGet => arb_queue_name().prop_map(Request::QueueGet).boxed(),
        Opcode::QueueList => (proptest::option::of(arb_text()), arb_u32())
            .prop_map(|(after, limit)| Request::QueueList(QueueListRequest { after, limit }))
            .boxed(),
        Opcode::QueueUpdate => arb_queue_write().prop_map(Request::QueueUpdate).boxed(),
        Opcode::QueueDelete => arb_queue_name().prop_map(Request::QueueDelete).boxed(),
        Opcode::QueuePause => arb_queue_name().prop_map(Request::QueuePause).boxed(),
        Opcode::QueueResume => arb_queue_name().prop_map(Request::QueueResume).boxed(),
        Opcode::QueuePurge => arb_queue_name().prop_map(Request::QueuePurge).boxed(),
        Opcode::QueueStats => arb_queue_name().prop_map(Request::QueueStats).boxed(),
        Opcode::Enqueue => arb_new_job()
            .prop_map(|job| Request::Enqueue(EnqueueRequest { job }))
            .boxed(),
        Opcode::EnqueueBatch => prop::collection::vec(arb_new_job(), 0..4)
            .prop_map(|jobs| Request::EnqueueBatch(EnqueueBatchRequest { jobs }))
            .boxed(),
        Opcode::Fetch => (
            prop::collection::vec(arb_text(), 0..4),
            arb_u32(),
            arb_u32(),
            proptest::option::of(arb_u32()),
            proptest::option::of(arb_u64()),
            prop::collection::vec(arb_u32(), 0..4),
        )
            .prop_map(
                |(queues, max_jobs, wait_ms, lease_ms, worker_id, weights)| {
                    Request::Fetch(FetchRequest {
                        queues,
                        max_jobs,
                        wait_ms,
                        lease_ms,
                        worker_id,
                        weights,
                    })
                },
            )
            .boxed(),
        Opcode::Ack => arb_ack().prop_map(Request::Ack).boxed(),
        Opcode::AckBatch => prop::collection::vec(arb_ack(), 0..4)
            .prop_map(|acks| Request::AckBatch(AckBatchRequest { acks }))
            .boxed(),
        Opcode::Fail => (
            arb_job_id(),
            arb_u64(),
            arb_text(),
            arb_retry(),
            proptest::option::of(arb_text()),
        )
            .prop_map(|(job_id, lease_id, error, retry, error_details)| {
                Request::Fail(FailRequest {
                    job_id,
                    lease_id,
                    error,
                    retry,
                    error_details,
                })
            })
            .boxed(),
        Opcode::Extend => (arb_job_id(), arb_u64(), arb_u32())
            .prop_map(|(job_id, lease_id, lease_ms)| {
                Request::Extend(ExtendRequest {
                    job_id,
                    lease_id,
                    lease_ms,
                })
            })
            .boxed(),
        Opcode::Cancel => arb_job_id()
            .prop_map(|job_id| Request::Cancel(JobRef { job_id }))
            .boxed(),
        Opcode::JobGet => arb_job_id()
            .prop_map(|job_id| Request::JobGet(JobRef { job_id }))
            .boxed(),
        Opcode::JobList => (
            arb_text(),
            proptest::option::of(arb_job_state()),
            proptest::option::of(arb_job_id()),
            arb_u32(),
        )
            .prop_map(|(queue, state, after, limit)| {
                Request::JobList(JobListRequest {
                    queue,
                    state,
                    after,
                    limit,
                })
            })
            .boxed(),
        Opcode::DeadList => (arb_text(), proptest::option::of(arb_job_id()), arb_u32())
            .prop_map(|(queue, after, limit)| {
                Request::DeadList(DeadListRequest {
                    queue,
                    after,
                    limit,
                })
            })
            .boxed(),
        Opcode::DeadRetry => arb_dead_bulk().prop_map(Request::DeadRetry).boxed(),
        Opcode::DeadDiscard => arb_dead_bulk().prop_map(Request::DeadDiscard).boxed(),
        Opcode::OrgCreate
        | Opcode::OrgGet
        | Opcode::OrgList
        | Opcode::OrgUpdate
        | Opcode::OrgDelete
        | Opcode::UserCreate
        | Opcode::UserGet
        | Opcode::UserList
        | Opcode::UserUpdate
        | Opcode::UserDisable
        | Opcode::UserSetPassword
        | Opcode::SubscriptionGet
        | Opcode::SubscriptionSet
        | Opcode::ProjectCreate
        | Opcode::ProjectGet
        | Opcode::ProjectList
        | Opcode::ProjectUpdate
        | Opcode::ProjectDelete
        | Opcode::ApiKeyCreate
        | Opcode::ApiKeyList
        | Opcode::ApiKeyRevoke
        | Opcode::ApiKeyRotate => arb_tenancy_request_for(opcode),
        Opcode::Progress
        | Opcode::Log
        | Opcode::LogTail
        | Opcode::ExecutionList
        | Opcode::JobResults
        | Opcode::WorkerRegister
        | Opcode::Heartbeat
        | Opcode::WorkerList
        | Opcode::WorkerGet
        | Opcode::WorkerQuiet
        | Opcode::WorkerTerminate
        | Opcode::WorkerAssign
        | Opcode::AssignmentList => arb_worker_request_for(opcode),
        Opcode::ScheduleCreate
        | Opcode::ScheduleGet
        | Opcode::ScheduleList
        | Opcode::ScheduleUpdate
        | Opcode::ScheduleDelete
        | Opcode::SchedulePause
        | Opcode::ScheduleResume => schedules::arb_schedule_request_for(opcode),
    }
}

/// Responses of one operation. Exhaustive, so a new opcode must get a strategy.
fn arb_response_for(opcode: Opcode) -> BoxedStrategy<Response> {
    match opcode {
        Opcode::Hello => (
            arb_u16(),
            arb_text(),
            prop::sample::select(vec![
                PrincipalKind::Root,
                PrincipalKind::ApiKey,
                PrincipalKind::User,
            ]),
            arb_u64(),
            prop::array::uniform8(arb_u32()),
            proptest::option::of(arb_u64()),
            proptest::option::of(arb_u64()),
        )
            .prop_map(
                |(
                    protocol_version,
                    server_version,
                    principal_kind,
                    project_id,
                    limits,
                    org_id,
                    user_id,
                )| {
                    Response::Hello(HelloResponse {
                        protocol_version,
                        server_version,
                        principal_kind,
                        project_id,
                        limits: SessionLimits {
                            frame_bytes_max: limits[0],
                            requests_in_flight_max: limits[1],
                            payload_bytes_max: limits[2],
                            result_bytes_max: limits[3],
                            batch_jobs_max: limits[4],
                            fetch_jobs_max: limits[5],
                            fetch_wait_ms_max: limits[6],
                            idle_timeout_ms: limits[7],
                        },
                        org_id,
                        user_id,
                    })
                },
            )
            .boxed(),
        Opcode::Ping => arb_u64()
            .prop_map(|server_time_ms| Response::Ping(Pong { server_time_ms }))
            .boxed(),
        Opcode::Bye => Just(Response::Bye(Empty {})).boxed(),
        Opcode::QueueCreate => arb_queue_info().prop_map(Response::QueueCreate).boxed(),
        Opcode::QueueGet => arb_queue_info().prop_map(Response::QueueGet).boxed(),
        Opcode::QueueList => (
            prop::collection::vec(arb_queue_info(), 0..3),
            proptest::option::of(arb_text()),
        )
            .prop_map(|(queues, next_after)| {
                Response::QueueList(QueueListResponse { queues, next_after })
            })
            .boxed(),
        Opcode::QueueUpdate => arb_queue_info().prop_map(Response::QueueUpdate).boxed(),
        Opcode::QueueDelete => Just(Response::QueueDelete(Empty {})).boxed(),
        Opcode::QueuePause => arb_queue_info().prop_map(Response::QueuePause).boxed(),
        Opcode::QueueResume => arb_queue_info().prop_map(Response::QueueResume).boxed(),
        Opcode::QueuePurge => arb_bulk_response().prop_map(Response::QueuePurge).boxed(),
        Opcode::QueueStats => (
            arb_text(),
            arb_job_counts(),
            any::<bool>(),
            proptest::option::of(arb_u64()),
        )
            .prop_map(|(name, counts, paused, oldest_ready_age_ms)| {
                Response::QueueStats(QueueStats {
                    name,
                    counts,
                    paused,
                    oldest_ready_age_ms,
                })
            })
            .boxed(),
        Opcode::Enqueue => (arb_job_id(), arb_job_state(), any::<bool>())
            .prop_map(|(job_id, state, duplicate)| {
                Response::Enqueue(EnqueueResponse {
                    job_id,
                    state,
                    duplicate,
                })
            })
            .boxed(),
        // The lists are drawn separately: a decoder must not assume they have one length.
        Opcode::EnqueueBatch => (
            prop::collection::vec(arb_job_id(), 0..5),
            prop::collection::vec(any::<bool>(), 0..5),
        )
            .prop_map(|(job_ids, duplicates)| {
                Response::EnqueueBatch(EnqueueBatchResponse {
                    job_ids,
                    duplicates,
                })
            })
            .boxed(),
        Opcode::Fetch => prop::collection::vec(arb_leased_job(), 0..4)
            .prop_map(|jobs| Response::Fetch(FetchResponse { jobs }))
            .boxed(),
        Opcode::Ack => Just(Response::Ack(Empty {})).boxed(),
        Opcode::AckBatch => prop::collection::vec(proptest::option::of(arb_error_body()), 0..4)
            .prop_map(|results| Response::AckBatch(AckBatchResponse { results }))
            .boxed(),
        Opcode::Fail => (arb_job_state(), proptest::option::of(arb_u64()), arb_u32())
            .prop_map(|(state, run_at_ms, attempts)| {
                Response::Fail(FailResponse {
                    state,
                    run_at_ms,
                    attempts,
                })
            })
            .boxed(),
        Opcode::Extend => (arb_u64(), any::<bool>())
            .prop_map(|(lease_deadline_ms, cancel_requested)| {
                Response::Extend(ExtendResponse {
                    lease_deadline_ms,
                    cancel_requested,
                })
            })
            .boxed(),
        Opcode::Cancel => (arb_job_state(), any::<bool>())
            .prop_map(|(state, cancel_requested)| {
                Response::Cancel(CancelResponse {
                    state,
                    cancel_requested,
                })
            })
            .boxed(),
        Opcode::JobGet => arb_job_info().prop_map(Response::JobGet).boxed(),
        Opcode::JobList => arb_job_list_response().prop_map(Response::JobList).boxed(),
        Opcode::DeadList => arb_job_list_response().prop_map(Response::DeadList).boxed(),
        Opcode::DeadRetry => arb_bulk_response().prop_map(Response::DeadRetry).boxed(),
        Opcode::DeadDiscard => arb_bulk_response().prop_map(Response::DeadDiscard).boxed(),
        Opcode::OrgCreate
        | Opcode::OrgGet
        | Opcode::OrgList
        | Opcode::OrgUpdate
        | Opcode::OrgDelete
        | Opcode::UserCreate
        | Opcode::UserGet
        | Opcode::UserList
        | Opcode::UserUpdate
        | Opcode::UserDisable
        | Opcode::UserSetPassword
        | Opcode::SubscriptionGet
        | Opcode::SubscriptionSet
        | Opcode::ProjectCreate
        | Opcode::ProjectGet
        | Opcode::ProjectList
        | Opcode::ProjectUpdate
        | Opcode::ProjectDelete
        | Opcode::ApiKeyCreate
        | Opcode::ApiKeyList
        | Opcode::ApiKeyRevoke
        | Opcode::ApiKeyRotate => arb_tenancy_response_for(opcode),
        Opcode::Progress
        | Opcode::Log
        | Opcode::LogTail
        | Opcode::ExecutionList
        | Opcode::JobResults
        | Opcode::WorkerRegister
        | Opcode::Heartbeat
        | Opcode::WorkerList
        | Opcode::WorkerGet
        | Opcode::WorkerQuiet
        | Opcode::WorkerTerminate
        | Opcode::WorkerAssign
        | Opcode::AssignmentList => arb_worker_response_for(opcode),
        Opcode::ScheduleCreate
        | Opcode::ScheduleGet
        | Opcode::ScheduleList
        | Opcode::ScheduleUpdate
        | Opcode::ScheduleDelete
        | Opcode::SchedulePause
        | Opcode::ScheduleResume => schedules::arb_schedule_response_for(opcode),
    }
}

fn arb_opcode() -> impl Strategy<Value = Opcode> {
    prop::sample::select(Opcode::ALL.to_vec())
}

fn arb_request() -> impl Strategy<Value = Request> {
    arb_opcode().prop_flat_map(arb_request_for)
}

fn arb_response() -> impl Strategy<Value = Response> {
    arb_opcode().prop_flat_map(arb_response_for)
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    (
        prop::sample::select(vec![
            FrameKind::Request,
            FrameKind::Response,
            FrameKind::Error,
            FrameKind::Event,
        ]),
        any::<u16>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(kind, opcode, request_id, body)| Frame {
            kind,
            opcode,
            request_id,
            body: Bytes::from(body),
        })
}

/// Encodes a request as a whole frame and reads it back through the codec.
fn through_frame(kind: FrameKind, opcode: Opcode, body: BytesMut) -> Frame {
    let frame = Frame {
        kind,
        opcode: opcode.number(),
        request_id: 7,
        body: body.freeze(),
    };
    let mut codec = FrameCodec::new(FRAME_BYTES_CEILING);
    let mut wire = BytesMut::new();
    codec
        .encode(frame.clone(), &mut wire)
        .expect("encode the frame");
    let decoded = codec
        .decode(&mut wire)
        .expect("decode the frame")
        .expect("a whole frame");
    assert!(wire.is_empty());
    assert_eq!(decoded, frame);
    decoded
}

/// Applies `(position, byte)` overwrites and a truncation to `bytes`.
fn mangle(mut bytes: Vec<u8>, overwrites: &[(usize, u8)], keep_fraction: f64) -> Vec<u8> {
    if !bytes.is_empty() {
        for (position, byte) in overwrites {
            let index = position % bytes.len();
            bytes[index] = *byte;
        }
    }
    let keep = ((bytes.len() as f64) * keep_fraction) as usize;
    bytes.truncate(keep.min(bytes.len()));
    bytes
}

proptest! {
    #[test]
    fn every_request_round_trips(request in arb_request()) {
        let mut body = BytesMut::new();
        request.encode_body(&mut body);
        let frame = through_frame(FrameKind::Request, request.opcode(), body);
        let decoded = Request::decode(frame.opcode, &frame.body).expect("decode the body");
        prop_assert_eq!(decoded, request);
    }

    #[test]
    fn every_response_round_trips(response in arb_response()) {
        let mut body = BytesMut::new();
        response.encode_body(&mut body);
        let frame = through_frame(FrameKind::Response, response.opcode(), body);
        let decoded = Response::decode(frame.opcode, &frame.body).expect("decode the body");
        prop_assert_eq!(decoded, response);
    }

    #[test]
    fn error_bodies_round_trip(error in arb_error_body(), opcode in arb_opcode()) {
        let mut body = BytesMut::new();
        encode_body(&error, &mut body);
        let frame = through_frame(FrameKind::Error, opcode, body);
        let decoded: ErrorBody = decode_body(frame.opcode, &frame.body).expect("decode the body");
        prop_assert_eq!(decoded, error);
    }

    /// The forward-compatibility rule: bytes appended after a body are ignored.
    #[test]
    fn trailing_bytes_after_a_body_are_ignored(
        request in arb_request(),
        response in arb_response(),
        trailing in prop::collection::vec(any::<u8>(), 1..32),
    ) {
        let mut body = BytesMut::new();
        request.encode_body(&mut body);
        body.extend_from_slice(&trailing);
        prop_assert_eq!(Request::decode(request.opcode().number(), &body).expect("decode"), request);
        let mut body = BytesMut::new();
        response.encode_body(&mut body);
        body.extend_from_slice(&trailing);
        prop_assert_eq!(
            Response::decode(response.opcode().number(), &body).expect("decode"),
            response
        );
    }

    #[test]
    fn frames_split_anywhere_reassemble(
        frames in prop::collection::vec(arb_frame(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut codec = FrameCodec::new(FRAME_BYTES_CEILING);
        let mut wire = BytesMut::new();
        for frame in &frames {
            codec.encode(frame.clone(), &mut wire).expect("encode");
        }
        let wire = wire.freeze();
        let mut positions: Vec<usize> = cuts.iter().map(|cut| cut.index(wire.len() + 1)).collect();
        positions.push(wire.len());
        positions.sort_unstable();
        positions.dedup();

        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        let mut start = 0;
        for end in positions {
            buffer.extend_from_slice(&wire[start..end]);
            start = end;
            while let Some(frame) = codec.decode(&mut buffer).expect("valid frames decode") {
                decoded.push(frame);
            }
        }
        prop_assert!(codec.decode_eof(&mut buffer).expect("no partial frame left").is_none());
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn random_bytes_never_panic_the_frame_codec(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        frame_bytes_max in prop_oneof![0..64u32, any::<u32>()],
    ) {
        let mut codec = FrameCodec::new(frame_bytes_max);
        let mut buffer = BytesMut::from(&bytes[..]);
        // Every successful decode consumes at least the 11-byte header, so this ends.
        while let Ok(Some(frame)) = codec.decode(&mut buffer) {
            prop_assert!(frame.body.len() + 7 <= frame_bytes_max as usize);
        }
        let _ = codec.decode_eof(&mut buffer);
    }

    #[test]
    fn random_bodies_never_panic_the_message_decoders(
        opcode in prop_oneof![arb_opcode().prop_map(Opcode::number), any::<u16>()],
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = Request::decode(opcode, &body);
        let _ = Response::decode(opcode, &body);
        let _ = decode_body::<ErrorBody>(opcode, &body);
    }

    /// Random bytes rarely get past the first field; mangling valid bodies reaches deep into
    /// every type.
    #[test]
    fn mangled_valid_bodies_never_panic_the_decoders(
        request in arb_request(),
        response in arb_response(),
        overwrites in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        keep_fraction in 0.0..=1.0f64,
    ) {
        let mut body = BytesMut::new();
        request.encode_body(&mut body);
        let mangled = mangle(body.to_vec(), &overwrites, keep_fraction);
        let _ = Request::decode(request.opcode().number(), &mangled);

        let mut body = BytesMut::new();
        response.encode_body(&mut body);
        let mangled = mangle(body.to_vec(), &overwrites, keep_fraction);
        let _ = Response::decode(response.opcode().number(), &mangled);
        let _ = decode_body::<ErrorBody>(response.opcode().number(), &mangled);
    }
}
