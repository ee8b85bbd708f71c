//! The tenancy directory of the core: organizations with their subscriptions, users,
//! projects and API keys. Small enough to keep whole in memory; every change is also a
//! write in the same commit round as everything else. Credentials arrive here already
//! hashed: the core never sees a secret or a password.

use std::collections::{BTreeMap, HashMap};

use taskforge_protocol::{
    ApiKeyInfo, OrgId, OrgStatus, Organization, Plan, PlanLimits, Project, ProjectId, Role, Scope,
    Subscription, SubscriptionStatus, User, UserId,
};

use super::{Core, CoreError};
use crate::storage::keys;
use crate::storage::records::{self, ApiKeyRecord, UserRecord};
use crate::storage::Write;

/// The organization the root token's default project belongs to.
pub const DEFAULT_ORG_ID: OrgId = 1;

/// The project root sessions work in unless HELLO names another.
pub const DEFAULT_PROJECT_ID: ProjectId = 1;

/// How long a subscription period lasts when created or set without dates (30 days).
pub const SUBSCRIPTION_PERIOD_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// The preset limits of a plan; custom plans start from the enterprise presets.
pub fn plan_limits(plan: Plan) -> PlanLimits {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    match plan {
        Plan::Free => PlanLimits {
            projects_max: 3,
            queues_per_project_max: 10,
            pending_jobs_max: 10_000,
            payload_bytes_max: 64 * 1024,
            enqueue_rate_per_second: 50,
            enqueue_burst: 100,
            connections_max: 20,
            workers_max: 10,
            retention_ms: DAY_MS,
        },
        Plan::Pro => PlanLimits {
            projects_max: 20,
            queues_per_project_max: 100,
            pending_jobs_max: 1_000_000,
            payload_bytes_max: 256 * 1024,
            enqueue_rate_per_second: 1_000,
            enqueue_burst: 2_000,
            connections_max: 200,
            workers_max: 100,
            retention_ms: 7 * DAY_MS,
        },
        Plan::Enterprise | Plan::Custom => PlanLimits {
            projects_max: 1_000,
            queues_per_project_max: 1_000,
            pending_jobs_max: 100_000_000,
            payload_bytes_max: 256 * 1024,
            enqueue_rate_per_second: 50_000,
            enqueue_burst: 100_000,
            connections_max: 5_000,
            workers_max: 2_000,
            retention_ms: 30 * DAY_MS,
        },
    }
}

/// Limits of the built-in organization: the operator's own, bounded only by the server.
fn unlimited() -> PlanLimits {
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

/// An organization with its subscription.
#[derive(Debug, Clone, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct OrgEntry {
    /// The organization.
    pub org: Organization,
    /// Its plan.
    pub subscription: Subscription,
}

/// What a credential check found; the service turns every failure into the same
/// UNAUTHENTICATED answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The key.
    pub info: ApiKeyInfo,
    /// The organization owning its project.
    pub org_id: OrgId,
}

/// Everything the directory holds.
#[derive(Debug, Default)]
pub struct Directory {
    /// Organizations by id.
    orgs: BTreeMap<OrgId, OrgEntry>,
    /// Users by id.
    users: BTreeMap<UserId, UserRecord>,
    /// Lower-case email → user.
    users_by_email: HashMap<String, UserId>,
    /// Projects by id.
    projects: BTreeMap<ProjectId, Project>,
    /// API keys by public id.
    keys: BTreeMap<String, ApiKeyRecord>,
    /// Next organization id.
    org_id_next: u64,
    /// Next user id.
    user_id_next: u64,
    /// Next project id.
    project_id_next: u64,
}

/// How often `last_used_at_ms` / `last_login_at_ms` may be rewritten, so a busy key does
/// not cost a write per handshake.
pub const LAST_USED_WRITE_INTERVAL_MS: u64 = 60_000;

fn page<K: Ord + Copy, V: Clone>(
    items: impl Iterator<Item = (K, V)>,
    limit: usize,
) -> (Vec<V>, Option<K>) {
    let mut values = Vec::new();
    let mut last = None;
    for (key, value) in items {
        if values.len() == limit {
            return (values, last);
        }
        last = Some(key);
        values.push(value);
    }
    (values, None)
}

impl Core {
    /// Restores a stored organization.
    pub fn restore_org(&mut self, entry: OrgEntry) {
        let directory = &mut self.directory;
        directory.org_id_next = directory.org_id_next.max(entry.org.org_id + 1);
        directory.orgs.insert(entry.org.org_id, entry);
    }

    /// Restores a stored user.
    pub fn restore_user(&mut self, record: UserRecord) {
        let directory = &mut self.directory;
        directory.user_id_next = directory.user_id_next.max(record.user.user_id + 1);
        directory
            .users_by_email
            .insert(record.user.email.clone(), record.user.user_id);
        directory.users.insert(record.user.user_id, record);
    }

    /// Restores a stored project.
    pub fn restore_project(&mut self, project: Project) {
        let directory = &mut self.directory;
        directory.project_id_next = directory.project_id_next.max(project.project_id + 1);
        directory.projects.insert(project.project_id, project);
    }

    /// Restores a stored API key.
    pub fn restore_key(&mut self, record: ApiKeyRecord) {
        self.directory
            .keys
            .insert(record.info.key_id.clone(), record);
    }

    /// Creates the built-in organization and project on a fresh store.
    pub fn ensure_defaults(&mut self, now_ms: u64) {
        if !self.directory.orgs.contains_key(&DEFAULT_ORG_ID) {
            let entry = OrgEntry {
                org: Organization {
                    org_id: DEFAULT_ORG_ID,
                    name: "default".into(),
                    slug: "default".into(),
                    created_at_ms: now_ms,
                    status: OrgStatus::Active,
                },
                subscription: Subscription {
                    org_id: DEFAULT_ORG_ID,
                    plan: Plan::Custom,
                    status: SubscriptionStatus::Active,
                    period_start_ms: now_ms,
                    period_end_ms: u64::MAX,
                    limits: unlimited(),
                },
            };
            self.put_org(entry);
        }
        if !self.directory.projects.contains_key(&DEFAULT_PROJECT_ID) {
            self.put_project(Project {
                project_id: DEFAULT_PROJECT_ID,
                org_id: DEFAULT_ORG_ID,
                name: "default".into(),
                slug: "default".into(),
                created_at_ms: now_ms,
            });
        }
        let directory = &mut self.directory;
        directory.org_id_next = directory.org_id_next.max(DEFAULT_ORG_ID + 1);
        directory.project_id_next = directory.project_id_next.max(DEFAULT_PROJECT_ID + 1);
        directory.user_id_next = directory.user_id_next.max(1);
    }

    fn put_org(&mut self, entry: OrgEntry) {
        self.writes.push(Write::Put(
            keys::org(entry.org.org_id),
            records::encode(&entry),
        ));
        self.directory.orgs.insert(entry.org.org_id, entry);
    }

    fn put_project(&mut self, project: Project) {
        self.writes.push(Write::Put(
            keys::project(project.project_id),
            records::encode(&project),
        ));
        self.directory.projects.insert(project.project_id, project);
    }

    fn put_user(&mut self, record: UserRecord) {
        self.writes.push(Write::Put(
            keys::user(record.user.user_id),
            records::encode(&record),
        ));
        self.directory.users.insert(record.user.user_id, record);
    }

    fn put_key(&mut self, record: ApiKeyRecord) {
        let key = keys::api_key(&record.info.key_id);
        self.writes.push(Write::Put(key, records::encode(&record)));
        self.directory
            .keys
            .insert(record.info.key_id.clone(), record);
    }

    /// An organization by id.
    pub fn org(&self, org_id: OrgId) -> Option<&OrgEntry> {
        self.directory.orgs.get(&org_id)
    }

    /// A project by id.
    pub fn project(&self, project_id: ProjectId) -> Option<&Project> {
        self.directory.projects.get(&project_id)
    }

    /// A user by id.
    pub fn user(&self, user_id: UserId) -> Option<&UserRecord> {
        self.directory.users.get(&user_id)
    }

    /// A user by login email (compared lower-case).
    pub fn user_by_email(&self, email: &str) -> Option<&UserRecord> {
        let user_id = self.directory.users_by_email.get(&email.to_lowercase())?;
        self.directory.users.get(user_id)
    }

    /// An API key by public id.
    pub fn api_key(&self, key_id: &str) -> Option<&ApiKeyRecord> {
        self.directory.keys.get(key_id)
    }

    /// Creates an organization with a fresh subscription to `plan`.
    pub fn org_create(
        &mut self,
        name: &str,
        slug: &str,
        plan: Plan,
        now_ms: u64,
    ) -> Result<Organization, CoreError> {
        if self
            .directory
            .orgs
            .values()
            .any(|entry| entry.org.slug == slug)
        {
            return Err(CoreError::Conflict(format!(
                "organization slug {slug:?} is taken"
            )));
        }
        let org_id = self.directory.org_id_next;
        self.directory.org_id_next += 1;
        let org = Organization {
            org_id,
            name: name.to_owned(),
            slug: slug.to_owned(),
            created_at_ms: now_ms,
            status: OrgStatus::Active,
        };
        let subscription = Subscription {
            org_id,
            plan,
            status: SubscriptionStatus::Active,
            period_start_ms: now_ms,
            period_end_ms: now_ms.saturating_add(SUBSCRIPTION_PERIOD_MS),
            limits: plan_limits(plan),
        };
        self.put_org(OrgEntry {
            org: org.clone(),
            subscription,
        });
        Ok(org)
    }

    /// Organizations in id order, after `after`; only `only` when given.
    pub fn org_list(
        &self,
        only: Option<OrgId>,
        after: Option<OrgId>,
        limit: usize,
    ) -> (Vec<Organization>, Option<OrgId>) {
        let start = after.map_or(0, |after| after.saturating_add(1));
        let items = self
            .directory
            .orgs
            .range(start..)
            .filter(|(org_id, _)| only.is_none_or(|only| only == **org_id))
            .map(|(org_id, entry)| (*org_id, entry.org.clone()));
        page(items, limit)
    }

    /// Renames an organization or changes its status.
    pub fn org_update(
        &mut self,
        org_id: OrgId,
        name: Option<String>,
        status: Option<OrgStatus>,
    ) -> Result<Organization, CoreError> {
        let mut entry = self.org(org_id).cloned().ok_or_else(org_not_found)?;
        if let Some(name) = name {
            entry.org.name = name;
        }
        if let Some(status) = status {
            entry.org.status = status;
        }
        let org = entry.org.clone();
        self.put_org(entry);
        Ok(org)
    }

    /// Deletes an organization that owns no project, with its users and subscription.
    pub fn org_delete(&mut self, org_id: OrgId) -> Result<(), CoreError> {
        if org_id == DEFAULT_ORG_ID {
            return Err(CoreError::Conflict(
                "the built-in organization cannot be deleted".into(),
            ));
        }
        if self.org(org_id).is_none() {
            return Err(org_not_found());
        }
        let projects = self
            .directory
            .projects
            .values()
            .filter(|p| p.org_id == org_id)
            .count();
        if projects > 0 {
            return Err(CoreError::Conflict(format!(
                "the organization still owns {projects} projects; delete them first"
            )));
        }
        let users: Vec<UserId> = self
            .directory
            .users
            .values()
            .filter(|record| record.user.org_id == org_id)
            .map(|record| record.user.user_id)
            .collect();
        for user_id in users {
            if let Some(record) = self.directory.users.remove(&user_id) {
                self.directory.users_by_email.remove(&record.user.email);
                self.writes.push(Write::Delete(keys::user(user_id)));
            }
        }
        self.directory.orgs.remove(&org_id);
        self.writes.push(Write::Delete(keys::org(org_id)));
        Ok(())
    }

    /// Sets an organization's subscription.
    pub fn subscription_set(
        &mut self,
        subscription: Subscription,
    ) -> Result<Subscription, CoreError> {
        let mut entry = self
            .org(subscription.org_id)
            .cloned()
            .ok_or_else(org_not_found)?;
        entry.subscription = subscription.clone();
        self.put_org(entry);
        Ok(subscription)
    }

    /// Creates a user with an already hashed password.
    pub fn user_create(
        &mut self,
        org_id: OrgId,
        email: &str,
        password_hash: String,
        role: Role,
        now_ms: u64,
    ) -> Result<User, CoreError> {
        if self.org(org_id).is_none() {
            return Err(org_not_found());
        }
        let email = email.to_lowercase();
        if self.directory.users_by_email.contains_key(&email) {
            return Err(CoreError::Conflict(format!(
                "a user with email {email:?} exists"
            )));
        }
        let user_id = self.directory.user_id_next.max(1);
        self.directory.user_id_next = user_id + 1;
        let user = User {
            user_id,
            org_id,
            email: email.clone(),
            role,
            created_at_ms: now_ms,
            last_login_at_ms: None,
            disabled: false,
        };
        self.directory.users_by_email.insert(email, user_id);
        self.put_user(UserRecord {
            user: user.clone(),
            password_hash,
        });
        Ok(user)
    }

    /// Users of an organization in id order.
    pub fn user_list(
        &self,
        org_id: OrgId,
        after: Option<UserId>,
        limit: usize,
    ) -> (Vec<User>, Option<UserId>) {
        let start = after.map_or(0, |after| after.saturating_add(1));
        let items = self
            .directory
            .users
            .range(start..)
            .filter(|(_, record)| record.user.org_id == org_id)
            .map(|(user_id, record)| (*user_id, record.user.clone()));
        page(items, limit)
    }

    /// Changes a user's email, role, disabled flag or password hash.
    pub fn user_update(
        &mut self,
        user_id: UserId,
        change: impl FnOnce(&mut UserRecord),
    ) -> Result<User, CoreError> {
        let mut record = self.user(user_id).cloned().ok_or_else(user_not_found)?;
        let old_email = record.user.email.clone();
        change(&mut record);
        record.user.email = record.user.email.to_lowercase();
        if record.user.email != old_email {
            if self
                .directory
                .users_by_email
                .contains_key(&record.user.email)
            {
                return Err(CoreError::Conflict(format!(
                    "a user with email {:?} exists",
                    record.user.email
                )));
            }
            self.directory.users_by_email.remove(&old_email);
            self.directory
                .users_by_email
                .insert(record.user.email.clone(), user_id);
        }
        let user = record.user.clone();
        self.put_user(record);
        Ok(user)
    }

    /// Notes a successful login, writing at most once per [`LAST_USED_WRITE_INTERVAL_MS`].
    pub fn note_login(&mut self, user_id: UserId, now_ms: u64) {
        let stale = self.user(user_id).is_some_and(|record| {
            record
                .user
                .last_login_at_ms
                .is_none_or(|at| now_ms >= at + LAST_USED_WRITE_INTERVAL_MS)
        });
        if stale {
            let _ = self.user_update(user_id, |record| {
                record.user.last_login_at_ms = Some(now_ms)
            });
        }
    }

    /// Creates a project in an organization.
    pub fn project_create(
        &mut self,
        org_id: OrgId,
        name: &str,
        slug: &str,
        now_ms: u64,
    ) -> Result<Project, CoreError> {
        let entry = self.org(org_id).ok_or_else(org_not_found)?;
        let projects_max = u64::from(entry.subscription.limits.projects_max);
        let siblings: Vec<&Project> = self
            .directory
            .projects
            .values()
            .filter(|project| project.org_id == org_id)
            .collect();
        if siblings.iter().any(|project| project.slug == slug) {
            return Err(CoreError::Conflict(format!(
                "project slug {slug:?} is taken"
            )));
        }
        if siblings.len() as u64 >= projects_max {
            return Err(CoreError::Quota {
                limit: "projects",
                current: siblings.len() as u64,
                max: projects_max,
            });
        }
        let project_id = self.directory.project_id_next;
        self.directory.project_id_next += 1;
        let project = Project {
            project_id,
            org_id,
            name: name.to_owned(),
            slug: slug.to_owned(),
            created_at_ms: now_ms,
        };
        self.put_project(project.clone());
        Ok(project)
    }

    /// Projects of an organization in id order.
    pub fn project_list(
        &self,
        org_id: OrgId,
        after: Option<ProjectId>,
        limit: usize,
    ) -> (Vec<Project>, Option<ProjectId>) {
        let start = after.map_or(0, |after| after.saturating_add(1));
        let items = self
            .directory
            .projects
            .range(start..)
            .filter(|(_, project)| project.org_id == org_id)
            .map(|(project_id, project)| (*project_id, project.clone()));
        page(items, limit)
    }

    /// Renames a project.
    pub fn project_rename(
        &mut self,
        project_id: ProjectId,
        name: String,
    ) -> Result<Project, CoreError> {
        let mut project = self
            .project(project_id)
            .cloned()
            .ok_or_else(project_not_found)?;
        project.name = name;
        self.put_project(project.clone());
        Ok(project)
    }

    /// Deletes a project that owns no queue, with its API keys. Returns the deleted keys'
    /// ids so their sessions can be closed.
    pub fn project_delete(&mut self, project_id: ProjectId) -> Result<Vec<String>, CoreError> {
        if project_id == DEFAULT_PROJECT_ID {
            return Err(CoreError::Conflict(
                "the built-in project cannot be deleted".into(),
            ));
        }
        if self.project(project_id).is_none() {
            return Err(project_not_found());
        }
        let queues = self
            .queue_names
            .get(&project_id)
            .map_or(0, |names| names.len());
        if queues > 0 {
            return Err(CoreError::Conflict(format!(
                "the project still owns {queues} queues; purge and delete them first"
            )));
        }
        let key_ids: Vec<String> = self
            .directory
            .keys
            .values()
            .filter(|record| record.info.project_id == project_id)
            .map(|record| record.info.key_id.clone())
            .collect();
        for key_id in &key_ids {
            self.directory.keys.remove(key_id);
            self.writes.push(Write::Delete(keys::api_key(key_id)));
        }
        self.directory.projects.remove(&project_id);
        self.writes.push(Write::Delete(keys::project(project_id)));
        Ok(key_ids)
    }

    /// Stores a new API key whose secret hash the caller computed.
    pub fn key_create(&mut self, record: ApiKeyRecord) -> Result<ApiKeyInfo, CoreError> {
        if self.project(record.info.project_id).is_none() {
            return Err(project_not_found());
        }
        if self.directory.keys.contains_key(&record.info.key_id) {
            return Err(CoreError::Conflict("key id collision; retry".into()));
        }
        let info = record.info.clone();
        self.put_key(record);
        Ok(info)
    }

    /// A project's keys in id order.
    pub fn key_list(
        &self,
        project_id: ProjectId,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<ApiKeyInfo>, Option<String>) {
        let range = match after {
            Some(after) => self
                .directory
                .keys
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => self.directory.keys.range::<str, _>(..),
        };
        let mut keys = Vec::new();
        for record in range
            .map(|(_, record)| record)
            .filter(|record| record.info.project_id == project_id)
        {
            if keys.len() == limit {
                let next = keys.last().map(|info: &ApiKeyInfo| info.key_id.clone());
                return (keys, next);
            }
            keys.push(record.info.clone());
        }
        (keys, None)
    }

    /// Changes a stored key.
    pub fn key_update(
        &mut self,
        key_id: &str,
        change: impl FnOnce(&mut ApiKeyRecord),
    ) -> Result<ApiKeyInfo, CoreError> {
        let mut record = self.api_key(key_id).cloned().ok_or_else(key_not_found)?;
        change(&mut record);
        let info = record.info.clone();
        self.put_key(record);
        Ok(info)
    }

    /// Checks a presented secret's hash against a key: current secret, or the previous one
    /// within its rotation grace. Unknown, revoked and expired keys and wrong secrets all
    /// give `None`. Notes the use at most once a minute.
    pub fn key_verify(
        &mut self,
        key_id: &str,
        secret_hash: [u8; 32],
        now_ms: u64,
    ) -> Option<VerifiedKey> {
        let record = self.api_key(key_id)?;
        let presented = blake3::Hash::from(secret_hash);
        let current = blake3::Hash::from(record.secret_hash) == presented;
        let previous = record.previous.is_some_and(|(hash, valid_until_ms)| {
            blake3::Hash::from(hash) == presented && now_ms < valid_until_ms
        });
        let live = record.info.revoked_at_ms.is_none()
            && record
                .info
                .expires_at_ms
                .is_none_or(|expires_at_ms| now_ms < expires_at_ms);
        if !(current || previous) || !live {
            return None;
        }
        let project = self.project(record.info.project_id)?;
        let org_id = project.org_id;
        let stale = record
            .info
            .last_used_at_ms
            .is_none_or(|at| now_ms >= at + LAST_USED_WRITE_INTERVAL_MS);
        let info = if stale {
            self.key_update(key_id, |record| record.info.last_used_at_ms = Some(now_ms))
                .ok()?
        } else {
            record.info.clone()
        };
        Some(VerifiedKey { info, org_id })
    }
}

fn org_not_found() -> CoreError {
    CoreError::NotFound("organization not found".into())
}

fn user_not_found() -> CoreError {
    CoreError::NotFound("user not found".into())
}

fn project_not_found() -> CoreError {
    CoreError::NotFound("project not found".into())
}

fn key_not_found() -> CoreError {
    CoreError::NotFound("API key not found".into())
}

/// True when `scopes` is non-empty and has no repeats.
pub fn scopes_are_valid(scopes: &[Scope]) -> bool {
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    !scopes.is_empty() && sorted.len() == scopes.len()
}
