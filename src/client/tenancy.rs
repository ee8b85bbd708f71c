//! One typed method per tenancy operation (opcodes 0x06xx): organizations, users,
//! subscriptions, projects and API keys. Each builds the request body, goes through
//! [`Client::call`] and unpacks the matching response; operations whose response is `Empty`
//! return `()`.
//!
//! Who may call what is decided by the session's principal (PROTOCOL.md §8.5): an API key
//! may call none of these, and an id of another organization is
//! [`taskforge_protocol::ErrorCode::NotFound`], exactly like an id that does not exist.

use taskforge_protocol::{
    ApiKeyCreate, ApiKeyInfo, ApiKeyList, ApiKeyRef, ApiKeyRotate, ApiKeySecret, IdPage, OrgCreate,
    OrgId, OrgList, OrgPage, OrgRef, OrgStatus, OrgUpdate, Organization, Plan, Project,
    ProjectCreate, ProjectId, ProjectList, ProjectPage, ProjectRef, ProjectUpdate, Role, Scope,
    Subscription, SubscriptionSet, User, UserCreate, UserDisable, UserId, UserList, UserRef,
    UserSetPassword, UserUpdate,
};

use super::{Client, ClientError};

impl Client {
    /// ORG_CREATE (root only): creates an organization on a preset plan, with its
    /// subscription. A taken slug is [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn org_create(
        &self,
        name: &str,
        slug: &str,
        plan: Plan,
    ) -> Result<Organization, ClientError> {
        call_expecting!(
            self,
            OrgCreate,
            OrgCreate {
                name: name.to_string(),
                slug: slug.to_string(),
                plan
            }
        )
    }

    /// ORG_GET: reads one organization.
    pub async fn org_get(&self, org_id: OrgId) -> Result<Organization, ClientError> {
        call_expecting!(self, OrgGet, OrgRef { org_id })
    }

    /// ORG_LIST: one page of the organizations the session may see, in id order, starting
    /// after `after`.
    pub async fn org_list(&self, after: Option<OrgId>, limit: u32) -> Result<OrgList, ClientError> {
        call_expecting!(self, OrgList, IdPage { after, limit })
    }

    /// ORG_UPDATE: renames an organization and/or changes its status (root only); `None`
    /// leaves a field as it is.
    pub async fn org_update(
        &self,
        org_id: OrgId,
        name: Option<String>,
        status: Option<OrgStatus>,
    ) -> Result<Organization, ClientError> {
        call_expecting!(
            self,
            OrgUpdate,
            OrgUpdate {
                org_id,
                name,
                status
            }
        )
    }

    /// ORG_DELETE (root only): deletes an organization that owns no project, with its users
    /// and subscription. One that still owns a project is
    /// [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn org_delete(&self, org_id: OrgId) -> Result<(), ClientError> {
        call_expecting!(self, OrgDelete, OrgRef { org_id }).map(drop)
    }

    /// USER_CREATE: creates a user in organization `org_id`. Only the password's hash is
    /// stored; a taken email is [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn user_create(
        &self,
        org_id: OrgId,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<User, ClientError> {
        call_expecting!(
            self,
            UserCreate,
            UserCreate {
                org_id,
                email: email.to_string(),
                password: password.to_string(),
                role
            }
        )
    }

    /// USER_GET: reads one user.
    pub async fn user_get(&self, user_id: UserId) -> Result<User, ClientError> {
        call_expecting!(self, UserGet, UserRef { user_id })
    }

    /// USER_LIST: one page of an organization's users in id order, starting after `after`.
    pub async fn user_list(
        &self,
        org_id: OrgId,
        after: Option<UserId>,
        limit: u32,
    ) -> Result<UserList, ClientError> {
        call_expecting!(
            self,
            UserList,
            OrgPage {
                org_id,
                after,
                limit
            }
        )
    }

    /// USER_UPDATE: changes a user's email and/or role; `None` leaves a field as it is.
    pub async fn user_update(
        &self,
        user_id: UserId,
        email: Option<String>,
        role: Option<Role>,
    ) -> Result<User, ClientError> {
        call_expecting!(
            self,
            UserUpdate,
            UserUpdate {
                user_id,
                email,
                role
            }
        )
    }

    /// USER_DISABLE: disables a user (`disabled = true`; its next handshake fails) or
    /// enables it again.
    pub async fn user_disable(&self, user_id: UserId, disabled: bool) -> Result<User, ClientError> {
        call_expecting!(self, UserDisable, UserDisable { user_id, disabled })
    }

    /// USER_SET_PASSWORD: sets a user's password.
    pub async fn user_set_password(
        &self,
        user_id: UserId,
        password: &str,
    ) -> Result<(), ClientError> {
        call_expecting!(
            self,
            UserSetPassword,
            UserSetPassword {
                user_id,
                password: password.to_string()
            }
        )
        .map(drop)
    }

    /// SUBSCRIPTION_GET: an organization's plan, status, period and limits in force.
    pub async fn subscription_get(&self, org_id: OrgId) -> Result<Subscription, ClientError> {
        call_expecting!(self, SubscriptionGet, OrgRef { org_id })
    }

    /// SUBSCRIPTION_SET (root only): sets an organization's plan, status, period and limits
    /// at once; `limits = None` takes the plan's presets (the custom plan requires limits).
    pub async fn subscription_set(
        &self,
        request: SubscriptionSet,
    ) -> Result<Subscription, ClientError> {
        call_expecting!(self, SubscriptionSet, request)
    }

    /// PROJECT_CREATE: creates a project in organization `org_id`. A taken slug is
    /// [`taskforge_protocol::ErrorCode::Conflict`]; one project too many is
    /// [`taskforge_protocol::ErrorCode::QuotaExceeded`].
    pub async fn project_create(
        &self,
        org_id: OrgId,
        name: &str,
        slug: &str,
    ) -> Result<Project, ClientError> {
        call_expecting!(
            self,
            ProjectCreate,
            ProjectCreate {
                org_id,
                name: name.to_string(),
                slug: slug.to_string()
            }
        )
    }

    /// PROJECT_GET: reads one project.
    pub async fn project_get(&self, project_id: ProjectId) -> Result<Project, ClientError> {
        call_expecting!(self, ProjectGet, ProjectRef { project_id })
    }

    /// PROJECT_LIST: one page of an organization's projects in id order, starting after
    /// `after`.
    pub async fn project_list(
        &self,
        org_id: OrgId,
        after: Option<ProjectId>,
        limit: u32,
    ) -> Result<ProjectList, ClientError> {
        call_expecting!(
            self,
            ProjectList,
            OrgPage {
                org_id,
                after,
                limit
            }
        )
    }

    /// PROJECT_UPDATE: renames a project.
    pub async fn project_update(
        &self,
        project_id: ProjectId,
        name: &str,
    ) -> Result<Project, ClientError> {
        call_expecting!(
            self,
            ProjectUpdate,
            ProjectUpdate {
                project_id,
                name: name.to_string()
            }
        )
    }

    /// PROJECT_DELETE: deletes a project that owns no queue, with its API keys (whose
    /// sessions the broker closes). One that still owns a queue is
    /// [`taskforge_protocol::ErrorCode::Conflict`].
    pub async fn project_delete(&self, project_id: ProjectId) -> Result<(), ClientError> {
        call_expecting!(self, ProjectDelete, ProjectRef { project_id }).map(drop)
    }

    /// APIKEY_CREATE: creates an API key for a project. The response's `secret` is the whole
    /// credential and is shown only this once.
    pub async fn api_key_create(
        &self,
        project_id: ProjectId,
        name: &str,
        scopes: Vec<Scope>,
        expires_at_ms: Option<u64>,
    ) -> Result<ApiKeySecret, ClientError> {
        call_expecting!(
            self,
            ApiKeyCreate,
            ApiKeyCreate {
                project_id,
                name: name.to_string(),
                scopes,
                expires_at_ms
            }
        )
    }

    /// APIKEY_LIST: one page of a project's API keys in key id order, starting after the
    /// key id `after`. Never contains secrets.
    pub async fn api_key_list(
        &self,
        project_id: ProjectId,
        after: Option<String>,
        limit: u32,
    ) -> Result<ApiKeyList, ClientError> {
        call_expecting!(
            self,
            ApiKeyList,
            ProjectPage {
                project_id,
                after,
                limit
            }
        )
    }

    /// APIKEY_REVOKE: revokes the key with public id `key_id` for good; the broker closes
    /// its live sessions.
    pub async fn api_key_revoke(&self, key_id: &str) -> Result<ApiKeyInfo, ClientError> {
        call_expecting!(
            self,
            ApiKeyRevoke,
            ApiKeyRef {
                key_id: key_id.to_string()
            }
        )
    }

    /// APIKEY_ROTATE: gives the key a new secret (returned this once); the old one keeps
    /// working for `grace_ms`, or the broker's default grace when `None`.
    pub async fn api_key_rotate(
        &self,
        key_id: &str,
        grace_ms: Option<u64>,
    ) -> Result<ApiKeySecret, ClientError> {
        call_expecting!(
            self,
            ApiKeyRotate,
            ApiKeyRotate {
                key_id: key_id.to_string(),
                grace_ms
            }
        )
    }
}
