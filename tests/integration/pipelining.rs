//! Pipelining on one connection: many requests in flight, answers matched by request id,
//! and a long poll that does not hold up anything else.

use std::collections::HashSet;
use std::time::Duration;

use taskforge_protocol::{
    EnqueueRequest, FetchRequest, FrameKind, Opcode, QueueName, QueueSettings, QueueWrite, Request,
};

use crate::support::{job, opcode_of, TestServer, ROOT_TOKEN};

const PIPELINED_REQUESTS: u32 = 1_000;

#[tokio::test]
async fn a_thousand_pipelined_requests_are_answered_and_matched_by_id() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    assert_eq!(raw.hello(ROOT_TOKEN).await.kind, FrameKind::Response);
    let create = Request::QueueCreate(QueueWrite {
        name: "q".into(),
        settings: QueueSettings::default(),
    });
    raw.send(2, &create).await;
    assert_eq!(raw.recv().await.expect("created").kind, FrameKind::Response);

    let mut expected = std::collections::HashMap::new();
    for request_id in 100..100 + PIPELINED_REQUESTS {
        let request = match request_id % 3 {
            0 => Request::Ping(Default::default()),
            1 => Request::Enqueue(EnqueueRequest {
                job: job("q", &request_id.to_be_bytes()),
            }),
            _ => Request::QueueGet(QueueName { name: "q".into() }),
        };
        expected.insert(request_id, request.opcode());
        raw.feed(request_id, &request).await;
    }
    raw.flush().await;
    let mut answered = HashSet::new();
    for _ in 0..PIPELINED_REQUESTS {
        let frame = raw.recv().await.expect("an answer");
        assert_eq!(
            frame.kind,
            FrameKind::Response,
            "request {} failed",
            frame.request_id
        );
        let sent = expected.get(&frame.request_id).expect("an id we sent");
        assert_eq!(
            opcode_of(&frame),
            Some(*sent),
            "answer matches its request's operation"
        );
        assert!(
            answered.insert(frame.request_id),
            "each request is answered once"
        );
    }
    assert_eq!(answered.len() as u32, PIPELINED_REQUESTS);
    let client = server.client().await;
    let stats = client.queue_stats("q").await.expect("stats");
    assert_eq!(
        stats.counts.ready,
        u64::from(PIPELINED_REQUESTS.div_ceil(3))
    );
}

#[tokio::test]
async fn a_long_poll_does_not_delay_a_ping_on_the_same_connection() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.hello(ROOT_TOKEN).await;
    let create = Request::QueueCreate(QueueWrite {
        name: "q".into(),
        settings: QueueSettings::default(),
    });
    raw.send(2, &create).await;
    raw.recv().await.expect("created");
    let fetch = Request::Fetch(FetchRequest {
        queues: vec!["q".into()],
        max_jobs: 1,
        wait_ms: 30_000,
        lease_ms: None,
        worker_id: None,
        weights: Vec::new(),
    });
    raw.send(10, &fetch).await;
    raw.send(11, &Request::Ping(Default::default())).await;
    let first = tokio::time::timeout(Duration::from_secs(5), raw.recv())
        .await
        .expect("the ping is answered while the fetch waits")
        .expect("frame");
    assert_eq!(
        (first.request_id, opcode_of(&first)),
        (11, Some(Opcode::Ping))
    );
    let client = server.client().await;
    client.enqueue(job("q", b"wake")).await.expect("enqueue");
    let second = raw.recv().await.expect("the fetch answer");
    assert_eq!(
        (second.request_id, opcode_of(&second)),
        (10, Some(Opcode::Fetch))
    );
}
