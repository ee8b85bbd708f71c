//! Runs the worker runtime on the `emails` queue, printing each job's payload, until Ctrl-C.
//!
//! ```text
//! cargo run --example worker
//! ```
//!
//! Connects like the producer example: `TASKFORGE_ADDR` (default `127.0.0.1:7700`) and the
//! root token from `TASKFORGE_ROOT_TOKEN` or the file named by `TASKFORGE_ROOT_TOKEN_FILE`
//! (default `./data/root_token`). Creates the queue if it does not exist yet.

mod common;

use common::{ExampleResult, QUEUE_NAME};
use taskforge::client::{JobContext, JobError, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

/// The job: print it. A real handler would send the email here.
async fn handle(context: JobContext) -> Result<Option<Vec<u8>>, JobError> {
    let job = context.job();
    println!(
        "{} (attempt {}/{}): {}",
        job.job_id,
        job.attempt,
        job.max_attempts,
        String::from_utf8_lossy(&job.payload)
    );
    Ok(None)
}

#[tokio::main]
async fn main() -> ExampleResult<()> {
    let client = common::connect().await?;

    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if let Err(error) = tokio::signal::ctrl_c().await {
            eprintln!("cannot listen for Ctrl-C ({error}); stopping");
        }
        println!("stopping: waiting for running jobs");
        on_ctrl_c.cancel();
    });

    let worker = Worker::new(client.clone(), WorkerOptions::new([QUEUE_NAME]));
    let report = worker.run(handle, shutdown).await?;
    println!(
        "done: {} succeeded, {} failed, {} lease lost, {} unreported, {} abandoned",
        report.succeeded, report.failed, report.lease_lost, report.unreported, report.abandoned
    );
    client.close().await?;
    Ok(())
}
