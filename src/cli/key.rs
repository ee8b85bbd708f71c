//! `taskforge key create|list|revoke|rotate`: a project's API keys.
//!
//! The project is the session's: `--project ID`, `TASKFORGE_PROJECT` or the context's
//! `project`. A secret is printed only by `create` and `rotate`, the one time the broker
//! returns it; `list` never has one.

use clap::Subcommand;
use taskforge::client::Client;
use taskforge_protocol::{ApiKeyInfo, ApiKeySecret, ProjectId, Scope};

use super::output::{self, Output};
use super::tenancy::{self, ScopeArg, TENANCY_LIST_LIMIT_DEFAULT};
use super::CliError;

/// The command that lists keys, named in not-found hints.
const LISTING: &str = "taskforge key list --project ID";

/// The verbs of `taskforge key`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Creates an API key in the project given by --project and prints its secret, once
    Create {
        /// A label
        #[arg(long)]
        name: String,
        /// What the key may do: produce, consume, manage, read (repeat the flag or separate
        /// with commas)
        #[arg(long = "scope", value_enum, value_delimiter = ',', required = true)]
        scopes: Vec<ScopeArg>,
        /// Refuse the key from this time on, ms since the Unix epoch [default: never]
        #[arg(long, value_name = "MS")]
        expires_at_ms: Option<u64>,
    },
    /// Lists the API keys of the project given by --project (never their secrets)
    List {
        /// Start after this key id (the previous page's last)
        #[arg(long, value_name = "KEY_ID")]
        after: Option<String>,
        /// Keys per page (1 to 1000)
        #[arg(long, default_value_t = TENANCY_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Revokes a key for good; its live sessions are closed at once
    Revoke {
        /// The key's public id (the part between `tf_` and the second `_`)
        key_id: String,
    },
    /// Gives a key a new secret, printed once; the old one works for a grace period
    Rotate {
        /// The key's public id
        key_id: String,
        /// How long the old secret keeps working, in ms [default: the broker's]
        #[arg(long, value_name = "MS")]
        grace_ms: Option<u64>,
    },
}

/// The session's project, which `create` and `list` need.
fn required_project(project: Option<ProjectId>, verb: &str) -> Result<ProjectId, CliError> {
    project.ok_or_else(|| {
        CliError::usage(format!(
            "`taskforge key {verb}` needs a project: pass --project ID, set TASKFORGE_PROJECT or \
             add `project = ID` to the context (`taskforge project list --org ID` shows the ids)"
        ))
    })
}

/// Runs one `taskforge key` verb in `project` (the session's, if one was asked for).
pub async fn run(
    client: Client,
    command: KeyCommand,
    out: Output,
    project: Option<ProjectId>,
) -> Result<(), CliError> {
    let error = tenancy::error(LISTING);
    match command {
        KeyCommand::Create {
            name,
            scopes,
            expires_at_ms,
        } => {
            let project_id = required_project(project, "create")?;
            let mut scopes: Vec<Scope> = scopes.into_iter().map(Scope::from).collect();
            scopes.sort();
            scopes.dedup();
            let created = client
                .api_key_create(project_id, &name, scopes, expires_at_ms)
                .await
                .map_err(error)?;
            print_secret(&created, out, "created")
        }
        KeyCommand::List { after, limit } => {
            let project_id = required_project(project, "list")?;
            let page = client
                .api_key_list(project_id, after, tenancy::list_limit(limit)?)
                .await
                .map_err(error)?;
            out.print(&page, |page| {
                if page.keys.is_empty() {
                    println!("no API keys in project {project_id}");
                } else {
                    let mut table = output::table(&[
                        "KEY ID",
                        "NAME",
                        "SCOPES",
                        "CREATED",
                        "LAST USED",
                        "EXPIRES",
                        "REVOKED",
                    ]);
                    for key in &page.keys {
                        table.add_row(vec![
                            key.key_id.clone(),
                            key.name.clone(),
                            scope_names(&key.scopes),
                            output::time(key.created_at_ms),
                            output::optional_time(key.last_used_at_ms),
                            output::optional_time(key.expires_at_ms),
                            output::optional_time(key.revoked_at_ms),
                        ]);
                    }
                    println!("{table}");
                }
                if let Some(next) = &page.next_after {
                    eprintln!("more keys: add --after {next}");
                }
            })
        }
        KeyCommand::Revoke { key_id } => {
            let key = client.api_key_revoke(&key_id).await.map_err(error)?;
            out.print(&key, |key| {
                println!("key {} revoked; its sessions are closed", key.key_id);
                print_key(key);
            })
        }
        KeyCommand::Rotate { key_id, grace_ms } => {
            let rotated = client
                .api_key_rotate(&key_id, grace_ms)
                .await
                .map_err(error)?;
            let grace = grace_ms.map_or("the broker's grace period".to_string(), |ms| {
                format!("{ms} ms")
            });
            print_secret(&rotated, out, "rotated")?;
            eprintln!("taskforge: the old secret keeps working for {grace}");
            Ok(())
        }
    }
}

/// Prints a key with its secret (JSON: the whole response) and the note that the secret
/// is shown only now, on stderr so that stdout stays one document.
fn print_secret(created: &ApiKeySecret, out: Output, done: &str) -> Result<(), CliError> {
    out.print(created, |created| {
        println!("key {} {done}", created.key.key_id);
        print_key(&created.key);
        println!("secret: {}", created.secret);
    })?;
    eprintln!(
        "taskforge: the secret is shown only now and cannot be read back; store it (for \
         example in TASKFORGE_API_KEY of the service that uses it). Lost it? `taskforge key \
         rotate {}` issues a new one",
        created.key.key_id
    );
    Ok(())
}

fn scope_names(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(tenancy::name)
        .collect::<Vec<_>>()
        .join(",")
}

fn print_key(key: &ApiKeyInfo) {
    output::print_fields(&[
        ("key id", key.key_id.clone()),
        ("project", key.project_id.to_string()),
        ("name", key.name.clone()),
        ("scopes", scope_names(&key.scopes)),
        ("created", output::time(key.created_at_ms)),
        ("last used", output::optional_time(key.last_used_at_ms)),
        ("expires", output::optional_time(key.expires_at_ms)),
        ("revoked", output::optional_time(key.revoked_at_ms)),
    ]);
}
