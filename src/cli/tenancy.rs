//! What the tenancy nouns (`org`, `user`, `subscription`, `project`, `key`) share: flag
//! values for the protocol's enums, list limits, secrets read from stdin or the
//! environment (never from a flag, which `ps` would show), and error hints that name the
//! listing command.

use std::io::Read as _;

use clap::ValueEnum;
use taskforge::client::ClientError;
use taskforge_protocol::limits::LIST_LIMIT_MAX;
use taskforge_protocol::{ErrorCode, OrgStatus, Plan, Role, Scope, SubscriptionStatus};

use super::CliError;

/// Items per page of the tenancy `list` verbs unless `--limit` says otherwise.
pub const TENANCY_LIST_LIMIT_DEFAULT: u32 = 100;

/// Environment variable a new password may come from (for scripts without a terminal).
pub const NEW_PASSWORD_ENV_VAR: &str = "TASKFORGE_NEW_PASSWORD";

/// Largest password read from stdin, in bytes; the broker accepts at most 256.
pub const PASSWORD_READ_BYTES_MAX: u64 = 4 * 1024;

/// A plan an organization may be created on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanArg {
    /// Small limits
    Free,
    /// Larger limits
    Pro,
    /// Largest preset limits
    Enterprise,
    /// Limits set one by one (subscription set only)
    Custom,
}

impl From<PlanArg> for Plan {
    fn from(plan: PlanArg) -> Plan {
        match plan {
            PlanArg::Free => Plan::Free,
            PlanArg::Pro => Plan::Pro,
            PlanArg::Enterprise => Plan::Enterprise,
            PlanArg::Custom => Plan::Custom,
        }
    }
}

/// An organization's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrgStatusArg {
    /// In use
    Active,
    /// Its users and keys are refused at the handshake
    Suspended,
}

impl From<OrgStatusArg> for OrgStatus {
    fn from(status: OrgStatusArg) -> OrgStatus {
        match status {
            OrgStatusArg::Active => OrgStatus::Active,
            OrgStatusArg::Suspended => OrgStatus::Suspended,
        }
    }
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything in the organization
    Owner,
    /// Users (not owners), projects, keys and every job operation
    Admin,
    /// Every job operation and keys
    Member,
    /// Reads only
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Owner => Role::Owner,
            RoleArg::Admin => Role::Admin,
            RoleArg::Member => Role::Member,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// A subscription's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubscriptionStatusArg {
    /// Everything allowed within the limits
    Active,
    /// Enqueues refused; workers may drain
    #[value(name = "past_due")]
    PastDue,
    /// Enqueues refused; workers may drain
    Cancelled,
}

impl From<SubscriptionStatusArg> for SubscriptionStatus {
    fn from(status: SubscriptionStatusArg) -> SubscriptionStatus {
        match status {
            SubscriptionStatusArg::Active => SubscriptionStatus::Active,
            SubscriptionStatusArg::PastDue => SubscriptionStatus::PastDue,
            SubscriptionStatusArg::Cancelled => SubscriptionStatus::Cancelled,
        }
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Enqueue jobs
    Produce,
    /// Fetch, ack, fail and extend jobs
    Consume,
    /// Change queues, cancel jobs, retry and discard dead jobs
    Manage,
    /// Get, list and stats
    Read,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Scope {
        match scope {
            ScopeArg::Produce => Scope::Produce,
            ScopeArg::Consume => Scope::Consume,
            ScopeArg::Manage => Scope::Manage,
            ScopeArg::Read => Scope::Read,
        }
    }
}

/// The name a protocol enum has in JSON and on the command line (`past_due`, `owner`).
pub fn name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "?".to_string(),
    }
}

/// Checks a `--limit`.
pub fn list_limit(limit: u32) -> Result<u32, CliError> {
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(CliError::usage(format!(
            "--limit must be between 1 and {LIST_LIMIT_MAX}"
        )));
    }
    Ok(limit)
}

/// A broker error with a hint naming the command that lists what exists (for NOT_FOUND)
/// and the credentials tenancy needs (for FORBIDDEN).
pub fn error(listing: &str) -> impl FnOnce(ClientError) -> CliError + '_ {
    move |error| match error {
        ClientError::Server(body) if body.error_code() == ErrorCode::NotFound => {
            CliError::failed(format!(
                "NOT_FOUND: {} (check the id; `{listing}` shows what exists)",
                body.message
            ))
        }
        ClientError::Server(body) if body.error_code() == ErrorCode::Forbidden => {
            CliError::failed(format!(
                "FORBIDDEN: {} (API keys cannot manage tenancy, and some changes are the root \
                 token's alone; use the root token, e.g. --root-token-file <data dir>/root_token)",
                body.message
            ))
        }
        other => CliError::from(other),
    }
}

/// Reads a new password from stdin (`--password-stdin`, trailing newline dropped) or from
/// [`NEW_PASSWORD_ENV_VAR`]. Never from a flag: the process list would show it.
pub fn new_password(from_stdin: bool) -> Result<String, CliError> {
    let password = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .take(PASSWORD_READ_BYTES_MAX)
            .read_to_string(&mut text)
            .map_err(|error| {
                CliError::usage(format!("cannot read the password from stdin: {error}"))
            })?;
        let line = text.lines().next().unwrap_or_default();
        line.strip_suffix('\r').unwrap_or(line).to_string()
    } else {
        match std::env::var(NEW_PASSWORD_ENV_VAR) {
            Ok(password) => password,
            Err(_) => {
                return Err(CliError::usage(format!(
                    "no password: pipe it in with --password-stdin (e.g. `printf %s \"$PW\" | \
                     taskforge user ... --password-stdin`) or set {NEW_PASSWORD_ENV_VAR}"
                )))
            }
        }
    };
    if password.is_empty() {
        return Err(CliError::usage(
            "the password is empty; the broker needs 12 to 256 bytes",
        ));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_are_the_protocols() {
        assert_eq!(name(&SubscriptionStatus::PastDue), "past_due");
        assert_eq!(name(&Role::Viewer), "viewer");
        assert_eq!(
            SubscriptionStatusArg::from_str("past_due", false).map(SubscriptionStatus::from),
            Ok(SubscriptionStatus::PastDue)
        );
    }
}
