//! `taskforge org create|get|list|update|delete`: organizations, the tenants.

use clap::Subcommand;
use taskforge::client::Client;
use taskforge_protocol::{OrgId, Organization};

use super::output::{self, Output};
use super::tenancy::{self, OrgStatusArg, PlanArg, TENANCY_LIST_LIMIT_DEFAULT};
use super::CliError;

/// The command that lists organizations, named in not-found hints.
const LISTING: &str = "taskforge org list";

/// The verbs of `taskforge org`.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Creates an organization with its subscription (root token only)
    Create {
        /// Display name (1 to 128 bytes)
        #[arg(long)]
        name: String,
        /// Unique URL-safe name ([a-z0-9-], 1 to 64 bytes)
        #[arg(long)]
        slug: String,
        /// Plan to start on (custom limits: `taskforge subscription set` afterwards)
        #[arg(long, value_enum, default_value_t = PlanArg::Free)]
        plan: PlanArg,
    },
    /// Shows an organization
    Get {
        /// Organization id
        org_id: OrgId,
    },
    /// Lists the organizations these credentials may see, in id order
    List {
        /// Start after this organization id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<OrgId>,
        /// Organizations per page (1 to 1000)
        #[arg(long, default_value_t = TENANCY_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Renames an organization and/or changes its status (suspending refuses its users and
    /// keys at the handshake)
    Update {
        /// Organization id
        org_id: OrgId,
        /// New display name
        #[arg(long)]
        name: Option<String>,
        /// New status (root token only)
        #[arg(long, value_enum)]
        status: Option<OrgStatusArg>,
    },
    /// Deletes an organization that owns no project, with its users and subscription (root
    /// token only)
    Delete {
        /// Organization id
        org_id: OrgId,
    },
}

/// Runs one `taskforge org` verb.
pub async fn run(client: Client, command: OrgCommand, out: Output) -> Result<(), CliError> {
    let error = tenancy::error(LISTING);
    match command {
        OrgCommand::Create { name, slug, plan } => {
            if plan == PlanArg::Custom {
                return Err(CliError::usage(
                    "an organization starts on a preset plan (free, pro or enterprise); give it \
                     custom limits afterwards with `taskforge subscription set --org ID --plan \
                     custom ...`",
                ));
            }
            let org = client
                .org_create(&name, &slug, plan.into())
                .await
                .map_err(error)?;
            out.print(&org, |org| {
                println!("organization {} created", org.org_id);
                print_org(org);
            })
        }
        OrgCommand::Get { org_id } => {
            let org = client.org_get(org_id).await.map_err(error)?;
            out.print(&org, print_org)
        }
        OrgCommand::List { after, limit } => {
            let page = client
                .org_list(after, tenancy::list_limit(limit)?)
                .await
                .map_err(error)?;
            out.print(&page, |page| {
                if page.orgs.is_empty() {
                    println!("no organizations");
                } else {
                    let mut table = output::table(&["ID", "SLUG", "NAME", "STATUS", "CREATED"]);
                    for org in &page.orgs {
                        table.add_row(vec![
                            org.org_id.to_string(),
                            org.slug.clone(),
                            org.name.clone(),
                            tenancy::name(&org.status),
                            output::time(org.created_at_ms),
                        ]);
                    }
                    println!("{table}");
                }
                if let Some(next) = page.next_after {
                    eprintln!("more organizations: add --after {next}");
                }
            })
        }
        OrgCommand::Update {
            org_id,
            name,
            status,
        } => {
            if name.is_none() && status.is_none() {
                return Err(CliError::usage(
                    "nothing to change: pass --name and/or --status",
                ));
            }
            let org = client
                .org_update(org_id, name, status.map(Into::into))
                .await
                .map_err(error)?;
            out.print(&org, |org| {
                println!("organization {} updated", org.org_id);
                print_org(org);
            })
        }
        OrgCommand::Delete { org_id } => {
            client.org_delete(org_id).await.map_err(error)?;
            out.print(&serde_json::json!({ "deleted": org_id }), |_| {
                println!("organization {org_id} deleted")
            })
        }
    }
}

fn print_org(org: &Organization) {
    output::print_fields(&[
        ("id", org.org_id.to_string()),
        ("name", org.name.clone()),
        ("slug", org.slug.clone()),
        ("status", tenancy::name(&org.status)),
        ("created", output::time(org.created_at_ms)),
    ]);
}
