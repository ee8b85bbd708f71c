//! The server under test: embedded in this process, spawned as a child process, or
//! already running elsewhere; and its process counters from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use taskforge_protocol::{Credentials, FetchRequest};
use tempfile::TempDir;

use crate::client::{Client, ClientOptions};
use crate::config::{Config, Environment, Secret};
use crate::server::RunningServer;

use super::scrape::{self, CommitCounters};
use super::{BenchArgs, BenchError};

/// Root token of a server the bench starts: it only listens on loopback for one run.
const BENCH_ROOT_TOKEN: &str = "tfr_bench_root_token_for_this_run_only";

/// How long a spawned server gets to accept connections unless `--spawn-ready-timeout-ms`
/// says otherwise. Recovery of 10M pending jobs takes about 25 s on the box of
/// `benches/README.md`.
pub const SPAWN_READY_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Pause between connection attempts while a spawned server starts.
const SPAWN_POLL_MS: u64 = 5;

/// How long a spawned server gets to exit after SIGTERM before it is killed.
const SPAWN_STOP_TIMEOUT_MS: u64 = 20_000;

/// Log level of a spawned server: development defaults log at debug, which would measure
/// the logger.
const SPAWN_LOG_LEVEL: &str = "warn";

/// File in the data directory that takes a spawned server's stderr.
const SPAWN_LOG_FILE: &str = "server.log";

/// A process's cumulative CPU time and resident memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessSample {
    /// User plus system CPU time, in µs.
    pub(crate) cpu_us: u64,
    /// Resident set size, in bytes.
    pub(crate) rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` (fields 14 and 15: utime, stime in clock ticks) and
/// `/proc/<pid>/status` (VmRSS). `None` when the process is gone or /proc is unreadable.
pub(crate) fn sample_process(pid: Option<u32>) -> Option<ProcessSample> {
    let directory = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let stat = std::fs::read_to_string(format!("{directory}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3, so utime (14) and stime (15) are at 11 and 12.
    let user_ticks: u64 = fields.get(11)?.parse().ok()?;
    let system_ticks: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_s = u64::try_from(ticks_per_s).ok().filter(|ticks| *ticks > 0)?;
    let status = std::fs::read_to_string(format!("{directory}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0);
    Some(ProcessSample {
        cpu_us: (user_ticks + system_ticks) * 1_000_000 / ticks_per_s,
        rss_bytes: rss_kib * 1024,
    })
}

/// Where the server's process counters come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuScope {
    /// The server's own process.
    ServerProcess,
    /// This process, which runs both the embedded server and the load generator.
    ServerAndLoadGenerator,
}

/// The server under test.
pub(crate) enum Target {
    /// A TaskForge server inside this process.
    Embedded {
        /// The server.
        running: Option<RunningServer>,
        /// The temporary data directory, removed on drop.
        _data_dir: Option<TempDir>,
    },
    /// `taskforge server` as a child process.
    Spawned {
        /// The child; `None` while restarting.
        child: Option<Child>,
        /// How to start it again.
        command: SpawnCommand,
        /// The temporary data directory, removed on drop (after the child is stopped).
        _data_dir: Option<TempDir>,
    },
    /// A server the bench did not start.
    External {
        /// Where it listens.
        address: String,
        /// Its pid, when given, for CPU and memory figures.
        pid: Option<u32>,
    },
}

/// Everything needed to (re)start a spawned server.
pub(crate) struct SpawnCommand {
    /// The binary.
    binary: PathBuf,
    /// CPU list for `taskset -c`.
    cpus: Option<String>,
    /// Where it listens.
    address: SocketAddr,
    /// Where its admin port listens, for the commit counters in `/metrics`.
    admin_address: SocketAddr,
    /// Its data directory.
    data_dir: PathBuf,
    /// Its fsync policy.
    fsync: String,
    /// How long it gets to accept connections after (re)starting, in ms.
    ready_timeout_ms: u64,
}

impl SpawnCommand {
    /// Starts the child with its stderr in the data directory's log file.
    fn spawn(&self) -> Result<Child, BenchError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join(SPAWN_LOG_FILE))
            .map_err(|error| BenchError::Server(format!("cannot open the server log: {error}")))?;
        let mut command = match &self.cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("server")
            .arg("--listen")
            .arg(self.address.to_string())
            .arg("--admin-listen")
            .arg(self.admin_address.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--fsync")
            .arg(&self.fsync)
            .arg("--log-level")
            .arg(SPAWN_LOG_LEVEL)
            .env("TASKFORGE_ROOT_TOKEN", BENCH_ROOT_TOKEN)
            .env_remove("RUST_LOG")
            // Its working directory is the data directory, so no stray `.env` applies.
            .current_dir(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        command
            .spawn()
            .map_err(|error| BenchError::Server(format!("cannot spawn the server: {error}")))
    }
}

impl Target {
    /// Starts (or finds) the server `args` names.
    pub(crate) async fn start(args: &BenchArgs) -> Result<Target, BenchError> {
        if let Some(address) = &args.addr {
            return Ok(Target::External {
                address: address.clone(),
                pid: args.server_pid,
            });
        }
        let (data_dir, temporary) = data_directory(args.data_dir.as_deref())?;
        if args.embedded {
            let mut config = Config::defaults(Environment::Development);
            config.server.listen_addr = loopback_any_port();
            config.server.admin_listen_addr = loopback_any_port();
            config.broker.data_dir = data_dir;
            config.broker.fsync = args.fsync.clone();
            config.broker.root_token = Some(Secret::new(BENCH_ROOT_TOKEN));
            let running = crate::server::start(config)
                .await
                .map_err(|error| BenchError::Server(error.to_string()))?;
            return Ok(Target::Embedded {
                running: Some(running),
                _data_dir: temporary,
            });
        }
        let binary = match &args.server_binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().map_err(|error| {
                BenchError::Server(format!("cannot find this executable: {error}"))
            })?,
        };
        let (address, admin_address) = free_loopback_addresses()?;
        let command = SpawnCommand {
            binary,
            cpus: args.server_cpus.clone(),
            address,
            admin_address,
            data_dir,
            fsync: args.fsync.clone(),
            ready_timeout_ms: args.spawn_ready_timeout_ms,
        };
        let child = command.spawn()?;
        let mut target = Target::Spawned {
            child: Some(child),
            command,
            _data_dir: temporary,
        };
        target.wait_until_serving().await?;
        Ok(target)
    }

    /// Where clients connect.
    pub(crate) fn address(&self) -> String {
        match self {
            Target::Embedded { running, .. } => running
                .as_ref()
                .map(|running| running.local_addr().to_string())
                .unwrap_or_default(),
            Target::Spawned { command, .. } => command.address.to_string(),
            Target::External { address, .. } => address.clone(),
        }
    }

    /// The root token of a server the bench started.
    pub(crate) fn root_token(&self) -> Option<&str> {
        match self {
            Target::Embedded { .. } | Target::Spawned { .. } => Some(BENCH_ROOT_TOKEN),
            Target::External { .. } => None,
        }
    }

    /// Whose CPU time [`Target::sample`] reads; `None` when it reads nothing.
    pub(crate) fn cpu_scope(&self) -> Option<CpuScope> {
        match self {
            Target::Embedded { .. } => Some(CpuScope::ServerAndLoadGenerator),
            Target::Spawned { .. } => Some(CpuScope::ServerProcess),
            Target::External { pid, .. } => pid.map(|_| CpuScope::ServerProcess),
        }
    }

    /// The server process's CPU time and RSS now.
    pub(crate) fn sample(&self) -> Option<ProcessSample> {
        match self {
            Target::Embedded { .. } => sample_process(None),
            Target::Spawned { child, .. } => sample_process(Some(child.as_ref()?.id())),
            Target::External { pid, .. } => sample_process(Some((*pid)?)),
        }
    }

    /// The broker's commit counters: an embedded one's directly, a spawned one's from its
    /// `/metrics`; `None` for a server the bench did not start.
    pub(crate) async fn commit_counters(&self) -> Option<CommitCounters> {
        match self {
            Target::Embedded {
                running: Some(running),
                ..
            } => Some(CommitCounters::from(&running.broker_stats())),
            Target::Spawned { command, .. } => scrape::commit_counters(command.admin_address).await,
            Target::Embedded { running: None, .. } | Target::External { .. } => None,
        }
    }

    /// Stops a spawned server gracefully, starts it again on the same data directory, and
    /// returns the time from the new process's start until a FETCH returned a job from
    /// `queue` (which must hold some), with that job's payload (the job is acknowledged).
    pub(crate) async fn restart_until_serving(
        &mut self,
        queue: &str,
    ) -> Result<(Duration, Vec<u8>), BenchError> {
        let Target::Spawned { child, command, .. } = self else {
            return Err(BenchError::Internal("restart needs a spawned server"));
        };
        if let Some(running) = child.take() {
            stop_child(running).await?;
        }
        let started = Instant::now();
        *child = Some(command.spawn()?);
        let client =
            connect_when_up(&command.address.to_string(), command.ready_timeout_ms).await?;
        let fetched = client
            .fetch(FetchRequest {
                queues: vec![queue.to_string()],
                max_jobs: 1,
                wait_ms: 0,
                lease_ms: None,
                worker_id: None,
                weights: Vec::new(),
            })
            .await
            .map_err(|error| BenchError::operation("fetch after restart", error))?;
        let serving = started.elapsed();
        let Some(job) = fetched.jobs.into_iter().next() else {
            return Err(BenchError::Server(
                "the restarted server had no job to serve".into(),
            ));
        };
        // Acknowledged at once so it is not left leased; the caller counts it as consumed.
        client
            .ack(job.job_id, job.lease_id, None)
            .await
            .map_err(|error| BenchError::operation("ack after restart", error))?;
        Ok((serving, job.payload))
    }

    /// Stops the server the bench started; an external one is left alone.
    pub(crate) async fn stop(mut self) -> Result<(), BenchError> {
        match &mut self {
            Target::Embedded { running, .. } => {
                if let Some(running) = running.take() {
                    running
                        .shutdown()
                        .await
                        .map_err(|error| BenchError::Server(error.to_string()))?;
                }
            }
            Target::Spawned { child, .. } => {
                if let Some(running) = child.take() {
                    stop_child(running).await?;
                }
            }
            Target::External { .. } => {}
        }
        Ok(())
    }

    /// Waits until a spawned server accepts a handshake.
    async fn wait_until_serving(&mut self) -> Result<(), BenchError> {
        let Target::Spawned { command, .. } = self else {
            return Ok(());
        };
        connect_when_up(&command.address.to_string(), command.ready_timeout_ms)
            .await
            .map(drop)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Spawned {
            child: Some(child), ..
        } = self
        {
            // Only reached when a run failed half-way; do not leave the server behind.
            drop(child.kill());
            drop(child.wait());
        }
    }
}

/// The data directory to use, and the temporary directory that owns it if there is one.
fn data_directory(given: Option<&Path>) -> Result<(PathBuf, Option<TempDir>), BenchError> {
    match given {
        Some(path) => {
            std::fs::create_dir_all(path).map_err(|error| {
                BenchError::Server(format!("cannot create {}: {error}", path.display()))
            })?;
            let absolute = std::fs::canonicalize(path).map_err(|error| {
                BenchError::Server(format!("cannot resolve {}: {error}", path.display()))
            })?;
            Ok((absolute, None))
        }
        None => {
            let temporary = tempfile::Builder::new()
                .prefix("taskforge-bench-")
                .tempdir()
                .map_err(|error| {
                    BenchError::Server(format!("cannot create a temporary directory: {error}"))
                })?;
            Ok((temporary.path().to_path_buf(), Some(temporary)))
        }
    }
}

/// `127.0.0.1:0`: the OS picks the port.
fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Two distinct free loopback addresses (the server's and its admin port's): both ports
/// are held while they are chosen, so they cannot be the same one.
fn free_loopback_addresses() -> Result<(SocketAddr, SocketAddr), BenchError> {
    let bind = || std::net::TcpListener::bind(loopback_any_port());
    bind()
        .and_then(|first| {
            let second = bind()?;
            Ok((first.local_addr()?, second.local_addr()?))
        })
        .map_err(|error| BenchError::Server(format!("cannot find a free port: {error}")))
}

/// Connects with the bench root token, retrying for up to `timeout_ms` while the server
/// starts.
async fn connect_when_up(address: &str, timeout_ms: u64) -> Result<Client, BenchError> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let options = ClientOptions::new(Credentials::RootToken(BENCH_ROOT_TOKEN.into()));
        match Client::connect(address, options).await {
            Ok(client) => return Ok(client),
            Err(error) if Instant::now() >= deadline => {
                return Err(BenchError::Server(format!(
                    "the spawned server did not answer within {timeout_ms} ms (--spawn-ready-timeout-ms): {error}"
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(SPAWN_POLL_MS)).await,
        }
    }
}

/// SIGTERM, then wait (killing it after [`SPAWN_STOP_TIMEOUT_MS`]).
async fn stop_child(mut child: Child) -> Result<(), BenchError> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| BenchError::Internal("child pid out of range"))?;
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_millis(SPAWN_STOP_TIMEOUT_MS);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(SPAWN_POLL_MS * 4)).await
            }
            Ok(None) => {
                drop(child.kill());
                drop(child.wait());
                return Err(BenchError::Server(format!(
                    "the server did not stop within {SPAWN_STOP_TIMEOUT_MS} ms of SIGTERM"
                )));
            }
            Err(error) => {
                return Err(BenchError::Server(format!(
                    "waiting for the server: {error}"
                )))
            }
        }
    }
}
