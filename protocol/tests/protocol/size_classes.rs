//! Valid bodies must fit the decode byte limit. The limit follows the body's length
//! (`decode_body`), but bincode counts in-memory sizes against it, and a list claims
//! `count × size_of::<T>()` before its first item: a short body of many small items is the
//! case that a limit too tight for it refuses. Before `DECODE_CLAIM_BYTES_PER_BODY_BYTE_MAX`,
//! an ACK_BATCH of 100 acks (1801 bytes) was refused as malformed.

use std::mem::size_of;

use bytes::BytesMut;
use taskforge_protocol::limits::{
    ACK_BATCH_MAX, BATCH_JOBS_MAX_DEFAULT, FETCH_JOBS_MAX, FETCH_QUEUES_MAX, LIST_LIMIT_MAX,
    LOG_LINES_PER_REQUEST_MAX, LOG_TAIL_LINES_MAX, PARENTS_PER_JOB_MAX,
};
use taskforge_protocol::*;

fn assert_request_round_trips(request: Request) {
    let mut body = BytesMut::new();
    request.encode_body(&mut body);
    match Request::decode(request.opcode().number(), &body) {
        Ok(decoded) => assert!(decoded == request, "{} changed", request.opcode().name()),
        Err(error) => panic!("{}-byte body refused: {error}", body.len()),
    }
}

fn assert_response_round_trips(response: Response) {
    let mut body = BytesMut::new();
    response.encode_body(&mut body);
    match Response::decode(response.opcode().number(), &body) {
        Ok(decoded) => assert!(decoded == response, "{} changed", response.opcode().name()),
        Err(error) => panic!("{}-byte body refused: {error}", body.len()),
    }
}

/// The shortest encoding of one item of every list in the protocol, next to its size in
/// memory: the ratio is what that list claims per body byte.
#[test]
fn every_list_item_claims_at_most_the_factor_per_body_byte() {
    let items: [(&str, usize, usize); 19] = [
        // queue "", payload [], six `None` options, no metadata, no parents, `Cancel`,
        // three `None` options.
        ("NewJob", size_of::<NewJob>(), 14),
        // job id, lease id, `None` result.
        ("AckRequest", size_of::<AckRequest>(), 18),
        ("Option<ErrorBody>", size_of::<Option<ErrorBody>>(), 1),
        // job id, then nine one-byte fields.
        ("LeasedJob", size_of::<LeasedJob>(), 25),
        // name "", defaults (10 bytes), paused, created_at, eight counts.
        ("QueueInfo", size_of::<QueueInfo>(), 21),
        // job id, then nine one-byte fields.
        ("JobSummary", size_of::<JobSummary>(), 25),
        ("JobId", size_of::<JobId>(), 16),
        ("String", size_of::<String>(), 1),
        ("(String, String)", size_of::<(String, String)>(), 2),
        // FETCH weights.
        ("u32", size_of::<u32>(), 1),
        // queue "", weight, active.
        ("QueueAssignment", size_of::<QueueAssignment>(), 3),
        // seven one-byte fields.
        ("Assignment", size_of::<Assignment>(), 7),
        // fifteen one-byte fields (empty strings and lists, `None` deadline).
        ("WorkerInfo", size_of::<WorkerInfo>(), 15),
        // eleven one-byte fields (`None` options).
        ("ExecutionInfo", size_of::<ExecutionInfo>(), 11),
        // level, message "", no fields.
        ("NewLogLine", size_of::<NewLogLine>(), 3),
        // seq, at_ms, level, message "", no fields.
        ("LogLine", size_of::<LogLine>(), 5),
        // job id, state, `None` result.
        ("JobResult", size_of::<JobResult>(), 18),
        // `Batch(0)`: variant index and a one-byte index.
        ("ParentRef", size_of::<ParentRef>(), 2),
        // ENQUEUE_BATCH `duplicates`.
        ("bool", size_of::<bool>(), 1),
    ];
    for (name, memory_bytes, wire_bytes_min) in items {
        assert!(
            memory_bytes <= wire_bytes_min * DECODE_CLAIM_BYTES_PER_BODY_BYTE_MAX,
            "{name}: {memory_bytes} bytes in memory for {wire_bytes_min} on the wire"
        );
    }
}

#[test]
fn a_full_enqueue_batch_of_small_jobs_decodes() {
    let job = |index: usize| NewJob {
        queue: "q".to_string(),
        payload: vec![u8::try_from(index % 251).expect("below 251")],
        ..NewJob::default()
    };
    for jobs in [10, 100, BATCH_JOBS_MAX_DEFAULT as usize] {
        assert_request_round_trips(Request::EnqueueBatch(EnqueueBatchRequest {
            jobs: (0..jobs).map(job).collect(),
        }));
    }
}

#[test]
fn a_full_batch_of_children_with_the_most_parents_decodes() {
    // Every job after the first hundred names the hundred jobs before it, by batch index:
    // the most parent references a batch of the default size can carry. Its reply lists an
    // id and a duplicate flag per job.
    let job = |index: usize| NewJob {
        queue: "q".to_string(),
        depends_on: (index.saturating_sub(PARENTS_PER_JOB_MAX)..index)
            .map(|parent| ParentRef::Batch(u32::try_from(parent).expect("a small index")))
            .collect(),
        ..NewJob::default()
    };
    let jobs = BATCH_JOBS_MAX_DEFAULT as usize;
    assert_request_round_trips(Request::EnqueueBatch(EnqueueBatchRequest {
        jobs: (0..jobs).map(job).collect(),
    }));
    assert_response_round_trips(Response::EnqueueBatch(EnqueueBatchResponse {
        job_ids: vec![JobId([6; 16]); jobs],
        duplicates: vec![false; jobs],
    }));
    let parent = NewJob {
        queue: "q".to_string(),
        depends_on: vec![ParentRef::Job(JobId([7; 16])); PARENTS_PER_JOB_MAX],
        ..NewJob::default()
    };
    assert_request_round_trips(Request::Enqueue(EnqueueRequest { job: parent }));
}

#[test]
fn a_full_ack_batch_and_its_all_success_reply_decode() {
    let ack = |index: usize| AckRequest {
        job_id: JobId([1; 16]),
        lease_id: index as u64,
        result: None,
    };
    for acks in [10, 100, ACK_BATCH_MAX] {
        assert_request_round_trips(Request::AckBatch(AckBatchRequest {
            acks: (0..acks).map(ack).collect(),
        }));
        assert_response_round_trips(Response::AckBatch(AckBatchResponse {
            results: vec![None; acks],
        }));
    }
}

#[test]
fn a_full_fetch_reply_of_small_jobs_decodes() {
    let job = |index: u64| LeasedJob {
        job_id: JobId([2; 16]),
        lease_id: index,
        queue: "q".to_string(),
        payload: Vec::new(),
        attempt: 1,
        max_attempts: 1,
        priority: 0,
        lease_deadline_ms: 0,
        created_at_ms: 0,
        metadata: Vec::new(),
    };
    for jobs in [10, 100, u64::from(FETCH_JOBS_MAX)] {
        assert_response_round_trips(Response::Fetch(FetchResponse {
            jobs: (0..jobs).map(job).collect(),
        }));
    }
}

#[test]
fn long_lists_of_names_and_metadata_decode() {
    assert_request_round_trips(Request::Fetch(FetchRequest {
        queues: vec![String::new(); 64],
        max_jobs: 1,
        wait_ms: 0,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    }));
    assert_request_round_trips(Request::Enqueue(EnqueueRequest {
        job: NewJob {
            queue: "q".to_string(),
            metadata: vec![(String::new(), String::new()); 64],
            ..NewJob::default()
        },
    }));
    assert_request_round_trips(Request::DeadRetry(DeadBulkRequest {
        queue: "q".to_string(),
        job_ids: vec![JobId([3; 16]); 10_000],
    }));
}

#[test]
fn worker_and_execution_lists_at_their_limits_decode() {
    assert_request_round_trips(Request::Fetch(FetchRequest {
        queues: vec![String::new(); FETCH_QUEUES_MAX],
        max_jobs: 1,
        wait_ms: 0,
        lease_ms: None,
        worker_id: Some(1),
        weights: vec![1; FETCH_QUEUES_MAX],
    }));
    let queues = vec![
        QueueAssignment {
            queue: String::new(),
            weight: 1,
            active: true,
        };
        FETCH_QUEUES_MAX
    ];
    assert_request_round_trips(Request::WorkerAssign(WorkerAssign {
        worker_id: 1,
        queues: queues.clone(),
    }));
    assert_response_round_trips(Response::Heartbeat(HeartbeatResponse {
        command: WorkerCommand::Run,
        heartbeat_interval_ms: 1,
        assignments_version: 1,
        assignments: Some(queues),
        cancelled_jobs: vec![JobId([4; 16]); 1_000],
    }));
    let line = NewLogLine {
        level: LogLevel::Info,
        message: String::new(),
        fields: Vec::new(),
    };
    assert_request_round_trips(Request::Log(LogRequest {
        job_id: JobId([5; 16]),
        lease_id: 1,
        lines: vec![line; LOG_LINES_PER_REQUEST_MAX],
    }));
    let stored = LogLine {
        seq: 1,
        at_ms: 0,
        level: LogLevel::Trace,
        message: String::new(),
        fields: Vec::new(),
    };
    assert_response_round_trips(Response::LogTail(LogTail {
        execution: 1,
        lines: vec![stored; LOG_TAIL_LINES_MAX as usize],
        next_after: 1,
        open: true,
    }));
    let execution = ExecutionInfo {
        execution: 1,
        attempt: 1,
        worker_id: None,
        lease_id: 1,
        leased_at_ms: 0,
        lease_deadline_ms: 0,
        finished_at_ms: None,
        outcome: None,
        error: None,
        error_details: None,
        duration_ms: None,
    };
    assert_response_round_trips(Response::ExecutionList(ExecutionList {
        executions: vec![execution; LIST_LIMIT_MAX as usize],
        next_after: None,
    }));
    let worker = WorkerInfo {
        worker_id: 1,
        name: String::new(),
        hostname: String::new(),
        pid: 0,
        version: String::new(),
        labels: Vec::new(),
        concurrency: 1,
        state: WorkerState::Active,
        registered_at_ms: 0,
        last_heartbeat_at_ms: 0,
        in_flight: 0,
        leased_jobs: 0,
        terminate_deadline_ms: None,
        assignments_version: 1,
        assignments: Vec::new(),
    };
    assert_response_round_trips(Response::WorkerList(WorkerList {
        workers: vec![worker; LIST_LIMIT_MAX as usize],
        next_after: None,
    }));
    let assignment = Assignment {
        worker_id: 1,
        worker_name: String::new(),
        queue: String::new(),
        weight: 1,
        position: 0,
        active: true,
        since_ms: 0,
    };
    assert_response_round_trips(Response::AssignmentList(AssignmentList {
        assignments: vec![assignment; LIST_LIMIT_MAX as usize],
        next_after: None,
    }));
}
