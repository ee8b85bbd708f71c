//! Runs the worker runtime on the `emails` queue until Ctrl-C (or until an operator
//! terminates it with `taskforge worker terminate ID`). Each job logs what it does and
//! reports its progress; `taskforge job logs ID` and `taskforge job get ID` show them.
//!
//! ```text
//! cargo run --example worker
//! ```
//!
//! Connects like the producer example: `TASKFORGE_ADDR` (default `127.0.0.1:7700`) and the
//! root token from `TASKFORGE_ROOT_TOKEN` or the file named by `TASKFORGE_ROOT_TOKEN_FILE`
//! (default `./data/root_token`). Creates the queue if it does not exist yet.
//!
//! The worker registers as `example-mailer`: `taskforge worker list` shows it, `taskforge
//! worker quiet ID` makes it stop fetching, and `taskforge worker assign ID --queue
//! emails:3 --queue other` changes the queues it serves.

mod common;

use std::time::Duration;

use common::{ExampleResult, QUEUE_NAME};
use taskforge::client::{JobContext, JobError, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

/// Steps one pretend email takes.
const STEPS: u8 = 4;

/// The job: "send" an email in a few steps, logging and reporting progress as it goes. A
/// payload containing `fail` fails with details, to show them in `taskforge job
/// executions`.
async fn handle(context: JobContext) -> Result<Option<Vec<u8>>, JobError> {
    let job = context.job();
    let payload = String::from_utf8_lossy(&job.payload).into_owned();
    context.info(format!(
        "sending {payload:?} (attempt {}/{})",
        job.attempt, job.max_attempts
    ));
    for step in 1..=STEPS {
        tokio::select! {
            () = context.cancellation().cancelled() => {
                context.warn("cancelled; stopping");
                return Err(JobError::new("cancelled while sending"));
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        context.progress(step * 100 / STEPS, format!("step {step} of {STEPS}"));
        context.debug(format!("step {step} done"));
    }
    if payload.contains("fail") {
        context.error("the mail server refused the message");
        return Err(
            JobError::new("mail server refused the message").with_details(format!(
                "payload: {payload:?}\nreply: 550 mailbox unavailable"
            )),
        );
    }
    println!("{}: sent {payload:?}", job.job_id);
    Ok(Some(b"sent".to_vec()))
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

    let options = WorkerOptions::new([QUEUE_NAME])
        .with_name("example-mailer")
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_label("example", "worker");
    let worker = Worker::new(client.clone(), options);
    let report = worker.run(handle, shutdown).await?;
    println!(
        "done{}: {} succeeded, {} failed, {} interrupted, {} lease lost, {} unreported, {} \
         abandoned",
        if report.terminated {
            " (terminated by an operator)"
        } else {
            ""
        },
        report.succeeded,
        report.failed,
        report.interrupted,
        report.lease_lost,
        report.unreported,
        report.abandoned
    );
    client.close().await?;
    Ok(())
}
