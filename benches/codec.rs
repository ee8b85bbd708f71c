//! Codec benchmarks: encoding and decoding whole frames (header and body) by size.
//!
//! Cases follow the traffic a broker sees most: ENQUEUE requests with payloads of 16 B,
//! 128 B, 4 KiB and 64 KiB, an ENQUEUE_BATCH of 100 jobs, and a FETCH response carrying 32
//! leased jobs. Throughput is reported in bytes of frame per second; divide by the frame
//! size (printed as the benchmark's input size) for frames per second.
//!
//! - `encode`: the body into a reused scratch buffer, then header and body into a reused
//!   output buffer — what a writer task does per frame.
//! - `decode`: [`FrameCodec::decode`] on a buffer holding exactly one frame, then the body
//!   decoder for its kind — what a reader task does per frame. Filling the buffer is not
//!   timed.
//!
//! Run: `cargo bench --bench codec` (add `-- --warm-up-time 1 --measurement-time 2` for a
//! quick look).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use taskforge_protocol::frame::write_frame_header;
use taskforge_protocol::limits::FRAME_BYTES_CEILING;
use taskforge_protocol::{
    EnqueueBatchRequest, EnqueueRequest, FetchResponse, FrameCodec, FrameKind, JobId, LeasedJob,
    NewJob, Request, Response,
};
use tokio_util::codec::Decoder;

/// A message to put in a frame: a request (kind 0) or a success response (kind 1).
enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    fn kind(&self) -> FrameKind {
        match self {
            Message::Request(_) => FrameKind::Request,
            Message::Response(_) => FrameKind::Response,
        }
    }

    fn opcode(&self) -> u16 {
        match self {
            Message::Request(request) => request.opcode().number(),
            Message::Response(response) => response.opcode().number(),
        }
    }

    fn encode_body(&self, out: &mut BytesMut) {
        match self {
            Message::Request(request) => request.encode_body(out),
            Message::Response(response) => response.encode_body(out),
        }
    }
}

/// Encodes `message` as a whole frame onto `out`, using `scratch` for the body.
fn encode_frame(message: &Message, request_id: u32, scratch: &mut BytesMut, out: &mut BytesMut) {
    scratch.clear();
    message.encode_body(scratch);
    write_frame_header(
        message.kind(),
        message.opcode(),
        request_id,
        scratch.len(),
        out,
    )
    .expect("benchmark frames are far below 4 GiB");
    out.extend_from_slice(scratch);
}

/// Reads one frame from `wire` and decodes its body; panics on anything unexpected, since
/// the input is a frame this benchmark encoded itself.
fn decode_frame(codec: &mut FrameCodec, wire: &mut BytesMut) -> Message {
    let frame = codec
        .decode(wire)
        .expect("a valid frame")
        .expect("a whole frame");
    match frame.kind {
        FrameKind::Request => {
            Message::Request(Request::decode(frame.opcode, &frame.body).expect("a valid body"))
        }
        FrameKind::Response => {
            Message::Response(Response::decode(frame.opcode, &frame.body).expect("a valid body"))
        }
        other => panic!("unexpected frame kind {other:?}"),
    }
}

fn job_id(index: u32) -> JobId {
    let mut bytes = [
        0x01, 0x9a, 0xca, 0xf6, 0x6c, 0x00, 0x7c, 0x3e, 0x9d, 0x12, 0, 0, 0, 0, 0, 0,
    ];
    bytes[12..].copy_from_slice(&index.to_be_bytes());
    JobId(bytes)
}

fn payload(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index % 251) as u8).collect()
}

/// A typical producer's job: a queue name, a payload, a priority and one metadata pair.
fn new_job(payload_bytes: usize) -> NewJob {
    NewJob {
        queue: "emails".to_owned(),
        payload: payload(payload_bytes),
        priority: Some(-5),
        max_attempts: Some(5),
        metadata: vec![("tenant".to_owned(), "acme".to_owned())],
        ..NewJob::default()
    }
}

fn leased_job(index: u32, payload_bytes: usize) -> LeasedJob {
    LeasedJob {
        job_id: job_id(index),
        lease_id: 1_000_000 + u64::from(index),
        queue: "emails".to_owned(),
        payload: payload(payload_bytes),
        attempt: 1,
        max_attempts: 5,
        priority: -5,
        lease_deadline_ms: 1_764_338_460_000,
        created_at_ms: 1_764_338_400_000,
        metadata: vec![("tenant".to_owned(), "acme".to_owned())],
    }
}

fn cases() -> Vec<(&'static str, Message)> {
    let enqueue = |payload_bytes| {
        Message::Request(Request::Enqueue(EnqueueRequest {
            job: new_job(payload_bytes),
        }))
    };
    vec![
        ("enqueue_16B", enqueue(16)),
        ("enqueue_128B", enqueue(128)),
        ("enqueue_4KiB", enqueue(4 * 1024)),
        ("enqueue_64KiB", enqueue(64 * 1024)),
        (
            "enqueue_batch_100x128B",
            Message::Request(Request::EnqueueBatch(EnqueueBatchRequest {
                jobs: (0..100).map(|_| new_job(128)).collect(),
            })),
        ),
        (
            "fetch_response_32x128B",
            Message::Response(Response::Fetch(FetchResponse {
                jobs: (0..32).map(|index| leased_job(index, 128)).collect(),
            })),
        ),
    ]
}

fn codec_benchmarks(criterion: &mut Criterion) {
    let cases = cases();
    let mut encode = criterion.benchmark_group("encode");
    for (name, message) in &cases {
        let mut scratch = BytesMut::new();
        let mut out = BytesMut::new();
        encode_frame(message, 1, &mut scratch, &mut out);
        let frame_bytes = out.len();
        encode.throughput(Throughput::Bytes(frame_bytes as u64));
        encode.bench_with_input(
            BenchmarkId::new(*name, frame_bytes),
            message,
            |bencher, message| {
                bencher.iter(|| {
                    out.clear();
                    encode_frame(black_box(message), 1, &mut scratch, &mut out);
                    black_box(out.len())
                })
            },
        );
    }
    encode.finish();

    let mut decode = criterion.benchmark_group("decode");
    for (name, message) in &cases {
        let mut scratch = BytesMut::new();
        let mut wire = BytesMut::new();
        encode_frame(message, 1, &mut scratch, &mut wire);
        let wire = wire.freeze();
        let frame_bytes = wire.len();
        let mut codec = FrameCodec::new(FRAME_BYTES_CEILING);
        decode.throughput(Throughput::Bytes(frame_bytes as u64));
        decode.bench_with_input(
            BenchmarkId::new(*name, frame_bytes),
            &wire,
            |bencher, wire| {
                bencher.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buffer| decode_frame(&mut codec, &mut buffer),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    decode.finish();
}

criterion_group!(benches, codec_benchmarks);
criterion_main!(benches);
