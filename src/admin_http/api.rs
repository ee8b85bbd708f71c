//! The read-only JSON API under `/api/v1/`. Every route needs
//! `Authorization: Bearer <token>`; the broker checks the token as it checks a HELLO, and
//! the views are built by the same broker operations the protocol runs, for the session
//! that token opens.
//!
//! | route                         | answer                                              |
//! |-------------------------------|-----------------------------------------------------|
//! | `GET /api/v1/queues`          | `{"queues": [QueueView], "next_after": name|null}`; query `after`, `limit` (≤ `LIST_LIMIT_MAX`, default [`PAGE_LIMIT_DEFAULT`]) |
//! | `GET /api/v1/queues/{name}`   | one `QueueView`                                     |
//! | `GET /api/v1/jobs/{id}`       | one `JobView` (no payload or result bytes: only their sizes) |
//! | `GET /api/v1/workers`         | `{"workers": [WorkerInfo], "next_after": id|null}`; query `state`, `after`, `limit` |
//! | `GET /api/v1/workers/{id}`    | one `WorkerInfo`                                    |
//!
//! Errors are `{"error": CODE, "message": text}` with 400, 401, 404, 503 or 500.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use taskforge_protocol::limits::{CREDENTIAL_BYTES_MAX, LIST_LIMIT_MAX, PROTOCOL_VERSION};
use taskforge_protocol::{
    Backoff, Credentials, ErrorBody, ErrorCode, ExecutionInfo, HelloRequest, JobCounts, JobId,
    JobInfo, JobState, ProgressInfo, QueueDefaults, QueueInfo, QueueListRequest, QueueName,
    Request, Response as Answer, WorkerId, WorkerInfo, WorkerList, WorkerListRequest, WorkerRef,
    WorkerState,
};

use super::AdminState;
use crate::broker::{Broker, Session};

/// Items per page when a listing names no `limit`.
pub const PAGE_LIMIT_DEFAULT: u32 = 100;

/// The client name the broker sees for admin API requests.
const API_CLIENT_NAME: &str = "taskforge-admin-http";

/// The routes, relative to `/api/v1`.
pub(super) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/queues", get(queue_list))
        .route("/queues/{name}", get(queue_get))
        .route("/jobs/{id}", get(job_get))
        .route("/workers", get(worker_list))
        .route("/workers/{id}", get(worker_get))
}

/// An API error: an HTTP status and a JSON body.
struct ApiError {
    /// The status.
    status: StatusCode,
    /// The stable code's name.
    code: &'static str,
    /// What went wrong and what to do.
    message: String,
}

/// The JSON body of an error.
#[derive(Serialize)]
struct ErrorView<'a> {
    /// The stable code's name (as in the protocol).
    error: &'a str,
    /// What went wrong.
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorView {
            error: self.code,
            message: &self.message,
        });
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"taskforge\"")];
            return (self.status, challenge, body).into_response();
        }
        (self.status, body).into_response()
    }
}

impl From<ErrorBody> for ApiError {
    fn from(error: ErrorBody) -> ApiError {
        let code = error.error_code();
        let status = match code {
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unavailable | ErrorCode::RateLimited => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            code: code.name(),
            message: error.message,
        }
    }
}

fn unauthenticated() -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: ErrorCode::Unauthenticated.name(),
        message: "send `Authorization: Bearer <root token>`".into(),
    }
}

/// Authenticates the bearer token and returns the broker and the session it opens.
fn authorize<'a>(
    state: &'a AdminState,
    headers: &HeaderMap,
) -> Result<(&'a Arc<Broker>, Session), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty() && token.len() <= CREDENTIAL_BYTES_MAX)
        .ok_or_else(unauthenticated)?;
    let broker = state.broker().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: ErrorCode::Unavailable.name(),
        message: "the broker is starting; retry once /readyz answers 200".into(),
    })?;
    let hello = HelloRequest {
        protocol_version: PROTOCOL_VERSION,
        client_name: API_CLIENT_NAME.into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        // A project API key (read scope) sees its project; the root token, project 1.
        credentials: if token.starts_with(crate::auth::api_key::API_KEY_PREFIX) {
            Credentials::ApiKey(token.to_string())
        } else {
            Credentials::RootToken(token.to_string())
        },
        project_id: None,
    };
    let session = broker.authenticate(&hello).map_err(|_| unauthenticated())?;
    Ok((broker, session))
}

/// A queue with its counts, as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueueView {
    /// The queue's name.
    pub name: String,
    /// True while deliveries are stopped.
    pub paused: bool,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Defaults for its jobs.
    pub defaults: QueueDefaults,
    /// Jobs per state.
    pub counts: JobCounts,
    /// How long the oldest ready job has waited, in ms.
    pub oldest_ready_age_ms: Option<u64>,
}

/// A page of queues.
#[derive(Debug, Serialize, Deserialize)]
pub struct QueuePage {
    /// Queues in name order.
    pub queues: Vec<QueueView>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next_after: Option<String>,
}

/// A job, as the API shows it: everything but the payload and result bytes, which belong
/// to the application and may hold its secrets.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobView {
    /// The job.
    pub job_id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its state now.
    pub state: JobState,
    /// Its priority.
    pub priority: i32,
    /// Size of its payload.
    pub payload_bytes: usize,
    /// Its metadata.
    pub metadata: Vec<(String, String)>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts it has in all.
    pub max_attempts: u32,
    /// Its retry delays.
    pub backoff: Backoff,
    /// Its default lease.
    pub lease_ms: u32,
    /// When it was enqueued.
    pub created_at_ms: u64,
    /// When it becomes (or became) deliverable.
    pub run_at_ms: u64,
    /// When its state last changed.
    pub updated_at_ms: u64,
    /// When it reached a final state.
    pub finished_at_ms: Option<u64>,
    /// The current lease's deadline while leased.
    pub lease_deadline_ms: Option<u64>,
    /// True when a cancel waits for the lease holder.
    pub cancel_requested: bool,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Size of the stored result, if any.
    pub result_bytes: Option<usize>,
    /// Deliveries so far.
    pub executions: u32,
    /// The latest delivery.
    pub latest_execution: Option<ExecutionInfo>,
    /// The last progress a worker reported.
    pub progress: Option<ProgressInfo>,
}

impl From<JobInfo> for JobView {
    fn from(job: JobInfo) -> JobView {
        JobView {
            job_id: job.job_id,
            queue: job.queue,
            state: job.state,
            priority: job.priority,
            payload_bytes: job.payload.len(),
            metadata: job.metadata,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            backoff: job.backoff,
            lease_ms: job.lease_ms,
            created_at_ms: job.created_at_ms,
            run_at_ms: job.run_at_ms,
            updated_at_ms: job.updated_at_ms,
            finished_at_ms: job.finished_at_ms,
            lease_deadline_ms: job.lease_deadline_ms,
            cancel_requested: job.cancel_requested,
            last_error: job.last_error,
            result_bytes: job.result.as_ref().map(Vec::len),
            executions: job.executions,
            latest_execution: job.latest_execution.map(|execution| *execution),
            progress: job.progress,
        }
    }
}

/// The answer of a request that should have been `expected`.
fn unexpected(expected: &str) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: ErrorCode::Internal.name(),
        message: format!("the broker answered something other than {expected}"),
    }
}

/// A queue's info plus its stats.
async fn queue_view(
    broker: &Broker,
    session: &Session,
    info: QueueInfo,
) -> Result<QueueView, ApiError> {
    let request = Request::QueueStats(QueueName {
        name: info.name.clone(),
    });
    let oldest_ready_age_ms = match broker.handle(session, request).await? {
        Answer::QueueStats(stats) => stats.oldest_ready_age_ms,
        _ => return Err(unexpected("QUEUE_STATS")),
    };
    Ok(QueueView {
        name: info.name,
        paused: info.paused,
        created_at_ms: info.created_at_ms,
        defaults: info.defaults,
        counts: info.counts,
        oldest_ready_age_ms,
    })
}

/// Query of `GET /api/v1/queues`.
#[derive(Debug, Deserialize)]
struct QueueListQuery {
    /// Start after this name.
    after: Option<String>,
    /// Page size.
    limit: Option<u32>,
}

async fn queue_list(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(query): Query<QueueListQuery>,
) -> Result<Json<QueuePage>, ApiError> {
    let (broker, session) = authorize(&state, &headers)?;
    let limit = query.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidArgument.name(),
            message: format!("limit must be between 1 and {LIST_LIMIT_MAX}"),
        });
    }
    let request = Request::QueueList(QueueListRequest {
        after: query.after,
        limit,
    });
    let page = match broker.handle(&session, request).await? {
        Answer::QueueList(page) => page,
        _ => return Err(unexpected("QUEUE_LIST")),
    };
    let mut queues = Vec::with_capacity(page.queues.len());
    for info in page.queues {
        queues.push(queue_view(broker, &session, info).await?);
    }
    Ok(Json(QueuePage {
        queues,
        next_after: page.next_after,
    }))
}

async fn queue_get(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<QueueView>, ApiError> {
    let (broker, session) = authorize(&state, &headers)?;
    let info = match broker
        .handle(&session, Request::QueueGet(QueueName { name }))
        .await?
    {
        Answer::QueueGet(info) => info,
        _ => return Err(unexpected("QUEUE_GET")),
    };
    Ok(Json(queue_view(broker, &session, info).await?))
}

async fn job_get(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let (broker, session) = authorize(&state, &headers)?;
    let job_id: JobId = id.parse().map_err(|message: String| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: ErrorCode::InvalidArgument.name(),
        message,
    })?;
    let request = Request::JobGet(taskforge_protocol::JobRef { job_id });
    match broker.handle(&session, request).await? {
        Answer::JobGet(info) => Ok(Json(JobView::from(info))),
        _ => Err(unexpected("JOB_GET")),
    }
}

/// Query of `GET /api/v1/workers`.
#[derive(Debug, Deserialize)]
struct WorkerListQuery {
    /// Only workers in this state.
    state: Option<WorkerState>,
    /// Start after this worker id.
    after: Option<WorkerId>,
    /// Page size.
    limit: Option<u32>,
}

async fn worker_list(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(query): Query<WorkerListQuery>,
) -> Result<Json<WorkerList>, ApiError> {
    let (broker, session) = authorize(&state, &headers)?;
    let request = Request::WorkerList(WorkerListRequest {
        state: query.state,
        after: query.after,
        limit: query.limit.unwrap_or(PAGE_LIMIT_DEFAULT),
    });
    match broker.handle(&session, request).await? {
        Answer::WorkerList(page) => Ok(Json(page)),
        _ => Err(unexpected("WORKER_LIST")),
    }
}

async fn worker_get(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(worker_id): Path<String>,
) -> Result<Json<WorkerInfo>, ApiError> {
    let (broker, session) = authorize(&state, &headers)?;
    let worker_id: WorkerId = worker_id.parse().map_err(|_| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: ErrorCode::InvalidArgument.name(),
        message: format!("worker id {worker_id:?} is not a number"),
    })?;
    match broker
        .handle(&session, Request::WorkerGet(WorkerRef { worker_id }))
        .await?
    {
        Answer::WorkerGet(info) => Ok(Json(info)),
        _ => Err(unexpected("WORKER_GET")),
    }
}
