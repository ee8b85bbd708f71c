//! A fake broker for the worker runtime's tests: serves WORKER_REGISTER, HEARTBEAT, FETCH
//! (long-polling), ACK, FAIL, EXTEND, LOG and PROGRESS from a shared, scriptable state, and
//! records every request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taskforge_protocol::{
    Assignment, Empty, ErrorBody, ErrorCode, ExtendResponse, FailRequest, FailResponse,
    FetchRequest, FetchResponse, Heartbeat, HeartbeatResponse, JobId, JobState, LeaseId, LeasedJob,
    LogResponse, NewLogLine, QueueAssignment, Request, Response, WorkerCommand, WorkerId,
    WorkerInfo, WorkerRegister, WorkerState,
};
use tokio::time::Instant;

use crate::client::fake_server::FakeServer;

/// Heartbeat interval the fake asks for, so the tests run fast.
pub(super) const FAKE_HEARTBEAT_INTERVAL_MS: u32 = 50;

/// What the fake broker knows, and what the worker told it.
pub(super) struct BrokerState {
    pub(super) ready: VecDeque<LeasedJob>,
    pub(super) leased: HashMap<JobId, LeaseId>,
    pub(super) cancel_requested: HashSet<JobId>,
    pub(super) acked: Vec<(JobId, Option<Vec<u8>>)>,
    pub(super) failed: Vec<FailRequest>,
    pub(super) extends: usize,
    pub(super) fetches: Vec<FetchRequest>,
    pub(super) next_lease_id: LeaseId,
    /// Drop the connection instead of answering the next ACK (a broker crash).
    pub(super) crash_on_next_ack: bool,
    /// Answer FETCH with this error.
    pub(super) fetch_error: Option<ErrorBody>,
    /// Answer the next FETCH NOT_FOUND once (a worker the broker had lost).
    pub(super) fetch_not_found_once: bool,
    /// Every WORKER_REGISTER.
    pub(super) registrations: Vec<WorkerRegister>,
    /// Every HEARTBEAT.
    pub(super) heartbeats: Vec<Heartbeat>,
    /// The registered worker, while the fake knows it.
    pub(super) worker_id: Option<WorkerId>,
    /// Ids handed out so far.
    pub(super) workers_registered: WorkerId,
    /// The order heartbeats carry.
    pub(super) command: WorkerCommand,
    /// The current assignments and their version.
    pub(super) assignments: Vec<QueueAssignment>,
    pub(super) assignments_version: u64,
    /// Jobs the next heartbeat reports as cancelled.
    pub(super) cancelled_by_heartbeat: Vec<JobId>,
    /// Answer the next heartbeat NOT_FOUND and forget the worker.
    pub(super) forget_worker: bool,
    /// Lines one job may log (the execution cap); more get QUOTA_EXCEEDED.
    pub(super) log_lines_max: usize,
    /// Every LOG that was stored.
    pub(super) logs: Vec<(JobId, Vec<NewLogLine>)>,
    /// LOG requests refused with QUOTA_EXCEEDED.
    pub(super) log_refusals: usize,
    /// Every PROGRESS.
    pub(super) progress: Vec<(JobId, u8, String)>,
    /// Operation names in arrival order ("LOG", "ACK", ...), for ordering checks.
    pub(super) events: Vec<&'static str>,
}

impl Default for BrokerState {
    fn default() -> BrokerState {
        BrokerState {
            ready: VecDeque::new(),
            leased: HashMap::new(),
            cancel_requested: HashSet::new(),
            acked: Vec::new(),
            failed: Vec::new(),
            extends: 0,
            fetches: Vec::new(),
            next_lease_id: 0,
            crash_on_next_ack: false,
            fetch_error: None,
            fetch_not_found_once: false,
            registrations: Vec::new(),
            heartbeats: Vec::new(),
            worker_id: None,
            workers_registered: 0,
            command: WorkerCommand::Run,
            assignments: Vec::new(),
            assignments_version: 0,
            cancelled_by_heartbeat: Vec::new(),
            forget_worker: false,
            log_lines_max: usize::MAX,
            logs: Vec::new(),
            log_refusals: 0,
            progress: Vec::new(),
            events: Vec::new(),
        }
    }
}

pub(super) type SharedState = Arc<Mutex<BrokerState>>;

/// A job in `queue` with this payload.
pub(super) fn job_in(queue: &str, index: usize, payload: &str) -> LeasedJob {
    let mut id = [0u8; 16];
    id[15] = u8::try_from(index).expect("few jobs");
    LeasedJob {
        job_id: JobId(id),
        lease_id: 0,
        queue: queue.to_string(),
        payload: payload.as_bytes().to_vec(),
        attempt: 1,
        max_attempts: 3,
        priority: 0,
        lease_deadline_ms: 0,
        created_at_ms: 1_700_000_000_000,
        metadata: Vec::new(),
    }
}

/// A state with these jobs ready in the `emails` queue.
pub(super) fn state_with_jobs(payloads: &[&str]) -> SharedState {
    let mut state = BrokerState::default();
    for (index, payload) in payloads.iter().enumerate() {
        state.ready.push_back(job_in("emails", index, payload));
    }
    Arc::new(Mutex::new(state))
}

pub(super) fn lock(state: &SharedState) -> std::sync::MutexGuard<'_, BrokerState> {
    state.lock().expect("broker state lock")
}

/// Leases up to `max_jobs` ready jobs of `queues`, unless the worker may not fetch.
fn lease_jobs(state: &SharedState, queues: &[String], max_jobs: u32) -> Vec<LeasedJob> {
    let mut state = lock(state);
    if state.command != WorkerCommand::Run {
        return Vec::new();
    }
    let mut jobs = Vec::new();
    while jobs.len() < max_jobs as usize {
        let Some(position) = state
            .ready
            .iter()
            .position(|job| queues.contains(&job.queue))
        else {
            break;
        };
        let Some(mut job) = state.ready.remove(position) else {
            break;
        };
        state.next_lease_id += 1;
        job.lease_id = state.next_lease_id;
        state.leased.insert(job.job_id, job.lease_id);
        jobs.push(job);
    }
    jobs
}

/// True when `lease_id` is the job's live lease (leased and not cancelled).
fn holds_lease(state: &BrokerState, job_id: JobId, lease_id: LeaseId) -> bool {
    state.leased.get(&job_id) == Some(&lease_id) && !state.cancel_requested.contains(&job_id)
}

fn lease_lost() -> ErrorBody {
    ErrorBody::new(ErrorCode::LeaseLost, "not the current lease")
}

fn not_found(what: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, what)
}

fn worker_info(state: &BrokerState, request: &WorkerRegister, worker_id: WorkerId) -> WorkerInfo {
    WorkerInfo {
        worker_id,
        name: request.name.clone(),
        hostname: request.hostname.clone(),
        pid: request.pid,
        version: request.version.clone(),
        labels: request.labels.clone(),
        concurrency: request.concurrency,
        state: WorkerState::Active,
        registered_at_ms: 0,
        last_heartbeat_at_ms: 0,
        in_flight: 0,
        leased_jobs: 0,
        terminate_deadline_ms: None,
        assignments_version: state.assignments_version,
        assignments: state
            .assignments
            .iter()
            .enumerate()
            .map(|(position, assignment)| Assignment {
                worker_id,
                worker_name: request.name.clone(),
                queue: assignment.queue.clone(),
                weight: assignment.weight,
                position: u32::try_from(position).expect("few queues"),
                active: assignment.active,
                since_ms: 0,
            })
            .collect(),
    }
}

/// Answers a request that is not FETCH; `None` to drop the connection.
fn answer(state: &SharedState, request: Request) -> Option<Result<Response, ErrorBody>> {
    let mut state = lock(state);
    let answer = match request {
        Request::WorkerRegister(register) => {
            state.events.push("WORKER_REGISTER");
            state.workers_registered += 1;
            let worker_id = state.workers_registered;
            state.worker_id = Some(worker_id);
            state.assignments = register.queues.clone();
            state.assignments_version = 1;
            state.command = WorkerCommand::Run;
            let info = worker_info(&state, &register, worker_id);
            state.registrations.push(register);
            Ok(Response::WorkerRegister(info))
        }
        Request::Heartbeat(heartbeat) => {
            state.events.push("HEARTBEAT");
            state.heartbeats.push(heartbeat.clone());
            if state.forget_worker || state.worker_id != Some(heartbeat.worker_id) {
                state.forget_worker = false;
                state.worker_id = None;
                Err(not_found("no such worker"))
            } else if heartbeat.leaving {
                state.worker_id = None;
                Ok(Response::Heartbeat(HeartbeatResponse {
                    command: state.command,
                    heartbeat_interval_ms: FAKE_HEARTBEAT_INTERVAL_MS,
                    assignments_version: state.assignments_version,
                    assignments: None,
                    cancelled_jobs: Vec::new(),
                }))
            } else {
                let assignments = (heartbeat.assignments_version != state.assignments_version)
                    .then(|| state.assignments.clone());
                let cancelled_jobs = std::mem::take(&mut state.cancelled_by_heartbeat);
                Ok(Response::Heartbeat(HeartbeatResponse {
                    command: state.command,
                    heartbeat_interval_ms: FAKE_HEARTBEAT_INTERVAL_MS,
                    assignments_version: state.assignments_version,
                    assignments,
                    cancelled_jobs,
                }))
            }
        }
        Request::Ack(ack) => {
            state.events.push("ACK");
            if state.crash_on_next_ack {
                state.crash_on_next_ack = false;
                // Dropping the connection mid-request is the broker dying.
                return None;
            }
            if holds_lease(&state, ack.job_id, ack.lease_id) {
                state.leased.remove(&ack.job_id);
                state.acked.push((ack.job_id, ack.result));
                Ok(Response::Ack(Empty {}))
            } else {
                Err(lease_lost())
            }
        }
        Request::Fail(fail) => {
            state.events.push("FAIL");
            if holds_lease(&state, fail.job_id, fail.lease_id) {
                state.leased.remove(&fail.job_id);
                state.failed.push(fail);
                Ok(Response::Fail(FailResponse {
                    state: JobState::Dead,
                    run_at_ms: None,
                    attempts: 1,
                }))
            } else {
                Err(lease_lost())
            }
        }
        Request::Extend(extend) => {
            if state.leased.get(&extend.job_id) == Some(&extend.lease_id) {
                state.extends += 1;
                Ok(Response::Extend(ExtendResponse {
                    lease_deadline_ms: 0,
                    cancel_requested: state.cancel_requested.contains(&extend.job_id),
                }))
            } else {
                Err(lease_lost())
            }
        }
        Request::Log(log) => {
            state.events.push("LOG");
            if !holds_lease(&state, log.job_id, log.lease_id) {
                Err(lease_lost())
            } else {
                let stored: usize = state
                    .logs
                    .iter()
                    .filter(|(job_id, _)| *job_id == log.job_id)
                    .map(|(_, lines)| lines.len())
                    .sum();
                if stored + log.lines.len() > state.log_lines_max {
                    state.log_refusals += 1;
                    Err(ErrorBody::new(
                        ErrorCode::QuotaExceeded,
                        "too many log lines",
                    ))
                } else {
                    let first_seq = u32::try_from(stored + 1).expect("few lines");
                    state.logs.push((log.job_id, log.lines));
                    Ok(Response::Log(LogResponse {
                        execution: 1,
                        first_seq,
                    }))
                }
            }
        }
        Request::Progress(progress) => {
            state.events.push("PROGRESS");
            if holds_lease(&state, progress.job_id, progress.lease_id) {
                state
                    .progress
                    .push((progress.job_id, progress.percent, progress.message));
                Ok(Response::Progress(Empty {}))
            } else {
                Err(lease_lost())
            }
        }
        other => panic!("the worker sent an unexpected {other:?}"),
    };
    Some(answer)
}

/// A broker that serves the worker from `state`.
pub(super) async fn fake_broker(state: SharedState) -> FakeServer {
    FakeServer::start(move |mut connection| {
        let state = Arc::clone(&state);
        async move {
            while let Some((request_id, request)) = connection.recv().await {
                if connection.answer_session_request(request_id, &request) {
                    continue;
                }
                let opcode = request.opcode().number();
                if let Request::Fetch(fetch) = request {
                    let refusal = {
                        let mut state = lock(&state);
                        state.events.push("FETCH");
                        state.fetches.push(fetch.clone());
                        if let Some(error) = state.fetch_error.clone() {
                            Some(error)
                        } else if state.fetch_not_found_once {
                            state.fetch_not_found_once = false;
                            Some(not_found("worker not active"))
                        } else if fetch.worker_id.is_none() || fetch.worker_id != state.worker_id {
                            Some(not_found("no such worker"))
                        } else if state.command != WorkerCommand::Run {
                            Some(ErrorBody::new(
                                ErrorCode::Conflict,
                                "worker is quiet: stop fetching",
                            ))
                        } else {
                            None
                        }
                    };
                    if let Some(error) = refusal {
                        connection.error(request_id, opcode, error);
                        continue;
                    }
                    let replier = connection.replier();
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let wait = Duration::from_millis(u64::from(fetch.wait_ms));
                        let deadline = Instant::now() + wait;
                        loop {
                            let jobs = lease_jobs(&state, &fetch.queues, fetch.max_jobs);
                            if !jobs.is_empty() || Instant::now() >= deadline {
                                replier
                                    .respond(request_id, Response::Fetch(FetchResponse { jobs }));
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    });
                    continue;
                }
                match answer(&state, request) {
                    None => return,
                    Some(Ok(response)) => connection.respond(request_id, response),
                    Some(Err(error)) => connection.error(request_id, opcode, error),
                }
            }
        }
    })
    .await
}
