//! `taskforge storage migrate|rollback|backup|restore|compact|check`: offline work on a
//! data directory. The broker must be stopped; sled's lock makes these fail with a message
//! saying so while it runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use taskforge::config::DATA_DIR_DEFAULT;
use taskforge::storage::check::CheckReport;
use taskforge::storage::maintenance::{self, MaintenanceError};
use taskforge::storage::migrations::{self, MigrationReport};

use super::output::Output;
use super::{CliError, Exit};

/// Flags of `taskforge storage`.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// The broker's data directory
    #[arg(
        long,
        global = true,
        env = "TASKFORGE_DATA_DIR",
        default_value = DATA_DIR_DEFAULT,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// The verb.
    #[command(subcommand)]
    pub command: StorageCommand,
}

/// The verbs of `taskforge storage`.
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Migrates the store to a schema version (default: this build's newest), backing it up
    /// first
    Migrate {
        /// Target schema version
        #[arg(long, value_name = "N")]
        to: Option<u64>,
    },
    /// Moves the store one schema version down, backing it up first
    Rollback,
    /// Exports every record into one file
    Backup {
        /// Where to write [default: <data dir>/backups/<time>-v<N>/store.tfdump]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Replaces the store with a backup (the current store is backed up first)
    Restore {
        /// A file written by `taskforge storage backup` or a start-up migration
        file: PathBuf,
    },
    /// Rewrites the store into fresh files, reclaiming space sled keeps after deletes
    Compact,
    /// Verifies the store's invariants and counts its records (exit 1 on any problem)
    Check,
}

/// The JSON of `migrate` and `rollback`.
#[derive(Serialize)]
struct MigrationView {
    /// Version before (`null`: the store was unversioned and got stamped 1).
    stored_before: Option<u64>,
    /// Version now.
    version: u64,
    /// Steps run.
    steps: Vec<StepView>,
    /// The backup taken first, if any step ran.
    backup: Option<PathBuf>,
}

/// One step in [`MigrationView`].
#[derive(Serialize)]
struct StepView {
    /// Version before the step.
    from: u64,
    /// Version after it.
    to: u64,
    /// What it does.
    description: &'static str,
    /// Records written.
    writes: usize,
}

impl From<MigrationReport> for MigrationView {
    fn from(report: MigrationReport) -> MigrationView {
        MigrationView {
            stored_before: report.stored_before,
            version: report.version,
            steps: report
                .steps
                .into_iter()
                .map(|step| StepView {
                    from: step.from,
                    to: step.to,
                    description: step.description,
                    writes: step.writes,
                })
                .collect(),
            backup: report.backup,
        }
    }
}

/// The JSON of `backup`, `restore` and `compact`.
#[derive(Serialize)]
struct FileView {
    /// The dump file written or read.
    file: PathBuf,
    /// Key/value pairs in it.
    pairs: u64,
    /// The schema version it holds.
    schema_version: u64,
    /// Extra facts (sizes, what was kept).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    details: serde_json::Map<String, serde_json::Value>,
}

/// Runs one `taskforge storage` verb.
pub fn run(args: StorageArgs) -> ExitCode {
    let out = Output { json: args.json };
    match execute(&args.data_dir, args.command, out) {
        Ok(exit) => exit.into(),
        Err(error) => error.report(),
    }
}

fn maintenance_error(error: MaintenanceError) -> CliError {
    match error {
        MaintenanceError::NoStore(_) => CliError::usage(error.to_string()),
        other => CliError::failed(other.to_string()),
    }
}

fn execute(
    data_dir: &std::path::Path,
    command: StorageCommand,
    out: Output,
) -> Result<Exit, CliError> {
    let production = migrations::production();
    match command {
        StorageCommand::Migrate { to } => {
            let target = to.unwrap_or_else(|| migrations::latest_version(&production));
            let report =
                maintenance::migrate(data_dir, &production, target).map_err(maintenance_error)?;
            print_migration(out, report)?;
        }
        StorageCommand::Rollback => {
            let report = maintenance::rollback(data_dir, &production).map_err(maintenance_error)?;
            print_migration(out, report)?;
        }
        StorageCommand::Backup { out: file } => {
            let backup =
                maintenance::backup(data_dir, file.as_deref()).map_err(maintenance_error)?;
            let view = FileView {
                file: backup.path,
                pairs: backup.summary.pairs,
                schema_version: backup.summary.schema_version,
                details: serde_json::Map::new(),
            };
            out.print(&view, |view| {
                println!(
                    "backup of {} records (schema version {}) written to {}",
                    view.pairs,
                    view.schema_version,
                    view.file.display()
                )
            })?;
        }
        StorageCommand::Restore { file } => {
            let report = maintenance::restore(data_dir, &file).map_err(maintenance_error)?;
            let mut details = serde_json::Map::new();
            if let Some(backup) = &report.backup_of_replaced {
                details.insert(
                    "backup_of_replaced".into(),
                    backup.path.display().to_string().into(),
                );
            }
            if let Some(kept) = &report.replaced_files_kept_in {
                details.insert(
                    "replaced_files_kept_in".into(),
                    kept.display().to_string().into(),
                );
            }
            let view = FileView {
                file,
                pairs: report.restored.pairs,
                schema_version: report.restored.schema_version,
                details,
            };
            out.print(&view, |view| {
                println!(
                    "restored {} records (schema version {}) from {}",
                    view.pairs,
                    view.schema_version,
                    view.file.display()
                );
                if let Some(backup) = &report.backup_of_replaced {
                    println!(
                        "the replaced store was backed up to {}",
                        backup.path.display()
                    );
                }
                if let Some(kept) = &report.replaced_files_kept_in {
                    println!(
                        "the replaced store could not be read; its files were kept in {}",
                        kept.display()
                    );
                }
            })?;
        }
        StorageCommand::Compact => {
            let report = maintenance::compact(data_dir).map_err(maintenance_error)?;
            let mut details = serde_json::Map::new();
            details.insert("size_before_bytes".into(), report.size_before_bytes.into());
            details.insert("size_after_bytes".into(), report.size_after_bytes.into());
            let view = FileView {
                file: report.backup.path.clone(),
                pairs: report.backup.summary.pairs,
                schema_version: report.backup.summary.schema_version,
                details,
            };
            out.print(&view, |view| {
                println!(
                    "compacted {} records: {} bytes on disk before, {} after; the export is kept \
                     as a backup in {}",
                    view.pairs,
                    report.size_before_bytes,
                    report.size_after_bytes,
                    view.file.display()
                )
            })?;
        }
        StorageCommand::Check => {
            let report = maintenance::check(data_dir).map_err(maintenance_error)?;
            out.print(&report, print_check)?;
            if !report.is_consistent() {
                return Ok(Exit::Failed);
            }
        }
    }
    Ok(Exit::Ok)
}

fn print_migration(out: Output, report: MigrationReport) -> Result<(), CliError> {
    out.print(&MigrationView::from(report), |view| {
        if view.stored_before.is_none() {
            println!("the store had no schema version; stamped version 1");
        }
        if view.steps.is_empty() {
            println!(
                "the store is at schema version {}; nothing to do",
                view.version
            );
        }
        for step in &view.steps {
            println!(
                "schema version {} → {}: {} ({} records written)",
                step.from, step.to, step.description, step.writes
            );
        }
        if let Some(backup) = &view.backup {
            println!("backup taken first: {}", backup.display());
        }
    })
}

fn print_check(report: &CheckReport) {
    println!(
        "schema version {}",
        report
            .schema_version
            .map_or_else(|| "none".to_string(), |version| version.to_string())
    );
    println!("queues         {}", report.queues);
    println!("jobs           {}", report.jobs);
    for (state, count) in &report.jobs_by_state {
        println!("  {state:<12} {count}");
    }
    println!("bodies         {}", report.bodies);
    println!("results        {}", report.results);
    println!("index entries  {}", report.index_entries);
    println!("meta keys      {}", report.meta_keys);
    if report.is_consistent() {
        println!("consistent: no problems found");
    } else {
        println!("{} problems found:", report.problems_total);
        for problem in &report.problems {
            println!("  - {problem}");
        }
        let unlisted = report.problems_total - report.problems.len() as u64;
        if unlisted > 0 {
            println!("  ... and {unlisted} more");
        }
    }
}
