//! `taskforge user create|get|list|update|disable|enable|set-password`: the people of an
//! organization. Passwords come from stdin or `TASKFORGE_NEW_PASSWORD`, never from a flag.

use clap::Subcommand;
use taskforge::client::Client;
use taskforge_protocol::{OrgId, User, UserId};

use super::output::{self, Output};
use super::tenancy::{self, RoleArg, TENANCY_LIST_LIMIT_DEFAULT};
use super::CliError;

/// The command that lists users, named in not-found hints.
const LISTING: &str = "taskforge user list --org ID";

/// The verbs of `taskforge user`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Creates a user; the password comes from --password-stdin or TASKFORGE_NEW_PASSWORD
    Create {
        /// Organization id
        #[arg(long, value_name = "ID")]
        org: OrgId,
        /// Login email, unique across the broker
        #[arg(long)]
        email: String,
        /// What the user may do
        #[arg(long, value_enum, default_value_t = RoleArg::Member)]
        role: RoleArg,
        /// Read the password (12 to 256 bytes) from the first line of stdin instead of
        /// TASKFORGE_NEW_PASSWORD
        #[arg(long)]
        password_stdin: bool,
    },
    /// Shows a user
    Get {
        /// User id
        user_id: UserId,
    },
    /// Lists an organization's users in id order
    List {
        /// Organization id
        #[arg(long, value_name = "ID")]
        org: OrgId,
        /// Start after this user id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<UserId>,
        /// Users per page (1 to 1000)
        #[arg(long, default_value_t = TENANCY_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Changes a user's email and/or role
    Update {
        /// User id
        user_id: UserId,
        /// New login email
        #[arg(long)]
        email: Option<String>,
        /// New role
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
    },
    /// Disables a user: its next handshake is refused
    Disable {
        /// User id
        user_id: UserId,
    },
    /// Enables a disabled user again
    Enable {
        /// User id
        user_id: UserId,
    },
    /// Sets a user's password from --password-stdin or TASKFORGE_NEW_PASSWORD
    SetPassword {
        /// User id
        user_id: UserId,
        /// Read the password (12 to 256 bytes) from the first line of stdin instead of
        /// TASKFORGE_NEW_PASSWORD
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Runs one `taskforge user` verb.
pub async fn run(client: Client, command: UserCommand, out: Output) -> Result<(), CliError> {
    let error = tenancy::error(LISTING);
    match command {
        UserCommand::Create {
            org,
            email,
            role,
            password_stdin,
        } => {
            let password = tenancy::new_password(password_stdin)?;
            let user = client
                .user_create(org, &email, &password, role.into())
                .await
                .map_err(error)?;
            out.print(&user, |user| {
                println!("user {} created", user.user_id);
                print_user(user);
            })
        }
        UserCommand::Get { user_id } => {
            let user = client.user_get(user_id).await.map_err(error)?;
            out.print(&user, print_user)
        }
        UserCommand::List { org, after, limit } => {
            let page = client
                .user_list(org, after, tenancy::list_limit(limit)?)
                .await
                .map_err(error)?;
            out.print(&page, |page| {
                if page.users.is_empty() {
                    println!("no users in organization {org}");
                } else {
                    let mut table =
                        output::table(&["ID", "EMAIL", "ROLE", "DISABLED", "LAST LOGIN"]);
                    for user in &page.users {
                        table.add_row(vec![
                            user.user_id.to_string(),
                            user.email.clone(),
                            tenancy::name(&user.role),
                            user.disabled.to_string(),
                            output::optional_time(user.last_login_at_ms),
                        ]);
                    }
                    println!("{table}");
                }
                if let Some(next) = page.next_after {
                    eprintln!("more users: add --after {next}");
                }
            })
        }
        UserCommand::Update {
            user_id,
            email,
            role,
        } => {
            if email.is_none() && role.is_none() {
                return Err(CliError::usage(
                    "nothing to change: pass --email and/or --role",
                ));
            }
            let user = client
                .user_update(user_id, email, role.map(Into::into))
                .await
                .map_err(error)?;
            out.print(&user, |user| {
                println!("user {} updated", user.user_id);
                print_user(user);
            })
        }
        UserCommand::Disable { user_id } => {
            let user = client.user_disable(user_id, true).await.map_err(error)?;
            out.print(&user, |user| println!("user {} disabled", user.user_id))
        }
        UserCommand::Enable { user_id } => {
            let user = client.user_disable(user_id, false).await.map_err(error)?;
            out.print(&user, |user| println!("user {} enabled", user.user_id))
        }
        UserCommand::SetPassword {
            user_id,
            password_stdin,
        } => {
            let password = tenancy::new_password(password_stdin)?;
            client
                .user_set_password(user_id, &password)
                .await
                .map_err(error)?;
            out.print(
                &serde_json::json!({ "user_id": user_id, "password_set": true }),
                |_| println!("password of user {user_id} set"),
            )
        }
    }
}

fn print_user(user: &User) {
    output::print_fields(&[
        ("id", user.user_id.to_string()),
        ("organization", user.org_id.to_string()),
        ("email", user.email.clone()),
        ("role", tenancy::name(&user.role)),
        ("disabled", user.disabled.to_string()),
        ("created", output::time(user.created_at_ms)),
        ("last login", output::optional_time(user.last_login_at_ms)),
    ]);
}
