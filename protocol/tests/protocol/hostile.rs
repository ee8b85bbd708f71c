//! Hostile lengths: a few bytes that claim an enormous container, and a frame header that
//! announces 4 GiB. Both must be refused quickly, without aborting the process and without
//! allocating what the peer claimed.
//!
//! Without the decode byte limit, bincode would try to reserve 2^60 elements and the
//! allocator would abort the whole process (SIGABRT — no panic to catch). A global allocator
//! wrapper records the largest single allocation each thread makes, so the tests check the
//! "without allocating" part directly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use taskforge_protocol::frame::{write_frame_header, HEADER_BYTES};
use taskforge_protocol::limits::{FRAME_BYTES_CEILING, HANDSHAKE_FRAME_BYTES_MAX};
use taskforge_protocol::*;
use tokio_util::codec::Decoder;

/// Delegates to the system allocator and records, per thread, the largest allocation made.
struct LargestAllocation;

thread_local! {
    static LARGEST_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with` because the allocator also runs while thread-locals are torn down.
    let _ = LARGEST_BYTES.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to `System`; recording touches only a
// thread-local `Cell` with const initialisation, which never allocates.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        System.realloc(pointer, layout, new_size)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        System.dealloc(pointer, layout)
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// The largest single allocation `work` makes on this thread, and its result.
fn largest_allocation<T>(work: impl FnOnce() -> T) -> (usize, T) {
    LARGEST_BYTES.with(|largest| largest.set(0));
    let result = work();
    (LARGEST_BYTES.with(Cell::get), result)
}

/// A generous bound: decoding a few dozen hostile bytes needs a few small buffers at most.
const HOSTILE_ALLOCATION_BYTES_MAX: usize = 64 * 1024;

/// `standard()` varint for a u64 of at least 2^32: `fd` then eight bytes little-endian.
fn varint_u64(value: u64) -> Vec<u8> {
    let mut bytes = vec![0xfd];
    bytes.extend_from_slice(&value.to_le_bytes());
    bytes
}

fn string(text: &str) -> Vec<u8> {
    let mut bytes = vec![u8::try_from(text.len()).expect("short test strings")];
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

const CLAIM_ELEMENTS: u64 = 1 << 60;

/// Request bodies whose first (or an inner) length claims 2^60 elements or bytes.
fn hostile_requests() -> Vec<(&'static str, Opcode, Vec<u8>)> {
    let huge = varint_u64(CLAIM_ELEMENTS);
    let job_id = [7u8; 16];
    vec![
        ("ENQUEUE_BATCH jobs", Opcode::EnqueueBatch, huge.clone()),
        ("FETCH queues", Opcode::Fetch, huge.clone()),
        ("ACK_BATCH acks", Opcode::AckBatch, huge.clone()),
        ("QUEUE_GET name", Opcode::QueueGet, huge.clone()),
        ("ENQUEUE queue name", Opcode::Enqueue, huge.clone()),
        (
            "ENQUEUE payload",
            Opcode::Enqueue,
            [string("emails"), huge.clone()].concat(),
        ),
        (
            "ENQUEUE metadata",
            // queue, empty payload, six `None` options, then the metadata count.
            Opcode::Enqueue,
            [string("emails"), vec![0, 0, 0, 0, 0, 0, 0], huge.clone()].concat(),
        ),
        (
            "DEAD_RETRY job ids",
            Opcode::DeadRetry,
            [string("emails"), varint_u64(u64::MAX)].concat(),
        ),
        (
            "ACK result",
            Opcode::Ack,
            [job_id.to_vec(), vec![1], vec![1], huge.clone()].concat(),
        ),
        (
            "FETCH weights",
            // no queues, max_jobs, wait_ms, `None` lease, `None` worker, then the count.
            Opcode::Fetch,
            [vec![0, 1, 0, 0, 0], huge.clone()].concat(),
        ),
        (
            "LOG lines",
            Opcode::Log,
            [job_id.to_vec(), vec![1], huge.clone()].concat(),
        ),
        ("WORKER_REGISTER name", Opcode::WorkerRegister, huge.clone()),
        (
            "WORKER_REGISTER labels",
            // name, hostname, pid, version, then the label count.
            Opcode::WorkerRegister,
            [string("w"), string(""), vec![1], string(""), huge.clone()].concat(),
        ),
        (
            "WORKER_ASSIGN queues",
            Opcode::WorkerAssign,
            [vec![7], huge.clone()].concat(),
        ),
    ]
}

/// Response bodies a hostile or broken server could send a client.
fn hostile_responses() -> Vec<(&'static str, Opcode, Vec<u8>)> {
    let huge = varint_u64(CLAIM_ELEMENTS);
    vec![
        ("FETCH jobs", Opcode::Fetch, huge.clone()),
        ("QUEUE_LIST queues", Opcode::QueueList, huge.clone()),
        ("ACK_BATCH results", Opcode::AckBatch, huge.clone()),
        ("ENQUEUE_BATCH job ids", Opcode::EnqueueBatch, huge.clone()),
        ("JOB_LIST jobs", Opcode::JobList, huge.clone()),
        (
            "LOG_TAIL lines",
            Opcode::LogTail,
            [vec![2], huge.clone()].concat(),
        ),
        (
            "EXECUTION_LIST executions",
            Opcode::ExecutionList,
            huge.clone(),
        ),
        ("WORKER_LIST workers", Opcode::WorkerList, huge.clone()),
        (
            "ASSIGNMENT_LIST assignments",
            Opcode::AssignmentList,
            huge.clone(),
        ),
        (
            "HEARTBEAT cancelled jobs",
            // Run, interval, version, `None` assignments, then the count.
            Opcode::Heartbeat,
            [vec![0, 1, 1, 0], huge].concat(),
        ),
    ]
}

fn assert_refused_cheaply(label: &str, decode: impl FnOnce() -> bool) {
    let started = Instant::now();
    let (largest_bytes, refused) = largest_allocation(decode);
    let elapsed = started.elapsed();
    assert!(refused, "{label}: a body claiming 2^60 elements decoded");
    assert!(
        largest_bytes <= HOSTILE_ALLOCATION_BYTES_MAX,
        "{label}: decoding allocated {largest_bytes} bytes at once"
    );
    assert!(
        elapsed < Duration::from_millis(100),
        "{label}: took {elapsed:?}"
    );
}

#[test]
fn bodies_claiming_two_to_the_sixty_elements_are_refused_without_allocating() {
    for (label, opcode, body) in hostile_requests() {
        assert_refused_cheaply(label, || {
            matches!(
                Request::decode(opcode.number(), &body),
                Err(MessageError::Malformed { .. })
            )
        });
    }
    for (label, opcode, body) in hostile_responses() {
        assert_refused_cheaply(label, || {
            matches!(
                Response::decode(opcode.number(), &body),
                Err(MessageError::Malformed { .. })
            )
        });
    }
    let error_body = [vec![10], varint_u64(CLAIM_ELEMENTS)].concat();
    assert_refused_cheaply("error message", || {
        decode_body::<ErrorBody>(0, &error_body).is_err()
    });
}

#[test]
fn a_hostile_batch_in_a_complete_frame_is_refused() {
    // The whole frame is 20 bytes: well under the handshake limit, so the frame codec alone
    // cannot stop it; the body decoder's byte limit must.
    let body = varint_u64(CLAIM_ELEMENTS);
    let mut wire = BytesMut::new();
    write_frame_header(
        FrameKind::Request,
        Opcode::EnqueueBatch.number(),
        9,
        body.len(),
        &mut wire,
    )
    .expect("header");
    wire.extend_from_slice(&body);
    assert_eq!(wire.len(), HEADER_BYTES + 9);
    let mut codec = FrameCodec::new(HANDSHAKE_FRAME_BYTES_MAX);
    let frame = codec
        .decode(&mut wire)
        .expect("a valid frame")
        .expect("a whole frame");
    assert_refused_cheaply("framed ENQUEUE_BATCH", || {
        Request::decode(frame.opcode, &frame.body).is_err()
    });
}

#[test]
fn a_byte_vector_just_over_the_ceiling_is_refused() {
    // The decode limit is FRAME_BYTES_CEILING: one byte more than that is refused before
    // anything is allocated for it.
    let claim = u64::from(FRAME_BYTES_CEILING) + 1;
    let mut body = string("emails");
    body.push(0xfc);
    body.extend_from_slice(&u32::try_from(claim).expect("fits in u32").to_le_bytes());
    assert_refused_cheaply("payload of ceiling + 1 bytes", || {
        Request::decode(Opcode::Enqueue.number(), &body).is_err()
    });
}

#[test]
fn a_frame_announcing_four_gibibytes_is_refused_before_buffering() {
    let mut codec = FrameCodec::new(FRAME_BYTES_CEILING);
    let mut wire = BytesMut::new();
    wire.put_u32(u32::MAX);
    let (largest_bytes, outcome) = largest_allocation(|| codec.decode(&mut wire));
    match outcome {
        Err(FrameError::TooLarge {
            announced_bytes,
            max_bytes,
        }) => {
            assert_eq!(announced_bytes, u64::from(u32::MAX));
            assert_eq!(max_bytes, FRAME_BYTES_CEILING);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(
        largest_bytes <= HOSTILE_ALLOCATION_BYTES_MAX,
        "allocated {largest_bytes} bytes"
    );
    assert!(
        wire.capacity() < 1024,
        "the codec reserved the announced size"
    );
}

#[test]
fn a_frame_at_the_limit_is_not_reserved_in_advance() {
    // A legal announcement is still not trusted: the buffer grows only with bytes that arrive.
    let mut codec = FrameCodec::new(FRAME_BYTES_CEILING);
    let mut wire = BytesMut::new();
    write_frame_header(
        FrameKind::Request,
        Opcode::Enqueue.number(),
        1,
        0,
        &mut wire,
    )
    .expect("header");
    wire[..4].copy_from_slice(&FRAME_BYTES_CEILING.to_be_bytes());
    let (largest_bytes, outcome) = largest_allocation(|| codec.decode(&mut wire));
    assert!(
        matches!(outcome, Ok(None)),
        "waits for the body: {outcome:?}"
    );
    assert!(
        largest_bytes <= HOSTILE_ALLOCATION_BYTES_MAX,
        "allocated {largest_bytes} bytes"
    );
    assert!(
        wire.capacity() < 1024,
        "the codec reserved the announced size"
    );
}

#[test]
fn handshake_limit_refuses_a_frame_one_byte_over() {
    let mut codec = FrameCodec::new(HANDSHAKE_FRAME_BYTES_MAX);
    let mut wire = BytesMut::new();
    wire.put_u32(HANDSHAKE_FRAME_BYTES_MAX + 1);
    assert!(matches!(
        codec.decode(&mut wire),
        Err(FrameError::TooLarge { .. })
    ));
    let mut wire = BytesMut::new();
    wire.put_u32(HANDSHAKE_FRAME_BYTES_MAX);
    assert!(matches!(codec.decode(&mut wire), Ok(None)));
}

#[test]
fn a_tiny_body_claiming_sixty_mebibytes_allocates_kilobytes() {
    // A HELLO (allowed before authentication) whose client name claims 60 MiB: the decode
    // limit follows the body's size, so this costs at most the 4 KiB size class.
    let mut body = varint_u64(1);
    body.extend(varint_u64(60 * 1024 * 1024));
    let (largest_bytes, refused) =
        largest_allocation(|| Request::decode(Opcode::Hello.number(), &body).is_err());
    assert!(refused);
    assert!(
        largest_bytes <= 4 * 1024,
        "allocated {largest_bytes} bytes for a {}-byte body",
        body.len()
    );
}
