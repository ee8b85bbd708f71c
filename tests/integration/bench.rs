//! `taskforge bench --spawn` end to end: the real binary starts a server of its own, runs
//! a small lifecycle, checks every job completed exactly once and reads the server's commit
//! counters from its admin port.

use std::time::Duration;

use assert_cmd::Command;

/// Longest the run may take.
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Jobs in the run.
const JOBS: u64 = 300;

#[test]
fn a_spawned_run_completes_every_job_once_and_reports_the_servers_commit_counters() {
    let output = Command::new(env!("CARGO_BIN_EXE_taskforge"))
        .args([
            "bench",
            "--spawn",
            "--fsync",
            "always",
            "--workload",
            "lifecycle",
        ])
        .args(["--producers", "2", "--consumers", "2", "--in-flight", "4"])
        .args(["--jobs", &JOBS.to_string(), "--json", "--quiet"])
        .env_remove("RUST_LOG")
        .timeout(BENCH_TIMEOUT)
        .output()
        .expect("the bench runs");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the report is JSON");
    let exactly_once = &report["exactly_once"];
    assert_eq!(exactly_once["confirmed"], JOBS, "{report}");
    assert_eq!(exactly_once["acked_distinct"], JOBS, "{report}");
    assert_eq!(exactly_once["missing"], 0, "{report}");
    assert_eq!(exactly_once["duplicates"], 0, "{report}");
    let counters = &report["server_counters"];
    let count = |name: &str| counters[name].as_u64().unwrap_or(0);
    // Every enqueue and every ACK under `always` waits for a synced round.
    assert!(count("syncs") > 0, "{report}");
    assert!(count("commit_rounds") >= count("syncs"), "{report}");
    assert!(count("writes") >= 2 * JOBS, "{report}");
    assert!(count("commit_replies") >= 2 * JOBS, "{report}");
}
