//! The commit counters of a server the bench spawned, read from its admin port's
//! `/metrics` (an embedded server's come straight from its broker).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::BrokerStats;

/// How long one scrape of `/metrics` may take, connection included.
const SCRAPE_TIMEOUT_MS: u64 = 2_000;

/// Most bytes read from one `/metrics` answer; a real one is a few tens of KiB.
const SCRAPE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The broker's group-commit counters, cumulative since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CommitCounters {
    /// Commit rounds that applied writes.
    pub(crate) commit_rounds: u64,
    /// Storage syncs.
    pub(crate) syncs: u64,
    /// Writes applied.
    pub(crate) writes: u64,
    /// Replies released by commit rounds.
    pub(crate) commit_replies: u64,
}

impl From<&BrokerStats> for CommitCounters {
    fn from(stats: &BrokerStats) -> CommitCounters {
        CommitCounters {
            commit_rounds: stats.commit_rounds,
            syncs: stats.syncs,
            writes: stats.writes,
            commit_replies: stats.commit_replies,
        }
    }
}

/// Reads the counters from `GET /metrics` on `admin_address`; `None` (logged) when the
/// scrape fails, so a run still reports everything else.
pub(crate) async fn commit_counters(admin_address: SocketAddr) -> Option<CommitCounters> {
    let scraped = tokio::time::timeout(
        Duration::from_millis(SCRAPE_TIMEOUT_MS),
        get_metrics(admin_address),
    )
    .await;
    let text = match scraped {
        Ok(Ok(text)) => text,
        Ok(Err(error)) => {
            tracing::warn!(%error, %admin_address, "cannot read the server's /metrics");
            return None;
        }
        Err(_) => {
            tracing::warn!(%admin_address, "the server's /metrics did not answer in time");
            return None;
        }
    };
    let counters = parse(&text);
    if counters.is_none() {
        tracing::warn!(%admin_address, "the server's /metrics lacks the commit counters");
    }
    counters
}

/// The body of `GET /metrics` (`Connection: close`, so the answer ends with the stream).
async fn get_metrics(admin_address: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(admin_address).await?;
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: {admin_address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream
        .take(SCRAPE_BYTES_MAX)
        .read_to_end(&mut answer)
        .await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Finds the four counters in Prometheus text; `None` unless all four are there.
fn parse(text: &str) -> Option<CommitCounters> {
    let value = |name: &str| {
        text.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(name))
                .then(|| fields.next()?.parse::<f64>().ok())
                .flatten()
        })
    };
    let counter = |name: &str| value(name).map(|number| number as u64);
    Some(CommitCounters {
        commit_rounds: counter("taskforge_commit_rounds_total")?,
        syncs: counter("taskforge_storage_syncs_total")?,
        writes: counter("taskforge_storage_writes_total")?,
        commit_replies: counter("taskforge_commit_replies_total")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_counters_are_read_from_prometheus_text_and_all_four_are_needed() {
        let text = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n\
            # HELP taskforge_commit_rounds_total Group-commit rounds that applied writes\n\
            # TYPE taskforge_commit_rounds_total counter\n\
            taskforge_commit_rounds_total 12\n\
            taskforge_commit_rounds_total_extra 99\n\
            taskforge_storage_syncs_total 7\n\
            taskforge_storage_writes_total 1e3\n\
            taskforge_commit_replies_total 30\n";
        assert_eq!(
            parse(text),
            Some(CommitCounters {
                commit_rounds: 12,
                syncs: 7,
                writes: 1_000,
                commit_replies: 30,
            })
        );
        let without_syncs = text.replace("taskforge_storage_syncs_total 7\n", "");
        assert_eq!(parse(&without_syncs), None);
    }
}
