//! The values behind the tenancy vectors (opcodes 0x06xx): organizations, users,
//! subscriptions, projects and API keys.
//!
//! One small world is used throughout so the vectors read as a story: the built-in `default`
//! organization (1) with its `default` project (1); Acme (org 2, on the pro plan) with its
//! projects Billing (5) and Search indexer (70 000), its owner Ana and its viewer Bo; and
//! Globex (org 300, suspended, on a custom plan). Ids are chosen to exercise one-, three-,
//! five- and nine-byte varints, and every enum variant appears in some vector.

use taskforge_protocol::*;

use crate::fixtures::{request, response, Message, Vector, NOW_MS};

/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

/// The built-in organization.
pub const ORG_DEFAULT: OrgId = 1;
/// Acme: an active organization on the pro plan.
pub const ORG_ACME: OrgId = 2;
/// Globex: a suspended organization on a custom plan (a three-byte varint id).
pub const ORG_GLOBEX: OrgId = 300;

/// The built-in project of the built-in organization.
pub const PROJECT_DEFAULT: ProjectId = 1;
/// Acme's Billing project.
pub const PROJECT_BILLING: ProjectId = 5;
/// Acme's Search indexer project (a five-byte varint id).
pub const PROJECT_INDEXER: ProjectId = 70_000;

/// Ana, Acme's owner.
pub const USER_ANA: UserId = 7;
/// Bo, an Acme viewer (a five-byte varint id).
pub const USER_BO: UserId = 65_536;

/// The public id of Billing's producer key.
pub const KEY_ID_PRODUCER: &str = "3f9a0c1d2e4b5a69";
/// The public id of the Search indexer's worker key.
pub const KEY_ID_WORKER: &str = "b1e2c3d4a5f60718";
/// The public id of an old, expired and revoked Billing key.
pub const KEY_ID_OLD: &str = "e07c55aa019b3d42";

fn text(value: &str) -> String {
    value.to_owned()
}

/// A well-formed API key, `tf_<key id>_<64 hex digits>`, whose 32 secret bytes are derived
/// from `seed` (a fixture, not a random secret).
pub fn api_key_secret(key_id: &str, seed: u8) -> String {
    let secret: String = (0u8..32)
        .map(|index| format!("{:02x}", seed.wrapping_add(index.wrapping_mul(37))))
        .collect();
    format!("tf_{key_id}_{secret}")
}

/// The free plan's preset limits.
pub fn free_limits() -> PlanLimits {
    PlanLimits {
        projects_max: 3,
        queues_per_project_max: 10,
        pending_jobs_max: 10_000,
        payload_bytes_max: 65_536,
        enqueue_rate_per_second: 50,
        enqueue_burst: 100,
        connections_max: 20,
        workers_max: 10,
        retention_ms: DAY_MS,
    }
}

/// The pro plan's preset limits.
pub fn pro_limits() -> PlanLimits {
    PlanLimits {
        projects_max: 20,
        queues_per_project_max: 100,
        pending_jobs_max: 1_000_000,
        payload_bytes_max: 262_144,
        enqueue_rate_per_second: 1_000,
        enqueue_burst: 2_000,
        connections_max: 200,
        workers_max: 100,
        retention_ms: 7 * DAY_MS,
    }
}

/// The enterprise plan's preset limits.
pub fn enterprise_limits() -> PlanLimits {
    PlanLimits {
        projects_max: 1_000,
        queues_per_project_max: 1_000,
        pending_jobs_max: 100_000_000,
        payload_bytes_max: 262_144,
        enqueue_rate_per_second: 50_000,
        enqueue_burst: 100_000,
        connections_max: 5_000,
        workers_max: 2_000,
        retention_ms: 30 * DAY_MS,
    }
}

/// Limits set one by one (Globex's custom plan).
pub fn custom_limits() -> PlanLimits {
    PlanLimits {
        projects_max: 50,
        queues_per_project_max: 500,
        pending_jobs_max: 5_000_000_000,
        payload_bytes_max: 131_072,
        enqueue_rate_per_second: 5_000,
        enqueue_burst: 10_000,
        connections_max: 1_000,
        workers_max: 500,
        retention_ms: 14 * DAY_MS,
    }
}

/// The built-in organization's limits: every field at its type's maximum (unlimited).
pub fn unlimited_limits() -> PlanLimits {
    PlanLimits {
        projects_max: u32::MAX,
        queues_per_project_max: u32::MAX,
        pending_jobs_max: u64::MAX,
        payload_bytes_max: u32::MAX,
        enqueue_rate_per_second: u32::MAX,
        enqueue_burst: u32::MAX,
        connections_max: u32::MAX,
        workers_max: u32::MAX,
        retention_ms: u64::MAX,
    }
}

fn default_org() -> Organization {
    Organization {
        org_id: ORG_DEFAULT,
        name: text("default"),
        slug: text("default"),
        created_at_ms: NOW_MS - 90 * DAY_MS,
        status: OrgStatus::Active,
    }
}

fn acme(name: &str) -> Organization {
    Organization {
        org_id: ORG_ACME,
        name: text(name),
        slug: text("acme"),
        created_at_ms: NOW_MS - 30 * DAY_MS,
        status: OrgStatus::Active,
    }
}

fn globex(status: OrgStatus) -> Organization {
    Organization {
        org_id: ORG_GLOBEX,
        name: text("Globex Inc."),
        slug: text("globex"),
        created_at_ms: NOW_MS - 2 * DAY_MS,
        status,
    }
}

fn ana(email: &str, last_login_at_ms: Option<u64>) -> User {
    User {
        user_id: USER_ANA,
        org_id: ORG_ACME,
        email: text(email),
        role: Role::Owner,
        created_at_ms: NOW_MS - 30 * DAY_MS,
        last_login_at_ms,
        disabled: false,
    }
}

fn bo(role: Role, disabled: bool) -> User {
    User {
        user_id: USER_BO,
        org_id: ORG_ACME,
        email: text("bo@acme.example"),
        role,
        created_at_ms: NOW_MS - 7 * DAY_MS,
        last_login_at_ms: None,
        disabled,
    }
}

fn subscription(
    org_id: OrgId,
    plan: Plan,
    status: SubscriptionStatus,
    limits: PlanLimits,
) -> Subscription {
    Subscription {
        org_id,
        plan,
        status,
        period_start_ms: NOW_MS - 10 * DAY_MS,
        period_end_ms: NOW_MS + 20 * DAY_MS,
        limits,
    }
}

fn billing(name: &str) -> Project {
    Project {
        project_id: PROJECT_BILLING,
        org_id: ORG_ACME,
        name: text(name),
        slug: text("billing"),
        created_at_ms: NOW_MS - 29 * DAY_MS,
    }
}

fn indexer() -> Project {
    Project {
        project_id: PROJECT_INDEXER,
        org_id: ORG_ACME,
        name: text("Search indexer"),
        slug: text("search-indexer"),
        created_at_ms: NOW_MS - 3 * DAY_MS,
    }
}

/// Billing's producer key: produce and read, never expires.
fn producer_key(last_used_at_ms: Option<u64>, revoked_at_ms: Option<u64>) -> ApiKeyInfo {
    ApiKeyInfo {
        key_id: text(KEY_ID_PRODUCER),
        project_id: PROJECT_BILLING,
        name: text("billing-producer"),
        scopes: vec![Scope::Produce, Scope::Read],
        created_at_ms: NOW_MS - 20 * DAY_MS,
        last_used_at_ms,
        expires_at_ms: None,
        revoked_at_ms,
    }
}

/// The indexer's worker key: consume and manage, expires in 90 days.
fn worker_key() -> ApiKeyInfo {
    ApiKeyInfo {
        key_id: text(KEY_ID_WORKER),
        project_id: PROJECT_INDEXER,
        name: text("indexer-worker"),
        scopes: vec![Scope::Consume, Scope::Manage],
        created_at_ms: NOW_MS,
        last_used_at_ms: None,
        expires_at_ms: Some(NOW_MS + 90 * DAY_MS),
        revoked_at_ms: None,
    }
}

/// The vectors of one tenancy operation.
pub fn tenancy_vectors(opcode: Opcode) -> Vec<Vector> {
    match opcode {
        Opcode::OrgCreate => vec![
            request(
                0x600,
                None,
                Request::OrgCreate(OrgCreate {
                    name: text("Acme Corp"),
                    slug: text("acme"),
                    plan: Plan::Pro,
                }),
            ),
            request(
                0x601,
                Some("free"),
                Request::OrgCreate(OrgCreate {
                    name: text("Globex Inc."),
                    slug: text("globex"),
                    plan: Plan::Free,
                }),
            ),
            response(0x600, None, Response::OrgCreate(acme("Acme Corp"))),
            response(
                0x601,
                Some("free"),
                Response::OrgCreate(globex(OrgStatus::Active)),
            ),
        ],
        Opcode::OrgGet => vec![
            request(0x602, None, Request::OrgGet(OrgRef { org_id: ORG_ACME })),
            request(
                0x603,
                Some("suspended"),
                Request::OrgGet(OrgRef { org_id: ORG_GLOBEX }),
            ),
            response(0x602, None, Response::OrgGet(acme("Acme Corp"))),
            response(
                0x603,
                Some("suspended"),
                Response::OrgGet(globex(OrgStatus::Suspended)),
            ),
        ],
        Opcode::OrgList => vec![
            request(
                0x604,
                None,
                Request::OrgList(IdPage {
                    after: None,
                    limit: 2,
                }),
            ),
            request(
                0x605,
                Some("next_page"),
                Request::OrgList(IdPage {
                    after: Some(ORG_ACME),
                    limit: 1_000,
                }),
            ),
            response(
                0x604,
                None,
                Response::OrgList(OrgList {
                    orgs: vec![default_org(), acme("Acme Corp")],
                    next_after: Some(ORG_ACME),
                }),
            ),
            response(
                0x605,
                Some("last_page"),
                Response::OrgList(OrgList {
                    orgs: vec![globex(OrgStatus::Suspended)],
                    next_after: None,
                }),
            ),
        ],
        Opcode::OrgUpdate => vec![
            request(
                0x606,
                None,
                Request::OrgUpdate(OrgUpdate {
                    org_id: ORG_ACME,
                    name: Some(text("Acme Corporation")),
                    status: None,
                }),
            ),
            request(
                0x607,
                Some("suspend"),
                Request::OrgUpdate(OrgUpdate {
                    org_id: ORG_GLOBEX,
                    name: None,
                    status: Some(OrgStatus::Suspended),
                }),
            ),
            response(0x606, None, Response::OrgUpdate(acme("Acme Corporation"))),
            response(
                0x607,
                Some("suspend"),
                Response::OrgUpdate(globex(OrgStatus::Suspended)),
            ),
        ],
        Opcode::OrgDelete => vec![
            request(
                0x608,
                None,
                Request::OrgDelete(OrgRef { org_id: ORG_GLOBEX }),
            ),
            response(0x608, None, Response::OrgDelete(Empty {})),
        ],
        Opcode::UserCreate => vec![
            request(
                0x610,
                None,
                Request::UserCreate(UserCreate {
                    org_id: ORG_ACME,
                    email: text("ana@acme.example"),
                    password: text("correct horse battery"),
                    role: Role::Owner,
                }),
            ),
            request(
                0x611,
                Some("member"),
                Request::UserCreate(UserCreate {
                    org_id: ORG_ACME,
                    email: text("Bo@Acme.example"),
                    password: text("twelve bytes"),
                    role: Role::Member,
                }),
            ),
            response(
                0x610,
                None,
                Response::UserCreate(ana("ana@acme.example", None)),
            ),
            response(
                0x611,
                Some("member"),
                Response::UserCreate(bo(Role::Member, false)),
            ),
        ],
        Opcode::UserGet => vec![
            request(0x612, None, Request::UserGet(UserRef { user_id: USER_ANA })),
            response(
                0x612,
                None,
                Response::UserGet(ana("ana@acme.example", Some(NOW_MS - 60_000))),
            ),
        ],
        Opcode::UserList => vec![
            request(
                0x613,
                None,
                Request::UserList(OrgPage {
                    org_id: ORG_ACME,
                    after: None,
                    limit: 2,
                }),
            ),
            request(
                0x614,
                Some("next_page"),
                Request::UserList(OrgPage {
                    org_id: ORG_ACME,
                    after: Some(USER_BO),
                    limit: 1_000,
                }),
            ),
            response(
                0x613,
                None,
                Response::UserList(UserList {
                    users: vec![
                        ana("ana@acme.example", Some(NOW_MS - 60_000)),
                        bo(Role::Viewer, true),
                    ],
                    next_after: Some(USER_BO),
                }),
            ),
            response(
                0x614,
                Some("last_page"),
                Response::UserList(UserList {
                    users: Vec::new(),
                    next_after: None,
                }),
            ),
        ],
        Opcode::UserUpdate => vec![
            request(
                0x615,
                None,
                Request::UserUpdate(UserUpdate {
                    user_id: USER_BO,
                    email: None,
                    role: Some(Role::Admin),
                }),
            ),
            request(
                0x616,
                Some("email"),
                Request::UserUpdate(UserUpdate {
                    user_id: USER_ANA,
                    email: Some(text("ana.silva@acme.example")),
                    role: None,
                }),
            ),
            response(0x615, None, Response::UserUpdate(bo(Role::Admin, false))),
            response(
                0x616,
                Some("email"),
                Response::UserUpdate(ana("ana.silva@acme.example", Some(NOW_MS - 60_000))),
            ),
        ],
        Opcode::UserDisable => vec![
            request(
                0x617,
                None,
                Request::UserDisable(UserDisable {
                    user_id: USER_BO,
                    disabled: true,
                }),
            ),
            request(
                0x618,
                Some("enable"),
                Request::UserDisable(UserDisable {
                    user_id: USER_BO,
                    disabled: false,
                }),
            ),
            response(0x617, None, Response::UserDisable(bo(Role::Viewer, true))),
            response(
                0x618,
                Some("enable"),
                Response::UserDisable(bo(Role::Viewer, false)),
            ),
        ],
        Opcode::UserSetPassword => vec![
            request(
                0x619,
                None,
                Request::UserSetPassword(UserSetPassword {
                    user_id: USER_ANA,
                    password: text("a much longer passphrase"),
                }),
            ),
            response(0x619, None, Response::UserSetPassword(Empty {})),
        ],
        Opcode::SubscriptionGet => vec![
            request(
                0x620,
                None,
                Request::SubscriptionGet(OrgRef { org_id: ORG_ACME }),
            ),
            request(
                0x621,
                Some("default"),
                Request::SubscriptionGet(OrgRef {
                    org_id: ORG_DEFAULT,
                }),
            ),
            response(
                0x620,
                None,
                Response::SubscriptionGet(subscription(
                    ORG_ACME,
                    Plan::Pro,
                    SubscriptionStatus::Active,
                    pro_limits(),
                )),
            ),
            response(
                0x621,
                Some("default"),
                Response::SubscriptionGet(Subscription {
                    org_id: ORG_DEFAULT,
                    plan: Plan::Custom,
                    status: SubscriptionStatus::Active,
                    period_start_ms: NOW_MS - 90 * DAY_MS,
                    period_end_ms: u64::MAX,
                    limits: unlimited_limits(),
                }),
            ),
        ],
        Opcode::SubscriptionSet => vec![
            request(
                0x622,
                None,
                Request::SubscriptionSet(SubscriptionSet {
                    org_id: ORG_ACME,
                    plan: Plan::Enterprise,
                    status: SubscriptionStatus::Active,
                    period_start_ms: NOW_MS,
                    period_end_ms: NOW_MS + 30 * DAY_MS,
                    limits: None,
                }),
            ),
            request(
                0x623,
                Some("custom"),
                Request::SubscriptionSet(SubscriptionSet {
                    org_id: ORG_GLOBEX,
                    plan: Plan::Custom,
                    status: SubscriptionStatus::PastDue,
                    period_start_ms: NOW_MS - 10 * DAY_MS,
                    period_end_ms: NOW_MS + 20 * DAY_MS,
                    limits: Some(custom_limits()),
                }),
            ),
            request(
                0x624,
                Some("cancelled"),
                Request::SubscriptionSet(SubscriptionSet {
                    org_id: ORG_ACME,
                    plan: Plan::Free,
                    status: SubscriptionStatus::Cancelled,
                    period_start_ms: NOW_MS - 10 * DAY_MS,
                    period_end_ms: NOW_MS + 20 * DAY_MS,
                    limits: None,
                }),
            ),
            response(
                0x622,
                None,
                Response::SubscriptionSet(Subscription {
                    org_id: ORG_ACME,
                    plan: Plan::Enterprise,
                    status: SubscriptionStatus::Active,
                    period_start_ms: NOW_MS,
                    period_end_ms: NOW_MS + 30 * DAY_MS,
                    limits: enterprise_limits(),
                }),
            ),
            response(
                0x623,
                Some("custom"),
                Response::SubscriptionSet(subscription(
                    ORG_GLOBEX,
                    Plan::Custom,
                    SubscriptionStatus::PastDue,
                    custom_limits(),
                )),
            ),
            response(
                0x624,
                Some("cancelled"),
                Response::SubscriptionSet(subscription(
                    ORG_ACME,
                    Plan::Free,
                    SubscriptionStatus::Cancelled,
                    free_limits(),
                )),
            ),
        ],
        Opcode::ProjectCreate => vec![
            request(
                0x630,
                None,
                Request::ProjectCreate(ProjectCreate {
                    org_id: ORG_ACME,
                    name: text("Billing"),
                    slug: text("billing"),
                }),
            ),
            response(0x630, None, Response::ProjectCreate(billing("Billing"))),
        ],
        Opcode::ProjectGet => vec![
            request(
                0x631,
                None,
                Request::ProjectGet(ProjectRef {
                    project_id: PROJECT_INDEXER,
                }),
            ),
            response(0x631, None, Response::ProjectGet(indexer())),
        ],
        Opcode::ProjectList => vec![
            request(
                0x632,
                None,
                Request::ProjectList(OrgPage {
                    org_id: ORG_ACME,
                    after: None,
                    limit: 100,
                }),
            ),
            request(
                0x633,
                Some("next_page"),
                Request::ProjectList(OrgPage {
                    org_id: ORG_ACME,
                    after: Some(PROJECT_INDEXER),
                    limit: 1_000,
                }),
            ),
            response(
                0x632,
                None,
                Response::ProjectList(ProjectList {
                    projects: vec![billing("Billing"), indexer()],
                    next_after: Some(PROJECT_INDEXER),
                }),
            ),
            response(
                0x633,
                Some("last_page"),
                Response::ProjectList(ProjectList {
                    projects: Vec::new(),
                    next_after: None,
                }),
            ),
        ],
        Opcode::ProjectUpdate => vec![
            request(
                0x634,
                None,
                Request::ProjectUpdate(ProjectUpdate {
                    project_id: PROJECT_BILLING,
                    name: text("Billing (EU)"),
                }),
            ),
            response(
                0x634,
                None,
                Response::ProjectUpdate(billing("Billing (EU)")),
            ),
        ],
        Opcode::ProjectDelete => vec![
            request(
                0x635,
                None,
                Request::ProjectDelete(ProjectRef {
                    project_id: PROJECT_INDEXER,
                }),
            ),
            response(0x635, None, Response::ProjectDelete(Empty {})),
        ],
        Opcode::ApiKeyCreate => vec![
            request(
                0x640,
                None,
                Request::ApiKeyCreate(ApiKeyCreate {
                    project_id: PROJECT_BILLING,
                    name: text("billing-producer"),
                    scopes: vec![Scope::Produce, Scope::Read],
                    expires_at_ms: None,
                }),
            ),
            request(
                0x641,
                Some("expiring"),
                Request::ApiKeyCreate(ApiKeyCreate {
                    project_id: PROJECT_INDEXER,
                    name: text("indexer-worker"),
                    scopes: vec![Scope::Consume, Scope::Manage],
                    expires_at_ms: Some(NOW_MS + 90 * DAY_MS),
                }),
            ),
            response(
                0x640,
                None,
                Response::ApiKeyCreate(ApiKeySecret {
                    key: ApiKeyInfo {
                        created_at_ms: NOW_MS,
                        ..producer_key(None, None)
                    },
                    secret: api_key_secret(KEY_ID_PRODUCER, 0x5c),
                }),
            ),
            response(
                0x641,
                Some("expiring"),
                Response::ApiKeyCreate(ApiKeySecret {
                    key: worker_key(),
                    secret: api_key_secret(KEY_ID_WORKER, 0xa7),
                }),
            ),
        ],
        Opcode::ApiKeyList => vec![
            request(
                0x642,
                None,
                Request::ApiKeyList(ProjectPage {
                    project_id: PROJECT_BILLING,
                    after: None,
                    limit: 2,
                }),
            ),
            request(
                0x643,
                Some("next_page"),
                Request::ApiKeyList(ProjectPage {
                    project_id: PROJECT_BILLING,
                    after: Some(text(KEY_ID_OLD)),
                    limit: 1_000,
                }),
            ),
            response(
                0x642,
                None,
                Response::ApiKeyList(ApiKeyList {
                    keys: vec![
                        producer_key(Some(NOW_MS - 120_000), None),
                        ApiKeyInfo {
                            key_id: text(KEY_ID_OLD),
                            project_id: PROJECT_BILLING,
                            name: text("old admin key"),
                            scopes: vec![
                                Scope::Produce,
                                Scope::Consume,
                                Scope::Manage,
                                Scope::Read,
                            ],
                            created_at_ms: NOW_MS - 400 * DAY_MS,
                            last_used_at_ms: Some(NOW_MS - 35 * DAY_MS),
                            expires_at_ms: Some(NOW_MS - 30 * DAY_MS),
                            revoked_at_ms: Some(NOW_MS - DAY_MS),
                        },
                    ],
                    next_after: Some(text(KEY_ID_OLD)),
                }),
            ),
            response(
                0x643,
                Some("last_page"),
                Response::ApiKeyList(ApiKeyList {
                    keys: Vec::new(),
                    next_after: None,
                }),
            ),
        ],
        Opcode::ApiKeyRevoke => vec![
            request(
                0x644,
                None,
                Request::ApiKeyRevoke(ApiKeyRef {
                    key_id: text(KEY_ID_PRODUCER),
                }),
            ),
            response(
                0x644,
                None,
                Response::ApiKeyRevoke(producer_key(Some(NOW_MS - 120_000), Some(NOW_MS))),
            ),
        ],
        Opcode::ApiKeyRotate => vec![
            request(
                0x645,
                None,
                Request::ApiKeyRotate(ApiKeyRotate {
                    key_id: text(KEY_ID_PRODUCER),
                    grace_ms: None,
                }),
            ),
            request(
                0x646,
                Some("grace"),
                Request::ApiKeyRotate(ApiKeyRotate {
                    key_id: text(KEY_ID_PRODUCER),
                    grace_ms: Some(600_000),
                }),
            ),
            response(
                0x645,
                None,
                Response::ApiKeyRotate(ApiKeySecret {
                    key: producer_key(Some(NOW_MS - 120_000), None),
                    secret: api_key_secret(KEY_ID_PRODUCER, 0x0e),
                }),
            ),
        ],
        other => unreachable!("{} is not a tenancy operation", other.name()),
    }
}

/// An error frame named `error_<CODE>.<variant>`.
fn error(variant: &str, opcode: Opcode, request_id: u32, body: ErrorBody) -> Vector {
    Vector {
        name: format!("error_{}.{variant}", body.error_code().name()),
        request_id,
        message: Message::Error {
            opcode: opcode.number(),
            body,
        },
    }
}

/// Error frames of tenancy beyond the one vector per code: the handshake refusals, each
/// quota and the refused enqueue of a lapsed subscription.
pub fn tenancy_error_vectors() -> Vec<Vector> {
    let quota = |limit: &str, current: u64, max: u64| ErrorDetails::Quota {
        limit: text(limit),
        current,
        max,
    };
    vec![
        error(
            "project",
            Opcode::Hello,
            1,
            ErrorBody::new(
                ErrorCode::Forbidden,
                "this principal may not use project 70000",
            ),
        ),
        error(
            "subscription",
            Opcode::Enqueue,
            0x200,
            ErrorBody::new(
                ErrorCode::Forbidden,
                "the organization's subscription is past_due; enqueues are refused, workers may drain",
            ),
        ),
        error(
            "handshake",
            Opcode::Hello,
            1,
            ErrorBody::new(
                ErrorCode::RateLimited,
                "too many failed handshakes from this address",
            )
            .with_details(ErrorDetails::RetryAfter {
                retry_after_ms: 42_000,
            }),
        ),
        error(
            "connections",
            Opcode::Hello,
            1,
            ErrorBody::new(
                ErrorCode::QuotaExceeded,
                "the plan allows 20 connections per organization",
            )
            .with_details(quota("connections", 20, 20)),
        ),
        error(
            "projects",
            Opcode::ProjectCreate,
            0x630,
            ErrorBody::new(ErrorCode::QuotaExceeded, "the plan allows 3 projects")
                .with_details(quota("projects", 3, 3)),
        ),
        error(
            "payload_bytes",
            Opcode::EnqueueBatch,
            0x210,
            ErrorBody::new(
                ErrorCode::QuotaExceeded,
                "jobs[300].payload: 300000 bytes is over the 262144-byte limit",
            )
            .with_details(quota("payload_bytes", 300_000, 262_144)),
        ),
        error(
            "slug",
            Opcode::OrgCreate,
            0x600,
            ErrorBody::new(
                ErrorCode::Conflict,
                "an organization with slug \"acme\" exists",
            ),
        ),
        error(
            "project",
            Opcode::ProjectGet,
            0x631,
            ErrorBody::new(ErrorCode::NotFound, "no such project"),
        ),
    ]
}
