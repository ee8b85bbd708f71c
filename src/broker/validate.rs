//! Request validation: every field a client sends is checked here, before the core sees
//! it, and refused with INVALID_ARGUMENT naming the field.

use taskforge_protocol::{
    limits, Backoff, ErrorBody, ErrorCode, ErrorDetails, FailRequest, FetchRequest, LogRequest,
    LogTailRequest, NewJob, ParentRef, ProgressRequest, QueueAssignment, QueueSettings, Request,
    Retry, ScheduleCreate, ScheduleKey, ScheduleUpdate, WorkerRegister, FIRE_AT_METADATA_KEY,
    SCHEDULE_ID_METADATA_KEY,
};

use super::BrokerLimits;

fn invalid(message: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidArgument, message)
}

/// Checks a queue name: 1..=128 bytes of `[A-Za-z0-9._:-]`.
pub fn queue_name(name: &str) -> Result<(), ErrorBody> {
    let valid_chars = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"._:-".contains(&byte));
    if name.is_empty() || name.len() > limits::QUEUE_NAME_BYTES_MAX || !valid_chars {
        return Err(invalid(format!(
            "queue name {name:?} must be 1 to {} bytes of A-Z a-z 0-9 . _ : -",
            limits::QUEUE_NAME_BYTES_MAX
        )));
    }
    Ok(())
}

/// Checks the queue name of any request that names one queue, so a malformed name is
/// INVALID_ARGUMENT before any lookup could say NOT_FOUND.
pub fn named_queue(request: &Request) -> Result<(), ErrorBody> {
    let name = match request {
        Request::QueueCreate(body) | Request::QueueUpdate(body) => &body.name,
        Request::QueueGet(body)
        | Request::QueueDelete(body)
        | Request::QueuePause(body)
        | Request::QueueResume(body)
        | Request::QueuePurge(body)
        | Request::QueueStats(body) => &body.name,
        Request::JobList(body) => &body.queue,
        Request::DeadList(body) => &body.queue,
        Request::DeadRetry(body) | Request::DeadDiscard(body) => &body.queue,
        _ => return Ok(()),
    };
    queue_name(name)
}

/// Longest organization, project, user-facing or key name.
pub const DISPLAY_NAME_BYTES_MAX: usize = 128;

/// Longest slug.
pub const SLUG_BYTES_MAX: usize = 64;

/// Shortest and longest email.
pub const EMAIL_BYTES_MIN: usize = 3;
/// Longest email (RFC 5321's path limit).
pub const EMAIL_BYTES_MAX: usize = 254;

/// Shortest password.
pub const PASSWORD_BYTES_MIN: usize = 12;
/// Longest password (Argon2 hashes any length; this bounds the work per request).
pub const PASSWORD_BYTES_MAX: usize = 256;

/// Checks a display name.
pub fn display_name(field: &str, name: &str) -> Result<(), ErrorBody> {
    if name.is_empty() || name.len() > DISPLAY_NAME_BYTES_MAX {
        return Err(invalid(format!(
            "{field} must be 1 to {DISPLAY_NAME_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// Checks a slug: 1..=64 bytes of `[a-z0-9-]`.
pub fn slug(slug: &str) -> Result<(), ErrorBody> {
    let plain = slug
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if slug.is_empty() || slug.len() > SLUG_BYTES_MAX || !plain {
        return Err(invalid(format!(
            "slug {slug:?} must be 1 to {SLUG_BYTES_MAX} bytes of a-z 0-9 -"
        )));
    }
    Ok(())
}

/// Checks an email's shape (delivery is not our business).
pub fn email(email: &str) -> Result<(), ErrorBody> {
    if !(EMAIL_BYTES_MIN..=EMAIL_BYTES_MAX).contains(&email.len()) || !email.contains('@') {
        return Err(invalid(format!(
            "email must be {EMAIL_BYTES_MIN} to {EMAIL_BYTES_MAX} bytes with an @"
        )));
    }
    Ok(())
}

/// Checks a password's length.
pub fn password(password: &str) -> Result<(), ErrorBody> {
    if !(PASSWORD_BYTES_MIN..=PASSWORD_BYTES_MAX).contains(&password.len()) {
        return Err(invalid(format!(
            "passwords are {PASSWORD_BYTES_MIN} to {PASSWORD_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

fn max_attempts(field: &str, value: u32) -> Result<(), ErrorBody> {
    if value == 0 || value > limits::MAX_ATTEMPTS_CEILING {
        return Err(invalid(format!(
            "{field} must be between 1 and {}, got {value}",
            limits::MAX_ATTEMPTS_CEILING
        )));
    }
    Ok(())
}

/// Checks a lease duration.
pub fn lease_ms(field: &str, value: u32) -> Result<(), ErrorBody> {
    if !(limits::LEASE_MS_MIN..=limits::LEASE_MS_MAX).contains(&value) {
        return Err(invalid(format!(
            "{field} must be between {} and {} ms, got {value}",
            limits::LEASE_MS_MIN,
            limits::LEASE_MS_MAX
        )));
    }
    Ok(())
}

fn backoff(field: &str, backoff: &Backoff) -> Result<(), ErrorBody> {
    if backoff.factor_percent < 100 {
        return Err(invalid(format!(
            "{field}.factor_percent must be at least 100"
        )));
    }
    if backoff.jitter_percent > 100 {
        return Err(invalid(format!(
            "{field}.jitter_percent must be at most 100"
        )));
    }
    if backoff.initial_ms > backoff.max_ms {
        return Err(invalid(format!(
            "{field}.initial_ms must not exceed {field}.max_ms"
        )));
    }
    Ok(())
}

/// Checks queue settings.
pub fn queue_settings(settings: &QueueSettings) -> Result<(), ErrorBody> {
    if let Some(value) = settings.max_attempts {
        max_attempts("settings.max_attempts", value)?;
    }
    if let Some(value) = settings.lease_ms {
        lease_ms("settings.lease_ms", value)?;
    }
    if let Some(value) = &settings.backoff {
        backoff("settings.backoff", value)?;
    }
    if settings
        .retention_ms
        .is_some_and(|retention_ms| retention_ms > limits::RETENTION_MS_MAX)
    {
        return Err(invalid(format!(
            "settings.retention_ms must be at most {} (0 takes the plan's)",
            limits::RETENTION_MS_MAX
        )));
    }
    Ok(())
}

/// Checks one job of an enqueue.
pub fn new_job(job: &NewJob, limits_in_force: &BrokerLimits, now_ms: u64) -> Result<(), ErrorBody> {
    queue_name(&job.queue)?;
    if job.payload.len() > limits_in_force.payload_bytes_max as usize {
        return Err(invalid(format!(
            "payload of {} bytes is over the {}-byte limit",
            job.payload.len(),
            limits_in_force.payload_bytes_max
        )));
    }
    if let Some(value) = job.max_attempts {
        max_attempts("max_attempts", value)?;
    }
    if let Some(value) = job.lease_ms {
        lease_ms("lease_ms", value)?;
    }
    if let Some(value) = &job.backoff {
        backoff("backoff", value)?;
    }
    let horizon_ms = now_ms.saturating_add(limits::SCHEDULE_AHEAD_MS_MAX);
    let run_at_ms = job
        .run_at_ms
        .or(job.delay_ms.map(|delay_ms| now_ms.saturating_add(delay_ms)));
    if run_at_ms.is_some_and(|run_at_ms| run_at_ms > horizon_ms) {
        return Err(invalid(format!(
            "run_at_ms/delay_ms is more than {} ms ahead",
            limits::SCHEDULE_AHEAD_MS_MAX
        )));
    }
    if let Some(ttl_ms) = job.ttl_ms {
        if ttl_ms == 0 {
            return Err(invalid("ttl_ms must be at least 1".to_owned()));
        }
    }
    if job.expires_at_ms.is_some_and(|at_ms| at_ms <= now_ms) {
        return Err(invalid("expires_at_ms is not in the future".to_owned()));
    }
    if let Some(unique) = &job.unique {
        if unique.key.is_empty() || unique.key.len() > limits::UNIQUE_KEY_BYTES_MAX {
            return Err(invalid(format!(
                "unique key must be 1 to {} bytes",
                limits::UNIQUE_KEY_BYTES_MAX
            )));
        }
        if unique.until.is_none() && unique.window_ms.is_none() {
            return Err(invalid(
                "a unique key needs `until`, `window_ms` or both".to_owned(),
            ));
        }
        if unique.window_ms == Some(0) {
            return Err(invalid("unique window_ms must be at least 1".to_owned()));
        }
    }
    if job.depends_on.len() > limits::PARENTS_PER_JOB_MAX {
        return Err(invalid(format!(
            "a job names at most {} parents, not {}",
            limits::PARENTS_PER_JOB_MAX,
            job.depends_on.len()
        )));
    }
    for (index, parent) in job.depends_on.iter().enumerate() {
        if job.depends_on[..index].contains(parent) {
            return Err(invalid(format!("parent {parent:?} is named twice")));
        }
    }
    pairs("metadata", &job.metadata, limits::METADATA_ENTRIES_MAX)
}

/// Checks a single ENQUEUE's job: it has no batch to refer to.
pub fn single_job(
    job: &NewJob,
    limits_in_force: &BrokerLimits,
    now_ms: u64,
) -> Result<(), ErrorBody> {
    if job
        .depends_on
        .iter()
        .any(|parent| matches!(parent, ParentRef::Batch(_)))
    {
        return Err(invalid(
            "depends_on refers to a batch index, but ENQUEUE has no batch; use ENQUEUE_BATCH"
                .to_owned(),
        ));
    }
    new_job(job, limits_in_force, now_ms)
}

/// Checks the batch references of a batch: each names another job of the batch, and they
/// form no cycle. A cycle is reported at a job on it.
fn batch_graph(jobs: &[NewJob]) -> Result<(), ErrorBody> {
    let batch_parents = |job: &NewJob| -> Vec<usize> {
        job.depends_on
            .iter()
            .filter_map(|parent| match parent {
                ParentRef::Batch(index) => Some(*index as usize),
                ParentRef::Job(_) => None,
            })
            .collect()
    };
    let mut waiting_on = Vec::with_capacity(jobs.len());
    let mut children = vec![Vec::new(); jobs.len()];
    for (index, job) in jobs.iter().enumerate() {
        let parents = batch_parents(job);
        for parent in &parents {
            if *parent >= jobs.len() || *parent == index {
                return Err(invalid(format!(
                    "jobs[{index}] depends on batch index {parent}, which is not another job of the batch"
                ))
                .with_details(ErrorDetails::BatchItem {
                    index: index as u32,
                }));
            }
            children[*parent].push(index);
        }
        waiting_on.push(parents.len());
    }
    // Kahn's algorithm: whatever cannot be ordered is on a cycle or behind one.
    let mut ready: Vec<usize> = (0..jobs.len())
        .filter(|index| waiting_on[*index] == 0)
        .collect();
    while let Some(index) = ready.pop() {
        for child in &children[index] {
            waiting_on[*child] -= 1;
            if waiting_on[*child] == 0 {
                ready.push(*child);
            }
        }
    }
    let Some(mut on_cycle) = (0..jobs.len()).find(|index| waiting_on[*index] > 0) else {
        return Ok(());
    };
    // Walking up unordered parents from an unordered job must come back round: the
    // first job seen twice is on a cycle.
    let mut seen = vec![false; jobs.len()];
    while !seen[on_cycle] {
        seen[on_cycle] = true;
        on_cycle = batch_parents(&jobs[on_cycle])
            .into_iter()
            .find(|parent| waiting_on[*parent] > 0)
            .unwrap_or(on_cycle);
    }
    Err(
        invalid(format!("jobs[{on_cycle}] is on a dependency cycle")).with_details(
            ErrorDetails::BatchItem {
                index: on_cycle as u32,
            },
        ),
    )
}

/// Checks string pairs (metadata, labels): a bounded count and size, unique keys.
fn pairs(field: &str, entries: &[(String, String)], entries_max: usize) -> Result<(), ErrorBody> {
    if entries.len() > entries_max {
        return Err(invalid(format!(
            "{field} has {} entries; at most {entries_max} allowed",
            entries.len(),
        )));
    }
    let bytes: usize = entries
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if bytes > limits::METADATA_BYTES_MAX {
        return Err(invalid(format!(
            "{field} has {bytes} bytes; at most {} allowed",
            limits::METADATA_BYTES_MAX
        )));
    }
    let mut keys: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(invalid(format!("{field} key {:?} appears twice", pair[0])));
    }
    Ok(())
}

/// Checks a text field's size (it may be empty).
fn text(field: &str, value: &str, bytes_max: usize) -> Result<(), ErrorBody> {
    if value.len() > bytes_max {
        return Err(invalid(format!(
            "{field} of {} bytes is over the {bytes_max}-byte limit",
            value.len()
        )));
    }
    Ok(())
}

/// Checks one weight of an assignment or FETCH.
fn weight(weight: u32) -> Result<(), ErrorBody> {
    if weight == 0 || weight > limits::ASSIGNMENT_WEIGHT_MAX {
        return Err(invalid(format!(
            "weights must be 1 to {}",
            limits::ASSIGNMENT_WEIGHT_MAX
        )));
    }
    Ok(())
}

/// Checks a list of queues to serve: 1..=`FETCH_QUEUES_MAX` distinct valid names with
/// valid weights.
pub fn queue_assignments(queues: &[QueueAssignment]) -> Result<(), ErrorBody> {
    if queues.is_empty() || queues.len() > limits::FETCH_QUEUES_MAX {
        return Err(invalid(format!(
            "a worker serves 1 to {} queues",
            limits::FETCH_QUEUES_MAX
        )));
    }
    for (index, assignment) in queues.iter().enumerate() {
        queue_name(&assignment.queue)?;
        weight(assignment.weight)?;
        if queues[..index]
            .iter()
            .any(|earlier| earlier.queue == assignment.queue)
        {
            return Err(invalid(format!(
                "queue {:?} is named twice",
                assignment.queue
            )));
        }
    }
    Ok(())
}

/// Checks a WORKER_REGISTER.
pub fn worker_register(request: &WorkerRegister) -> Result<(), ErrorBody> {
    display_name("name", &request.name)?;
    text("hostname", &request.hostname, limits::NAME_BYTES_MAX)?;
    text("version", &request.version, limits::NAME_BYTES_MAX)?;
    pairs("labels", &request.labels, limits::WORKER_LABELS_MAX)?;
    if request.concurrency == 0 || request.concurrency > limits::WORKER_CONCURRENCY_MAX {
        return Err(invalid(format!(
            "concurrency must be 1 to {}",
            limits::WORKER_CONCURRENCY_MAX
        )));
    }
    queue_assignments(&request.queues)
}

/// Checks a LOG request's lines.
pub fn log(request: &LogRequest) -> Result<(), ErrorBody> {
    if request.lines.is_empty() || request.lines.len() > limits::LOG_LINES_PER_REQUEST_MAX {
        return Err(invalid(format!(
            "LOG carries 1 to {} lines",
            limits::LOG_LINES_PER_REQUEST_MAX
        )));
    }
    for (index, line) in request.lines.iter().enumerate() {
        let bytes = line.message.len()
            + line
                .fields
                .iter()
                .map(|(key, value)| key.len() + value.len())
                .sum::<usize>();
        if bytes > limits::LOG_LINE_BYTES_MAX {
            return Err(invalid(format!(
                "log line {index} has {bytes} bytes of message and fields; at most {} allowed",
                limits::LOG_LINE_BYTES_MAX
            )));
        }
    }
    Ok(())
}

/// Checks a LOG_TAIL request.
pub fn log_tail(request: &LogTailRequest) -> Result<(), ErrorBody> {
    if request.lines == 0 || request.lines > limits::LOG_TAIL_LINES_MAX {
        return Err(invalid(format!(
            "lines must be 1 to {}",
            limits::LOG_TAIL_LINES_MAX
        )));
    }
    if request.wait_ms > limits::FETCH_WAIT_MS_MAX {
        return Err(invalid(format!(
            "wait_ms must be at most {}",
            limits::FETCH_WAIT_MS_MAX
        )));
    }
    Ok(())
}

/// Checks a PROGRESS request.
pub fn progress(request: &ProgressRequest) -> Result<(), ErrorBody> {
    if request.percent > 100 {
        return Err(invalid(format!(
            "percent must be 0 to 100, not {}",
            request.percent
        )));
    }
    text(
        "progress message",
        &request.message,
        limits::PROGRESS_MESSAGE_BYTES_MAX,
    )
}

/// Checks a batch, reporting the first bad job with its index.
pub fn batch(
    jobs: &[NewJob],
    limits_in_force: &BrokerLimits,
    now_ms: u64,
) -> Result<(), ErrorBody> {
    if jobs.is_empty() || jobs.len() > limits_in_force.batch_jobs_max as usize {
        return Err(invalid(format!(
            "a batch holds 1 to {} jobs, got {}",
            limits_in_force.batch_jobs_max,
            jobs.len()
        )));
    }
    for (index, job) in jobs.iter().enumerate() {
        new_job(job, limits_in_force, now_ms).map_err(|error| {
            error.with_details(ErrorDetails::BatchItem {
                index: index as u32,
            })
        })?;
    }
    batch_graph(jobs)
}

/// Checks FETCH parameters.
pub fn fetch(request: &FetchRequest) -> Result<(), ErrorBody> {
    let FetchRequest {
        queues,
        max_jobs,
        wait_ms,
        lease_ms: lease,
        worker_id: _,
        weights,
    } = request;
    let (max_jobs, wait_ms) = (*max_jobs, *wait_ms);
    if !weights.is_empty() {
        if weights.len() != queues.len() {
            return Err(invalid(format!(
                "FETCH names {} queues but {} weights",
                queues.len(),
                weights.len()
            )));
        }
        for value in weights {
            weight(*value)?;
        }
    }
    if queues.is_empty() || queues.len() > limits::FETCH_QUEUES_MAX {
        return Err(invalid(format!(
            "FETCH names 1 to {} queues",
            limits::FETCH_QUEUES_MAX
        )));
    }
    for (index, name) in queues.iter().enumerate() {
        queue_name(name)?;
        if queues[..index].contains(name) {
            return Err(invalid(format!("queue {name:?} is named twice")));
        }
    }
    if max_jobs == 0 || max_jobs > limits::FETCH_JOBS_MAX {
        return Err(invalid(format!(
            "max_jobs must be 1 to {}",
            limits::FETCH_JOBS_MAX
        )));
    }
    if wait_ms > limits::FETCH_WAIT_MS_MAX {
        return Err(invalid(format!(
            "wait_ms must be at most {}",
            limits::FETCH_WAIT_MS_MAX
        )));
    }
    if let Some(value) = lease {
        lease_ms("lease_ms", *value)?;
    }
    Ok(())
}

/// Checks an ACK's result size.
pub fn result(result: Option<&Vec<u8>>, limits_in_force: &BrokerLimits) -> Result<(), ErrorBody> {
    match result {
        Some(bytes) if bytes.len() > limits_in_force.result_bytes_max as usize => {
            Err(invalid(format!(
                "result of {} bytes is over the {}-byte limit",
                bytes.len(),
                limits_in_force.result_bytes_max
            )))
        }
        _ => Ok(()),
    }
}

/// Checks a FAIL's message and retry time.
pub fn failure(request: &FailRequest, now_ms: u64) -> Result<(), ErrorBody> {
    text(
        "error message",
        &request.error,
        limits::ERROR_MESSAGE_BYTES_MAX,
    )?;
    if let Some(details) = &request.error_details {
        text("error_details", details, limits::ERROR_DETAILS_BYTES_MAX)?;
    }
    if let Retry::At(at_ms) = &request.retry {
        if *at_ms > now_ms.saturating_add(limits::SCHEDULE_AHEAD_MS_MAX) {
            return Err(invalid("retry time is too far ahead".to_owned()));
        }
    }
    Ok(())
}

/// Checks a page size.
pub fn list_limit(limit: u32) -> Result<usize, ErrorBody> {
    if limit == 0 || limit > limits::LIST_LIMIT_MAX {
        return Err(invalid(format!(
            "limit must be 1 to {}",
            limits::LIST_LIMIT_MAX
        )));
    }
    Ok(limit as usize)
}

// --- Schedules (SCHEDULE_*) ------------------------------------------------------------

/// Checks a schedule name: 1..=`SCHEDULE_NAME_BYTES_MAX` bytes of `[A-Za-z0-9._:-]`, not
/// all digits (so that a name never reads as an id).
pub fn schedule_name(field: &str, name: &str) -> Result<(), ErrorBody> {
    let valid_chars = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"._:-".contains(&byte));
    let all_digits = name.bytes().all(|byte| byte.is_ascii_digit());
    if name.is_empty() || name.len() > limits::SCHEDULE_NAME_BYTES_MAX || !valid_chars || all_digits
    {
        return Err(invalid(format!(
            "{field} {name:?} must be 1 to {} bytes of A-Z a-z 0-9 . _ : -, not all digits",
            limits::SCHEDULE_NAME_BYTES_MAX
        )));
    }
    Ok(())
}

/// Checks how a request names a schedule.
pub fn schedule_key(schedule: &ScheduleKey) -> Result<(), ErrorBody> {
    match schedule {
        ScheduleKey::Id(_) => Ok(()),
        ScheduleKey::Name(name) => schedule_name("schedule name", name),
    }
}

/// Checks a cron expression's size and syntax (a seconds field is required).
pub fn cron_expression(cron: &str) -> Result<(), ErrorBody> {
    text("cron", cron, limits::CRON_EXPRESSION_BYTES_MAX)?;
    super::cron::parse_cron(cron)
        .map(|_| ())
        .map_err(|error| invalid(error.to_string()))
}

/// Checks a time zone name: an IANA name the broker knows.
pub fn time_zone(name: &str) -> Result<(), ErrorBody> {
    text("time_zone", name, limits::TIME_ZONE_BYTES_MAX)?;
    super::cron::parse_zone(name)
        .map(|_| ())
        .map_err(|error| invalid(error.to_string()))
}

/// Checks a schedule's job template: a valid job for `queue` with no run time of its own,
/// a payload within `SCHEDULE_PAYLOAD_BYTES_MAX`, and room in its metadata for the two
/// entries the broker adds (whose keys it must not use).
pub fn schedule_template(
    template: &NewJob,
    queue: &str,
    limits_in_force: &BrokerLimits,
    now_ms: u64,
) -> Result<(), ErrorBody> {
    if template.queue != queue {
        return Err(invalid(format!(
            "template.queue {:?} must equal queue {queue:?}",
            template.queue
        )));
    }
    if template.run_at_ms.is_some() || template.delay_ms.is_some() {
        return Err(invalid(
            "template.run_at_ms and template.delay_ms must be unset: a schedule's jobs run at \
             their fire times"
                .to_owned(),
        ));
    }
    if !template.depends_on.is_empty() || template.expires_at_ms.is_some() {
        return Err(invalid(
            "template.depends_on and template.expires_at_ms must be unset: every run is a new \
             job (use template.ttl_ms for an expiry relative to each run)"
                .to_owned(),
        ));
    }
    let payload_max = limits_in_force
        .payload_bytes_max
        .min(limits::SCHEDULE_PAYLOAD_BYTES_MAX);
    if template.payload.len() > payload_max as usize {
        return Err(invalid(format!(
            "template.payload of {} bytes is over the {payload_max}-byte limit of schedules",
            template.payload.len()
        )));
    }
    new_job(template, limits_in_force, now_ms)
        .map_err(|error| invalid(format!("template: {}", error.message)))?;
    if template.metadata.len() > limits::SCHEDULE_METADATA_ENTRIES_MAX {
        return Err(invalid(format!(
            "template.metadata has {} entries; at most {} allowed",
            template.metadata.len(),
            limits::SCHEDULE_METADATA_ENTRIES_MAX
        )));
    }
    let bytes: usize = template
        .metadata
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if bytes > limits::SCHEDULE_METADATA_BYTES_MAX {
        return Err(invalid(format!(
            "template.metadata has {bytes} bytes; at most {} allowed",
            limits::SCHEDULE_METADATA_BYTES_MAX
        )));
    }
    if let Some((key, _)) = template
        .metadata
        .iter()
        .find(|(key, _)| key == SCHEDULE_ID_METADATA_KEY || key == FIRE_AT_METADATA_KEY)
    {
        return Err(invalid(format!(
            "template.metadata key {key:?} is reserved: the broker sets it on each job"
        )));
    }
    Ok(())
}

/// Checks a SCHEDULE_CREATE.
pub fn schedule_create(
    request: &ScheduleCreate,
    limits_in_force: &BrokerLimits,
    now_ms: u64,
) -> Result<(), ErrorBody> {
    schedule_name("name", &request.name)?;
    cron_expression(&request.cron)?;
    time_zone(&request.time_zone)?;
    queue_name(&request.queue)?;
    schedule_template(&request.template, &request.queue, limits_in_force, now_ms)
}

/// Checks a SCHEDULE_UPDATE's fields (the template's queue is checked against the
/// schedule's by the core, which knows it when `queue` is not set).
pub fn schedule_update(
    request: &ScheduleUpdate,
    limits_in_force: &BrokerLimits,
    now_ms: u64,
) -> Result<(), ErrorBody> {
    schedule_key(&request.schedule)?;
    if let Some(name) = &request.name {
        schedule_name("name", name)?;
    }
    if let Some(cron) = &request.cron {
        cron_expression(cron)?;
    }
    if let Some(zone) = &request.time_zone {
        time_zone(zone)?;
    }
    if let Some(queue) = &request.queue {
        queue_name(queue)?;
    }
    if let Some(template) = &request.template {
        let queue = request.queue.as_deref().unwrap_or(&template.queue);
        schedule_template(template, queue, limits_in_force, now_ms)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_bounded_and_plain() {
        assert!(queue_name("emails.high-priority:v2_x").is_ok());
        assert!(queue_name("").is_err());
        assert!(queue_name("with space").is_err());
        assert!(queue_name(&"a".repeat(limits::QUEUE_NAME_BYTES_MAX + 1)).is_err());
    }

    fn batch_job(parents: &[u32]) -> NewJob {
        NewJob {
            queue: "q".into(),
            depends_on: parents
                .iter()
                .map(|index| ParentRef::Batch(*index))
                .collect(),
            ..NewJob::default()
        }
    }

    fn cycle_member(jobs: &[NewJob]) -> Option<u32> {
        match batch_graph(jobs) {
            Ok(()) => None,
            Err(error) => match error.details {
                ErrorDetails::BatchItem { index } => Some(index),
                other => panic!("unexpected details {other:?}"),
            },
        }
    }

    #[test]
    fn batch_graphs_refuse_cycles_at_a_job_on_the_cycle() {
        // A diamond is fine.
        assert_eq!(
            cycle_member(&[
                batch_job(&[]),
                batch_job(&[0]),
                batch_job(&[0]),
                batch_job(&[1, 2])
            ]),
            None
        );
        // 1 -> 2 -> 3 -> 1, with 4 hanging behind the cycle and 0 outside it.
        let jobs = [
            batch_job(&[]),
            batch_job(&[3]),
            batch_job(&[1]),
            batch_job(&[2]),
            batch_job(&[3, 0]),
        ];
        let member = cycle_member(&jobs).expect("a cycle");
        assert!([1, 2, 3].contains(&member), "{member} is not on the cycle");
        assert_eq!(
            cycle_member(&[batch_job(&[0])]),
            Some(0),
            "a job depending on itself"
        );
        assert_eq!(
            cycle_member(&[batch_job(&[5])]),
            Some(0),
            "an index outside the batch"
        );
    }

    #[test]
    fn metadata_keys_must_be_unique() {
        let entries = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(pairs("metadata", &entries, limits::METADATA_ENTRIES_MAX).is_err());
    }

    #[test]
    fn schedule_names_are_plain_and_never_all_digits() {
        assert!(schedule_name("name", "nightly-report.v2").is_ok());
        assert!(schedule_name("name", "2024-cleanup").is_ok());
        assert!(schedule_name("name", "42").is_err());
        assert!(schedule_name("name", "").is_err());
        assert!(schedule_name("name", "with space").is_err());
    }

    #[test]
    fn schedule_templates_have_no_run_time_and_no_reserved_metadata() {
        let limits_in_force = BrokerLimits {
            payload_bytes_max: limits::PAYLOAD_BYTES_MAX_DEFAULT,
            result_bytes_max: limits::RESULT_BYTES_MAX_DEFAULT,
            batch_jobs_max: limits::BATCH_JOBS_MAX_DEFAULT,
            response_bytes_max: limits::FRAME_BYTES_MAX_DEFAULT,
        };
        let template = NewJob {
            queue: "reports".into(),
            ..NewJob::default()
        };
        assert!(schedule_template(&template, "reports", &limits_in_force, 0).is_ok());
        assert!(schedule_template(&template, "emails", &limits_in_force, 0).is_err());
        let delayed = NewJob {
            delay_ms: Some(5),
            ..template.clone()
        };
        assert!(schedule_template(&delayed, "reports", &limits_in_force, 0).is_err());
        let reserved = NewJob {
            metadata: vec![(FIRE_AT_METADATA_KEY.to_owned(), "1".to_owned())],
            ..template.clone()
        };
        assert!(schedule_template(&reserved, "reports", &limits_in_force, 0).is_err());
        let large = NewJob {
            payload: vec![0; limits::SCHEDULE_PAYLOAD_BYTES_MAX as usize + 1],
            ..template
        };
        assert!(schedule_template(&large, "reports", &limits_in_force, 0).is_err());
    }
}
