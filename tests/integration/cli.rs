//! The admin CLI end to end: the real `taskforge` binary against a live server, with a
//! clean environment and a temporary home directory for each test.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use assert_cmd::assert::OutputAssertExt as _;
use assert_cmd::Command;
use taskforge_protocol::{FetchRequest, NewJob, QueueSettings, Retry};
use tempfile::TempDir;

use crate::support::{job, TestServer, ROOT_TOKEN};

/// Longest one CLI run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the binary with only the environment a test gives it.
struct Cli {
    /// HOME of the runs, where the profile file lives.
    home: TempDir,
    /// Variables set for every run.
    env: Vec<(String, String)>,
}

impl Cli {
    /// A CLI pointed at `server` through TASKFORGE_ADDR and TASKFORGE_ROOT_TOKEN.
    fn for_server(server: &TestServer) -> Cli {
        let mut cli = Cli::bare();
        cli.env = vec![
            ("TASKFORGE_ADDR".into(), server.addr().to_string()),
            ("TASKFORGE_ROOT_TOKEN".into(), ROOT_TOKEN.into()),
        ];
        cli
    }

    /// A CLI with no address or credentials configured.
    fn bare() -> Cli {
        Cli {
            home: tempfile::tempdir().expect("temp home"),
            env: Vec::new(),
        }
    }

    /// Runs `taskforge args...` on a blocking thread (the server runs on this runtime).
    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[], None).await
    }

    /// Runs with extra variables for this run only and, if given, `stdin` as standard input.
    async fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_taskforge"));
        command
            .env_clear()
            .env("HOME", self.home.path())
            .args(args)
            .timeout(CLI_TIMEOUT);
        for (name, value) in &self.env {
            command.env(name, value);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        if let Some(stdin) = stdin {
            command.write_stdin(stdin.to_string());
        }
        tokio::task::spawn_blocking(move || command.output().expect("run taskforge"))
            .await
            .expect("the CLI thread")
    }

    /// Runs and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        output.clone().assert().success();
        String::from_utf8(output.stdout).expect("utf-8 stdout")
    }

    /// Runs with `--json`, expects success, parses stdout.
    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let stdout = self.ok(&args).await;
        serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("stdout of {args:?} is not JSON ({error}): {stdout}"))
    }

    /// [`Cli::json`] with extra variables and standard input.
    async fn json_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let output = self.run_with(&args, env, stdin).await;
        output.clone().assert().success();
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout of {args:?} is not JSON ({error}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Runs and expects exit `code`; returns stderr.
    async fn fails(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args).await;
        output.clone().assert().code(code);
        String::from_utf8(output.stderr).expect("utf-8 stderr")
    }
}

#[tokio::test]
async fn queue_commands_round_trip_with_json() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);
    let created = cli
        .json(&[
            "queue",
            "create",
            "emails",
            "--max-attempts",
            "2",
            "--priority",
            "-3",
        ])
        .await;
    assert_eq!(created["name"], "emails");
    assert_eq!(created["defaults"]["max_attempts"], 2);
    assert_eq!(created["defaults"]["priority"], -3);

    let updated = cli
        .json(&["queue", "update", "emails", "--backoff-initial-ms", "500"])
        .await;
    assert_eq!(updated["defaults"]["backoff"]["initial_ms"], 500);
    assert_eq!(updated["defaults"]["max_attempts"], 2);

    let paused = cli.json(&["queue", "pause", "emails"]).await;
    assert_eq!(paused["paused"], true);
    let listed = cli.json(&["queue", "list"]).await;
    assert_eq!(listed["queues"][0]["name"], "emails");
    assert_eq!(listed["queues"][0]["paused"], true);
    assert_eq!(listed["next_after"], serde_json::Value::Null);
    let resumed = cli.json(&["queue", "resume", "emails"]).await;
    assert_eq!(resumed["paused"], false);

    let client = server.client().await;
    for _ in 0..3 {
        client.enqueue(job("emails", b"x")).await.expect("enqueue");
    }
    let stats = cli.json(&["queue", "stats", "emails"]).await;
    assert_eq!(stats["counts"]["ready"], 3);
    let human = cli.ok(&["queue", "get", "emails"]).await;
    assert!(human.contains("max attempts  2"), "{human}");

    let purged = cli.json(&["queue", "purge", "emails", "--yes"]).await;
    assert_eq!(purged["affected"], 3);
    assert_eq!(purged["remaining"], 0);
    let deleted = cli.json(&["queue", "delete", "emails"]).await;
    assert_eq!(deleted["deleted"], "emails");
    assert_eq!(
        cli.json(&["queue", "list"]).await["queues"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn job_commands_enqueue_read_list_and_cancel() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);
    cli.ok(&["queue", "create", "work"]).await;
    let enqueued = cli
        .json(&[
            "job",
            "enqueue",
            "work",
            "--payload",
            "hello",
            "--meta",
            "tenant=acme",
            "--priority",
            "5",
        ])
        .await;
    assert_eq!(enqueued["state"], "ready");
    let job_id = enqueued["job_id"].as_str().expect("job id").to_string();

    let payload_file = cli.home.path().join("payload.bin");
    std::fs::write(&payload_file, [0u8, 1, 2, 255]).expect("payload file");
    let delayed = cli
        .json(&[
            "job",
            "enqueue",
            "work",
            "--payload-file",
            payload_file.to_str().expect("path"),
            "--delay-ms",
            "3600000",
        ])
        .await;
    assert_eq!(delayed["state"], "scheduled");

    let info = cli.json(&["job", "get", &job_id]).await;
    assert_eq!(info["queue"], "work");
    assert_eq!(info["priority"], 5);
    assert_eq!(info["payload"], serde_json::json!(b"hello"));
    assert_eq!(info["metadata"], serde_json::json!([["tenant", "acme"]]));
    let human = cli.ok(&["job", "get", &job_id]).await;
    assert!(
        human.contains("hello") && human.contains("tenant=acme"),
        "{human}"
    );

    let listed = cli.json(&["job", "list", "work"]).await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(2));
    let scheduled = cli
        .json(&["job", "list", "work", "--state", "scheduled"])
        .await;
    assert_eq!(scheduled["jobs"][0]["job_id"], delayed["job_id"]);

    let cancelled = cli.json(&["job", "cancel", &job_id]).await;
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(
        cli.json(&["job", "get", &job_id]).await["state"],
        "cancelled"
    );
}

#[tokio::test]
async fn dead_commands_retry_and_discard_single_and_all() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);
    let client = server.client().await;
    client
        .queue_create("fragile", QueueSettings::default())
        .await
        .expect("create");
    for index in 0..4 {
        client
            .enqueue(NewJob {
                max_attempts: Some(1),
                ..job("fragile", format!("job {index}").as_bytes())
            })
            .await
            .expect("enqueue");
    }
    let leased = client
        .fetch(FetchRequest {
            queues: vec!["fragile".into()],
            max_jobs: 4,
            wait_ms: 0,
            lease_ms: None,
            worker_id: None,
            weights: Vec::new(),
        })
        .await
        .expect("fetch")
        .jobs;
    for leased_job in &leased {
        client
            .fail(leased_job.job_id, leased_job.lease_id, "boom", Retry::Never)
            .await
            .expect("fail");
    }

    let dead = cli.json(&["dead", "list", "fragile"]).await;
    let dead_ids: Vec<String> = dead["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| job["job_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(dead_ids.len(), 4);
    assert_eq!(dead["jobs"][0]["last_error"], "boom");

    let retried = cli.json(&["dead", "retry", "fragile", &dead_ids[0]]).await;
    assert_eq!(retried["affected"], 1);
    let discarded = cli
        .json(&["dead", "discard", "fragile", &dead_ids[1], "--yes"])
        .await;
    assert_eq!(discarded["affected"], 1);
    let retried_all = cli.json(&["dead", "retry", "fragile", "--all"]).await;
    assert_eq!(retried_all["affected"], 2);
    assert_eq!(retried_all["remaining"], 0);
    assert_eq!(
        cli.json(&["dead", "list", "fragile"]).await["jobs"],
        serde_json::json!([])
    );
    let counts = cli.json(&["queue", "stats", "fragile"]).await["counts"].clone();
    assert_eq!(
        (counts["ready"].clone(), counts["dead"].clone()),
        (3.into(), 0.into())
    );

    let refused = cli.fails(2, &["dead", "discard", "fragile", "--all"]).await;
    assert!(refused.contains("--yes"), "{refused}");
    let neither = cli.fails(2, &["dead", "retry", "fragile"]).await;
    assert!(neither.contains("--all"), "{neither}");
}

#[tokio::test]
async fn failures_have_stable_exit_codes_and_say_what_to_do() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);

    let missing = cli.fails(1, &["queue", "get", "absent"]).await;
    assert!(missing.contains("NOT_FOUND"), "{missing}");
    assert!(missing.contains("taskforge queue list"), "{missing}");
    cli.ok(&["queue", "create", "full"]).await;
    let conflict = cli.fails(1, &["queue", "create", "full"]).await;
    assert!(conflict.contains("CONFLICT"), "{conflict}");

    let mut wrong_token = Cli::for_server(&server);
    wrong_token.env[1].1 = "tfr_wrong_token_for_this_broker".into();
    let refused = wrong_token.fails(3, &["queue", "list"]).await;
    assert!(refused.contains("refused the credentials"), "{refused}");

    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let unreachable = cli
        .fails(3, &["queue", "list", "--addr", &closed_port.to_string()])
        .await;
    assert!(unreachable.contains("cannot connect"), "{unreachable}");
    assert!(unreachable.contains("--addr"), "{unreachable}");

    let anonymous = Cli::bare();
    let no_credentials = anonymous.fails(2, &["queue", "list"]).await;
    assert!(
        no_credentials.contains("no credentials"),
        "{no_credentials}"
    );
    assert!(
        no_credentials.contains("--root-token-file"),
        "{no_credentials}"
    );

    let unconfirmed = cli.fails(2, &["queue", "purge", "full"]).await;
    assert!(unconfirmed.contains("--yes"), "{unconfirmed}");
    cli.fails(2, &["queue", "frobnicate"]).await;
    let bad_id = cli.fails(2, &["job", "get", "not-a-job-id"]).await;
    assert!(bad_id.contains("32 hex digits"), "{bad_id}");
}

#[tokio::test]
async fn contexts_of_the_profile_file_supply_address_and_token() {
    let server = TestServer::start().await;
    let cli = Cli::bare();
    let token_file = cli.home.path().join("token");
    std::fs::write(&token_file, format!("{ROOT_TOKEN}\n")).expect("token file");
    let profile_dir = cli.home.path().join(".config/taskforge");
    std::fs::create_dir_all(&profile_dir).expect("profile dir");
    std::fs::write(
        profile_dir.join("config.toml"),
        format!(
            "current_context = \"test\"\n\n[contexts.test]\naddr = \"{}\"\nroot_token_file = \
             \"{}\"\n\n[contexts.elsewhere]\naddr = \"127.0.0.1:1\"\nroot_token_file = \"{}\"\n",
            server.addr(),
            token_file.display(),
            token_file.display()
        ),
    )
    .expect("profile");

    cli.ok(&["queue", "create", "profiled"]).await;
    let listed = cli.json(&["queue", "list"]).await;
    assert_eq!(listed["queues"][0]["name"], "profiled");
    let elsewhere = cli
        .fails(3, &["queue", "list", "--context", "elsewhere"])
        .await;
    assert!(elsewhere.contains("127.0.0.1:1"), "{elsewhere}");
    let unknown = cli.fails(2, &["queue", "list", "--context", "nope"]).await;
    assert!(unknown.contains("elsewhere, test"), "{unknown}");
}

/// Path argument for the CLI.
fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn storage_commands_work_offline_and_refuse_a_running_broker() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    client
        .queue_create("kept", QueueSettings::default())
        .await
        .expect("create");
    for index in 0..3 {
        client
            .enqueue(job("kept", format!("job {index}").as_bytes()))
            .await
            .expect("enqueue");
    }
    drop(client);
    let data_dir = server.config.broker.data_dir.clone();
    let cli = Cli::bare();

    let in_use = cli
        .fails(1, &["storage", "check", "--data-dir", arg(&data_dir)])
        .await;
    assert!(in_use.contains("stop it first"), "{in_use}");

    server.stop().await;
    let checked = cli
        .json(&["storage", "check", "--data-dir", arg(&data_dir)])
        .await;
    assert_eq!(checked["schema_version"], 4);
    assert_eq!(checked["queues"], 1);
    assert_eq!(checked["jobs"], 3);
    assert_eq!(checked["bodies"], 3);
    assert_eq!(checked["problems_total"], 0);

    let backup_file = cli.home.path().join("saved.tfdump");
    let backup = cli
        .json(&[
            "storage",
            "backup",
            "--data-dir",
            arg(&data_dir),
            "--out",
            arg(&backup_file),
        ])
        .await;
    assert!(backup_file.exists());
    let pairs = backup["pairs"].as_u64().expect("pairs");

    let compacted = cli
        .json(&["storage", "compact", "--data-dir", arg(&data_dir)])
        .await;
    assert_eq!(compacted["pairs"], pairs);
    let migrated = cli
        .json(&["storage", "migrate", "--data-dir", arg(&data_dir)])
        .await;
    assert_eq!(migrated["version"], 4);
    for version in [3, 2, 1] {
        let rolled_back = cli
            .json(&["storage", "rollback", "--data-dir", arg(&data_dir)])
            .await;
        assert_eq!(rolled_back["version"], version);
    }
    let baseline = cli
        .fails(1, &["storage", "rollback", "--data-dir", arg(&data_dir)])
        .await;
    assert!(baseline.contains("baseline"), "{baseline}");
    let restored = cli
        .json(&[
            "storage",
            "restore",
            arg(&backup_file),
            "--data-dir",
            arg(&data_dir),
        ])
        .await;
    assert_eq!(restored["pairs"], pairs);

    let nowhere = cli.home.path().join("no-store-here");
    let no_store = cli
        .fails(2, &["storage", "check", "--data-dir", arg(&nowhere)])
        .await;
    assert!(no_store.contains("--data-dir"), "{no_store}");

    server.restart().await;
    let stats = server
        .client()
        .await
        .queue_stats("kept")
        .await
        .expect("stats after restore");
    assert_eq!(stats.counts.ready, 3);
}

/// A JSON number as u64, for ids passed back to the CLI.
fn id(value: &serde_json::Value) -> String {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not an id"))
        .to_string()
}

#[tokio::test]
async fn tenancy_commands_create_an_org_project_and_key_that_the_cli_then_acts_as() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);

    let org = cli
        .json(&[
            "org", "create", "--name", "Acme", "--slug", "acme", "--plan", "pro",
        ])
        .await;
    assert_eq!(
        (&org["slug"], &org["status"]),
        (&"acme".into(), &"active".into())
    );
    let org_id = id(&org["org_id"]);
    assert_eq!(cli.json(&["org", "get", &org_id]).await["name"], "Acme");
    let orgs = cli.json(&["org", "list"]).await["orgs"].clone();
    assert!(
        orgs.as_array()
            .expect("orgs")
            .iter()
            .any(|listed| listed["slug"] == "acme"),
        "{orgs}"
    );
    let renamed = cli
        .json(&["org", "update", &org_id, "--name", "Acme Inc"])
        .await;
    assert_eq!(renamed["name"], "Acme Inc");

    let subscription = cli.json(&["subscription", "get", "--org", &org_id]).await;
    assert_eq!(subscription["plan"], "pro");
    let custom = cli
        .json(&[
            "subscription",
            "set",
            "--org",
            &org_id,
            "--plan",
            "custom",
            "--status",
            "past_due",
            "--projects-max",
            "4",
        ])
        .await;
    assert_eq!(
        (&custom["plan"], &custom["status"]),
        (&"custom".into(), &"past_due".into())
    );
    assert_eq!(custom["limits"]["projects_max"], 4);
    assert_eq!(
        custom["limits"]["workers_max"], subscription["limits"]["workers_max"],
        "limits not named keep their values"
    );
    cli.json(&[
        "subscription",
        "set",
        "--org",
        &org_id,
        "--plan",
        "pro",
        "--status",
        "active",
    ])
    .await;

    let project = cli
        .json(&[
            "project", "create", "--org", &org_id, "--name", "Billing", "--slug", "billing",
        ])
        .await;
    let project_id = id(&project["project_id"]);
    assert_eq!(project["org_id"].to_string(), org_id);
    let projects = cli.json(&["project", "list", "--org", &org_id]).await;
    assert_eq!(projects["projects"][0]["slug"], "billing");
    let renamed = cli
        .json(&["project", "update", &project_id, "--name", "Billing EU"])
        .await;
    assert_eq!(renamed["name"], "Billing EU");

    let created = cli
        .json(&[
            "key",
            "create",
            "--project",
            &project_id,
            "--name",
            "ci",
            "--scope",
            "produce,manage",
            "--scope",
            "read",
        ])
        .await;
    let secret = created["secret"].as_str().expect("secret").to_string();
    let key_id = created["key"]["key_id"]
        .as_str()
        .expect("key id")
        .to_string();
    assert!(secret.starts_with(&format!("tf_{key_id}_")), "{secret}");
    assert_eq!(
        created["key"]["scopes"],
        serde_json::json!(["produce", "manage", "read"])
    );
    let human = cli
        .run(&[
            "key",
            "create",
            "--project",
            &project_id,
            "--name",
            "other",
            "--scope",
            "read",
        ])
        .await;
    assert!(
        String::from_utf8_lossy(&human.stderr).contains("shown only now"),
        "{human:?}"
    );

    let listed = cli
        .ok(&["key", "list", "--project", &project_id, "--json"])
        .await;
    assert!(
        !listed.contains(&secret),
        "key list shows a secret: {listed}"
    );
    assert!(!listed.contains("\"secret\""), "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(2));

    // The flag layer beats TASKFORGE_ROOT_TOKEN: this runs as the key, in its project.
    let queue = cli
        .json(&["queue", "create", "invoices", "--api-key", &secret])
        .await;
    assert_eq!(queue["name"], "invoices");
    let in_project = cli.json(&["queue", "list", "--project", &project_id]).await;
    assert_eq!(in_project["queues"][0]["name"], "invoices");
    assert_eq!(
        cli.json(&["queue", "list"]).await["queues"],
        serde_json::json!([]),
        "the root token's default project does not see the key's queue"
    );
    let as_key_env = cli
        .json_with(
            &["queue", "get", "invoices"],
            &[("TASKFORGE_ROOT_TOKEN", ""), ("TASKFORGE_API_KEY", &secret)],
            None,
        )
        .await;
    assert_eq!(as_key_env["name"], "invoices");

    let forbidden = cli.fails(1, &["org", "list", "--api-key", &secret]).await;
    assert!(forbidden.contains("FORBIDDEN"), "{forbidden}");
    assert!(forbidden.contains("root token"), "{forbidden}");

    let revoked = cli.json(&["key", "revoke", &key_id]).await;
    assert!(revoked["revoked_at_ms"].is_u64(), "{revoked}");
    let refused = cli
        .fails(3, &["queue", "create", "invoices-2", "--api-key", &secret])
        .await;
    assert!(refused.contains("refused the credentials"), "{refused}");
    assert!(refused.contains("--api-key"), "{refused}");
}

#[tokio::test]
async fn key_rotate_prints_a_working_secret_and_missing_projects_are_usage_errors() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);
    let created = cli
        .json(&[
            "key",
            "create",
            "--project",
            "1",
            "--name",
            "reader",
            "--scope",
            "read",
        ])
        .await;
    let key_id = created["key"]["key_id"]
        .as_str()
        .expect("key id")
        .to_string();
    let rotated = cli
        .json(&["key", "rotate", &key_id, "--grace-ms", "0"])
        .await;
    let new_secret = rotated["secret"].as_str().expect("secret").to_string();
    assert_ne!(created["secret"], rotated["secret"]);
    assert_eq!(rotated["key"]["key_id"], key_id.as_str());
    let listed = cli.json(&["queue", "list", "--api-key", &new_secret]).await;
    assert_eq!(listed["queues"], serde_json::json!([]));

    let profiled = Cli::bare();
    let profile_dir = profiled.home.path().join(".config/taskforge");
    std::fs::create_dir_all(&profile_dir).expect("profile dir");
    std::fs::write(
        profile_dir.join("config.toml"),
        format!(
            "current_context = \"as-key\"\n\n[contexts.as-key]\naddr = \"{}\"\napi_key = \
             \"{new_secret}\"\nproject = 1\n",
            server.addr()
        ),
    )
    .expect("profile");
    let listed = profiled.json(&["queue", "list"]).await;
    assert_eq!(listed["queues"], serde_json::json!([]));
    let elsewhere = profiled
        .fails(3, &["queue", "list", "--project", "999"])
        .await;
    assert!(elsewhere.contains("--project"), "{elsewhere}");

    let no_project = cli.fails(2, &["key", "list"]).await;
    assert!(no_project.contains("--project"), "{no_project}");
    let both = cli
        .run_with(
            &["queue", "list"],
            &[("TASKFORGE_API_KEY", &new_secret)],
            None,
        )
        .await;
    both.clone().assert().code(2);
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("keep only the one"),
        "{both:?}"
    );
    let not_a_key = cli
        .fails(2, &["queue", "list", "--api-key", "secret"])
        .await;
    assert!(not_a_key.contains("tf_"), "{not_a_key}");
    let missing = cli.fails(1, &["project", "get", "999"]).await;
    assert!(missing.contains("NOT_FOUND"), "{missing}");
    assert!(missing.contains("taskforge project list"), "{missing}");
}

#[tokio::test]
async fn user_commands_take_passwords_from_stdin_or_the_environment_only() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);
    let org = cli
        .json(&["org", "create", "--name", "Globex", "--slug", "globex"])
        .await;
    let org_id = id(&org["org_id"]);

    let from_env = cli
        .json_with(
            &[
                "user",
                "create",
                "--org",
                &org_id,
                "--email",
                "Ann@Globex.example",
                "--role",
                "admin",
            ],
            &[("TASKFORGE_NEW_PASSWORD", "correct horse battery")],
            None,
        )
        .await;
    assert_eq!(from_env["email"], "ann@globex.example");
    assert_eq!(from_env["role"], "admin");
    let from_stdin = cli
        .json_with(
            &[
                "user",
                "create",
                "--org",
                &org_id,
                "--email",
                "bob@globex.example",
                "--password-stdin",
            ],
            &[],
            Some("staple battery horse\n"),
        )
        .await;
    assert_eq!(from_stdin["role"], "member");
    let user_id = id(&from_stdin["user_id"]);

    let no_password = cli
        .fails(
            2,
            &[
                "user",
                "create",
                "--org",
                &org_id,
                "--email",
                "c@globex.example",
            ],
        )
        .await;
    assert!(no_password.contains("--password-stdin"), "{no_password}");
    assert!(
        no_password.contains("TASKFORGE_NEW_PASSWORD"),
        "{no_password}"
    );
    cli.fails(
        2,
        &[
            "user",
            "create",
            "--org",
            &org_id,
            "--email",
            "c@globex.example",
            "--password",
            "x",
        ],
    )
    .await;

    let updated = cli
        .json(&["user", "update", &user_id, "--role", "viewer"])
        .await;
    assert_eq!(updated["role"], "viewer");
    assert_eq!(
        cli.json(&["user", "disable", &user_id]).await["disabled"],
        true
    );
    assert_eq!(
        cli.json(&["user", "enable", &user_id]).await["disabled"],
        false
    );
    let set = cli
        .json_with(
            &["user", "set-password", &user_id, "--password-stdin"],
            &[],
            Some("a brand new passphrase\n"),
        )
        .await;
    assert_eq!(set["password_set"], true);
    let users = cli.json(&["user", "list", "--org", &org_id]).await;
    let text = users.to_string();
    assert_eq!(users["users"].as_array().map(Vec::len), Some(2));
    assert!(
        !text.contains("passphrase") && !text.contains("password_hash"),
        "{text}"
    );
    assert_eq!(
        cli.json(&["user", "get", &user_id]).await["email"],
        "bob@globex.example"
    );

    let deleted = cli.json(&["org", "delete", &org_id]).await;
    assert_eq!(deleted["deleted"].to_string(), org_id);
    let gone = cli.fails(1, &["org", "get", &org_id]).await;
    assert!(gone.contains("NOT_FOUND"), "{gone}");
    assert!(gone.contains("taskforge org list"), "{gone}");
}

#[tokio::test]
async fn worker_and_execution_commands_show_what_workers_did() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);
    cli.ok(&["queue", "create", "work"]).await;
    cli.ok(&["queue", "create", "spare"]).await;
    let client = server.client().await;
    let worker = client
        .register_worker(taskforge_protocol::WorkerRegister {
            name: "cli-worker".into(),
            hostname: "host-1".into(),
            pid: 99,
            version: "2.0".into(),
            labels: Vec::new(),
            concurrency: 1,
            queues: vec![taskforge_protocol::QueueAssignment {
                queue: "work".into(),
                weight: 1,
                active: true,
            }],
        })
        .await
        .expect("register");
    let worker_id = worker.worker_id.to_string();
    let job_id = client
        .enqueue(job("work", b"x"))
        .await
        .expect("enqueue")
        .job_id;
    let leased = client
        .fetch(FetchRequest {
            queues: vec!["work".into()],
            max_jobs: 1,
            wait_ms: 0,
            lease_ms: None,
            worker_id: Some(worker.worker_id),
            weights: Vec::new(),
        })
        .await
        .expect("fetch")
        .jobs
        .remove(0);
    client
        .log(
            job_id,
            leased.lease_id,
            vec![taskforge_protocol::NewLogLine {
                level: taskforge_protocol::LogLevel::Warn,
                message: "disk almost full".into(),
                fields: Vec::new(),
            }],
        )
        .await
        .expect("log");
    client
        .ack(job_id, leased.lease_id, Some(b"42".to_vec()))
        .await
        .expect("ack");

    let listed = cli.json(&["worker", "list"]).await;
    assert_eq!(listed["workers"][0]["name"], "cli-worker");
    assert!(cli.ok(&["worker", "list"]).await.contains("cli-worker"));
    let assigned = cli
        .json(&[
            "worker", "assign", &worker_id, "--queue", "spare:3", "--queue", "work",
        ])
        .await;
    assert_eq!(assigned["assignments_version"], 2);
    assert_eq!(assigned["assignments"][0]["queue"], "spare");
    assert_eq!(assigned["assignments"][0]["weight"], 3);
    let by_queue = cli
        .json(&["worker", "assignments", "--queue", "spare"])
        .await;
    assert_eq!(by_queue["assignments"][0]["worker_id"], worker.worker_id);
    assert_eq!(
        cli.json(&["worker", "quiet", &worker_id]).await["state"],
        "quiet"
    );
    let terminating = cli
        .json(&["worker", "terminate", &worker_id, "--grace", "5s"])
        .await;
    assert_eq!(terminating["state"], "terminating");

    let executions = cli.json(&["job", "executions", &job_id.to_string()]).await;
    assert_eq!(executions["executions"][0]["outcome"], "succeeded");
    assert_eq!(executions["executions"][0]["worker_id"], worker.worker_id);
    let logs = cli.ok(&["job", "logs", &job_id.to_string()]).await;
    assert!(
        logs.contains("disk almost full") && logs.contains("warn"),
        "{logs}"
    );
    let results = cli.json(&["job", "results", &job_id.to_string()]).await;
    assert_eq!(results["job"]["result"], serde_json::json!(b"42"));

    let missing = cli.fails(1, &["worker", "get", "999"]).await;
    assert!(missing.contains("not found"), "{missing}");
}

#[tokio::test]
async fn job_enqueue_takes_parents_unique_keys_and_ttl_and_queues_take_flow_limits() {
    let server = TestServer::start().await;
    let cli = Cli::for_server(&server);
    let queue = cli
        .json(&[
            "queue",
            "create",
            "flow",
            "--in-flight-max",
            "2",
            "--deliveries-per-second",
            "50",
            "--retention-ms",
            "60000",
        ])
        .await;
    assert_eq!(queue["defaults"]["in_flight_max"], 2);
    assert_eq!(queue["defaults"]["deliveries_per_second"], 50);
    assert_eq!(queue["defaults"]["retention_ms"], 60000);
    let parent = cli
        .json(&[
            "job",
            "enqueue",
            "flow",
            "--payload",
            "p",
            "--unique-key",
            "only-one",
        ])
        .await;
    let again = cli
        .json(&[
            "job",
            "enqueue",
            "flow",
            "--payload",
            "p",
            "--unique-key",
            "only-one",
        ])
        .await;
    assert_eq!(again["job_id"], parent["job_id"]);
    assert_eq!(again["duplicate"], true);
    let parent_id = parent["job_id"].as_str().expect("id");
    let child = cli
        .json(&[
            "job",
            "enqueue",
            "flow",
            "--payload",
            "c",
            "--depends-on",
            parent_id,
            "--run-if-parent-fails",
            "--ttl-ms",
            "600000",
        ])
        .await;
    assert_eq!(child["state"], "blocked");
    let shown = cli
        .ok(&["job", "get", child["job_id"].as_str().expect("id")])
        .await;
    assert!(
        shown.contains(parent_id) && shown.contains("if one fails: run"),
        "{shown}"
    );
}
