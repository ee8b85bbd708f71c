//! Tenancy bodies: organizations, users, subscriptions, projects and API keys.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::types::ProjectId;

/// An organization id.
pub type OrgId = u64;

/// A user id.
pub type UserId = u64;

/// Whether an organization may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    /// In use.
    Active,
    /// Refused at the handshake for its users and keys.
    Suspended,
}

/// An organization: a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Organization {
    /// Its id.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// URL-safe unique name, `[a-z0-9-]`, 1..=64 bytes.
    pub slug: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Active or suspended.
    pub status: OrgStatus,
}

/// A user's role in its organization.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything in the organization, including its subscription and other owners.
    Owner,
    /// Users (not owners), projects, keys and every job operation.
    Admin,
    /// Every job operation and keys; no users, no subscription.
    Member,
    /// Reads only.
    Viewer,
}

/// A person in an organization. The password hash never leaves the broker.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub user_id: UserId,
    /// Its organization.
    pub org_id: OrgId,
    /// Login name, unique across the broker, stored lower-case.
    pub email: String,
    /// What it may do.
    pub role: Role,
    /// Creation time.
    pub created_at_ms: u64,
    /// Last successful handshake.
    pub last_login_at_ms: Option<u64>,
    /// Disabled users cannot log in.
    pub disabled: bool,
}

/// A plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Small limits.
    Free,
    /// Larger limits.
    Pro,
    /// Largest preset limits.
    Enterprise,
    /// Limits set one by one.
    Custom,
}

/// Whether a subscription is paid up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Everything allowed within the limits.
    Active,
    /// Enqueues refused; workers may drain.
    PastDue,
    /// Enqueues refused; workers may drain.
    Cancelled,
}

/// The limits a plan grants.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct PlanLimits {
    /// Projects in the organization.
    pub projects_max: u32,
    /// Queues in one project.
    pub queues_per_project_max: u32,
    /// Jobs not yet finished, per project.
    pub pending_jobs_max: u64,
    /// Largest payload.
    pub payload_bytes_max: u32,
    /// Sustained enqueue rate, jobs per second, per project.
    pub enqueue_rate_per_second: u32,
    /// Enqueues allowed in a burst above the rate.
    pub enqueue_burst: u32,
    /// Connections open at once, per organization.
    pub connections_max: u32,
    /// Registered workers, per project.
    pub workers_max: u32,
    /// How long finished jobs are kept, in ms.
    pub retention_ms: u64,
}

/// An organization's plan.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Subscription {
    /// The organization.
    pub org_id: OrgId,
    /// The plan.
    pub plan: Plan,
    /// Paid up or not.
    pub status: SubscriptionStatus,
    /// Start of the current period, ms since the Unix epoch.
    pub period_start_ms: u64,
    /// End of the current period.
    pub period_end_ms: u64,
    /// The limits in force.
    pub limits: PlanLimits,
}

/// A project: an isolated namespace of queues and jobs in an organization.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Project {
    /// Its id.
    pub project_id: ProjectId,
    /// Its organization.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// Unique in the organization, `[a-z0-9-]`, 1..=64 bytes.
    pub slug: String,
    /// Creation time.
    pub created_at_ms: u64,
}

/// What an API key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// ENQUEUE, ENQUEUE_BATCH.
    Produce,
    /// FETCH, ACK, ACK_BATCH, FAIL, EXTEND.
    Consume,
    /// Queue changes, CANCEL, dead-letter retry and discard.
    Manage,
    /// GET, LIST and STATS operations.
    Read,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// The public id, the part between `tf_` and the second `_` of the key.
    pub key_id: String,
    /// The project it works in.
    pub project_id: ProjectId,
    /// A label.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at_ms: u64,
    /// Last handshake with it (kept to the minute, not written per request).
    pub last_used_at_ms: Option<u64>,
    /// Refused from this time on.
    pub expires_at_ms: Option<u64>,
    /// When it was revoked.
    pub revoked_at_ms: Option<u64>,
}

/// An id naming one organization (ORG_GET, ORG_DELETE, SUBSCRIPTION_GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct OrgRef {
    /// The organization.
    pub org_id: OrgId,
}

/// ORG_CREATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct OrgCreate {
    /// Display name, 1..=128 bytes.
    pub name: String,
    /// Unique slug.
    pub slug: String,
    /// The plan to start on.
    pub plan: Plan,
}

/// A page request by numeric id (ORG_LIST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct IdPage {
    /// Start after this id.
    pub after: Option<u64>,
    /// Page size, 1..=`LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// ORG_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct OrgList {
    /// Organizations in id order.
    pub orgs: Vec<Organization>,
    /// Pass as `after` for the next page.
    pub next_after: Option<OrgId>,
}

/// ORG_UPDATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct OrgUpdate {
    /// The organization.
    pub org_id: OrgId,
    /// New name.
    pub name: Option<String>,
    /// New status (root only).
    pub status: Option<OrgStatus>,
}

/// A page of an organization's children (USER_LIST, PROJECT_LIST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct OrgPage {
    /// The organization.
    pub org_id: OrgId,
    /// Start after this id.
    pub after: Option<u64>,
    /// Page size, 1..=`LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// USER_CREATE request.
#[derive(Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct UserCreate {
    /// The organization.
    pub org_id: OrgId,
    /// Login name.
    pub email: String,
    /// Password, 12..=256 bytes; only its Argon2id hash is stored.
    pub password: String,
    /// Role.
    pub role: Role,
}

/// An id naming one user (USER_GET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct UserRef {
    /// The user.
    pub user_id: UserId,
}

/// USER_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct UserList {
    /// Users in id order.
    pub users: Vec<User>,
    /// Pass as `after` for the next page.
    pub next_after: Option<UserId>,
}

/// USER_UPDATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct UserUpdate {
    /// The user.
    pub user_id: UserId,
    /// New login name.
    pub email: Option<String>,
    /// New role.
    pub role: Option<Role>,
}

/// USER_DISABLE request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct UserDisable {
    /// The user.
    pub user_id: UserId,
    /// True to disable, false to enable again.
    pub disabled: bool,
}

/// USER_SET_PASSWORD request.
#[derive(Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct UserSetPassword {
    /// The user.
    pub user_id: UserId,
    /// The new password, 12..=256 bytes.
    pub password: String,
}

/// SUBSCRIPTION_SET request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct SubscriptionSet {
    /// The organization.
    pub org_id: OrgId,
    /// The plan; its preset limits apply unless `limits` is given (required for custom).
    pub plan: Plan,
    /// Paid up or not.
    pub status: SubscriptionStatus,
    /// Start of the current period.
    pub period_start_ms: u64,
    /// End of the current period.
    pub period_end_ms: u64,
    /// Limits replacing the plan's presets.
    pub limits: Option<PlanLimits>,
}

/// PROJECT_CREATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProjectCreate {
    /// The organization.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// Unique in the organization.
    pub slug: String,
}

/// An id naming one project (PROJECT_GET, PROJECT_DELETE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProjectRef {
    /// The project.
    pub project_id: ProjectId,
}

/// PROJECT_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProjectList {
    /// Projects in id order.
    pub projects: Vec<Project>,
    /// Pass as `after` for the next page.
    pub next_after: Option<ProjectId>,
}

/// PROJECT_UPDATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProjectUpdate {
    /// The project.
    pub project_id: ProjectId,
    /// New name.
    pub name: String,
}

/// APIKEY_CREATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApiKeyCreate {
    /// The project the key works in.
    pub project_id: ProjectId,
    /// A label.
    pub name: String,
    /// What it may do (at least one).
    pub scopes: Vec<Scope>,
    /// Refused from this time on.
    pub expires_at_ms: Option<u64>,
}

/// APIKEY_CREATE and APIKEY_ROTATE response: the only time the secret is shown.
#[derive(Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApiKeySecret {
    /// The key as listed.
    pub key: ApiKeyInfo,
    /// The whole credential, `tf_<key id>_<secret>`, for `Credentials::ApiKey`.
    pub secret: String,
}

/// A page of a project's keys (APIKEY_LIST).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ProjectPage {
    /// The project.
    pub project_id: ProjectId,
    /// Start after this key id.
    pub after: Option<String>,
    /// Page size, 1..=`LIST_LIMIT_MAX`.
    pub limit: u32,
}

/// APIKEY_LIST response.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApiKeyList {
    /// Keys in id order.
    pub keys: Vec<ApiKeyInfo>,
    /// Pass as `after` for the next page.
    pub next_after: Option<String>,
}

/// APIKEY_REVOKE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApiKeyRef {
    /// The key's public id.
    pub key_id: String,
}

/// APIKEY_ROTATE request.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct ApiKeyRotate {
    /// The key's public id.
    pub key_id: String,
    /// How long the old secret keeps working; `None`: the server's default grace.
    pub grace_ms: Option<u64>,
}

impl std::fmt::Debug for UserCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCreate")
            .field("org_id", &self.org_id)
            .field("email", &self.email)
            .field("password", &crate::message::REDACTED)
            .field("role", &self.role)
            .finish()
    }
}

impl std::fmt::Debug for UserSetPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSetPassword")
            .field("user_id", &self.user_id)
            .field("password", &crate::message::REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeySecret")
            .field("key", &self.key)
            .field("secret", &crate::message::REDACTED)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Credentials;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let rendered = [
            format!("{:?}", Credentials::RootToken(secret.into())),
            format!(
                "{:?}",
                Credentials::ApiKey(format!("tf_00112233aabbccdd_{secret}"))
            ),
            format!(
                "{:?}",
                Credentials::Password {
                    email: "a@b.c".into(),
                    password: secret.into()
                }
            ),
            format!(
                "{:?}",
                UserCreate {
                    org_id: 1,
                    email: "a@b.c".into(),
                    password: secret.into(),
                    role: Role::Owner
                }
            ),
            format!(
                "{:?}",
                UserSetPassword {
                    user_id: 1,
                    password: secret.into()
                }
            ),
        ];
        for text in rendered {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(format!(
            "{:?}",
            Credentials::ApiKey(format!("tf_00112233aabbccdd_{secret}"))
        )
        .contains("00112233aabbccdd"));
    }
}
