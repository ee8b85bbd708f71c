//! `taskforge project create|get|list|update|delete`: an organization's isolated
//! namespaces of queues and jobs.

use clap::Subcommand;
use taskforge::client::Client;
use taskforge_protocol::{OrgId, Project, ProjectId};

use super::output::{self, Output};
use super::tenancy::{self, TENANCY_LIST_LIMIT_DEFAULT};
use super::CliError;

/// The command that lists projects, named in not-found hints.
const LISTING: &str = "taskforge project list --org ID";

/// The verbs of `taskforge project`.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Creates a project in an organization
    Create {
        /// Organization id
        #[arg(long, value_name = "ID")]
        org: OrgId,
        /// Display name (1 to 128 bytes)
        #[arg(long)]
        name: String,
        /// Name unique in the organization ([a-z0-9-], 1 to 64 bytes)
        #[arg(long)]
        slug: String,
    },
    /// Shows a project
    Get {
        /// Project id
        project_id: ProjectId,
    },
    /// Lists an organization's projects in id order
    List {
        /// Organization id
        #[arg(long, value_name = "ID")]
        org: OrgId,
        /// Start after this project id (the previous page's last)
        #[arg(long, value_name = "ID")]
        after: Option<ProjectId>,
        /// Projects per page (1 to 1000)
        #[arg(long, default_value_t = TENANCY_LIST_LIMIT_DEFAULT)]
        limit: u32,
    },
    /// Renames a project
    Update {
        /// Project id
        project_id: ProjectId,
        /// New display name
        #[arg(long)]
        name: String,
    },
    /// Deletes a project that owns no queue, with its API keys (their sessions are closed)
    Delete {
        /// Project id
        project_id: ProjectId,
    },
}

/// Runs one `taskforge project` verb.
pub async fn run(client: Client, command: ProjectCommand, out: Output) -> Result<(), CliError> {
    let error = tenancy::error(LISTING);
    match command {
        ProjectCommand::Create { org, name, slug } => {
            let project = client
                .project_create(org, &name, &slug)
                .await
                .map_err(error)?;
            out.print(&project, |project| {
                println!("project {} created", project.project_id);
                print_project(project);
            })
        }
        ProjectCommand::Get { project_id } => {
            let project = client.project_get(project_id).await.map_err(error)?;
            out.print(&project, print_project)
        }
        ProjectCommand::List { org, after, limit } => {
            let page = client
                .project_list(org, after, tenancy::list_limit(limit)?)
                .await
                .map_err(error)?;
            out.print(&page, |page| {
                if page.projects.is_empty() {
                    println!("no projects in organization {org}");
                } else {
                    let mut table = output::table(&["ID", "SLUG", "NAME", "CREATED"]);
                    for project in &page.projects {
                        table.add_row(vec![
                            project.project_id.to_string(),
                            project.slug.clone(),
                            project.name.clone(),
                            output::time(project.created_at_ms),
                        ]);
                    }
                    println!("{table}");
                }
                if let Some(next) = page.next_after {
                    eprintln!("more projects: add --after {next}");
                }
            })
        }
        ProjectCommand::Update { project_id, name } => {
            let project = client
                .project_update(project_id, &name)
                .await
                .map_err(error)?;
            out.print(&project, |project| {
                println!("project {} updated", project.project_id);
                print_project(project);
            })
        }
        ProjectCommand::Delete { project_id } => {
            client.project_delete(project_id).await.map_err(error)?;
            out.print(&serde_json::json!({ "deleted": project_id }), |_| {
                println!("project {project_id} deleted")
            })
        }
    }
}

fn print_project(project: &Project) {
    output::print_fields(&[
        ("id", project.project_id.to_string()),
        ("organization", project.org_id.to_string()),
        ("name", project.name.clone()),
        ("slug", project.slug.clone()),
        ("created", output::time(project.created_at_ms)),
    ]);
}
