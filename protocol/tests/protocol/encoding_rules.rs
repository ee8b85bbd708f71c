//! The bincode `standard()` rules PROTOCOL.md states, checked against real bytes.
//!
//! Each worked example is encoded and decoded here, and the exact table row is looked up in
//! PROTOCOL.md, so the document cannot drift from the encoder. The decoder-strictness rules
//! (what a decoder refuses) are checked the same way.

use std::fmt::Debug;

use bincode::{Decode, Encode};
use bytes::BytesMut;
use taskforge_protocol::*;

use crate::spec_document::protocol_md;

fn encoded<T: Encode>(value: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_body(value, &mut out);
    out.to_vec()
}

fn decoded<T: Decode<()>>(bytes: &[u8]) -> Result<T, MessageError> {
    decode_body(0, bytes)
}

fn spaced_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks `value` encodes to `hex` (spaced lowercase) and `hex` decodes to `value`, and
/// returns the PROTOCOL.md table row that shows it.
fn example<T>(value_text: &str, type_text: &str, value: T, hex: &str) -> String
where
    T: Encode + Decode<()> + PartialEq + Debug,
{
    let bytes = encoded(&value);
    assert_eq!(spaced_hex(&bytes), hex, "{value_text} as {type_text}");
    let back: T = decoded(&bytes).unwrap_or_else(|error| panic!("{value_text}: {error}"));
    assert_eq!(back, value, "{value_text} as {type_text} decodes back");
    let shown = if hex.is_empty() {
        "(no bytes)".to_owned()
    } else {
        format!("`{hex}`")
    };
    format!("| `{value_text}` | `{type_text}` | {shown} |")
}

/// Every worked example in PROTOCOL.md's encoding section.
fn worked_examples() -> Vec<String> {
    vec![
        example("0", "u32", 0u32, "00"),
        example("250", "u32", 250u32, "fa"),
        example("251", "u32", 251u32, "fb fb 00"),
        example("300", "u32", 300u32, "fb 2c 01"),
        example("65535", "u32", 65_535u32, "fb ff ff"),
        example("65536", "u32", 65_536u32, "fc 00 00 01 00"),
        example("4294967295", "u32", u32::MAX, "fc ff ff ff ff"),
        example("1", "u16", 1u16, "01"),
        example("60000", "u16", 60_000u16, "fb 60 ea"),
        example("4294967296", "u64", 1u64 << 32, "fd 00 00 00 00 01 00 00 00"),
        example("1764338400000", "u64", 1_764_338_400_000u64, "fd 00 7b c3 ca 9a 01 00 00"),
        example("18446744073709551615", "u64", u64::MAX, "fd ff ff ff ff ff ff ff ff"),
        example(
            "18446744073709551616",
            "u128",
            1u128 << 64,
            "fe 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00",
        ),
        example("0", "i32", 0i32, "00"),
        example("-1", "i32", -1i32, "01"),
        example("1", "i32", 1i32, "02"),
        example("-5", "i32", -5i32, "09"),
        example("125", "i32", 125i32, "fa"),
        example("-126", "i32", -126i32, "fb fb 00"),
        example("-200", "i32", -200i32, "fb 8f 01"),
        example("2147483647", "i32", i32::MAX, "fc fe ff ff ff"),
        example("-2147483648", "i32", i32::MIN, "fc ff ff ff ff"),
        example("20", "u8", 20u8, "14"),
        example("255", "u8", 255u8, "ff"),
        example("false", "bool", false, "00"),
        example("true", "bool", true, "01"),
        example("\"\"", "String", String::new(), "00"),
        example("\"emails\"", "String", "emails".to_owned(), "06 65 6d 61 69 6c 73"),
        example("\"é\"", "String", "é".to_owned(), "02 c3 a9"),
        example("[1, 2, 3]", "Vec<u8>", vec![1u8, 2, 3], "03 01 02 03"),
        example("[]", "Vec<u8>", Vec::<u8>::new(), "00"),
        example(
            "[\"a\", \"bc\"]",
            "Vec<String>",
            vec!["a".to_owned(), "bc".to_owned()],
            "02 01 61 02 62 63",
        ),
        example("[300, 1]", "Vec<u32>", vec![300u32, 1], "02 fb 2c 01 01"),
        example("None", "Option<u32>", None::<u32>, "00"),
        example("Some(0)", "Option<u32>", Some(0u32), "01 00"),
        example("Some(300)", "Option<u32>", Some(300u32), "01 fb 2c 01"),
        example("Some(-5)", "Option<i32>", Some(-5i32), "01 09"),
        example(
            "[(\"k\", \"v\")]",
            "Vec<(String, String)>",
            vec![("k".to_owned(), "v".to_owned())],
            "01 01 6b 01 76",
        ),
        example("Retry::Backoff", "Retry", Retry::Backoff, "00"),
        example(
            "Retry::At(1764338400000)",
            "Retry",
            Retry::At(1_764_338_400_000),
            "01 fd 00 7b c3 ca 9a 01 00 00",
        ),
        example("Retry::Never", "Retry", Retry::Never, "02"),
        example("JobState::Ready", "JobState", JobState::Ready, "02"),
        example("JobState::Expired", "JobState", JobState::Expired, "07"),
        example(
            "Credentials::RootToken(\"t\")",
            "Credentials",
            Credentials::RootToken("t".to_owned()),
            "00 01 74",
        ),
        example(
            "Credentials::ApiKey(\"k\")",
            "Credentials",
            Credentials::ApiKey("k".to_owned()),
            "01 01 6b",
        ),
        example(
            "Credentials::Password { email: \"a\", password: \"b\" }",
            "Credentials",
            Credentials::Password { email: "a".to_owned(), password: "b".to_owned() },
            "02 01 61 01 62",
        ),
        example("Role::Viewer", "Role", Role::Viewer, "03"),
        example("Scope::Read", "Scope", Scope::Read, "03"),
        example(
            "SubscriptionStatus::PastDue",
            "SubscriptionStatus",
            SubscriptionStatus::PastDue,
            "01",
        ),
        example(
            "WorkerState::Terminating",
            "WorkerState",
            WorkerState::Terminating,
            "02",
        ),
        example("WorkerCommand::Run", "WorkerCommand", WorkerCommand::Run, "00"),
        example("WorkerCommand::Quiet", "WorkerCommand", WorkerCommand::Quiet, "01"),
        example(
            "WorkerCommand::Terminate { deadline_ms: 1764338430000 }",
            "WorkerCommand",
            WorkerCommand::Terminate { deadline_ms: 1_764_338_430_000 },
            "02 fd 30 f0 c3 ca 9a 01 00 00",
        ),
        example(
            "ExecutionOutcome::WorkerLost",
            "ExecutionOutcome",
            ExecutionOutcome::WorkerLost,
            "03",
        ),
        example("LogLevel::Warn", "LogLevel", LogLevel::Warn, "03"),
        example(
            "QueueAssignment { queue: \"emails\", weight: 3, active: true }",
            "QueueAssignment",
            QueueAssignment { queue: "emails".to_owned(), weight: 3, active: true },
            "06 65 6d 61 69 6c 73 03 01",
        ),
        example(
            "ErrorDetails::Quota { limit: \"projects\", current: 3, max: 3 }",
            "ErrorDetails",
            ErrorDetails::Quota { limit: "projects".to_owned(), current: 3, max: 3 },
            "01 08 70 72 6f 6a 65 63 74 73 03 03",
        ),
        example(
            "ErrorDetails::RetryAfter { retry_after_ms: 250 }",
            "ErrorDetails",
            ErrorDetails::RetryAfter { retry_after_ms: 250 },
            "02 fa",
        ),
        example(
            "Backoff { initial_ms: 1000, factor_percent: 200, max_ms: 3600000, jitter_percent: 20 }",
            "Backoff",
            Backoff { initial_ms: 1000, factor_percent: 200, max_ms: 3_600_000, jitter_percent: 20 },
            "fb e8 03 c8 fc 80 ee 36 00 14",
        ),
        example(
            "ParentRef::Job(JobId(000102030405060708090a0b0c0d0e0f))",
            "ParentRef",
            ParentRef::Job(JobId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])),
            "00 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f",
        ),
        example("ParentRef::Batch(0)", "ParentRef", ParentRef::Batch(0), "01 00"),
        example("ParentRef::Batch(300)", "ParentRef", ParentRef::Batch(300), "01 fb 2c 01"),
        example("ParentFailure::Cancel", "ParentFailure", ParentFailure::Cancel, "00"),
        example("ParentFailure::Run", "ParentFailure", ParentFailure::Run, "01"),
        example("UniqueUntil::Finished", "UniqueUntil", UniqueUntil::Finished, "01"),
        example(
            "UniqueKey { key: \"inv-7\", until: Some(UniqueUntil::Started), window_ms: Some(60000) }",
            "UniqueKey",
            UniqueKey { key: "inv-7".to_owned(), until: Some(UniqueUntil::Started), window_ms: Some(60_000) },
            "05 69 6e 76 2d 37 01 00 01 fb 60 ea",
        ),
        example(
            "JobId(000102030405060708090a0b0c0d0e0f)",
            "JobId",
            JobId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
            "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f",
        ),
        example("Empty {}", "Empty", Empty {}, ""),
    ]
}

#[test]
fn worked_examples_in_protocol_md_match_the_encoder() {
    let document = protocol_md();
    let missing: Vec<String> = worked_examples()
        .into_iter()
        .filter(|row| !document.contains(row.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "PROTOCOL.md lacks these example rows:\n{}",
        missing.join("\n")
    );
}

#[test]
fn decoders_accept_a_longer_varint_form_than_needed() {
    // Encoders always write the shortest form; a decoder that is lenient here interoperates.
    assert_eq!(decoded::<u32>(&[0xfb, 0x05, 0x00]), Ok(5));
    assert_eq!(decoded::<u64>(&[0xfc, 0x05, 0x00, 0x00, 0x00]), Ok(5));
}

#[test]
fn decoders_refuse_a_varint_wider_than_the_field() {
    assert!(decoded::<u16>(&[0xfc, 0x01, 0x00, 0x00, 0x00]).is_err());
    assert!(decoded::<u32>(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(decoded::<u64>(&[0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(decoded::<i32>(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    // 0xff is not a varint marker at all.
    assert!(decoded::<u64>(&[0xff]).is_err());
}

#[test]
fn decoders_refuse_bad_tags_and_text() {
    assert!(decoded::<bool>(&[2]).is_err(), "bool other than 0 or 1");
    assert!(
        decoded::<Option<u32>>(&[2, 0]).is_err(),
        "option tag other than 0 or 1"
    );
    assert!(
        decoded::<JobState>(&[8]).is_err(),
        "enum variant index out of range"
    );
    assert!(
        decoded::<Retry>(&[3]).is_err(),
        "enum variant index out of range"
    );
    assert!(
        decoded::<String>(&[2, 0xc3, 0x28]).is_err(),
        "invalid UTF-8"
    );
    assert!(
        decoded::<String>(&[5, b'a']).is_err(),
        "string shorter than its length"
    );
    assert!(
        decoded::<JobId>(&[1, 2, 3]).is_err(),
        "job id shorter than 16 bytes"
    );
}

#[test]
fn unknown_opcodes_and_truncated_bodies_are_errors_not_panics() {
    assert_eq!(
        Request::decode(0x7777, &[]),
        Err(MessageError::UnknownOpcode(0x7777))
    );
    assert_eq!(
        Response::decode(0x0000, &[]),
        Err(MessageError::UnknownOpcode(0))
    );
    assert!(matches!(
        Request::decode(Opcode::Enqueue.number(), &[6, b'e']),
        Err(MessageError::Malformed { opcode: 0x0200, .. })
    ));
}

#[test]
fn empty_bodies_decode_from_any_bytes() {
    // PING, BYE, ACK responses and the like have no fields: any bytes are trailing bytes.
    assert_eq!(
        Request::decode(Opcode::Ping.number(), &[]),
        Ok(Request::Ping(Empty {}))
    );
    assert_eq!(
        Request::decode(Opcode::Bye.number(), &[1, 2, 3]),
        Ok(Request::Bye(Empty {}))
    );
}

#[test]
fn error_code_numbers_are_the_wire_values() {
    // ErrorBody carries the number as a u16 varint; the ErrorCode enum itself is never
    // encoded (its derived Encode would write the 0-based variant index instead).
    let body = ErrorBody::new(ErrorCode::LeaseLost, "x");
    assert_eq!(spaced_hex(&encoded(&body)), "0a 01 78 00");
    for (index, code) in ErrorCode::ALL.iter().enumerate() {
        assert_eq!(
            usize::from(code.number()),
            index + 1,
            "codes are numbered from 1 densely"
        );
        assert_eq!(ErrorCode::from_number(code.number()), Some(*code));
    }
    assert_eq!(ErrorCode::from_number(0), None);
    let unknown = ErrorBody {
        code: 999,
        message: String::new(),
        details: ErrorDetails::None,
    };
    assert_eq!(unknown.error_code(), ErrorCode::Internal);
}

#[test]
fn hello_bodies_must_carry_the_tenancy_fields() {
    // `HelloRequest.project_id` and `HelloResponse.org_id` were appended to the bodies
    // within version 1, before any release, so every v1 peer sends them: a body that stops
    // before them does not decode (MALFORMED_FRAME), as PROTOCOL.md says.
    let request = HelloRequest {
        protocol_version: 1,
        client_name: "c".to_owned(),
        client_version: "1".to_owned(),
        credentials: Credentials::RootToken("t".to_owned()),
        project_id: None,
    };
    let bytes = encoded(&request);
    assert_eq!(spaced_hex(&bytes), "01 01 63 01 31 00 01 74 00");
    assert_eq!(decoded::<HelloRequest>(&bytes), Ok(request));
    assert!(decoded::<HelloRequest>(&bytes[..bytes.len() - 1]).is_err());
    let named = encoded(&HelloRequest {
        project_id: Some(5),
        ..decoded::<HelloRequest>(&bytes).expect("decodes")
    });
    assert_eq!(spaced_hex(&named[named.len() - 2..]), "01 05");
}

#[test]
fn fetch_fail_and_job_get_bodies_must_carry_the_worker_fields() {
    // `FetchRequest.worker_id` and `weights`, `FailRequest.error_details` and `JobInfo`'s
    // `executions`, `latest_execution` and `progress` were appended within version 1 before
    // its first release, like HELLO's tenancy fields: a body that stops before them does not
    // decode (MALFORMED_FRAME), as PROTOCOL.md says. An old peer's decoder still reads the
    // longer bodies, since it ignores trailing bytes.
    let fetch = FetchRequest {
        queues: vec!["q".to_owned()],
        max_jobs: 1,
        wait_ms: 0,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    };
    let bytes = encoded(&fetch);
    assert_eq!(spaced_hex(&bytes), "01 01 71 01 00 00 00 00");
    assert_eq!(decoded::<FetchRequest>(&bytes), Ok(fetch));
    assert!(decoded::<FetchRequest>(&bytes[..bytes.len() - 2]).is_err());

    let fail = FailRequest {
        job_id: JobId([0; 16]),
        lease_id: 1,
        error: String::new(),
        retry: Retry::Never,
        error_details: None,
    };
    let bytes = encoded(&fail);
    assert_eq!(spaced_hex(&bytes[16..]), "01 00 02 00");
    assert_eq!(decoded::<FailRequest>(&bytes), Ok(fail));
    assert!(decoded::<FailRequest>(&bytes[..bytes.len() - 1]).is_err());

    let job = JobInfo {
        job_id: JobId([0; 16]),
        queue: "q".to_owned(),
        state: JobState::Ready,
        priority: 0,
        payload: Vec::new(),
        metadata: Vec::new(),
        attempts: 0,
        max_attempts: 1,
        backoff: Backoff {
            initial_ms: 0,
            factor_percent: 100,
            max_ms: 0,
            jitter_percent: 0,
        },
        lease_ms: 100,
        created_at_ms: 0,
        run_at_ms: 0,
        updated_at_ms: 0,
        finished_at_ms: None,
        lease_deadline_ms: None,
        cancel_requested: false,
        last_error: None,
        result: None,
        executions: 0,
        latest_execution: None,
        progress: None,
        parents: Vec::new(),
        parents_remaining: 0,
        on_parent_failure: ParentFailure::Cancel,
        children: Vec::new(),
        unique_key: None,
        expires_at_ms: None,
    };
    let bytes = encoded(&job);
    // executions .. progress, then the six dependency fields.
    assert_eq!(
        spaced_hex(&bytes[bytes.len() - 9..]),
        "00 00 00 00 00 00 00 00 00"
    );
    assert_eq!(decoded::<JobInfo>(&bytes), Ok(job));
    assert!(decoded::<JobInfo>(&bytes[..bytes.len() - 9]).is_err());
}

#[test]
fn enqueue_queue_and_job_get_bodies_must_carry_the_dependency_fields() {
    // The dependency, unique-key, expiry and flow-limit fields were added within version 1
    // before its first release, inside `NewJob`, `QueueSettings` and `QueueDefaults` (types
    // nested in other bodies) and at the end of `EnqueueResponse`, `EnqueueBatchResponse`
    // and `JobInfo`. PROTOCOL.md §12 says they are part of every version 1 body: a body that
    // stops before them does not decode.
    let minimal = NewJob {
        queue: "q".to_owned(),
        ..NewJob::default()
    };
    let bytes = encoded(&minimal);
    // queue, payload, six `None`s, no metadata; then no parents, `Cancel`, and three `None`s.
    assert_eq!(
        spaced_hex(&bytes),
        "01 71 00 00 00 00 00 00 00 00 00 00 00 00 00"
    );
    assert_eq!(decoded::<NewJob>(&bytes), Ok(minimal));
    assert!(decoded::<NewJob>(&bytes[..bytes.len() - 5]).is_err());

    let settings = QueueSettings::default();
    let bytes = encoded(&settings);
    assert_eq!(spaced_hex(&bytes), "00 00 00 00 00 00 00");
    assert!(decoded::<QueueSettings>(&bytes[..4]).is_err());

    let response = EnqueueResponse {
        job_id: JobId([0; 16]),
        state: JobState::Blocked,
        duplicate: true,
    };
    let bytes = encoded(&response);
    assert_eq!(spaced_hex(&bytes[16..]), "01 01");
    assert_eq!(decoded::<EnqueueResponse>(&bytes), Ok(response));
    assert!(decoded::<EnqueueResponse>(&bytes[..17]).is_err());

    let batch = EnqueueBatchResponse {
        job_ids: vec![JobId([0; 16])],
        duplicates: vec![false],
    };
    let bytes = encoded(&batch);
    assert_eq!(spaced_hex(&bytes[17..]), "01 00");
    assert!(decoded::<EnqueueBatchResponse>(&bytes[..17]).is_err());
}
