//! The admin CLI: `taskforge <noun> <verb>`.
//!
//! # Layout
//! - `mod.rs`: [`Admin`] (the flags every online command shares), [`Exit`] codes,
//!   [`CliError`], and [`run_admin`], which connects, runs one command and maps its
//!   outcome to an exit code.
//! - `connection.rs`: where the address and credentials come from (flags, environment,
//!   the profile file's contexts).
//! - `output.rs`: tables for people, JSON for scripts, value formatting.
//! - one file per noun: `queue.rs`, `job.rs`, `dead.rs`, `worker.rs` and the tenancy nouns `org.rs`,
//! - one file per noun: `queue.rs`, `job.rs`, `dead.rs`, `schedule.rs` and the tenancy nouns `org.rs`,
//!   `user.rs`, `subscription.rs`, `project.rs`, `key.rs` speak the binary protocol through
//!   the Rust client; `storage.rs` works offline on a data directory.
//! - `execution.rs`: how `job logs|executions|results|get` print a job's executions, log
//!   lines and progress, and the `job logs --follow` loop.
//! - `tenancy.rs`: what the tenancy nouns share (enum flags, secrets from stdin or the
//!   environment, not-found hints).
//!
//! A new noun is one more file with a `Subcommand` enum and an
//! `async fn run(client, command, output)`, plus one `Command` variant in `main.rs`.
//!
//! # Exit codes
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | the operation failed: the broker refused it (the message carries its error code), or a storage command found a problem |
//! | 2 | usage: bad flags or arguments, missing credentials, a missing confirmation, no store in the data directory |
//! | 3 | cannot reach or authenticate to the broker, or the connection was lost mid-request (the outcome is then unknown) |

pub mod connection;
pub mod dead;
pub mod execution;
pub mod job;
pub mod key;
pub mod org;
pub mod output;
pub mod project;
pub mod queue;
pub mod schedule;
pub mod storage;
pub mod subscription;
pub mod tenancy;
pub mod user;
pub mod worker;

use std::future::Future;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use taskforge::client::{Client, ClientError};
use taskforge_protocol::{ErrorCode, ProjectId};

use connection::ConnectionArgs;
use output::Output;

/// How a command ended, as the process exit code scripts read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The operation failed (a broker error, or a storage problem found).
    Failed = 1,
    /// The command line or the local setup is wrong.
    Usage = 2,
    /// The broker could not be reached or refused the credentials, or the connection was
    /// lost during a request.
    Connection = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A failed command: the exit code and a message saying what happened and what to do.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// One or more sentences for the operator.
    pub message: String,
}

impl CliError {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    /// A failed operation (exit 1).
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            exit: Exit::Failed,
            message: message.into(),
        }
    }

    /// A connection or authentication failure (exit 3).
    pub fn connection(message: impl Into<String>) -> CliError {
        CliError {
            exit: Exit::Connection,
            message: message.into(),
        }
    }

    /// Prints the message to stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("taskforge: {}", self.message);
        self.exit.into()
    }
}

/// What an error code suggests doing, appended to the broker's own message.
fn hint(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => {
            " (check the name or id; `taskforge queue list` and `taskforge job list QUEUE` show \
             what exists)"
        }
        ErrorCode::Unavailable => {
            " (the broker cannot serve now; retry later, and check its log and /readyz)"
        }
        ErrorCode::Forbidden => " (these credentials may not do this; use a more privileged one)",
        ErrorCode::RateLimited => " (too many requests; wait and retry)",
        ErrorCode::QuotaExceeded => {
            " (the organization's plan does not allow more; `taskforge subscription get --org \
             ID` shows its limits)"
        }
        _ => "",
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> CliError {
        match error {
            ClientError::Server(body) => {
                let code = body.error_code();
                CliError::failed(format!("{}: {}{}", code.name(), body.message, hint(code)))
            }
            ClientError::Handshake(body) => CliError::connection(format!(
                "the broker refused the credentials ({body}). Check --root-token, \
                 TASKFORGE_ROOT_TOKEN, --root-token-file or the context's root_token (or, \
                 acting as a key, --api-key, TASKFORGE_API_KEY or the context's api_key: it may \
                 be revoked or expired); if a project is set (--project, TASKFORGE_PROJECT, the \
                 context's project), check that these credentials may work in it"
            )),
            ClientError::Io(error) => CliError::connection(format!(
                "cannot talk to the broker: {error}. Is it running? Check --addr, TASKFORGE_ADDR \
                 or the context's addr"
            )),
            ClientError::Timeout => CliError::connection(
                "the broker did not answer in time; the outcome of a change is unknown (check it \
                 with a get or list command), or raise --timeout-ms",
            ),
            ClientError::Disconnected => CliError::connection(
                "the connection was lost during the request; the outcome of a change is unknown \
                 (check it with a get or list command)",
            ),
            ClientError::Protocol(message) => CliError::failed(format!(
                "the broker sent an answer this CLI cannot read ({message}); are the CLI and \
                 broker versions compatible?"
            )),
            too_large @ ClientError::RequestTooLarge { .. } => {
                CliError::usage(format!("{too_large}; send less at once"))
            }
        }
    }
}

/// The flags every online command shares.
#[derive(Debug, Clone, Args)]
pub struct AdminOptions {
    /// Where to connect and with which credentials.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print JSON (the protocol's types) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// An online command: the shared flags and the noun's verb.
#[derive(Debug, Args)]
pub struct Admin<C: Subcommand> {
    /// Flags every admin command takes.
    #[command(flatten)]
    pub options: AdminOptions,
    /// The verb.
    #[command(subcommand)]
    pub command: C,
}

/// Connects as `options` says, runs `work`, closes the connection, and turns the outcome
/// into an exit code (printing the error, if any).
pub fn run_admin<F, Fut>(options: AdminOptions, work: F) -> ExitCode
where
    F: FnOnce(Client, Output) -> Fut,
    Fut: Future<Output = Result<(), CliError>>,
{
    run_admin_in(options, move |client, out, _project| work(client, out))
}

/// [`run_admin`] for commands that also need the project the session was asked to work in
/// (`--project`, `TASKFORGE_PROJECT`, the context's `project`; `None` when none is set).
pub fn run_admin_in<F, Fut>(options: AdminOptions, work: F) -> ExitCode
where
    F: FnOnce(Client, Output, Option<ProjectId>) -> Fut,
    Fut: Future<Output = Result<(), CliError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return CliError::failed(format!("cannot start the async runtime: {error}")).report()
        }
    };
    let output = Output { json: options.json };
    let outcome = runtime.block_on(async {
        let target = options.connection.resolve()?;
        let client = target.connect().await?;
        let result = work(client.clone(), output, target.project).await;
        // The answers are in; a failed goodbye changes nothing for the operator.
        let _ = client.close().await;
        result
    });
    match outcome {
        Ok(()) => Exit::Ok.into(),
        Err(error) => error.report(),
    }
}
