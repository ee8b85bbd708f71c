//! PROTOCOL.md must cover the whole table: a `### 0x.... NAME` section and two vectors per
//! opcode, a row and a vector per error code, and a row per limit with the value the code
//! has.

use std::path::Path;

use taskforge_protocol::limits::*;
use taskforge_protocol::*;

use crate::vectors::vectors_dir;

/// The text of `protocol/PROTOCOL.md`.
pub fn protocol_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("PROTOCOL.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn heading(opcode: Opcode) -> String {
    format!("### {:#06x} {}", opcode.number(), opcode.name())
}

#[test]
fn every_opcode_has_a_section_and_request_and_response_vectors() {
    let document = protocol_md();
    let lines: Vec<&str> = document.lines().collect();
    let dir = vectors_dir();
    let mut problems = Vec::new();
    for opcode in Opcode::ALL {
        let heading = heading(*opcode);
        if !lines.contains(&heading.as_str()) {
            problems.push(format!("PROTOCOL.md has no line `{heading}`"));
        }
        for direction in ["request", "response"] {
            let file = format!("{:#06x}_{}.{direction}.hex", opcode.number(), opcode.name());
            if !dir.join(&file).is_file() {
                problems.push(format!("vectors/{file} is missing"));
            }
        }
    }
    // No section for an operation that does not exist (a typo or a removed opcode).
    let known: Vec<String> = Opcode::ALL.iter().map(|opcode| heading(*opcode)).collect();
    for line in &lines {
        if line.starts_with("### 0x") && !known.iter().any(|heading| heading == line) {
            problems.push(format!(
                "PROTOCOL.md section `{line}` is not in the opcode table"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn operation_sections_follow_the_opcode_table_order() {
    let document = protocol_md();
    let positions: Vec<usize> = Opcode::ALL
        .iter()
        .filter_map(|opcode| document.find(&format!("{}\n", heading(*opcode))))
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "sections out of order"
    );
}

#[test]
fn every_error_code_has_a_vector_and_a_table_row() {
    let document = protocol_md();
    let dir = vectors_dir();
    let mut problems = Vec::new();
    for code in ErrorCode::ALL {
        let row = format!("| {} | {} |", code.number(), code.name());
        if !document.lines().any(|line| line.starts_with(&row)) {
            problems.push(format!(
                "PROTOCOL.md has no error table row starting `{row}`"
            ));
        }
        let file = format!("error_{}.hex", code.name());
        if !dir.join(&file).is_file() {
            problems.push(format!("vectors/{file} is missing"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every constant of `limits.rs` with its value as PROTOCOL.md's limits table shows it.
fn limit_values() -> Vec<(&'static str, u64)> {
    vec![
        ("PROTOCOL_VERSION", u64::from(PROTOCOL_VERSION)),
        (
            "HANDSHAKE_FRAME_BYTES_MAX",
            u64::from(HANDSHAKE_FRAME_BYTES_MAX),
        ),
        (
            "FRAME_BYTES_MAX_DEFAULT",
            u64::from(FRAME_BYTES_MAX_DEFAULT),
        ),
        ("FRAME_BYTES_CEILING", u64::from(FRAME_BYTES_CEILING)),
        (
            "PAYLOAD_BYTES_MAX_DEFAULT",
            u64::from(PAYLOAD_BYTES_MAX_DEFAULT),
        ),
        (
            "RESULT_BYTES_MAX_DEFAULT",
            u64::from(RESULT_BYTES_MAX_DEFAULT),
        ),
        ("BATCH_JOBS_MAX_DEFAULT", u64::from(BATCH_JOBS_MAX_DEFAULT)),
        ("FETCH_JOBS_MAX", u64::from(FETCH_JOBS_MAX)),
        ("FETCH_WAIT_MS_MAX", u64::from(FETCH_WAIT_MS_MAX)),
        ("FETCH_QUEUES_MAX", FETCH_QUEUES_MAX as u64),
        ("ACK_BATCH_MAX", ACK_BATCH_MAX as u64),
        ("QUEUE_NAME_BYTES_MAX", QUEUE_NAME_BYTES_MAX as u64),
        ("CLIENT_NAME_BYTES_MAX", CLIENT_NAME_BYTES_MAX as u64),
        ("CREDENTIAL_BYTES_MAX", CREDENTIAL_BYTES_MAX as u64),
        ("ERROR_MESSAGE_BYTES_MAX", ERROR_MESSAGE_BYTES_MAX as u64),
        ("METADATA_ENTRIES_MAX", METADATA_ENTRIES_MAX as u64),
        ("METADATA_BYTES_MAX", METADATA_BYTES_MAX as u64),
        ("LIST_LIMIT_MAX", u64::from(LIST_LIMIT_MAX)),
        ("BULK_JOBS_MAX", u64::from(BULK_JOBS_MAX)),
        ("LEASE_MS_MIN", u64::from(LEASE_MS_MIN)),
        ("LEASE_MS_MAX", u64::from(LEASE_MS_MAX)),
        ("LEASE_MS_DEFAULT", u64::from(LEASE_MS_DEFAULT)),
        ("MAX_ATTEMPTS_DEFAULT", u64::from(MAX_ATTEMPTS_DEFAULT)),
        ("MAX_ATTEMPTS_CEILING", u64::from(MAX_ATTEMPTS_CEILING)),
        (
            "BACKOFF_INITIAL_MS_DEFAULT",
            u64::from(BACKOFF_INITIAL_MS_DEFAULT),
        ),
        (
            "BACKOFF_FACTOR_PERCENT_DEFAULT",
            u64::from(BACKOFF_FACTOR_PERCENT_DEFAULT),
        ),
        ("BACKOFF_MAX_MS_DEFAULT", u64::from(BACKOFF_MAX_MS_DEFAULT)),
        (
            "BACKOFF_JITTER_PERCENT_DEFAULT",
            u64::from(BACKOFF_JITTER_PERCENT_DEFAULT),
        ),
        ("SCHEDULE_AHEAD_MS_MAX", SCHEDULE_AHEAD_MS_MAX),
        (
            "REQUESTS_IN_FLIGHT_MAX_DEFAULT",
            u64::from(REQUESTS_IN_FLIGHT_MAX_DEFAULT),
        ),
        ("NAME_BYTES_MAX", NAME_BYTES_MAX as u64),
        ("SLUG_BYTES_MAX", SLUG_BYTES_MAX as u64),
        ("EMAIL_BYTES_MIN", EMAIL_BYTES_MIN as u64),
        ("EMAIL_BYTES_MAX", EMAIL_BYTES_MAX as u64),
        ("PASSWORD_BYTES_MIN", PASSWORD_BYTES_MIN as u64),
        ("PASSWORD_BYTES_MAX", PASSWORD_BYTES_MAX as u64),
        ("API_KEY_ID_HEX_DIGITS", API_KEY_ID_HEX_DIGITS as u64),
        (
            "API_KEY_SECRET_HEX_DIGITS",
            API_KEY_SECRET_HEX_DIGITS as u64,
        ),
        (
            "API_KEY_ROTATE_GRACE_MS_DEFAULT",
            API_KEY_ROTATE_GRACE_MS_DEFAULT,
        ),
        ("API_KEY_ROTATE_GRACE_MS_MAX", API_KEY_ROTATE_GRACE_MS_MAX),
        (
            "API_KEY_LAST_USED_INTERVAL_MS",
            API_KEY_LAST_USED_INTERVAL_MS,
        ),
        ("REVOKED_SESSION_CLOSE_MS_MAX", REVOKED_SESSION_CLOSE_MS_MAX),
        ("HANDSHAKE_FAILURES_MAX", u64::from(HANDSHAKE_FAILURES_MAX)),
        ("HANDSHAKE_FAILURES_WINDOW_MS", HANDSHAKE_FAILURES_WINDOW_MS),
        (
            "SUBSCRIPTION_PERIOD_MS_DEFAULT",
            SUBSCRIPTION_PERIOD_MS_DEFAULT,
        ),
        ("ERROR_DETAILS_BYTES_MAX", ERROR_DETAILS_BYTES_MAX as u64),
        ("LOG_LINE_BYTES_MAX", LOG_LINE_BYTES_MAX as u64),
        (
            "LOG_LINES_PER_REQUEST_MAX",
            LOG_LINES_PER_REQUEST_MAX as u64,
        ),
        (
            "LOG_LINES_PER_EXECUTION_MAX_DEFAULT",
            u64::from(LOG_LINES_PER_EXECUTION_MAX_DEFAULT),
        ),
        ("LOG_TAIL_LINES_MAX", u64::from(LOG_TAIL_LINES_MAX)),
        (
            "PROGRESS_MESSAGE_BYTES_MAX",
            PROGRESS_MESSAGE_BYTES_MAX as u64,
        ),
        ("WORKER_CONCURRENCY_MAX", u64::from(WORKER_CONCURRENCY_MAX)),
        ("WORKER_LABELS_MAX", WORKER_LABELS_MAX as u64),
        ("ASSIGNMENT_WEIGHT_MAX", u64::from(ASSIGNMENT_WEIGHT_MAX)),
        (
            "HEARTBEAT_TIMEOUT_MS_DEFAULT",
            u64::from(HEARTBEAT_TIMEOUT_MS_DEFAULT),
        ),
        (
            "WORKER_TERMINATE_GRACE_MS_DEFAULT",
            u64::from(WORKER_TERMINATE_GRACE_MS_DEFAULT),
        ),
        ("PARENTS_PER_JOB_MAX", PARENTS_PER_JOB_MAX as u64),
        ("CHILDREN_SHOWN_MAX", CHILDREN_SHOWN_MAX as u64),
        ("UNIQUE_KEY_BYTES_MAX", UNIQUE_KEY_BYTES_MAX as u64),
        ("RETENTION_MS_MAX", RETENTION_MS_MAX),
        (
            "SCHEDULES_PER_PROJECT_MAX",
            SCHEDULES_PER_PROJECT_MAX as u64,
        ),
        ("SCHEDULE_NAME_BYTES_MAX", SCHEDULE_NAME_BYTES_MAX as u64),
        (
            "CRON_EXPRESSION_BYTES_MAX",
            CRON_EXPRESSION_BYTES_MAX as u64,
        ),
        ("TIME_ZONE_BYTES_MAX", TIME_ZONE_BYTES_MAX as u64),
        (
            "SCHEDULE_PAYLOAD_BYTES_MAX",
            u64::from(SCHEDULE_PAYLOAD_BYTES_MAX),
        ),
        (
            "SCHEDULE_METADATA_ENTRIES_MAX",
            SCHEDULE_METADATA_ENTRIES_MAX as u64,
        ),
        (
            "SCHEDULE_METADATA_BYTES_MAX",
            SCHEDULE_METADATA_BYTES_MAX as u64,
        ),
    ]
}

/// The names of the `pub const`s in `limits.rs`, read from the source so a new limit
/// cannot be added without a row in the table.
fn limit_names_in_source() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/limits.rs");
    let source = std::fs::read_to_string(&path).expect("read limits.rs");
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub const "))
        .filter_map(|rest| rest.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn every_limit_has_a_row_with_its_value() {
    let document = protocol_md();
    let values = limit_values();
    let mut problems = Vec::new();
    for name in limit_names_in_source() {
        let Some((_, value)) = values.iter().find(|(known, _)| *known == name) else {
            problems.push(format!(
                "{name} is new in limits.rs: add it to limit_values()"
            ));
            continue;
        };
        let row = format!("| `{name}` | {value}");
        let found = document.lines().any(|line| {
            line.strip_prefix(&row)
                .is_some_and(|rest| rest.starts_with(" |") || rest.starts_with(" ("))
        });
        if !found {
            problems.push(format!("PROTOCOL.md has no limits row starting `{row} |`"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The annotated frames in PROTOCOL.md: fenced blocks opened with ```` ```frame <vector> ````
/// whose lines are `hex bytes | comment`. Returns (vector name, bytes) per block.
fn annotated_frames(document: &str) -> Vec<(String, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for line in document.lines() {
        if let Some((name, bytes)) = current.as_mut() {
            if line.starts_with("```") {
                frames.push((std::mem::take(name), std::mem::take(bytes)));
                current = None;
                continue;
            }
            let hex_part = line.split('|').next().unwrap_or_default();
            for token in hex_part.split_whitespace() {
                let byte = u8::from_str_radix(token, 16)
                    .unwrap_or_else(|_| panic!("`{token}` in frame block {name} is not a byte"));
                bytes.push(byte);
            }
        } else if let Some(name) = line.strip_prefix("```frame ") {
            current = Some((name.trim().to_owned(), Vec::new()));
        }
    }
    assert!(current.is_none(), "an annotated frame block is not closed");
    frames
}

#[test]
fn annotated_frames_match_their_vectors() {
    let frames = annotated_frames(&protocol_md());
    assert!(frames.len() >= 5, "PROTOCOL.md lost its annotated frames");
    for (name, bytes) in frames {
        let path = vectors_dir().join(format!("{name}.hex"));
        let vector = crate::vectors::read_hex_file(&path);
        assert_eq!(
            hex::encode(&bytes),
            hex::encode(&vector),
            "annotated frame {name}"
        );
    }
}

#[test]
fn every_operation_vector_is_named_in_its_section() {
    let document = protocol_md();
    let missing: Vec<String> = crate::fixtures::all_vectors()
        .iter()
        .map(crate::fixtures::Vector::file_name)
        .filter(|file| file.starts_with("0x") && !document.contains(&format!("`{file}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "PROTOCOL.md does not name these vectors: {missing:?}"
    );
}
