//! What a job reports besides its outcome: log lines, progress and failure details.

use super::*;

#[tokio::test]
async fn logger_batches_lines_and_flushes_them_and_progress_before_the_ack() {
    let state = state_with_jobs(&["chatty"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let line_count = 2 * LOG_LINES_PER_REQUEST_MAX + 50;
    let handler = move |context: JobContext| async move {
        context.info("starting");
        context.progress(10, "warming up");
        for index in 1..line_count {
            context.log_with_fields(
                LogLevel::Debug,
                format!("line {index}"),
                vec![("index".to_string(), index.to_string())],
            );
        }
        context.progress(50, "halfway");
        context.warn("done soon");
        context.progress(100, "done");
        Ok(Some(b"ok".to_vec()))
    };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), handler, &shutdown);

    wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    run.await.expect("worker task").expect("worker run");

    let state = lock(&state);
    let sizes: Vec<usize> = state.logs.iter().map(|(_, lines)| lines.len()).collect();
    assert!(
        sizes
            .iter()
            .all(|size| (1..=LOG_LINES_PER_REQUEST_MAX).contains(size)),
        "{sizes:?}"
    );
    assert!(sizes.len() <= 4, "lines go in batches: {sizes:?}");
    let messages: Vec<&str> = state
        .logs
        .iter()
        .flat_map(|(_, lines)| lines.iter().map(|line| line.message.as_str()))
        .collect();
    assert_eq!(messages.len(), line_count + 1);
    assert_eq!(messages[0], "starting");
    assert_eq!(messages[1], "line 1");
    assert_eq!(messages[line_count], "done soon");
    assert_eq!(state.logs[0].1[0].level, LogLevel::Info);
    let last_progress = state.progress.last().expect("progress");
    assert_eq!((last_progress.1, last_progress.2.as_str()), (100, "done"));
    let ack_at = state
        .events
        .iter()
        .position(|event| *event == "ACK")
        .expect("ACK");
    let last_telemetry_at = state
        .events
        .iter()
        .rposition(|event| *event == "LOG" || *event == "PROGRESS")
        .expect("LOG");
    assert!(
        last_telemetry_at < ack_at,
        "logs and progress are flushed before the ACK"
    );
}

#[tokio::test]
async fn log_quota_drops_further_lines_without_failing_the_job() {
    let state = state_with_jobs(&["chatty"]);
    lock(&state).log_lines_max = LOG_LINES_PER_REQUEST_MAX;
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let handler = |context: JobContext| async move {
        for index in 0..LOG_LINES_PER_REQUEST_MAX {
            context.info(format!("fits {index}"));
        }
        // Let the first batch go alone.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for index in 0..3 * LOG_LINES_PER_REQUEST_MAX {
            context.info(format!("over {index}"));
            if index % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        context.info("still dropped");
        Ok(None)
    };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(1), handler, &shutdown);

    wait_until("the job is acked", || lock(&state).acked.len() == 1).await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");

    assert_eq!(report.succeeded, 1);
    let state = lock(&state);
    assert_eq!(state.logs.len(), 1);
    assert_eq!(state.logs[0].1.len(), LOG_LINES_PER_REQUEST_MAX);
    assert_eq!(
        state.log_refusals, 1,
        "after QUOTA_EXCEEDED the job's further lines are not sent"
    );
}

#[tokio::test]
async fn error_details_and_panic_locations_reach_fail() {
    let state = state_with_jobs(&["error", "panic"]);
    let server = fake_broker(Arc::clone(&state)).await;
    let client = connect(&server).await;
    let handler = |context: JobContext| async move {
        if context.payload() == b"error" {
            return Err(JobError::permanent("bad input").with_details("row 7: no id"));
        }
        panic!("kaboom");
    };
    let shutdown = CancellationToken::new();
    let run = spawn_worker(client, test_options(2), handler, &shutdown);

    wait_until("both jobs fail", || lock(&state).failed.len() == 2).await;
    shutdown.cancel();
    let report = run.await.expect("worker task").expect("worker run");
    assert_eq!((report.failed, report.panicked), (2, 1));

    let state = lock(&state);
    let error = state
        .failed
        .iter()
        .find(|fail| fail.error == "bad input")
        .expect("the error's FAIL");
    assert_eq!(error.error_details.as_deref(), Some("row 7: no id"));
    assert_eq!(error.retry, Retry::Never);
    let panic = state
        .failed
        .iter()
        .find(|fail| fail.error == "handler panicked: kaboom")
        .expect("the panic's FAIL");
    let details = panic.error_details.as_deref().expect("panic details");
    assert!(
        details.starts_with(&format!("panicked at {}:", file!())),
        "{details}"
    );
}
