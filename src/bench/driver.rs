//! One connection to the system under test, with the three operations every workload is
//! made of: enqueue payloads, fetch jobs, acknowledge them. TaskForge goes through the
//! Rust client; the peers through the pipelined text connection of `pipeline.rs`.
//!
//! How each peer maps the operations:
//! - beanstalkd: `put` / `reserve-with-timeout` / `delete`, on one tube per run.
//! - Redis, the reliable-queue pattern: `LPUSH queue payload...` /
//!   `BLMOVE queue processing:<consumer> RIGHT LEFT <timeout>` / `LREM processing:<consumer>
//!   1 payload`. Every bench payload is unique (it carries its sequence number), so LREM
//!   removes exactly the job taken. Each consumer connection has its own processing list,
//!   as the pattern recommends.
//!
//! Peers take one job per fetch request and one job per ack request: a fetch or ack "batch"
//! for them is that many requests pipelined together.
//!
//! A peer answers a connection's requests in order, so a blocking fetch (`BLMOVE`,
//! `reserve-with-timeout N`) that waits on an empty queue holds up every request behind it
//! on that connection, acks included, for the whole timeout. With one request in flight
//! per connection nothing is behind it, so the peers fetch blocking; with more, they fetch
//! without blocking (`LMOVE`, `reserve-with-timeout 0`) and pause [`PEER_POLL_MS`] when the
//! queue was empty. TaskForge's FETCH long-polls without holding up the connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use taskforge_protocol::{AckRequest, Credentials, ErrorCode, FetchRequest, NewJob};

use crate::client::{Client, ClientOptions};

use super::beanstalk::{self, BeanstalkParser, BeanstalkReply};
use super::pipeline::PipelinedConnection;
use super::resp::{self, RespParser, RespReply};
use super::BenchError;

/// Lease a bench fetch asks for: far beyond a run, so no job is handed out twice because
/// its lease ran out while the bench was slow.
const BENCH_LEASE_MS: u32 = 600_000;

/// Pause of a non-blocking peer fetch that found the queue empty: short, because it adds
/// to latency when the queue runs dry.
pub(crate) const PEER_POLL_MS: u64 = 1;

/// Which system a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// TaskForge itself.
    Taskforge,
    /// beanstalkd (text protocol).
    Beanstalkd,
    /// Redis (RESP), reliable-queue pattern.
    Redis,
}

impl Peer {
    /// The name, as the flag spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Peer::Taskforge => "taskforge",
            Peer::Beanstalkd => "beanstalkd",
            Peer::Redis => "redis",
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The system.
    pub(crate) peer: Peer,
    /// `host:port`.
    pub(crate) address: String,
    /// TaskForge root token (ignored by the peers).
    pub(crate) root_token: String,
    /// Queue, tube or list name for this run.
    pub(crate) queue: String,
}

/// What a consumer must hand back to acknowledge one job.
#[derive(Debug, Clone)]
pub(crate) enum AckHandle {
    /// TaskForge job id and lease.
    Taskforge(AckRequest),
    /// beanstalkd job id.
    Beanstalkd(u64),
    /// Redis: the payload itself, removed from the processing list.
    Redis(Bytes),
}

/// One fetched job.
#[derive(Debug, Clone)]
pub(crate) struct FetchedJob {
    /// The payload as enqueued.
    pub(crate) payload: Bytes,
    /// What acknowledges it.
    pub(crate) handle: AckHandle,
}

/// One connection to the system under test. Clones share the connection.
#[derive(Clone)]
pub(crate) enum Connection {
    /// TaskForge, through the Rust client.
    Taskforge {
        /// The client; clones pipeline over one connection.
        client: Client,
        /// Queue name.
        queue: Arc<str>,
    },
    /// beanstalkd.
    Beanstalkd(Arc<PipelinedConnection<BeanstalkParser>>),
    /// Redis.
    Redis {
        /// The connection.
        connection: Arc<PipelinedConnection<RespParser>>,
        /// Key of the ready list.
        queue: Bytes,
        /// Key of this consumer's processing list.
        processing: Bytes,
    },
}

/// Whether a connection will produce, consume, or only set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Enqueues.
    Producer,
    /// Fetches and acks; `index` names its Redis processing list.
    Consumer {
        /// Consumer number within the run.
        index: usize,
    },
}

impl Connection {
    /// Connects and prepares the connection for `role` (beanstalkd: `use` or `watch` the
    /// run's tube).
    pub(crate) async fn open(endpoint: &Endpoint, role: Role) -> Result<Connection, BenchError> {
        let failed = |error: String| BenchError::Connect {
            address: endpoint.address.clone(),
            message: error,
        };
        match endpoint.peer {
            Peer::Taskforge => {
                let client = Client::connect(
                    &endpoint.address,
                    ClientOptions::new(Credentials::RootToken(endpoint.root_token.clone())),
                )
                .await
                .map_err(|error| failed(error.to_string()))?;
                Ok(Connection::Taskforge {
                    client,
                    queue: Arc::from(endpoint.queue.as_str()),
                })
            }
            Peer::Beanstalkd => {
                let connection = PipelinedConnection::connect(&endpoint.address, BeanstalkParser)
                    .await
                    .map_err(|error| failed(error.to_string()))?;
                let setup: &[(String, &str)] = match role {
                    Role::Producer => &[(format!("use {}", endpoint.queue), "USING")],
                    Role::Consumer { .. } => &[
                        (format!("watch {}", endpoint.queue), "WATCHING"),
                        ("ignore default".to_string(), "WATCHING"),
                    ],
                };
                for (command, expected) in setup {
                    let reply = connection
                        .call(beanstalk::line(command))
                        .await
                        .map_err(failed)?;
                    expect_status(&reply, expected)?;
                }
                Ok(Connection::Beanstalkd(Arc::new(connection)))
            }
            Peer::Redis => {
                let connection = PipelinedConnection::connect(&endpoint.address, RespParser)
                    .await
                    .map_err(|error| failed(error.to_string()))?;
                let processing = match role {
                    Role::Producer => String::new(),
                    Role::Consumer { index } => format!("{}:processing:{index}", endpoint.queue),
                };
                Ok(Connection::Redis {
                    connection: Arc::new(connection),
                    queue: Bytes::from(endpoint.queue.clone()),
                    processing: Bytes::from(processing),
                })
            }
        }
    }

    /// Creates the run's queue (TaskForge only; the peers create theirs on first use).
    pub(crate) async fn create_queue(&self) -> Result<(), BenchError> {
        if let Connection::Taskforge { client, queue } = self {
            match client.queue_create(queue, Default::default()).await {
                Ok(_) => {}
                Err(error) if error.code() == Some(ErrorCode::Conflict) => {}
                Err(error) => return Err(BenchError::operation("queue create", error)),
            }
        }
        Ok(())
    }

    /// Enqueues `payloads`: TaskForge as one ENQUEUE (one payload) or ENQUEUE_BATCH;
    /// beanstalkd as pipelined `put`s; Redis as one multi-value `LPUSH`. Returns once every
    /// payload is confirmed stored.
    pub(crate) async fn enqueue(&self, payloads: Vec<Vec<u8>>) -> Result<(), BenchError> {
        match self {
            Connection::Taskforge { client, queue } => {
                let mut jobs: Vec<NewJob> = payloads
                    .into_iter()
                    .map(|payload| NewJob {
                        queue: queue.to_string(),
                        payload,
                        ..NewJob::default()
                    })
                    .collect();
                if jobs.len() == 1 {
                    let job = jobs.pop().ok_or(BenchError::Internal("empty batch"))?;
                    client
                        .enqueue(job)
                        .await
                        .map_err(|error| BenchError::operation("enqueue", error))?;
                } else {
                    let count = jobs.len();
                    let response = client
                        .enqueue_batch(jobs)
                        .await
                        .map_err(|error| BenchError::operation("enqueue batch", error))?;
                    if response.job_ids.len() != count {
                        return Err(BenchError::Peer(format!(
                            "ENQUEUE_BATCH of {count} jobs returned {} ids",
                            response.job_ids.len()
                        )));
                    }
                }
                Ok(())
            }
            Connection::Beanstalkd(connection) => {
                let puts = payloads
                    .iter()
                    .map(|payload| connection.call(beanstalk::put(payload)));
                for reply in futures::future::join_all(puts).await {
                    expect_status(&reply.map_err(BenchError::Peer)?, "INSERTED")?;
                }
                Ok(())
            }
            Connection::Redis {
                connection, queue, ..
            } => {
                let mut arguments: Vec<&[u8]> = vec![b"LPUSH", queue];
                arguments.extend(payloads.iter().map(Vec::as_slice));
                match connection
                    .call(resp::command(&arguments))
                    .await
                    .map_err(BenchError::Peer)?
                {
                    RespReply::Integer(_) => Ok(()),
                    other => Err(BenchError::Peer(format!("LPUSH answered {other:?}"))),
                }
            }
        }
    }

    /// Fetches up to `max_jobs`, waiting up to `wait` for the first. An empty answer means
    /// the wait ran out. Peers wait only when `peer_blocks` (see the module notes);
    /// otherwise they answer at once and pause [`PEER_POLL_MS`] if they found nothing.
    pub(crate) async fn fetch(
        &self,
        max_jobs: u32,
        wait: Duration,
        peer_blocks: bool,
    ) -> Result<Vec<FetchedJob>, BenchError> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        match self {
            Connection::Taskforge { client, queue } => {
                let response = client
                    .fetch(FetchRequest {
                        queues: vec![queue.to_string()],
                        max_jobs,
                        wait_ms,
                        lease_ms: Some(BENCH_LEASE_MS),
                        worker_id: None,
                        weights: Vec::new(),
                    })
                    .await
                    .map_err(|error| BenchError::operation("fetch", error))?;
                Ok(response
                    .jobs
                    .into_iter()
                    .map(|job| FetchedJob {
                        payload: Bytes::from(job.payload),
                        handle: AckHandle::Taskforge(AckRequest {
                            job_id: job.job_id,
                            lease_id: job.lease_id,
                            result: None,
                        }),
                    })
                    .collect())
            }
            Connection::Beanstalkd(connection) => {
                // beanstalkd's timeout is in whole seconds; at least 1 so a reserve blocks.
                let wait_s = if peer_blocks {
                    wait.as_secs().max(1)
                } else {
                    0
                };
                let command = beanstalk::line(&format!("reserve-with-timeout {wait_s}"));
                let reserves = (0..max_jobs).map(|_| connection.call(command.clone()));
                let mut jobs = Vec::new();
                for reply in futures::future::join_all(reserves).await {
                    let reply = reply.map_err(BenchError::Peer)?;
                    match reply.status() {
                        "RESERVED" => {
                            let id = reply.number(0).map_err(BenchError::Peer)?;
                            let payload = reply.data.ok_or(BenchError::Internal(
                                "RESERVED parsed without its data block",
                            ))?;
                            jobs.push(FetchedJob {
                                payload,
                                handle: AckHandle::Beanstalkd(id),
                            });
                        }
                        "TIMED_OUT" | "DEADLINE_SOON" => {}
                        _ => return Err(unexpected(&reply, "RESERVED")),
                    }
                }
                pause_if_empty(&jobs, peer_blocks).await;
                Ok(jobs)
            }
            Connection::Redis {
                connection,
                queue,
                processing,
            } => {
                let timeout_s = format!("{:.3}", wait.as_secs_f64());
                let command = if peer_blocks {
                    resp::command(&[
                        b"BLMOVE",
                        queue,
                        processing,
                        b"RIGHT",
                        b"LEFT",
                        timeout_s.as_bytes(),
                    ])
                } else {
                    resp::command(&[b"LMOVE", queue, processing, b"RIGHT", b"LEFT"])
                };
                let moves = (0..max_jobs).map(|_| connection.call(command.clone()));
                let mut jobs = Vec::new();
                for reply in futures::future::join_all(moves).await {
                    match reply.map_err(BenchError::Peer)? {
                        RespReply::Bulk(payload) => jobs.push(FetchedJob {
                            handle: AckHandle::Redis(payload.clone()),
                            payload,
                        }),
                        RespReply::Null => {}
                        other => return Err(BenchError::Peer(format!("LMOVE answered {other:?}"))),
                    }
                }
                pause_if_empty(&jobs, peer_blocks).await;
                Ok(jobs)
            }
        }
    }

    /// Acknowledges `handles`: TaskForge as one ACK or one ACK_BATCH; the peers as pipelined
    /// `delete` or `LREM` commands. Fails if any ack was refused.
    pub(crate) async fn ack(&self, handles: Vec<AckHandle>) -> Result<(), BenchError> {
        match self {
            Connection::Taskforge { client, .. } => {
                let mut acks = Vec::with_capacity(handles.len());
                for handle in handles {
                    match handle {
                        AckHandle::Taskforge(ack) => acks.push(ack),
                        _ => return Err(BenchError::Internal("a peer's handle for TaskForge")),
                    }
                }
                if acks.len() == 1 {
                    let ack = acks.pop().ok_or(BenchError::Internal("empty ack batch"))?;
                    client
                        .ack(ack.job_id, ack.lease_id, None)
                        .await
                        .map_err(|error| BenchError::operation("ack", error))
                } else {
                    let response = client
                        .ack_batch(acks)
                        .await
                        .map_err(|error| BenchError::operation("ack batch", error))?;
                    match response.results.into_iter().flatten().next() {
                        None => Ok(()),
                        Some(error) => Err(BenchError::Peer(format!("ACK_BATCH refused: {error}"))),
                    }
                }
            }
            Connection::Beanstalkd(connection) => {
                let mut deletes = Vec::with_capacity(handles.len());
                for handle in handles {
                    match handle {
                        AckHandle::Beanstalkd(id) => {
                            deletes.push(connection.call(beanstalk::line(&format!("delete {id}"))))
                        }
                        _ => return Err(BenchError::Internal("a foreign handle for beanstalkd")),
                    }
                }
                for reply in futures::future::join_all(deletes).await {
                    expect_status(&reply.map_err(BenchError::Peer)?, "DELETED")?;
                }
                Ok(())
            }
            Connection::Redis {
                connection,
                processing,
                ..
            } => {
                let mut removals = Vec::with_capacity(handles.len());
                for handle in handles {
                    match handle {
                        AckHandle::Redis(payload) => removals.push(
                            connection.call(resp::command(&[b"LREM", processing, b"1", &payload])),
                        ),
                        _ => return Err(BenchError::Internal("a foreign handle for Redis")),
                    }
                }
                for reply in futures::future::join_all(removals).await {
                    match reply.map_err(BenchError::Peer)? {
                        RespReply::Integer(1) => {}
                        other => {
                            return Err(BenchError::Peer(format!(
                                "LREM answered {other:?} instead of 1"
                            )))
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// After a non-blocking peer fetch that found nothing, waits [`PEER_POLL_MS`] so an empty
/// queue is not polled in a busy loop.
async fn pause_if_empty(jobs: &[FetchedJob], peer_blocks: bool) {
    if jobs.is_empty() && !peer_blocks {
        tokio::time::sleep(Duration::from_millis(PEER_POLL_MS)).await;
    }
}

/// Fails unless `reply` has status `expected`.
fn expect_status(reply: &BeanstalkReply, expected: &str) -> Result<(), BenchError> {
    if reply.status() == expected {
        Ok(())
    } else {
        Err(unexpected(reply, expected))
    }
}

/// The error for a beanstalkd reply other than the one expected.
fn unexpected(reply: &BeanstalkReply, expected: &str) -> BenchError {
    BenchError::Peer(format!(
        "beanstalkd answered {:?} where {expected} was expected",
        reply.line
    ))
}
