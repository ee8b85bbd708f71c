//! The `taskforge` command: `taskforge server` runs the broker; `taskforge ping` checks
//! that one answers; `taskforge <noun> <verb>` are the admin commands (see `cli/`). Each
//! subcommand is one `Command` variant and one `run_*` function or noun module.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use futures::{SinkExt as _, StreamExt as _};
use taskforge::config::{
    read_dotenv, Config, ConfigSources, LogFormat, LogSettings, SettingFlags, DOTENV_FILE,
    RUST_LOG_ENV_VAR,
};
use taskforge_protocol::limits::HANDSHAKE_FRAME_BYTES_MAX;
use taskforge_protocol::{
    decode_body, Empty, ErrorBody, Frame, FrameCodec, FrameKind, Opcode, Request, Response,
};
use tokio_util::codec::Framed;

/// mimalloc instead of glibc malloc: the broker allocates per request and per job, and
/// glibc's heap slowed down as the backlog grew (benches/README.md, table 8).
#[global_allocator]
static GLOBAL_ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it to the operating system, unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. Its default of 1 s is shorter than the journal's
/// checkpoint period, so each checkpoint's buffers were returned and then faulted in again
/// (as zeroed 2 MiB huge pages): 6–7% of the server's CPU at 32 in flight. With 10 s the
/// memory is reused: CPU per job fell 6%, for 2–5% more RSS with 1M pending jobs
/// (`benches/README.md`, table 13).
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// The environment variable with which an operator sets mimalloc's purge delay.
const ALLOCATOR_PURGE_DELAY_ENV_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (`mimalloc.h`), which the Rust
/// bindings do not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How often a background thread asks mimalloc to purge the freed memory whose delay
/// expired. mimalloc purges only from inside an allocation's slow path or an explicit
/// collect, so a server that went idle kept what it had freed for good: 1 267 MiB at rest
/// after loading 1M jobs, 897–904 MiB with this thread, 870 MiB when freed memory is
/// purged at once (`benches/README.md`, table 14).
const ALLOCATOR_COLLECT_EVERY_MS: u64 = 5_000;

/// Applies [`ALLOCATOR_PURGE_DELAY_MS`] unless the operator chose a delay.
fn tune_allocator() {
    if std::env::var_os(ALLOCATOR_PURGE_DELAY_ENV_VAR).is_none() {
        // SAFETY: mi_option_set only stores the value in mimalloc's option table; the
        // option is read when memory is next purged.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS);
        }
    }
}

/// Starts the thread that purges every [`ALLOCATOR_COLLECT_EVERY_MS`], for the server's
/// lifetime.
fn start_allocator_collector() {
    let collector = std::thread::Builder::new()
        .name("taskforge-allocator".to_string())
        .spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_millis(ALLOCATOR_COLLECT_EVERY_MS));
            collect_allocator_garbage();
        });
    if let Err(error) = collector {
        tracing::warn!(%error, "cannot start the allocator's collector thread; memory freed by threads that then idle stays with the process");
    }
}

/// Returns to the operating system the memory mimalloc freed longer ago than its purge
/// delay.
fn collect_allocator_garbage() {
    // SAFETY: mi_collect only walks mimalloc's own structures; `false` purges only what is
    // due, without forcing.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Default address `taskforge ping` checks: the default listen address.
const PING_ADDR_DEFAULT: &str = "127.0.0.1:7700";

/// Default deadline for the whole ping (connect, send, answer); below Docker's default
/// health-check timeout.
const PING_TIMEOUT_MS_DEFAULT: u64 = 3_000;

/// Request id of the ping's one request.
const PING_REQUEST_ID: u32 = 1;

/// TaskForge: a durable, multi-tenant background-job broker.
#[derive(Parser)]
#[command(
    name = "taskforge",
    version,
    about,
    after_help = "Exit codes of the admin commands (queue, job, dead, worker, schedule, org, \
                  user, subscription, project, key, storage): 0 success; \
                  1 the operation failed (the broker's error code is printed); 2 usage error; \
                  3 cannot reach or authenticate to the broker, or the connection was lost."
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
enum Command {
    /// Runs the broker until SIGINT or SIGTERM, then shuts down gracefully.
    Server(ServerArgs),
    /// Checks that a broker answers a PING (no credentials needed); exits 0 on a Pong.
    Ping(PingArgs),
    /// Manages queues: create, get, list, update, delete, pause, resume, purge, stats
    Queue(cli::Admin<cli::queue::QueueCommand>),
    /// Manages jobs: enqueue, get, list, cancel, logs, executions, results
    Job(cli::Admin<cli::job::JobCommand>),
    /// Manages dead-letter jobs: list, retry, discard
    Dead(cli::Admin<cli::dead::DeadCommand>),
    /// Manages worker processes: list, get, quiet, terminate, assign, assignments
    Worker(cli::Admin<cli::worker::WorkerCommand>),
    /// Manages cron schedules: create, get, list, update, delete, pause, resume
    Schedule(cli::Admin<cli::schedule::ScheduleCommand>),
    /// Manages organizations: create, get, list, update, delete
    Org(cli::Admin<cli::org::OrgCommand>),
    /// Manages users: create, get, list, update, disable, enable, set-password
    User(cli::Admin<cli::user::UserCommand>),
    /// Shows or sets an organization's subscription: get, set
    Subscription(cli::Admin<cli::subscription::SubscriptionCommand>),
    /// Manages projects: create, get, list, update, delete
    Project(cli::Admin<cli::project::ProjectCommand>),
    /// Manages a project's API keys: create, list, revoke, rotate
    Key(cli::Admin<cli::key::KeyCommand>),
    /// Works on a stopped broker's data directory: migrate, rollback, backup, restore,
    /// compact, check
    Storage(cli::storage::StorageArgs),
    /// Load generator: drives TaskForge (or beanstalkd, Redis) and reports throughput,
    /// latency and whether every job completed exactly once.
    Bench(Box<taskforge::bench::BenchArgs>),
}

/// Flags of `taskforge server`. Every setting can also come from the config file, `.env`
/// or its `TASKFORGE_*` variable; flags win.
#[derive(Args)]
struct ServerArgs {
    /// TOML config file [env: TASKFORGE_CONFIG]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML (secrets redacted) and exit
    #[arg(long)]
    print_config: bool,
    /// One flag per setting.
    #[command(flatten)]
    settings: SettingFlags,
}

/// Flags of `taskforge ping`.
#[derive(Args)]
struct PingArgs {
    /// Broker address (host:port)
    #[arg(long, env = "TASKFORGE_ADDR", default_value = PING_ADDR_DEFAULT)]
    addr: String,
    /// Give up after this many ms
    #[arg(long, value_name = "MS", default_value_t = PING_TIMEOUT_MS_DEFAULT)]
    timeout_ms: u64,
}

fn main() -> ExitCode {
    tune_allocator();
    let command = Cli::parse().command;
    if !matches!(command, Command::Server(_)) {
        restore_default_sigpipe();
    }
    match command {
        Command::Server(args) => run_server(args),
        Command::Ping(args) => run_ping(args),
        Command::Queue(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::queue::run(client, admin.command, out)
        }),
        Command::Job(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::job::run(client, admin.command, out)
        }),
        Command::Dead(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::dead::run(client, admin.command, out)
        }),
        Command::Worker(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::worker::run(client, admin.command, out)
        }),
        Command::Schedule(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::schedule::run(client, admin.command, out)
        }),
        Command::Org(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::org::run(client, admin.command, out)
        }),
        Command::User(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::user::run(client, admin.command, out)
        }),
        Command::Subscription(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::subscription::run(client, admin.command, out)
        }),
        Command::Project(admin) => cli::run_admin(admin.options, move |client, out| {
            cli::project::run(client, admin.command, out)
        }),
        Command::Key(admin) => cli::run_admin_in(admin.options, move |client, out, project| {
            cli::key::run(client, admin.command, out, project)
        }),
        Command::Storage(args) => cli::storage::run(args),
        Command::Bench(args) => taskforge::bench::main(*args),
    }
}

/// Lets a command-line tool die quietly when its reader goes away (`taskforge job list |
/// head`), like other Unix tools, instead of panicking on the failed write. Rust starts
/// every program with SIGPIPE ignored; the server keeps it that way, because a client
/// closing its socket must never kill the broker.
fn restore_default_sigpipe() {
    // SAFETY: called once at start-up, before any thread exists; `signal` with `SIG_DFL`
    // installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `taskforge server`.
fn run_server(args: ServerArgs) -> ExitCode {
    let sources = match server_config_sources(args.config, args.settings, Path::new(DOTENV_FILE)) {
        Ok(sources) => sources,
        Err(error) => return fail(&format!("configuration: {error}")),
    };
    let config = match Config::load(&sources) {
        Ok(config) => config,
        Err(error) => return fail(&format!("configuration: {error}")),
    };
    if args.print_config {
        return match config.to_toml_redacted() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&format!("cannot print the configuration: {error}")),
        };
    }
    if let Err(error) = init_tracing(&config.log, sources.variable(RUST_LOG_ENV_VAR)) {
        return fail(&format!("logging: {error}"));
    }
    start_allocator_collector();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    runtime.block_on(serve_until_signal(config))
}

/// The layers of the server's configuration: flags, process environment and `.env`.
fn server_config_sources(
    config_file: Option<PathBuf>,
    settings: SettingFlags,
    dotenv_file: &Path,
) -> Result<ConfigSources, taskforge::config::ConfigError> {
    Ok(ConfigSources {
        config_file,
        dotenv: read_dotenv(dotenv_file)?,
        environment: ConfigSources::process_environment(),
        flags: settings.values,
    })
}

/// Logs to stderr as text or JSON. `RUST_LOG` (environment or `.env`), when set, replaces
/// the configured filter.
fn init_tracing(log: &LogSettings, rust_log: Option<&str>) -> Result<(), String> {
    let filter_text = rust_log
        .filter(|text| !text.trim().is_empty())
        .unwrap_or(&log.level);
    let filter = tracing_subscriber::EnvFilter::try_new(filter_text)
        .map_err(|error| format!("invalid log filter {filter_text:?}: {error}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| error.to_string())
}

/// Starts the server, waits for SIGINT or SIGTERM, shuts down gracefully.
async fn serve_until_signal(config: Config) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed before starting, so a signal during start-up is not lost.
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            return fail(&format!("cannot install signal handlers: {error}"))
        }
    };
    let running = match taskforge::server::start(config).await {
        Ok(running) => running,
        Err(error) => return fail(&format!("cannot start: {error}")),
    };
    let signal_name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal = signal_name, "shutting down");
    match running.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the server task failed during shutdown");
            ExitCode::FAILURE
        }
    }
}

/// `taskforge ping`: one PING frame before any handshake, written with the raw codec.
fn run_ping(args: PingArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };
    let deadline = Duration::from_millis(args.timeout_ms);
    let outcome = runtime.block_on(async {
        tokio::time::timeout(deadline, ping(&args.addr))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", args.timeout_ms)))
    });
    match outcome {
        Ok(server_time_ms) => {
            println!("pong from {}: server time {server_time_ms} ms", args.addr);
            ExitCode::SUCCESS
        }
        Err(message) => fail(&format!("ping {}: {message}", args.addr)),
    }
}

/// Sends PING to `addr` and returns the server's clock from the Pong.
async fn ping(addr: &str) -> Result<u64, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|error| format!("cannot connect: {error}"))?;
    let mut frames = Framed::new(stream, FrameCodec::new(HANDSHAKE_FRAME_BYTES_MAX));
    let mut body = bytes::BytesMut::new();
    Request::Ping(Empty {}).encode_body(&mut body);
    let request = Frame {
        kind: FrameKind::Request,
        opcode: Opcode::Ping.number(),
        request_id: PING_REQUEST_ID,
        body: body.freeze(),
    };
    frames
        .send(request)
        .await
        .map_err(|error| format!("cannot send: {error}"))?;
    let frame = match frames.next().await {
        Some(Ok(frame)) => frame,
        Some(Err(error)) => return Err(format!("unreadable answer: {error}")),
        None => return Err("the server closed the connection without answering".into()),
    };
    match frame.kind {
        FrameKind::Response if frame.request_id == PING_REQUEST_ID => {
            match Response::decode(frame.opcode, &frame.body) {
                Ok(Response::Ping(pong)) => Ok(pong.server_time_ms),
                Ok(other) => Err(format!("unexpected answer {:?}", other.opcode())),
                Err(error) => Err(format!("unreadable answer: {error}")),
            }
        }
        FrameKind::Error => match decode_body::<ErrorBody>(frame.opcode, &frame.body) {
            Ok(error) => Err(format!("refused: {error}")),
            Err(error) => Err(format!("unreadable error: {error}")),
        },
        kind => Err(format!(
            "unexpected {kind:?} frame for request {}",
            frame.request_id
        )),
    }
}

/// Prints `message` for the operator and returns the failure exit code.
fn fail(message: &str) -> ExitCode {
    eprintln!("taskforge: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_set_on_the_option_mimalloc_purges_by() {
        if std::env::var_os(ALLOCATOR_PURGE_DELAY_ENV_VAR).is_some() {
            return;
        }
        let purge_delay_ms = || {
            // SAFETY: reads mimalloc's option table.
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
        };
        // mimalloc 3's own default for the purge delay: another option's would differ.
        assert_eq!(purge_delay_ms(), 1_000);
        tune_allocator();
        assert_eq!(purge_delay_ms(), ALLOCATOR_PURGE_DELAY_MS);
    }
}
