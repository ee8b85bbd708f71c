//! Enqueues jobs on the `emails` queue and prints their ids.
//!
//! ```text
//! cargo run --example producer -- [JOBS]
//! ```
//!
//! Connection settings: see `examples/common/mod.rs`.

mod common;

use common::{ExampleResult, QUEUE_NAME};
use taskforge_protocol::NewJob;

/// Jobs enqueued when no count is given.
const JOBS_DEFAULT: u32 = 10;

#[tokio::main]
async fn main() -> ExampleResult<()> {
    let jobs = match std::env::args().nth(1) {
        Some(count) => count
            .parse::<u32>()
            .map_err(|error| format!("job count {count:?}: {error}"))?,
        None => JOBS_DEFAULT,
    };
    let client = common::connect().await?;
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
