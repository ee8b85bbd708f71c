//! Runs the worker runtime on the `emails` queue, printing each job's payload, until Ctrl-C.
//!
//! ```text
//! cargo run --example worker
//! ```
//!
//! Connects like the producer example: `TASKFORGE_ADDR` (default `127.0.0.1:7700`) and the
//! root token from `TASKFORGE_ROOT_TOKEN` or the file named by `TASKFORGE_ROOT_TOKEN_FILE`
//! (default `./data/root_token`). Creates the queue if it does not exist yet.

use taskforge::client::{Client, ClientOptions, JobContext, JobError, Worker, WorkerOptions};
use taskforge_protocol::{Credentials, ErrorCode, QueueSettings};
use tokio_util::sync::CancellationToken;

/// Where the broker listens unless `TASKFORGE_ADDR` says otherwise.
const ADDRESS_DEFAULT: &str = "127.0.0.1:7700";

/// Where the broker writes its root token unless `TASKFORGE_ROOT_TOKEN_FILE` says otherwise.
const ROOT_TOKEN_FILE_DEFAULT: &str = "./data/root_token";

/// The queue the producer and worker examples share.
const QUEUE_NAME: &str = "emails";

type ExampleResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The root token from the environment or from the broker's token file.
fn root_token() -> ExampleResult<String> {
    if let Ok(token) = std::env::var("TASKFORGE_ROOT_TOKEN") {
        return Ok(token.trim().to_string());
    }
    let path = std::env::var("TASKFORGE_ROOT_TOKEN_FILE")
        .unwrap_or_else(|_| ROOT_TOKEN_FILE_DEFAULT.to_string());
    let token = std::fs::read_to_string(&path)
        .map_err(|error| format!("reading the root token from {path}: {error}"))?;
    Ok(token.trim().to_string())
}

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let address = std::env::var("TASKFORGE_ADDR").unwrap_or_else(|_| ADDRESS_DEFAULT.to_string());
    let options = ClientOptions::new(Credentials::RootToken(root_token()?));
    let client = Client::connect(&address, options).await?;
    match client
        .queue_create(QUEUE_NAME, QueueSettings::default())
        .await
    {
        Ok(_) => println!("created queue {QUEUE_NAME}"),
        Err(error) if error.code() == Some(ErrorCode::Conflict) => {}
        Err(error) => return Err(error.into()),
    }

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
