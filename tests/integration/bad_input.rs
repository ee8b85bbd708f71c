//! Hostile and broken input: every case gets its documented error or a closed connection,
//! never a panic, and the server keeps serving a well-behaved client afterwards.

use std::time::{Duration, Instant};

use bytes::Bytes;
use taskforge_protocol::{
    limits, Credentials, ErrorCode, FrameKind, HelloRequest, QueueName, QueueSettings, Request,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{error_of, job, read_until_closed, TestServer, PROMPT, ROOT_TOKEN};

/// Proves the server still serves: a fresh client pings and enqueues.
async fn still_serving(server: &TestServer) {
    let client = server.client().await;
    client.ping().await.expect("ping after the attack");
    let _ = client
        .queue_create("still-serving", QueueSettings::default())
        .await;
    client
        .enqueue(job("still-serving", b"ok"))
        .await
        .expect("enqueue after the attack");
}

#[tokio::test]
async fn an_oversized_length_prefix_is_refused_and_closed() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.framed
        .get_mut()
        .write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 1])
        .await
        .expect("write");
    let frame = raw.recv().await.expect("an error frame before the close");
    assert_eq!(error_of(&frame).error_code(), ErrorCode::FrameTooLarge);
    assert_eq!((frame.opcode, frame.request_id), (0, 0));
    assert!(raw.closed().await);

    let mut raw = server.raw().await;
    raw.hello(ROOT_TOKEN).await;
    let over = limits::FRAME_BYTES_MAX_DEFAULT + 1;
    raw.framed
        .get_mut()
        .write_all(&over.to_be_bytes())
        .await
        .expect("write");
    let frame = raw.recv().await.expect("an error frame");
    assert_eq!(error_of(&frame).error_code(), ErrorCode::FrameTooLarge);
    assert!(raw.closed().await);
    still_serving(&server).await;
}

#[tokio::test]
async fn a_truncated_frame_and_random_garbage_close_only_that_connection() {
    let server = TestServer::start().await;
    let mut truncated = TcpStream::connect(server.addr()).await.expect("connect");
    truncated
        .write_all(&[0, 0, 0, 100, 0, 0, 2, 0, 0, 0, 1, 9, 9])
        .await
        .expect("write");
    truncated.shutdown().await.expect("half close");
    assert!(
        read_until_closed(&mut truncated, PROMPT).await.is_some(),
        "closed after a truncated frame"
    );

    let mut garbage = TcpStream::connect(server.addr()).await.expect("connect");
    let mut rng = fastrand::Rng::with_seed(42);
    let noise: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    let _ = garbage.write_all(&noise).await;
    assert!(
        read_until_closed(&mut garbage, PROMPT).await.is_some(),
        "closed after garbage"
    );
    still_serving(&server).await;
}

#[tokio::test]
async fn an_unknown_opcode_is_answered_and_the_session_continues() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.hello(ROOT_TOKEN).await;
    raw.send_raw(0x7777, 5, Bytes::new()).await;
    let frame = raw.recv().await.expect("an answer");
    assert_eq!(frame.request_id, 5);
    assert_eq!(error_of(&frame).error_code(), ErrorCode::UnknownOpcode);
    raw.send(6, &Request::Ping(Default::default())).await;
    assert_eq!(raw.recv().await.expect("pong").kind, FrameKind::Response);
}

#[tokio::test]
async fn a_body_claiming_two_to_the_sixty_elements_is_malformed_not_fatal() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.hello(ROOT_TOKEN).await;
    let mut body = vec![0xFD];
    body.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let started = Instant::now();
    raw.send_raw(
        taskforge_protocol::Opcode::EnqueueBatch.number(),
        7,
        Bytes::from(body),
    )
    .await;
    let frame = raw.recv().await.expect("an answer");
    assert_eq!(frame.request_id, 7);
    assert_eq!(error_of(&frame).error_code(), ErrorCode::MalformedFrame);
    assert!(started.elapsed() < Duration::from_secs(5));
    raw.send(8, &Request::Ping(Default::default())).await;
    assert_eq!(raw.recv().await.expect("pong").kind, FrameKind::Response);
    still_serving(&server).await;
}

#[tokio::test]
async fn requests_before_the_handshake_are_refused_and_closed() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    raw.send(1, &Request::Ping(Default::default())).await;
    assert_eq!(
        raw.recv().await.expect("pong").kind,
        FrameKind::Response,
        "PING is allowed"
    );
    raw.send(2, &Request::QueueGet(QueueName { name: "q".into() }))
        .await;
    let frame = raw.recv().await.expect("an error");
    assert_eq!(error_of(&frame).error_code(), ErrorCode::HandshakeRequired);
    assert!(raw.closed().await);
    still_serving(&server).await;
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_closed() {
    let server = TestServer::start().await;
    let mut raw = server.raw().await;
    let frame = raw.hello("not-the-token").await;
    assert_eq!(error_of(&frame).error_code(), ErrorCode::Unauthenticated);
    assert!(raw.closed().await);
    let mut raw = server.raw().await;
    let api_key = Request::Hello(HelloRequest {
        protocol_version: limits::PROTOCOL_VERSION,
        client_name: "t".into(),
        client_version: "0".into(),
        credentials: Credentials::ApiKey("tf_unknown_secret".into()),
        project_id: None,
    });
    raw.send(1, &api_key).await;
    let frame = raw.recv().await.expect("an error");
    let error = error_of(&frame);
    assert_eq!(error.error_code(), ErrorCode::Unauthenticated);
    assert_eq!(
        error.message, "invalid credentials",
        "no hint about what was wrong"
    );
    still_serving(&server).await;
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_closed_after_the_deadline() {
    let server =
        TestServer::start_configured(|config| config.server.handshake_timeout_ms = 300).await;
    let mut silent = TcpStream::connect(server.addr()).await.expect("connect");
    let started = Instant::now();
    assert!(
        read_until_closed(&mut silent, PROMPT).await.is_some(),
        "closed by the server"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    let mut trickle = TcpStream::connect(server.addr()).await.expect("connect");
    trickle
        .write_all(&[0, 0])
        .await
        .expect("two bytes of a header");
    assert!(
        read_until_closed(&mut trickle, PROMPT).await.is_some(),
        "a trickled handshake is closed too"
    );
    still_serving(&server).await;
}
