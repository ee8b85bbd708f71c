//! What the examples share: logging, the connection, and the `emails` queue.
//!
//! Connects to `TASKFORGE_ADDR` (default `127.0.0.1:7700`) with the root token from
//! `TASKFORGE_ROOT_TOKEN`, or read from the file named by `TASKFORGE_ROOT_TOKEN_FILE`
//! (default `./data/root_token`, where the broker writes it on first start).

use taskforge::client::{Client, ClientOptions};
use taskforge_protocol::{Credentials, ErrorCode, QueueSettings};

/// Where the broker listens unless `TASKFORGE_ADDR` says otherwise.
const ADDRESS_DEFAULT: &str = "127.0.0.1:7700";

/// Where the broker writes its root token unless `TASKFORGE_ROOT_TOKEN_FILE` says otherwise.
const ROOT_TOKEN_FILE_DEFAULT: &str = "./data/root_token";

/// The queue the producer and worker examples share.
pub const QUEUE_NAME: &str = "emails";

/// Errors of the examples, shown to the user as they are.
pub type ExampleResult<T> = Result<T, Box<dyn std::error::Error>>;

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

/// Starts logging, connects, and creates the `emails` queue if it does not exist yet.
pub async fn connect() -> ExampleResult<Client> {
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
    Ok(client)
}
