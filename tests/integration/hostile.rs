//! Hostile clients at once against one server, while a well-behaved client keeps working:
//! slowloris handshakes, idle authenticated sessions, a connection flood over the global
//! cap, a pipelining flood that never reads its answers, and oversized batches. Reports
//! memory growth, how fast offenders are closed, and the good client's p99.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use taskforge_protocol::{Frame, FrameKind, NewJob, Opcode, QueueSettings, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{job, RawConnection, TestServer, ROOT_TOKEN};

const SLOWLORIS_CONNECTIONS: usize = 40;
const IDLE_SESSIONS: usize = 40;
const FLOOD_CONNECTIONS: usize = 150;
const PIPELINED_PINGS: usize = 20_000;
const GOOD_ROUND_TRIPS: usize = 150;

/// Resident memory of this process (server and clients), in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Waits until the server closes `stream`; returns how long that took from `since`.
async fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("an offender was not closed within 10 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_are_closed_and_a_good_client_keeps_its_latency() {
    let server = TestServer::start_configured(|config| {
        config.server.handshake_timeout_ms = 500;
        config.server.idle_timeout_ms = 700;
        config.server.connections_max = 120;
        config.server.write_timeout_ms = 1_000;
        config.broker.fsync = "never".into();
    })
    .await;
    let good = server.client().await;
    good.queue_create("q", QueueSettings::default())
        .await
        .expect("queue");
    let rss_before = rss_bytes();
    let attack_started = Instant::now();

    // Slowloris: a HELLO trickled one byte at a time, never finished.
    let mut slowloris = Vec::new();
    for _ in 0..SLOWLORIS_CONNECTIONS {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        slowloris.push(tokio::spawn(async move {
            let started = Instant::now();
            for byte in [0u8, 0, 0, 40, 0, 0, 1] {
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            closed_after(stream, started).await
        }));
    }
    // Idle authenticated sessions.
    let mut idle = Vec::new();
    for _ in 0..IDLE_SESSIONS {
        let mut raw = server.raw().await;
        raw.hello(ROOT_TOKEN).await;
        let stream = raw.framed.into_inner();
        idle.push(tokio::spawn(closed_after(stream, Instant::now())));
    }
    // A pipelining flood that never reads its answers.
    let flood_addr = server.addr();
    let pipeliner = tokio::spawn(async move {
        let mut raw = RawConnection::connect(flood_addr).await;
        raw.hello(ROOT_TOKEN).await;
        let started = Instant::now();
        for request_id in 0..PIPELINED_PINGS as u32 {
            let frame = Frame {
                kind: FrameKind::Request,
                opcode: Opcode::Ping.number(),
                request_id: request_id + 10,
                body: Bytes::new(),
            };
            if raw.framed.feed(frame).await.is_err() {
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.framed.flush()).await;
        closed_after(raw.framed.into_inner(), started).await
    });
    // A connection flood over the global cap.
    let mut flood = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        if let Ok(stream) = TcpStream::connect(server.addr()).await {
            flood.push(stream);
        }
    }

    // The good client works through all of it.
    let mut latencies = Vec::with_capacity(GOOD_ROUND_TRIPS);
    for index in 0..GOOD_ROUND_TRIPS {
        let started = Instant::now();
        good.enqueue(job("q", &(index as u32).to_be_bytes()))
            .await
            .expect("good enqueue");
        let leased = good
            .fetch(taskforge_protocol::FetchRequest {
                queues: vec!["q".into()],
                max_jobs: 1,
                wait_ms: 0,
                lease_ms: None,
                worker_id: None,
                weights: Vec::new(),
            })
            .await
            .expect("good fetch")
            .jobs;
        good.ack(leased[0].job_id, leased[0].lease_id, None)
            .await
            .expect("good ack");
        latencies.push(started.elapsed());
    }
    // An oversized batch is refused, not stored.
    let too_many: Vec<NewJob> = (0..good.session_limits().batch_jobs_max + 1)
        .map(|_| job("q", b"x"))
        .collect();
    let refused = good
        .call(Request::EnqueueBatch(
            taskforge_protocol::EnqueueBatchRequest { jobs: too_many },
        ))
        .await;
    assert!(refused.is_err(), "a batch over the limit is refused");
    let rss_during = rss_bytes();
    drop(flood);

    let mut slowloris_close = Duration::ZERO;
    for task in slowloris {
        slowloris_close = slowloris_close.max(task.await.expect("slowloris"));
    }
    let mut idle_close = Duration::ZERO;
    for task in idle {
        idle_close = idle_close.max(task.await.expect("idle"));
    }
    let pipeliner_close = pipeliner.await.expect("pipeliner");
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let growth_mib = rss_during.saturating_sub(rss_before) as f64 / (1024.0 * 1024.0);
    eprintln!(
        "hostile clients: slowloris closed within {slowloris_close:?}, idle sessions within {idle_close:?}, \
         pipelining flood within {pipeliner_close:?}; process RSS grew {growth_mib:.1} MiB during the attack; \
         good client's enqueue+fetch+ack p99 {p99:?} (attack lasted {:?})",
        attack_started.elapsed()
    );
    assert!(
        slowloris_close < Duration::from_secs(3),
        "slowloris held on for {slowloris_close:?}"
    );
    assert!(
        idle_close < Duration::from_secs(3),
        "idle sessions held on for {idle_close:?}"
    );
    assert!(growth_mib < 256.0, "memory grew {growth_mib:.1} MiB");
    assert!(
        p99 < Duration::from_secs(1),
        "the good client's p99 was {p99:?}"
    );
    good.ping().await.expect("still serving");
}
