//! Enqueues jobs on the `emails` queue and prints their ids.
//!
//! ```text
//! cargo run --example producer -- [JOBS]
//! ```
//!
//! Connects to `TASKFORGE_ADDR` (default `127.0.0.1:7700`) with the root token from
//! `TASKFORGE_ROOT_TOKEN`, or read from the file named by `TASKFORGE_ROOT_TOKEN_FILE`
//! (default `./data/root_token`, where the broker writes it on first start). Creates the
//! queue if it does not exist yet.

use taskforge::client::{Client, ClientOptions};
use taskforge_protocol::{Credentials, ErrorCode, NewJob, QueueSettings};

/// Where the broker listens unless `TASKFORGE_ADDR` says otherwise.
const ADDRESS_DEFAULT: &str = "127.0.0.1:7700";

/// Where the broker writes its root token unless `TASKFORGE_ROOT_TOKEN_FILE` says otherwise.
const ROOT_TOKEN_FILE_DEFAULT: &str = "./data/root_token";

/// The queue the producer and worker examples share.
const QUEUE_NAME: &str = "emails";

/// Jobs enqueued when no count is given.
const JOBS_DEFAULT: u32 = 10;

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

#[tokio::main]
async fn main() -> ExampleResult<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let jobs = match std::env::args().nth(1) {
        Some(count) => count
            .parse::<u32>()
            .map_err(|error| format!("job count {count:?}: {error}"))?,
        None => JOBS_DEFAULT,
    };
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
    for index in 0..jobs {
        let job = NewJob {
            queue: QUEUE_NAME.to_string(),
            payload: format!("email #{index}").into_bytes(),
            ..NewJob::default()
        };
        let enqueued = client.enqueue(job).await?;
        println!("{} {}", enqueued.job_id, enqueued.state);
    }
    client.close().await?;
    Ok(())
}
