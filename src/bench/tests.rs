//! Smoke test: a few hundred jobs through an embedded server, each completed exactly once.

use clap::Parser;

use super::{run, BenchArgs, Workload};

/// Parses bench flags as the command line would.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    bench: BenchArgs,
}

fn args(flags: &[&str]) -> BenchArgs {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(flags);
    Flags::try_parse_from(argv).expect("valid flags").bench
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_completes_every_job_exactly_once() {
    let report = run(args(&[
        "--workload",
        "lifecycle",
        "--embedded",
        "--fsync",
        "never",
        "--jobs",
        "300",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--in-flight",
        "4",
        "--ack-batch",
        "2",
        "--fetch-batch",
        "3",
        "--quiet",
    ]))
    .await
    .expect("the bench runs");
    assert_eq!(report.workload, Workload::Lifecycle);
    assert_eq!(report.jobs, 300);
    assert!(report.exactly_once.checked);
    assert!(report.exactly_once.holds(), "{:?}", report.exactly_once);
    assert_eq!(report.exactly_once.confirmed, 300);
    assert_eq!(report.exactly_once.acked_distinct, 300);
    assert_eq!(report.latency.samples, 300);
    assert!(report.server_counters.is_some());
    let cpu = report
        .server_cpu
        .expect("the embedded server's process is sampled");
    let settled = cpu
        .cpu_us_per_job_settled
        .expect("the server is sampled again once idle");
    assert!(settled >= cpu.cpu_us_per_job, "{cpu:?}");
}

#[test]
fn rejects_impossible_runs() {
    assert!(args(&["--peer", "redis", "--embedded"]).validate().is_err());
    assert!(args(&["--embedded", "--payload-bytes", "8"])
        .validate()
        .is_err());
    assert!(
        args(&["--embedded", "--workload", "drain", "--duration-s", "1"])
            .validate()
            .is_err()
    );
    assert!(args(&["--spawn", "--restart-after-preload"])
        .validate()
        .is_err());
    assert!(
        args(&["--embedded", "--workload", "drain", "--backlog", "5"])
            .validate()
            .is_err()
    );
    assert!(args(&["--embedded"]).validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_a_backlog_still_checks_every_job() {
    let report = run(args(&[
        "--embedded",
        "--fsync",
        "never",
        "--backlog",
        "200",
        "--jobs",
        "100",
        "--in-flight",
        "2",
        "--quiet",
    ]))
    .await
    .expect("the bench runs");
    assert_eq!(report.preload.map(|preload| preload.jobs), Some(200));
    assert!(
        report.jobs >= 100,
        "the measured phase acked {}",
        report.jobs
    );
    assert!(report.exactly_once.holds(), "{:?}", report.exactly_once);
    assert_eq!(report.exactly_once.confirmed, 300);
    assert_eq!(report.exactly_once.acked_distinct, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_paces_the_producers_and_still_checks_every_job() {
    let report = run(args(&[
        "--embedded",
        "--fsync",
        "never",
        "--rate",
        "2000",
        "--jobs",
        "200",
        "--enqueue-batch",
        "2",
        "--in-flight",
        "4",
        "--quiet",
    ]))
    .await
    .expect("the bench runs");
    assert_eq!(report.jobs, 200);
    assert!(report.exactly_once.holds(), "{:?}", report.exactly_once);
    assert_eq!(report.exactly_once.acked_distinct, 200);
    // 100 requests, one every millisecond: the last is not sent before 99 ms.
    assert!(report.elapsed_s >= 0.099, "took {} s", report.elapsed_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_rate_for_a_duration_stops_producing_when_the_time_is_up() {
    let report = run(args(&[
        "--embedded",
        "--fsync",
        "never",
        "--rate",
        "500",
        "--duration-s",
        "1",
        "--quiet",
    ]))
    .await
    .expect("the bench runs");
    assert_eq!(report.exactly_once.confirmed, 500);
    assert!(report.exactly_once.holds(), "{:?}", report.exactly_once);
}
