//! Every protocol limit in one place, unit last in each name.
//!
//! The server may be configured *below* a ceiling but never above it; the values a session
//! actually gets are announced in the server hello ([`crate::SessionLimits`]).

/// The protocol version this crate speaks. Bumped only for incompatible changes; see the
/// compatibility rules in `PROTOCOL.md`.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame (length field excluded) accepted before the handshake completes. Small so
/// that an unauthenticated peer can make the server buffer at most this much.
pub const HANDSHAKE_FRAME_BYTES_MAX: u32 = 4 * 1024;

/// Default largest frame after the handshake: a full batch of small jobs or one job with a
/// maximal payload, with room for headers.
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 4 * 1024 * 1024;

/// Hard ceiling for the configurable frame size. Also the byte limit handed to bincode when
/// decoding any body, so a hostile length field can never make the decoder allocate more.
pub const FRAME_BYTES_CEILING: u32 = 64 * 1024 * 1024;

/// Default largest job payload. sled stores values above roughly 16 KiB in side files that
/// it never fsyncs, so the storage layer raises its segment size to keep payloads of this
/// size inline (see TECH-NOTES).
pub const PAYLOAD_BYTES_MAX_DEFAULT: u32 = 256 * 1024;

/// Default largest result stored by an ACK.
pub const RESULT_BYTES_MAX_DEFAULT: u32 = 64 * 1024;

/// Default largest number of jobs in one ENQUEUE_BATCH.
pub const BATCH_JOBS_MAX_DEFAULT: u32 = 1_000;

/// Largest number of jobs one FETCH may ask for.
pub const FETCH_JOBS_MAX: u32 = 1_000;

/// Longest long-poll a FETCH may ask for.
pub const FETCH_WAIT_MS_MAX: u32 = 60_000;

/// Largest number of queues one FETCH may name.
pub const FETCH_QUEUES_MAX: usize = 64;

/// Largest number of acknowledgements in one ACK_BATCH.
pub const ACK_BATCH_MAX: usize = 1_000;

/// Longest queue name, in bytes. Names use `[A-Za-z0-9._:-]`.
pub const QUEUE_NAME_BYTES_MAX: usize = 128;

/// Longest client name or version string in the hello.
pub const CLIENT_NAME_BYTES_MAX: usize = 128;

/// Longest credential string in the hello.
pub const CREDENTIAL_BYTES_MAX: usize = 1024;

/// Longest error message a FAIL may carry; longer messages are refused.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 8 * 1024;

/// Most metadata entries on one job.
pub const METADATA_ENTRIES_MAX: usize = 64;

/// Most bytes of metadata (keys plus values) on one job.
pub const METADATA_BYTES_MAX: usize = 8 * 1024;

/// Largest page a LIST operation returns.
pub const LIST_LIMIT_MAX: u32 = 1_000;

/// Most jobs one PURGE, DEAD_RETRY or DEAD_DISCARD changes; the reply says how many remain
/// so a client loops. Keeps every storage batch bounded.
pub const BULK_JOBS_MAX: u32 = 10_000;

/// Shortest lease a FETCH or EXTEND may ask for.
pub const LEASE_MS_MIN: u32 = 100;

/// Longest lease a FETCH or EXTEND may ask for (one day).
pub const LEASE_MS_MAX: u32 = 24 * 60 * 60 * 1000;

/// Lease used when neither the FETCH, the job nor the queue names one.
pub const LEASE_MS_DEFAULT: u32 = 30_000;

/// Attempts a job gets when neither it nor its queue says otherwise.
pub const MAX_ATTEMPTS_DEFAULT: u32 = 10;

/// Most attempts a job or queue may configure.
pub const MAX_ATTEMPTS_CEILING: u32 = 1_000;

/// Default first retry delay.
pub const BACKOFF_INITIAL_MS_DEFAULT: u32 = 1_000;

/// Default growth of the retry delay per attempt, in percent (200 = doubles).
pub const BACKOFF_FACTOR_PERCENT_DEFAULT: u32 = 200;

/// Default cap on one retry delay (one hour).
pub const BACKOFF_MAX_MS_DEFAULT: u32 = 60 * 60 * 1000;

/// Default random spread of a retry delay, in percent of the delay.
pub const BACKOFF_JITTER_PERCENT_DEFAULT: u8 = 20;

/// Furthest in the future a job may be scheduled (one year), so timers stay bounded.
pub const SCHEDULE_AHEAD_MS_MAX: u64 = 366 * 24 * 60 * 60 * 1000;

/// Default requests a session may have in flight; the server stops reading at the cap.
pub const REQUESTS_IN_FLIGHT_MAX_DEFAULT: u32 = 1_024;

/// Longest display name of an organization, project or API key, in bytes (at least 1).
pub const NAME_BYTES_MAX: usize = 128;

/// Longest slug of an organization or project, in bytes (at least 1, `[a-z0-9-]`): short
/// enough for a URL path segment or a DNS label.
pub const SLUG_BYTES_MAX: usize = 64;

/// Shortest user email, in bytes: `a@b`.
pub const EMAIL_BYTES_MIN: usize = 3;

/// Longest user email, in bytes: the longest address SMTP can deliver to (RFC 5321 path
/// limit of 256 less the angle brackets).
pub const EMAIL_BYTES_MAX: usize = 254;

/// Shortest user password, in bytes (NIST SP 800-63B asks for at least 8; we ask for more).
pub const PASSWORD_BYTES_MIN: usize = 12;

/// Longest user password, in bytes: bounds the work of one Argon2id hash.
pub const PASSWORD_BYTES_MAX: usize = 256;

/// Length of an API key's public id: 16 lowercase hex digits, short enough to read in a
/// listing.
pub const API_KEY_ID_HEX_DIGITS: usize = 16;

/// Length of an API key's secret: 64 lowercase hex digits (32 random bytes, 256 bits).
pub const API_KEY_SECRET_HEX_DIGITS: usize = 64;

/// How long a rotated API key's old secret keeps working when APIKEY_ROTATE names no grace
/// period (one hour): long enough to roll the new secret out to every client.
pub const API_KEY_ROTATE_GRACE_MS_DEFAULT: u64 = 60 * 60 * 1000;

/// Longest grace period an APIKEY_ROTATE may ask for (seven days), so a leaked old secret
/// does not stay valid for long.
pub const API_KEY_ROTATE_GRACE_MS_MAX: u64 = 7 * 24 * 60 * 60 * 1000;

/// Resolution of `ApiKeyInfo::last_used_at_ms`: the broker records a key's use at most once
/// per this period (one minute), so handshakes do not each cost a write.
pub const API_KEY_LAST_USED_INTERVAL_MS: u64 = 60 * 1000;

/// Longest time between APIKEY_REVOKE (or PROJECT_DELETE) and the closing of the key's live
/// sessions (one second).
pub const REVOKED_SESSION_CLOSE_MS_MAX: u64 = 1000;

/// Failed handshakes (UNAUTHENTICATED) one peer address may have within
/// `HANDSHAKE_FAILURES_WINDOW_MS`; beyond it its HELLOs get RATE_LIMITED, so credentials
/// cannot be guessed quickly.
pub const HANDSHAKE_FAILURES_MAX: u32 = 10;

/// The sliding window over which `HANDSHAKE_FAILURES_MAX` counts (one minute).
pub const HANDSHAKE_FAILURES_WINDOW_MS: u64 = 60 * 1000;

/// Length of the first subscription period ORG_CREATE starts (30 days).
pub const SUBSCRIPTION_PERIOD_MS_DEFAULT: u64 = 30 * 24 * 60 * 60 * 1000;

/// Largest FAIL `error_details` (a stack trace, say).
pub const ERROR_DETAILS_BYTES_MAX: usize = 16 * 1024;

/// Largest log line: message plus field keys and values.
pub const LOG_LINE_BYTES_MAX: usize = 8 * 1024;

/// Most lines in one LOG request.
pub const LOG_LINES_PER_REQUEST_MAX: usize = 100;

/// Default cap on the lines one execution may log (a server setting,
/// `limits.log_lines_per_execution_max`); LOG beyond it gets QUOTA_EXCEEDED.
pub const LOG_LINES_PER_EXECUTION_MAX_DEFAULT: u32 = 1_000;

/// Most lines one LOG_TAIL returns.
pub const LOG_TAIL_LINES_MAX: u32 = 1_000;

/// Largest PROGRESS message.
pub const PROGRESS_MESSAGE_BYTES_MAX: usize = 1024;

/// Most jobs a worker may say it runs at once.
pub const WORKER_CONCURRENCY_MAX: u32 = 10_000;

/// Most labels on a worker.
pub const WORKER_LABELS_MAX: usize = 32;

/// Largest assignment or FETCH weight.
pub const ASSIGNMENT_WEIGHT_MAX: u32 = 1_000;

/// Default heartbeat timeout (a server setting, `broker.heartbeat_timeout_ms`): a worker
/// silent this long is lost and its leases are released.
pub const HEARTBEAT_TIMEOUT_MS_DEFAULT: u32 = 15_000;

/// Default time a WORKER_TERMINATE gives a worker to finish.
pub const WORKER_TERMINATE_GRACE_MS_DEFAULT: u32 = 30_000;

/// Most parents one job may name.
pub const PARENTS_PER_JOB_MAX: usize = 100;

/// Most children JOB_GET lists.
pub const CHILDREN_SHOWN_MAX: usize = 1_000;

/// Longest unique key.
pub const UNIQUE_KEY_BYTES_MAX: usize = 256;

/// Longest retention a queue may set (one year).
pub const RETENTION_MS_MAX: u64 = 366 * 24 * 60 * 60 * 1000;
/// Most schedules one project may have; SCHEDULE_CREATE beyond it gets QUOTA_EXCEEDED
/// (`schedules_per_project`).
pub const SCHEDULES_PER_PROJECT_MAX: usize = 1_000;

/// Longest schedule name, in bytes. Names use `[A-Za-z0-9._:-]` and are not all digits (so
/// a name never reads as an id).
pub const SCHEDULE_NAME_BYTES_MAX: usize = 128;

/// Longest cron expression, in bytes.
pub const CRON_EXPRESSION_BYTES_MAX: usize = 256;

/// Longest time zone name, in bytes (the longest IANA name is 32).
pub const TIME_ZONE_BYTES_MAX: usize = 64;

/// Largest payload of a schedule's job template. Templates stay in memory for as long as
/// their schedule exists, so they are held to less than a job.
pub const SCHEDULE_PAYLOAD_BYTES_MAX: u32 = 64 * 1024;

/// Most metadata entries of a schedule's job template: the broker adds two
/// (`taskforge.schedule_id`, `taskforge.fire_at_ms`) to each job it enqueues.
pub const SCHEDULE_METADATA_ENTRIES_MAX: usize = METADATA_ENTRIES_MAX - 2;

/// Most bytes of metadata keys plus values of a schedule's job template, leaving room for
/// the two entries the broker adds.
pub const SCHEDULE_METADATA_BYTES_MAX: usize = METADATA_BYTES_MAX - 128;

const _: () = assert!(HANDSHAKE_FRAME_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT);
const _: () = assert!(FRAME_BYTES_MAX_DEFAULT <= FRAME_BYTES_CEILING);
const _: () = assert!(PAYLOAD_BYTES_MAX_DEFAULT < FRAME_BYTES_MAX_DEFAULT);
const _: () = assert!(LEASE_MS_MIN <= LEASE_MS_DEFAULT && LEASE_MS_DEFAULT <= LEASE_MS_MAX);
const _: () = assert!(MAX_ATTEMPTS_DEFAULT <= MAX_ATTEMPTS_CEILING);
const _: () =
    assert!(EMAIL_BYTES_MIN <= EMAIL_BYTES_MAX && EMAIL_BYTES_MAX <= CREDENTIAL_BYTES_MAX);
const _: () =
    assert!(PASSWORD_BYTES_MIN <= PASSWORD_BYTES_MAX && PASSWORD_BYTES_MAX <= CREDENTIAL_BYTES_MAX);
// `tf_` + id + `_` + secret must fit in the hello's credential string.
const _: () =
    assert!(3 + API_KEY_ID_HEX_DIGITS + 1 + API_KEY_SECRET_HEX_DIGITS <= CREDENTIAL_BYTES_MAX);
const _: () = assert!(API_KEY_ROTATE_GRACE_MS_DEFAULT <= API_KEY_ROTATE_GRACE_MS_MAX);
const _: () = assert!(SCHEDULE_PAYLOAD_BYTES_MAX <= PAYLOAD_BYTES_MAX_DEFAULT);
