//! Golden vectors: `protocol/vectors/*.hex` are complete frames written by the Rust encoder.
//!
//! On every run the test checks both directions: encoding each value gives exactly the file's
//! bytes, and decoding the file (frame codec, then the body decoder for its kind) gives back
//! the value. With `TASKFORGE_BLESS_VECTORS=1` it rewrites the files instead (and removes
//! vector files no longer produced), so a deliberate change is one command and a reviewable
//! diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use serde::Serialize;
use serde_json::{json, Value};
use taskforge_protocol::limits::FRAME_BYTES_CEILING;
use taskforge_protocol::*;
use tokio_util::codec::Decoder;

use crate::fixtures::{all_vectors, Message, Vector};

/// The environment variable that switches the test from checking to rewriting.
const BLESS_VARIABLE: &str = "TASKFORGE_BLESS_VECTORS";

/// The machine-readable description of every vector, for client authors' own tests.
const INDEX_FILE: &str = "index.json";

/// Files in the vectors directory that are not generated.
const HAND_WRITTEN_FILES: &[&str] = &["README.md"];

/// `protocol/vectors/`.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn blessing() -> bool {
    std::env::var(BLESS_VARIABLE).is_ok_and(|value| value == "1")
}

fn hex_file_text(frame: &[u8]) -> String {
    format!("{}\n", hex::encode(frame))
}

/// Reads a vector file back into frame bytes. Whitespace is ignored, as Python's
/// `bytes.fromhex` does.
pub fn read_hex_file(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let digits: String = text.split_whitespace().collect();
    hex::decode(&digits).unwrap_or_else(|error| panic!("{} is not hex: {error}", path.display()))
}

fn describe<T: Serialize>(body: &T) -> (String, Value) {
    let type_name = std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or_default();
    (
        type_name.to_owned(),
        serde_json::to_value(body).expect("every body serializes to JSON"),
    )
}

fn request_body(request: &Request) -> (String, Value) {
    match request {
        Request::Hello(body) => describe(body),
        Request::Ping(body) => describe(body),
        Request::Bye(body) => describe(body),
        Request::QueueCreate(body) => describe(body),
        Request::QueueGet(body) => describe(body),
        Request::QueueList(body) => describe(body),
        Request::QueueUpdate(body) => describe(body),
        Request::QueueDelete(body) => describe(body),
        Request::QueuePause(body) => describe(body),
        Request::QueueResume(body) => describe(body),
        Request::QueuePurge(body) => describe(body),
        Request::QueueStats(body) => describe(body),
        Request::Enqueue(body) => describe(body),
        Request::EnqueueBatch(body) => describe(body),
        Request::Fetch(body) => describe(body),
        Request::Ack(body) => describe(body),
        Request::AckBatch(body) => describe(body),
        Request::Fail(body) => describe(body),
        Request::Extend(body) => describe(body),
        Request::Cancel(body) => describe(body),
        Request::JobGet(body) => describe(body),
        Request::JobList(body) => describe(body),
        Request::Progress(body) => describe(body),
        Request::Log(body) => describe(body),
        Request::LogTail(body) => describe(body),
        Request::ExecutionList(body) => describe(body),
        Request::JobResults(body) => describe(body),
        Request::DeadList(body) => describe(body),
        Request::DeadRetry(body) => describe(body),
        Request::DeadDiscard(body) => describe(body),
        Request::WorkerRegister(body) => describe(body),
        Request::Heartbeat(body) => describe(body),
        Request::WorkerList(body) => describe(body),
        Request::WorkerGet(body) => describe(body),
        Request::WorkerQuiet(body) => describe(body),
        Request::WorkerTerminate(body) => describe(body),
        Request::WorkerAssign(body) => describe(body),
        Request::AssignmentList(body) => describe(body),
        Request::ScheduleCreate(body) => describe(body),
        Request::ScheduleGet(body) => describe(body),
        Request::ScheduleList(body) => describe(body),
        Request::ScheduleUpdate(body) => describe(body),
        Request::ScheduleDelete(body) => describe(body),
        Request::SchedulePause(body) => describe(body),
        Request::ScheduleResume(body) => describe(body),
        Request::OrgCreate(body) => describe(body),
        Request::OrgGet(body) => describe(body),
        Request::OrgList(body) => describe(body),
        Request::OrgUpdate(body) => describe(body),
        Request::OrgDelete(body) => describe(body),
        Request::UserCreate(body) => describe(body),
        Request::UserGet(body) => describe(body),
        Request::UserList(body) => describe(body),
        Request::UserUpdate(body) => describe(body),
        Request::UserDisable(body) => describe(body),
        Request::UserSetPassword(body) => describe(body),
        Request::SubscriptionGet(body) => describe(body),
        Request::SubscriptionSet(body) => describe(body),
        Request::ProjectCreate(body) => describe(body),
        Request::ProjectGet(body) => describe(body),
        Request::ProjectList(body) => describe(body),
        Request::ProjectUpdate(body) => describe(body),
        Request::ProjectDelete(body) => describe(body),
        Request::ApiKeyCreate(body) => describe(body),
        Request::ApiKeyList(body) => describe(body),
        Request::ApiKeyRevoke(body) => describe(body),
        Request::ApiKeyRotate(body) => describe(body),
    }
}

fn response_body(response: &Response) -> (String, Value) {
    match response {
        Response::Hello(body) => describe(body),
        Response::Ping(body) => describe(body),
        Response::Bye(body) => describe(body),
        Response::QueueCreate(body) => describe(body),
        Response::QueueGet(body) => describe(body),
        Response::QueueList(body) => describe(body),
        Response::QueueUpdate(body) => describe(body),
        Response::QueueDelete(body) => describe(body),
        Response::QueuePause(body) => describe(body),
        Response::QueueResume(body) => describe(body),
        Response::QueuePurge(body) => describe(body),
        Response::QueueStats(body) => describe(body),
        Response::Enqueue(body) => describe(body),
        Response::EnqueueBatch(body) => describe(body),
        Response::Fetch(body) => describe(body),
        Response::Ack(body) => describe(body),
        Response::AckBatch(body) => describe(body),
        Response::Fail(body) => describe(body),
        Response::Extend(body) => describe(body),
        Response::Cancel(body) => describe(body),
        Response::JobGet(body) => describe(body),
        Response::JobList(body) => describe(body),
        Response::Progress(body) => describe(body),
        Response::Log(body) => describe(body),
        Response::LogTail(body) => describe(body),
        Response::ExecutionList(body) => describe(body),
        Response::JobResults(body) => describe(body),
        Response::DeadList(body) => describe(body),
        Response::DeadRetry(body) => describe(body),
        Response::DeadDiscard(body) => describe(body),
        Response::WorkerRegister(body) => describe(body),
        Response::Heartbeat(body) => describe(body),
        Response::WorkerList(body) => describe(body),
        Response::WorkerGet(body) => describe(body),
        Response::WorkerQuiet(body) => describe(body),
        Response::WorkerTerminate(body) => describe(body),
        Response::WorkerAssign(body) => describe(body),
        Response::AssignmentList(body) => describe(body),
        Response::ScheduleCreate(body) => describe(body),
        Response::ScheduleGet(body) => describe(body),
        Response::ScheduleList(body) => describe(body),
        Response::ScheduleUpdate(body) => describe(body),
        Response::ScheduleDelete(body) => describe(body),
        Response::SchedulePause(body) => describe(body),
        Response::ScheduleResume(body) => describe(body),
        Response::OrgCreate(body) => describe(body),
        Response::OrgGet(body) => describe(body),
        Response::OrgList(body) => describe(body),
        Response::OrgUpdate(body) => describe(body),
        Response::OrgDelete(body) => describe(body),
        Response::UserCreate(body) => describe(body),
        Response::UserGet(body) => describe(body),
        Response::UserList(body) => describe(body),
        Response::UserUpdate(body) => describe(body),
        Response::UserDisable(body) => describe(body),
        Response::UserSetPassword(body) => describe(body),
        Response::SubscriptionGet(body) => describe(body),
        Response::SubscriptionSet(body) => describe(body),
        Response::ProjectCreate(body) => describe(body),
        Response::ProjectGet(body) => describe(body),
        Response::ProjectList(body) => describe(body),
        Response::ProjectUpdate(body) => describe(body),
        Response::ProjectDelete(body) => describe(body),
        Response::ApiKeyCreate(body) => describe(body),
        Response::ApiKeyList(body) => describe(body),
        Response::ApiKeyRevoke(body) => describe(body),
        Response::ApiKeyRotate(body) => describe(body),
    }
}

fn index_entry(vector: &Vector) -> Value {
    let (body_type, body) = match &vector.message {
        Message::Request(request) => request_body(request),
        Message::Response(response) => response_body(response),
        Message::Error { body, .. } => describe(body),
    };
    let opcode_name = Opcode::from_number(vector.opcode()).map(Opcode::name);
    let error_name = match &vector.message {
        Message::Error { body, .. } => Some(body.error_code().name()),
        _ => None,
    };
    json!({
        "file": vector.file_name(),
        "kind": vector.kind() as u8,
        "opcode": vector.opcode(),
        "opcode_name": opcode_name,
        "request_id": vector.request_id,
        "error_name": error_name,
        "body_type": body_type,
        "body": body,
        "body_hex": hex::encode(vector.body_bytes()),
    })
}

fn index_text(vectors: &[Vector]) -> String {
    let entries: Vec<Value> = vectors.iter().map(index_entry).collect();
    let mut text = serde_json::to_string_pretty(&entries).expect("the index serializes");
    text.push('\n');
    text
}

/// Decodes a vector file's bytes and checks every header field and the body against the
/// vector's value.
fn check_decodes(vector: &Vector, bytes: &[u8]) {
    let name = &vector.name;
    let mut codec = FrameCodec::new(FRAME_BYTES_CEILING);
    let mut buffer = BytesMut::from(bytes);
    let frame = codec
        .decode_eof(&mut buffer)
        .unwrap_or_else(|error| panic!("{name}: frame does not decode: {error}"))
        .unwrap_or_else(|| panic!("{name}: no frame"));
    assert!(
        buffer.is_empty(),
        "{name}: {} bytes after the frame",
        buffer.len()
    );
    assert_eq!(frame.kind, vector.kind(), "{name}: kind");
    assert_eq!(frame.opcode, vector.opcode(), "{name}: opcode");
    assert_eq!(frame.request_id, vector.request_id, "{name}: request id");
    match &vector.message {
        Message::Request(expected) => {
            let decoded = Request::decode(frame.opcode, &frame.body)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(&decoded, expected, "{name}: decoded request");
        }
        Message::Response(expected) => {
            let decoded = Response::decode(frame.opcode, &frame.body)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(&decoded, expected, "{name}: decoded response");
        }
        Message::Error { body: expected, .. } => {
            let decoded: ErrorBody = decode_body(frame.opcode, &frame.body)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(&decoded, expected, "{name}: decoded error body");
        }
    }
    // Re-encoding the decoded body gives the whole body back, so the decoder consumed all of
    // it (the vectors carry no trailing bytes).
    assert_eq!(
        &frame.body[..],
        &vector.body_bytes()[..],
        "{name}: body bytes"
    );
}

fn generated_files(vectors: &[Vector]) -> BTreeSet<String> {
    let mut files: BTreeSet<String> = vectors.iter().map(Vector::file_name).collect();
    files.insert(INDEX_FILE.to_owned());
    files
}

fn files_on_disk() -> BTreeSet<String> {
    let dir = vectors_dir();
    std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !HAND_WRITTEN_FILES.contains(&name.as_str()))
        .collect()
}

fn bless(vectors: &[Vector]) {
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir).expect("create the vectors directory");
    let expected = generated_files(vectors);
    for stale in files_on_disk().difference(&expected) {
        std::fs::remove_file(dir.join(stale)).expect("remove a stale vector");
    }
    for vector in vectors {
        std::fs::write(
            dir.join(vector.file_name()),
            hex_file_text(&vector.frame_bytes()),
        )
        .expect("write a vector");
    }
    std::fs::write(dir.join(INDEX_FILE), index_text(vectors)).expect("write the index");
}

#[test]
fn vector_names_are_unique() {
    let vectors = all_vectors();
    let names: BTreeSet<&str> = vectors.iter().map(|vector| vector.name.as_str()).collect();
    assert_eq!(names.len(), vectors.len(), "two vectors share a file name");
}

#[test]
fn golden_vectors_match_the_encoder_both_ways() {
    let vectors = all_vectors();
    if blessing() {
        bless(&vectors);
    }
    let dir = vectors_dir();
    let hint = format!("run with {BLESS_VARIABLE}=1 to regenerate after a deliberate change");
    for vector in &vectors {
        let path = dir.join(vector.file_name());
        assert!(path.exists(), "{} is missing; {hint}", path.display());
        let on_disk = read_hex_file(&path);
        assert_eq!(
            hex::encode(&on_disk),
            hex::encode(vector.frame_bytes()),
            "{}: the encoder no longer produces the golden bytes; {hint}",
            vector.name
        );
        check_decodes(vector, &on_disk);
    }
    let index = std::fs::read_to_string(dir.join(INDEX_FILE)).expect("read the index");
    assert!(
        index == index_text(&vectors),
        "{INDEX_FILE} is out of date; {hint}"
    );
    let stale: Vec<String> = files_on_disk()
        .difference(&generated_files(&vectors))
        .cloned()
        .collect();
    assert!(
        stale.is_empty(),
        "files no vector produces: {stale:?}; {hint}"
    );
}
