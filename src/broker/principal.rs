//! Who a session is and what it may do. Every request is checked here against the
//! session's principal before the broker runs it; the project comes only from the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use taskforge_protocol::{
    ErrorBody, ErrorCode, OrgId, PrincipalKind, ProjectId, Request, Role, Scope, UserId,
};

use tokio_util::sync::CancellationToken;

/// The authenticated identity of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The root token: everything, everywhere.
    Root,
    /// A user of an organization, acting by role.
    User {
        /// The user.
        user_id: UserId,
        /// Its organization.
        org_id: OrgId,
        /// Its role at the handshake.
        role: Role,
    },
    /// A project API key, acting by scopes.
    ApiKey {
        /// The key's public id.
        key_id: String,
        /// The organization owning the key's project.
        org_id: OrgId,
        /// What it may do.
        scopes: Vec<Scope>,
    },
}

/// Who a session is, decided once by the handshake.
#[derive(Debug, Clone)]
pub struct Session {
    /// The principal.
    pub principal: Principal,
    /// The project queue and job operations work in; 0 when none was chosen. It never
    /// comes from a request body.
    pub project_id: ProjectId,
    /// Cancelled when the session's credential is revoked: the server closes the
    /// connection and the broker refuses further requests.
    pub revoked: CancellationToken,
    /// Counts this session against its organization's connection quota until dropped.
    pub connection: Option<Arc<ConnectionPermit>>,
}

/// Open connections per organization.
pub type ConnectionCounts = Arc<Mutex<HashMap<OrgId, u32>>>;

/// One connection counted against an organization's quota; released when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    /// The shared counts.
    counts: ConnectionCounts,
    /// The organization counted.
    org_id: OrgId,
}

impl ConnectionPermit {
    /// Counts one more connection for `org_id` unless it already has `max`; on refusal,
    /// the number open now.
    pub fn acquire(
        counts: &ConnectionCounts,
        org_id: OrgId,
        max: u32,
    ) -> Result<ConnectionPermit, u32> {
        let mut open = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = open.entry(org_id).or_insert(0);
        if *current >= max {
            return Err(*current);
        }
        *current += 1;
        Ok(ConnectionPermit {
            counts: Arc::clone(counts),
            org_id,
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(current) = open.get_mut(&self.org_id) {
            *current = current.saturating_sub(1);
        }
    }
}

impl Session {
    /// A root session in `project_id`.
    pub fn root(project_id: ProjectId) -> Session {
        Session {
            principal: Principal::Root,
            project_id,
            revoked: CancellationToken::new(),
            connection: None,
        }
    }

    /// The kind announced in the server hello.
    pub fn principal_kind(&self) -> PrincipalKind {
        match self.principal {
            Principal::Root => PrincipalKind::Root,
            Principal::User { .. } => PrincipalKind::User,
            Principal::ApiKey { .. } => PrincipalKind::ApiKey,
        }
    }

    /// The user of a password session.
    pub fn user_id(&self) -> Option<UserId> {
        match self.principal {
            Principal::User { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    /// The principal's organization; `None` for root.
    pub fn org_id(&self) -> Option<OrgId> {
        match &self.principal {
            Principal::Root => None,
            Principal::User { org_id, .. } | Principal::ApiKey { org_id, .. } => Some(*org_id),
        }
    }
}

/// What a queue, job or worker operation needs, as key scopes of which any one will do
/// (users map them through their role).
fn scopes_accepted(request: &Request) -> Option<&'static [Scope]> {
    match request {
        Request::Enqueue(_) | Request::EnqueueBatch(_) => Some(&[Scope::Produce]),
        Request::Fetch(_)
        | Request::Ack(_)
        | Request::AckBatch(_)
        | Request::Fail(_)
        | Request::Extend(_)
        | Request::Progress(_)
        | Request::Log(_)
        | Request::WorkerRegister(_)
        | Request::Heartbeat(_) => Some(&[Scope::Consume]),
        Request::QueueCreate(_)
        | Request::QueueUpdate(_)
        | Request::QueueDelete(_)
        | Request::QueuePause(_)
        | Request::QueueResume(_)
        | Request::QueuePurge(_)
        | Request::Cancel(_)
        | Request::DeadRetry(_)
        | Request::DeadDiscard(_)
        | Request::WorkerQuiet(_)
        | Request::WorkerTerminate(_)
        | Request::WorkerAssign(_)
        | Request::ScheduleCreate(_)
        | Request::ScheduleUpdate(_)
        | Request::ScheduleDelete(_)
        | Request::SchedulePause(_)
        | Request::ScheduleResume(_) => Some(&[Scope::Manage]),
        Request::QueueGet(_)
        | Request::QueueList(_)
        | Request::QueueStats(_)
        | Request::JobGet(_)
        | Request::JobList(_)
        | Request::DeadList(_)
        | Request::LogTail(_)
        | Request::ExecutionList(_)
        | Request::WorkerList(_)
        | Request::WorkerGet(_)
        | Request::AssignmentList(_)
        | Request::ScheduleGet(_)
        | Request::ScheduleList(_) => Some(&[Scope::Read]),
        // A fan-in job's handler reads its parents' results with its worker's key.
        Request::JobResults(_) => Some(&[Scope::Read, Scope::Consume]),
        _ => None,
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Produce => "produce",
        Scope::Consume => "consume",
        Scope::Manage => "manage",
        Scope::Read => "read",
    }
}

/// Checks that `session` may run a queue or job operation. Tenancy operations are
/// checked by their handlers, which know the target's organization.
pub fn authorize_project_operation(session: &Session, request: &Request) -> Result<(), ErrorBody> {
    let Some(accepted) = scopes_accepted(request) else {
        return Ok(());
    };
    if session.project_id == 0 {
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "this session has no project: name one in HELLO.project_id",
        ));
    }
    let allowed = match &session.principal {
        Principal::Root => true,
        Principal::User { role, .. } => *role != Role::Viewer || accepted.contains(&Scope::Read),
        Principal::ApiKey { scopes, .. } => accepted.iter().any(|scope| scopes.contains(scope)),
    };
    if allowed {
        Ok(())
    } else {
        let names: Vec<&str> = accepted.iter().map(|scope| scope_name(*scope)).collect();
        Err(ErrorBody::new(
            ErrorCode::Forbidden,
            format!("this operation needs the {} scope", names.join(" or ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use taskforge_protocol::{Empty, FetchRequest, QueueName};

    use super::*;

    fn key_session(scopes: Vec<Scope>) -> Session {
        Session {
            principal: Principal::ApiKey {
                key_id: "k".into(),
                org_id: 2,
                scopes,
            },
            project_id: 5,
            revoked: CancellationToken::new(),
            connection: None,
        }
    }

    #[test]
    fn scopes_gate_operations() {
        let fetch = Request::Fetch(FetchRequest {
            queues: vec!["q".into()],
            max_jobs: 1,
            wait_ms: 0,
            lease_ms: None,
            worker_id: None,
            weights: Vec::new(),
        });
        let get = Request::QueueGet(QueueName { name: "q".into() });
        let produce_only = key_session(vec![Scope::Produce]);
        assert_eq!(
            authorize_project_operation(&produce_only, &fetch).map_err(|error| error.error_code()),
            Err(ErrorCode::Forbidden)
        );
        assert!(authorize_project_operation(&key_session(vec![Scope::Read]), &get).is_ok());
        assert!(authorize_project_operation(&produce_only, &Request::Ping(Empty {})).is_ok());
    }

    #[test]
    fn viewers_only_read_and_sessions_without_a_project_do_nothing() {
        let viewer = Session {
            principal: Principal::User {
                user_id: 1,
                org_id: 2,
                role: Role::Viewer,
            },
            project_id: 5,
            revoked: CancellationToken::new(),
            connection: None,
        };
        let pause = Request::QueuePause(QueueName { name: "q".into() });
        let get = Request::QueueGet(QueueName { name: "q".into() });
        assert!(authorize_project_operation(&viewer, &pause).is_err());
        assert!(authorize_project_operation(&viewer, &get).is_ok());
        let no_project = Session {
            project_id: 0,
            ..viewer
        };
        assert!(authorize_project_operation(&no_project, &get).is_err());
    }
}
