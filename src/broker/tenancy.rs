//! Tenancy requests: organizations, users, subscriptions, projects and API keys. Each
//! handler finds the target's organization, checks the session may act there (an
//! organization the principal cannot see is NOT_FOUND, exactly like a missing one), then
//! runs one core operation and waits for its durability like every other request.

use taskforge_protocol::{
    ApiKeyInfo, ApiKeyList, ApiKeySecret, ErrorBody, ErrorCode, OrgId, OrgList, PlanLimits,
    ProjectList, Request, Response, Role, Subscription, UserList,
};

use super::core::tenants::{plan_limits, scopes_are_valid};
use super::core::{Core, CoreError};
use super::{validate, Broker, Principal, Session};
use crate::auth::{api_key, password};
use crate::storage::records::ApiKeyRecord;

/// Grace of the old secret after APIKEY_ROTATE when the request names none (one hour).
pub const KEY_ROTATION_GRACE_MS_DEFAULT: u64 = 60 * 60 * 1000;

/// Longest grace APIKEY_ROTATE may ask for (seven days).
pub const KEY_ROTATION_GRACE_MS_MAX: u64 = 7 * 24 * 60 * 60 * 1000;

type Reply<T> = Result<T, ErrorBody>;

fn forbidden(message: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, message)
}

fn not_found(what: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, format!("{what} not found"))
}

fn core_error(error: CoreError) -> ErrorBody {
    error.to_error_body()
}

/// What the session is in `org_id`: `None` for root, the user's current role otherwise.
/// API keys manage nothing; other organizations do not exist for the caller.
fn org_role(core: &Core, session: &Session, org_id: OrgId) -> Reply<Option<Role>> {
    match &session.principal {
        Principal::Root => core
            .org(org_id)
            .map(|_| None)
            .ok_or_else(|| not_found("organization")),
        Principal::ApiKey { .. } => Err(forbidden("API keys cannot use tenancy operations")),
        Principal::User {
            user_id,
            org_id: own,
            ..
        } => {
            let record = core
                .user(*user_id)
                .filter(|_| *own == org_id && core.org(org_id).is_some());
            record
                .map(|record| Some(record.user.role))
                .ok_or_else(|| not_found("organization"))
        }
    }
}

/// Root passes; a user passes with one of `roles`.
fn require(role: Option<Role>, roles: &[Role]) -> Reply<()> {
    match role {
        None => Ok(()),
        Some(role) if roles.contains(&role) => Ok(()),
        Some(_) => Err(forbidden("your role does not allow this")),
    }
}

const MANAGERS: &[Role] = &[Role::Owner, Role::Admin];
const KEY_HOLDERS: &[Role] = &[Role::Owner, Role::Admin, Role::Member];
const EVERYONE: &[Role] = &[Role::Owner, Role::Admin, Role::Member, Role::Viewer];

fn require_root(session: &Session) -> Reply<()> {
    match session.principal {
        Principal::Root => Ok(()),
        _ => Err(forbidden("only the root token may do this")),
    }
}

/// May the session change `target` (a user of its organization) to `new_role`?
fn may_change_user(role: Option<Role>, target: Role, new_role: Option<Role>) -> Reply<()> {
    match role {
        None | Some(Role::Owner) => Ok(()),
        Some(Role::Admin) if target != Role::Owner && new_role != Some(Role::Owner) => Ok(()),
        _ => Err(forbidden("your role does not allow changing this user")),
    }
}

impl Broker {
    /// Runs one tenancy request.
    pub(super) async fn handle_tenancy(
        &self,
        session: &Session,
        request: Request,
    ) -> Reply<Response> {
        match request {
            Request::OrgCreate(body) => {
                require_root(session)?;
                if body.plan == taskforge_protocol::Plan::Custom {
                    return Err(ErrorBody::new(
                        ErrorCode::InvalidArgument,
                        "create the organization on a preset plan, then SUBSCRIPTION_SET custom limits",
                    ));
                }
                validate::display_name("name", &body.name)?;
                validate::slug(&body.slug)?;
                let org = self
                    .mutate_raw(|core, now_ms| {
                        core.org_create(&body.name, &body.slug, body.plan, now_ms)
                    })
                    .await?
                    .map_err(core_error)?;
                Ok(Response::OrgCreate(org))
            }
            Request::OrgGet(body) => {
                let org = self
                    .mutate_raw(|core, _| {
                        org_role(core, session, body.org_id)?;
                        core.org(body.org_id)
                            .map(|entry| entry.org.clone())
                            .ok_or_else(|| not_found("organization"))
                    })
                    .await??;
                Ok(Response::OrgGet(org))
            }
            Request::OrgList(body) => {
                let limit = validate::list_limit(body.limit)?;
                let only = match &session.principal {
                    Principal::Root => None,
                    Principal::User { org_id, .. } => Some(*org_id),
                    Principal::ApiKey { .. } => {
                        return Err(forbidden("API keys cannot use tenancy operations"))
                    }
                };
                let (orgs, next_after) = self
                    .mutate_raw(|core, _| core.org_list(only, body.after, limit))
                    .await?;
                Ok(Response::OrgList(OrgList { orgs, next_after }))
            }
            Request::OrgUpdate(body) => {
                if body.status.is_some() {
                    require_root(session)?;
                }
                if let Some(name) = &body.name {
                    validate::display_name("name", name)?;
                }
                let org = self
                    .mutate_raw(|core, _| {
                        require(org_role(core, session, body.org_id)?, &[Role::Owner])?;
                        core.org_update(body.org_id, body.name, body.status)
                            .map_err(core_error)
                    })
                    .await??;
                Ok(Response::OrgUpdate(org))
            }
            Request::OrgDelete(body) => {
                require_root(session)?;
                self.mutate_raw(|core, _| core.org_delete(body.org_id))
                    .await?
                    .map_err(core_error)?;
                Ok(Response::OrgDelete(Default::default()))
            }
            Request::UserCreate(body) => {
                validate::email(&body.email)?;
                validate::password(&body.password)?;
                let check = self
                    .mutate_raw(|core, _| {
                        let role = org_role(core, session, body.org_id)?;
                        require(role, MANAGERS)?;
                        may_change_user(role, Role::Member, Some(body.role))
                    })
                    .await?;
                check?;
                let password_hash = hash_password(body.password).await?;
                let user = self
                    .mutate_raw(|core, now_ms| {
                        core.user_create(body.org_id, &body.email, password_hash, body.role, now_ms)
                    })
                    .await?
                    .map_err(core_error)?;
                Ok(Response::UserCreate(user))
            }
            Request::UserGet(body) => {
                let user = self
                    .mutate_raw(|core, _| {
                        let record = core.user(body.user_id).ok_or_else(|| not_found("user"))?;
                        let role = org_role(core, session, record.user.org_id)
                            .map_err(|_| not_found("user"))?;
                        if !is_self(session, body.user_id) {
                            require(role, MANAGERS)?;
                        }
                        Ok::<_, ErrorBody>(record.user.clone())
                    })
                    .await??;
                Ok(Response::UserGet(user))
            }
            Request::UserList(body) => {
                let limit = validate::list_limit(body.limit)?;
                let (users, next_after) = self
                    .mutate_raw(|core, _| {
                        require(org_role(core, session, body.org_id)?, MANAGERS)?;
                        Ok::<_, ErrorBody>(core.user_list(body.org_id, body.after, limit))
                    })
                    .await??;
                Ok(Response::UserList(UserList { users, next_after }))
            }
            Request::UserUpdate(body) => {
                if let Some(email) = &body.email {
                    validate::email(email)?;
                }
                let user = self
                    .mutate_raw(|core, _| {
                        let target = self.user_target(core, session, body.user_id)?;
                        may_change_user(target.0, target.1, body.role)?;
                        core.user_update(body.user_id, |record| {
                            if let Some(email) = body.email {
                                record.user.email = email;
                            }
                            if let Some(role) = body.role {
                                record.user.role = role;
                            }
                        })
                        .map_err(core_error)
                    })
                    .await??;
                Ok(Response::UserUpdate(user))
            }
            Request::UserDisable(body) => {
                let user = self
                    .mutate_raw(|core, _| {
                        let target = self.user_target(core, session, body.user_id)?;
                        may_change_user(target.0, target.1, None)?;
                        core.user_update(body.user_id, |record| {
                            record.user.disabled = body.disabled
                        })
                        .map_err(core_error)
                    })
                    .await??;
                Ok(Response::UserDisable(user))
            }
            Request::UserSetPassword(body) => {
                validate::password(&body.password)?;
                let check = self
                    .mutate_raw(|core, _| {
                        let target = self.user_target(core, session, body.user_id)?;
                        if is_self(session, body.user_id) {
                            Ok(())
                        } else {
                            may_change_user(target.0, target.1, None)
                        }
                    })
                    .await?;
                check?;
                let password_hash = hash_password(body.password).await?;
                self.mutate_raw(|core, _| {
                    core.user_update(body.user_id, |record| record.password_hash = password_hash)
                })
                .await?
                .map_err(core_error)?;
                Ok(Response::UserSetPassword(Default::default()))
            }
            Request::SubscriptionGet(body) => {
                let subscription = self
                    .mutate_raw(|core, _| {
                        org_role(core, session, body.org_id)?;
                        core.org(body.org_id)
                            .map(|entry| entry.subscription.clone())
                            .ok_or_else(|| not_found("organization"))
                    })
                    .await??;
                Ok(Response::SubscriptionGet(subscription))
            }
            Request::SubscriptionSet(body) => {
                require_root(session)?;
                let limits: PlanLimits = match (body.plan, body.limits) {
                    (_, Some(limits)) => limits,
                    (taskforge_protocol::Plan::Custom, None) => {
                        return Err(ErrorBody::new(
                            ErrorCode::InvalidArgument,
                            "a custom plan needs its limits",
                        ))
                    }
                    (plan, None) => plan_limits(plan),
                };
                let subscription = Subscription {
                    org_id: body.org_id,
                    plan: body.plan,
                    status: body.status,
                    period_start_ms: body.period_start_ms,
                    period_end_ms: body.period_end_ms,
                    limits,
                };
                let subscription = self
                    .mutate_raw(|core, _| core.subscription_set(subscription))
                    .await?
                    .map_err(core_error)?;
                Ok(Response::SubscriptionSet(subscription))
            }
            Request::ProjectCreate(body) => {
                validate::display_name("name", &body.name)?;
                validate::slug(&body.slug)?;
                let project = self
                    .mutate_raw(|core, now_ms| {
                        require(org_role(core, session, body.org_id)?, MANAGERS)?;
                        core.project_create(body.org_id, &body.name, &body.slug, now_ms)
                            .map_err(core_error)
                    })
                    .await??;
                Ok(Response::ProjectCreate(project))
            }
            Request::ProjectGet(body) => {
                let project = self
                    .mutate_raw(|core, _| {
                        self.project_role(core, session, body.project_id, EVERYONE)?;
                        core.project(body.project_id)
                            .cloned()
                            .ok_or_else(|| not_found("project"))
                    })
                    .await??;
                Ok(Response::ProjectGet(project))
            }
            Request::ProjectList(body) => {
                let limit = validate::list_limit(body.limit)?;
                let (projects, next_after) = self
                    .mutate_raw(|core, _| {
                        org_role(core, session, body.org_id)?;
                        Ok::<_, ErrorBody>(core.project_list(body.org_id, body.after, limit))
                    })
                    .await??;
                Ok(Response::ProjectList(ProjectList {
                    projects,
                    next_after,
                }))
            }
            Request::ProjectUpdate(body) => {
                validate::display_name("name", &body.name)?;
                let project = self
                    .mutate_raw(|core, _| {
                        self.project_role(core, session, body.project_id, MANAGERS)?;
                        core.project_rename(body.project_id, body.name)
                            .map_err(core_error)
                    })
                    .await??;
                Ok(Response::ProjectUpdate(project))
            }
            Request::ProjectDelete(body) => {
                let key_ids = self
                    .mutate_raw(|core, _| {
                        self.project_role(core, session, body.project_id, MANAGERS)?;
                        core.project_delete(body.project_id).map_err(core_error)
                    })
                    .await??;
                self.close_key_sessions(&key_ids);
                Ok(Response::ProjectDelete(Default::default()))
            }
            Request::ApiKeyCreate(body) => {
                validate::display_name("name", &body.name)?;
                if !scopes_are_valid(&body.scopes) {
                    return Err(ErrorBody::new(
                        ErrorCode::InvalidArgument,
                        "scopes must be non-empty without repeats",
                    ));
                }
                let now_ms = self.now_ms();
                if body
                    .expires_at_ms
                    .is_some_and(|expires_at_ms| expires_at_ms <= now_ms)
                {
                    return Err(ErrorBody::new(
                        ErrorCode::InvalidArgument,
                        "expires_at_ms must be in the future",
                    ));
                }
                let generated = api_key::generate(&self.key_pepper, None).map_err(random_failed)?;
                let info = ApiKeyInfo {
                    key_id: generated.key_id.clone(),
                    project_id: body.project_id,
                    name: body.name,
                    scopes: body.scopes,
                    created_at_ms: now_ms,
                    last_used_at_ms: None,
                    expires_at_ms: body.expires_at_ms,
                    revoked_at_ms: None,
                };
                let record = ApiKeyRecord {
                    info,
                    secret_hash: generated.secret_hash,
                    previous: None,
                };
                let key = self
                    .mutate_raw(|core, _| {
                        self.project_role(core, session, body.project_id, KEY_HOLDERS)?;
                        core.key_create(record).map_err(core_error)
                    })
                    .await??;
                Ok(Response::ApiKeyCreate(ApiKeySecret {
                    key,
                    secret: generated.credential,
                }))
            }
            Request::ApiKeyList(body) => {
                let limit = validate::list_limit(body.limit)?;
                let (keys, next_after) = self
                    .mutate_raw(|core, _| {
                        self.project_role(core, session, body.project_id, EVERYONE)?;
                        Ok::<_, ErrorBody>(core.key_list(
                            body.project_id,
                            body.after.as_deref(),
                            limit,
                        ))
                    })
                    .await??;
                Ok(Response::ApiKeyList(ApiKeyList { keys, next_after }))
            }
            Request::ApiKeyRevoke(body) => {
                let key = self
                    .mutate_raw(|core, now_ms| {
                        self.key_role(core, session, &body.key_id)?;
                        core.key_update(&body.key_id, |record| {
                            record.info.revoked_at_ms.get_or_insert(now_ms);
                        })
                        .map_err(core_error)
                    })
                    .await??;
                self.close_key_sessions(std::slice::from_ref(&body.key_id));
                Ok(Response::ApiKeyRevoke(key))
            }
            Request::ApiKeyRotate(body) => {
                let grace_ms = body.grace_ms.unwrap_or(KEY_ROTATION_GRACE_MS_DEFAULT);
                if grace_ms > KEY_ROTATION_GRACE_MS_MAX {
                    return Err(ErrorBody::new(
                        ErrorCode::InvalidArgument,
                        format!("grace_ms must be at most {KEY_ROTATION_GRACE_MS_MAX}"),
                    ));
                }
                if api_key::parse(&format!("tf_{}_{}", body.key_id, "0".repeat(64))).is_none() {
                    return Err(not_found("API key"));
                }
                let generated = api_key::generate(&self.key_pepper, Some(&body.key_id))
                    .map_err(random_failed)?;
                let key = self
                    .mutate_raw(|core, now_ms| {
                        self.key_role(core, session, &body.key_id)?;
                        let revoked = core
                            .api_key(&body.key_id)
                            .is_some_and(|record| record.info.revoked_at_ms.is_some());
                        if revoked {
                            return Err(ErrorBody::new(
                                ErrorCode::Conflict,
                                "a revoked key cannot be rotated",
                            ));
                        }
                        core.key_update(&body.key_id, |record| {
                            record.previous =
                                Some((record.secret_hash, now_ms.saturating_add(grace_ms)));
                            record.secret_hash = generated.secret_hash;
                        })
                        .map_err(core_error)
                    })
                    .await??;
                Ok(Response::ApiKeyRotate(ApiKeySecret {
                    key,
                    secret: generated.credential,
                }))
            }
            other => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("{} is not a tenancy operation", other.opcode().name()),
            )),
        }
    }

    /// The session's role in a user's organization, and the user's own role.
    fn user_target(
        &self,
        core: &Core,
        session: &Session,
        user_id: u64,
    ) -> Reply<(Option<Role>, Role)> {
        let record = core.user(user_id).ok_or_else(|| not_found("user"))?;
        let role = org_role(core, session, record.user.org_id).map_err(|error| {
            match error.error_code() {
                ErrorCode::NotFound => not_found("user"),
                _ => error,
            }
        })?;
        Ok((role, record.user.role))
    }

    /// Checks the session may act on a project with one of `roles`.
    fn project_role(
        &self,
        core: &Core,
        session: &Session,
        project_id: u64,
        roles: &[Role],
    ) -> Reply<()> {
        let project = core
            .project(project_id)
            .ok_or_else(|| not_found("project"))?;
        let role =
            org_role(core, session, project.org_id).map_err(|error| match error.error_code() {
                ErrorCode::NotFound => not_found("project"),
                _ => error,
            })?;
        require(role, roles)
    }

    /// Checks the session may manage an API key.
    fn key_role(&self, core: &Core, session: &Session, key_id: &str) -> Reply<()> {
        let project_id = core
            .api_key(key_id)
            .map(|record| record.info.project_id)
            .ok_or_else(|| not_found("API key"))?;
        self.project_role(core, session, project_id, KEY_HOLDERS)
            .map_err(|error| match error.error_code() {
                ErrorCode::NotFound => not_found("API key"),
                _ => error,
            })
    }
}

fn is_self(session: &Session, user_id: u64) -> bool {
    matches!(session.principal, Principal::User { user_id: own, .. } if own == user_id)
}

fn random_failed(error: getrandom::Error) -> ErrorBody {
    tracing::error!(%error, "the OS random generator failed");
    ErrorBody::new(ErrorCode::Unavailable, "cannot generate a secret right now")
}

/// Hashes a password off the async workers.
async fn hash_password(plain: String) -> Reply<String> {
    tokio::task::spawn_blocking(move || password::hash(&plain))
        .await
        .map_err(|_| ErrorBody::new(ErrorCode::Internal, "password hashing failed"))?
        .map_err(|error| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("password hashing failed: {error}"),
            )
        })
}
