//! Configuration: one [`Config`] built from layers, validated once at start-up.
//!
//! Layers, lowest precedence first:
//! 1. built-in defaults, chosen by the environment (`development`, `staging`,
//!    `production`; see [`Config::defaults`]);
//! 2. a TOML file (`--config FILE` or `TASKFORGE_CONFIG`), whose sections and keys mirror
//!    [`Config`] (`[server] listen_addr = "..."`);
//! 3. a `.env` file in the working directory;
//! 4. `TASKFORGE_*` environment variables (a real variable beats the same one in `.env`);
//! 5. command-line flags.
//!
//! Every setting reachable from layers 3–5 is listed once in [`SETTINGS`], with its file
//! key, its environment variable and its flag; the flags of `taskforge server` are
//! generated from that table, so a setting cannot have a key but no flag.
//!
//! The environment itself (`environment` key, `TASKFORGE_ENV`, `--env`) is resolved first,
//! by the same precedence, because it picks the defaults the other layers override.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use taskforge_protocol::limits::{
    BATCH_JOBS_MAX_DEFAULT, CREDENTIAL_BYTES_MAX, FRAME_BYTES_CEILING, FRAME_BYTES_MAX_DEFAULT,
    HANDSHAKE_FRAME_BYTES_MAX, HEARTBEAT_TIMEOUT_MS_DEFAULT, LOG_LINES_PER_EXECUTION_MAX_DEFAULT,
    METADATA_BYTES_MAX, PAYLOAD_BYTES_MAX_DEFAULT, QUEUE_NAME_BYTES_MAX,
    REQUESTS_IN_FLIGHT_MAX_DEFAULT, RESULT_BYTES_MAX_DEFAULT,
};

use crate::broker::core::{
    Settings as CoreSettings, RETENTION_MS_DEFAULT, WORKER_RETENTION_MS_DEFAULT,
};
use crate::broker::{BrokerConfig, BrokerLimits, FsyncPolicy};

/// Default TCP address of the protocol listener outside production: loopback only, so a
/// developer's broker is not reachable from the network by accident.
pub const LISTEN_ADDR_DEFAULT: &str = "127.0.0.1:7700";

/// Default TCP address of the protocol listener in staging and production, where the
/// broker serves other machines.
pub const LISTEN_ADDR_PUBLIC_DEFAULT: &str = "0.0.0.0:7700";

/// Default address of the HTTP admin port, in every environment: the admin port exposes
/// stats and must be opened to the network deliberately.
pub const ADMIN_LISTEN_ADDR_DEFAULT: &str = "127.0.0.1:7701";

/// Default connection cap. Each connection may buffer up to one frame, so the worst case
/// is about `connections_max × frame_bytes_max` after authentication, and
/// `connections_max × HANDSHAKE_FRAME_BYTES_MAX` (16 MiB here) before it.
pub const CONNECTIONS_MAX_DEFAULT: u32 = 4_096;

/// Default handshake deadline: generous for a client across a WAN, short enough that
/// silent connections cannot pile up.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 2_000;

/// Default idle timeout (5 minutes). Workers blocked in a FETCH long-poll have a request in
/// flight and are never idle; clients that only hold a connection should PING.
pub const IDLE_TIMEOUT_MS_DEFAULT: u32 = 300_000;

/// Default deadline for one socket write or flush; a reader slower than this loses its
/// connection, so it cannot make the server hold its responses in memory.
pub const WRITE_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Default time in-flight requests get to finish after a shutdown signal. Below Docker's
/// 10-second stop timeout, leaving room for the broker's final flush.
pub const SHUTDOWN_GRACE_MS_DEFAULT: u64 = 5_000;

/// Default data directory, relative to the working directory.
pub const DATA_DIR_DEFAULT: &str = "./data";

/// Default fsync policy: nothing acknowledged is ever lost.
pub const FSYNC_DEFAULT: &str = "always";

/// Default sled page cache: the store's own default ([`crate::storage::sled_store`]).
pub const CACHE_CAPACITY_BYTES_DEFAULT: u64 =
    crate::storage::sled_store::CACHE_CAPACITY_BYTES_DEFAULT;

/// Smallest sled page cache accepted; below this sled thrashes on every read.
pub const CACHE_CAPACITY_BYTES_MIN: u64 = 1024 * 1024;

/// Default period of the journal's checkpoint into sled ([`crate::storage::journal`]).
/// Each checkpoint fsyncs, so with `fsync = "never"` it also bounds what a power cut loses
/// to about this much (a process crash loses nothing journaled).
pub const CHECKPOINT_EVERY_MS_DEFAULT: u64 =
    crate::storage::journal::CHECKPOINT_INTERVAL_MS_DEFAULT;

/// Default size of a journal file at which it is checkpointed into sled.
pub const JOURNAL_CHECKPOINT_BYTES_DEFAULT: u64 = crate::storage::journal::CHECKPOINT_BYTES_DEFAULT;

/// Smallest journal checkpoint size accepted: smaller ones checkpoint nearly every round.
pub const JOURNAL_CHECKPOINT_BYTES_MIN: u64 = 64 * 1024;

/// Bytes a job needs in a frame besides its payload: metadata, queue name, the other
/// fields and the frame header. A payload limit must leave this much room in a frame.
pub const JOB_ENVELOPE_BYTES_MAX: u32 =
    (METADATA_BYTES_MAX + QUEUE_NAME_BYTES_MAX) as u32 + 8 * 1024;

/// Shortest root token accepted from configuration: shorter ones can be guessed.
pub const ROOT_TOKEN_BYTES_MIN: usize = 16;

/// What `--print-config` shows instead of a secret.
pub const REDACTED: &str = "<redacted>";

const _: () =
    assert!(PAYLOAD_BYTES_MAX_DEFAULT + JOB_ENVELOPE_BYTES_MAX <= FRAME_BYTES_MAX_DEFAULT);
const _: () = assert!(RESULT_BYTES_MAX_DEFAULT + JOB_ENVELOPE_BYTES_MAX <= FRAME_BYTES_MAX_DEFAULT);

/// Shortest configured API key pepper.
pub const KEY_PEPPER_BYTES_MIN: usize = 16;

/// BLAKE3 key-derivation context turning the configured pepper into the 32-byte hash key.
const KEY_PEPPER_CONTEXT: &str = "taskforge 2026 api key secret pepper";

/// The deployment environment, which picks defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine: readable logs at debug, loopback only.
    #[default]
    Development,
    /// A pre-production deployment: production defaults.
    Staging,
    /// Production: JSON logs at info, listener on every interface.
    Production,
}

impl std::str::FromStr for Environment {
    type Err = String;

    fn from_str(text: &str) -> Result<Environment, String> {
        match text {
            "development" => Ok(Environment::Development),
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            other => Err(format!(
                "environment {other:?} is not one of development, staging, production"
            )),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A secret string. Its `Debug` never shows the value, so a config logged with `{:?}` does
/// not leak it; [`Config::to_toml_redacted`] replaces it too.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value in clear, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The whole configuration of `taskforge server`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The environment whose defaults this configuration started from.
    pub environment: Environment,
    /// Network behaviour: listener, limits per connection, timeouts.
    pub server: ServerSettings,
    /// Storage, durability and request-content limits.
    pub broker: BrokerSettings,
    /// Log output.
    pub log: LogSettings,
}

/// The `[server]` section: how the server talks to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the binary protocol listens on.
    pub listen_addr: SocketAddr,
    /// Address of the HTTP admin port (health, metrics, stats).
    pub admin_listen_addr: SocketAddr,
    /// Most connections open at once; the next one gets UNAVAILABLE and is closed.
    pub connections_max: u32,
    /// A new connection must complete HELLO within this many ms or it is closed.
    pub handshake_timeout_ms: u64,
    /// A session with nothing in flight and nothing received for this long is closed.
    pub idle_timeout_ms: u32,
    /// Requests one session may have in flight; the server stops reading at the cap.
    pub requests_in_flight_max: u32,
    /// One socket write or flush taking longer than this closes the connection.
    pub write_timeout_ms: u64,
    /// Largest frame accepted after the handshake (the `length` field's value).
    pub frame_bytes_max: u32,
    /// Time in-flight requests get to finish after a shutdown signal before they are
    /// dropped.
    pub shutdown_grace_ms: u64,
}

/// The `[broker]` section: storage, durability and what requests may contain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// Directory holding the store and the generated root token.
    pub data_dir: PathBuf,
    /// When a change counts as durable: `always`, `never` or `interval:<ms>`.
    pub fsync: String,
    /// Largest job payload.
    pub payload_bytes_max: u32,
    /// Largest result an ACK may store.
    pub result_bytes_max: u32,
    /// Most jobs in one ENQUEUE_BATCH.
    pub batch_jobs_max: u32,
    /// A worker silent this long is lost and its leases are released, in ms.
    pub heartbeat_timeout_ms: u64,
    /// How long lost and stopped workers stay listed, in ms.
    pub worker_retention_ms: u64,
    /// Most log lines one execution may write.
    pub log_lines_per_execution_max: u32,
    /// How long finished jobs are kept when neither their queue nor a plan says, in ms.
    pub retention_ms_default: u64,
    /// sled's page cache.
    pub cache_capacity_bytes: u64,
    /// Period of the journal's checkpoint into sled, in ms; 0 checkpoints by size only.
    pub checkpoint_every_ms: u64,
    /// Size of a journal file at which it is checkpointed into sled, in bytes. Memory holds
    /// up to twice this much of recent changes, and a crash replays up to that much.
    pub journal_checkpoint_bytes: u64,
    /// The root (super-admin) token. When unset, it is read from `<data_dir>/root_token`,
    /// which is generated on first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_token: Option<Secret>,
    /// The pepper that keys the hashes of API key secrets. When unset, it is read from
    /// `<data_dir>/key_pepper`, which is generated on first start. Changing it invalidates
    /// every API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pepper: Option<Secret>,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `taskforge=debug,warn`, ...). `RUST_LOG` replaces it.
    pub level: String,
}

/// The type of a setting's value, used to read it from a string (environment, flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// Any string.
    Text,
    /// A non-negative integer.
    Integer,
}

/// One setting that can be given in the file, the environment and on the command line.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted key in the TOML file and in [`Config`], e.g. `server.listen_addr`.
    pub key: &'static str,
    /// Environment variable, e.g. `TASKFORGE_LISTEN`.
    pub env_var: &'static str,
    /// Long flag of `taskforge server`, without dashes.
    pub flag: &'static str,
    /// How the string form is read.
    pub kind: SettingKind,
    /// One line for `--help`.
    pub help: &'static str,
}

macro_rules! settings {
    ($( $key:literal $env_var:literal $flag:literal $kind:ident $help:literal; )*) => {
        /// Every setting with its file key, environment variable and flag.
        pub const SETTINGS: &[Setting] = &[
            $( Setting {
                key: $key,
                env_var: $env_var,
                flag: $flag,
                kind: SettingKind::$kind,
                help: $help,
            }, )*
        ];
    };
}

settings! {
    "environment" "TASKFORGE_ENV" "env" Text
        "Environment picking the defaults: development, staging or production";
    "server.listen_addr" "TASKFORGE_LISTEN" "listen" Text
        "Address of the protocol listener (IP:port)";
    "server.admin_listen_addr" "TASKFORGE_ADMIN_LISTEN" "admin-listen" Text
        "Address of the HTTP admin port (IP:port)";
    "server.connections_max" "TASKFORGE_CONNECTIONS_MAX" "connections-max" Integer
        "Most connections open at once";
    "server.handshake_timeout_ms" "TASKFORGE_HANDSHAKE_TIMEOUT_MS" "handshake-timeout-ms" Integer
        "Deadline for a new connection's HELLO, in ms";
    "server.idle_timeout_ms" "TASKFORGE_IDLE_TIMEOUT_MS" "idle-timeout-ms" Integer
        "Idle sessions are closed after this many ms";
    "server.requests_in_flight_max" "TASKFORGE_REQUESTS_IN_FLIGHT_MAX" "requests-in-flight-max" Integer
        "Requests one session may have in flight";
    "server.write_timeout_ms" "TASKFORGE_WRITE_TIMEOUT_MS" "write-timeout-ms" Integer
        "Deadline for one socket write, in ms";
    "server.frame_bytes_max" "TASKFORGE_FRAME_BYTES_MAX" "frame-bytes-max" Integer
        "Largest frame after the handshake, in bytes";
    "server.shutdown_grace_ms" "TASKFORGE_SHUTDOWN_GRACE_MS" "shutdown-grace-ms" Integer
        "Time in-flight requests get at shutdown, in ms";
    "broker.data_dir" "TASKFORGE_DATA_DIR" "data-dir" Text
        "Data directory";
    "broker.fsync" "TASKFORGE_FSYNC" "fsync" Text
        "Durability policy: always, never or interval:<ms>";
    "broker.payload_bytes_max" "TASKFORGE_PAYLOAD_BYTES_MAX" "payload-bytes-max" Integer
        "Largest job payload, in bytes";
    "broker.result_bytes_max" "TASKFORGE_RESULT_BYTES_MAX" "result-bytes-max" Integer
        "Largest ACK result, in bytes";
    "broker.batch_jobs_max" "TASKFORGE_BATCH_JOBS_MAX" "batch-jobs-max" Integer
        "Most jobs in one ENQUEUE_BATCH";
    "broker.heartbeat_timeout_ms" "TASKFORGE_HEARTBEAT_TIMEOUT_MS" "heartbeat-timeout-ms" Integer
        "A worker silent this long is lost and its leases released, in ms";
    "broker.worker_retention_ms" "TASKFORGE_WORKER_RETENTION_MS" "worker-retention-ms" Integer
        "How long lost and stopped workers stay listed, in ms";
    "broker.log_lines_per_execution_max" "TASKFORGE_LOG_LINES_PER_EXECUTION_MAX" "log-lines-per-execution-max" Integer
        "Most log lines one job execution may write";
    "broker.retention_ms_default" "TASKFORGE_RETENTION_MS_DEFAULT" "retention-ms-default" Integer
        "How long finished jobs are kept when neither queue nor plan says, in ms";
    "broker.cache_capacity_bytes" "TASKFORGE_CACHE_CAPACITY_BYTES" "cache-capacity-bytes" Integer
        "sled page cache, in bytes";
    "broker.checkpoint_every_ms" "TASKFORGE_CHECKPOINT_EVERY_MS" "checkpoint-every-ms" Integer
        "Period of the journal's checkpoint into sled in ms (0: by size only)";
    "broker.journal_checkpoint_bytes" "TASKFORGE_JOURNAL_CHECKPOINT_BYTES" "journal-checkpoint-bytes" Integer
        "Size of a journal file at which it is checkpointed into sled, in bytes";
    "broker.key_pepper" "TASKFORGE_KEY_PEPPER" "key-pepper" Text
        "Pepper keying API key hashes (prefer TASKFORGE_KEY_PEPPER; generated when unset)";
    "broker.root_token" "TASKFORGE_ROOT_TOKEN" "root-token" Text
        "Root token (visible in the process list: prefer TASKFORGE_ROOT_TOKEN)";
    "log.format" "TASKFORGE_LOG_FORMAT" "log-format" Text
        "Log format: text or json";
    "log.level" "TASKFORGE_LOG_LEVEL" "log-level" Text
        "Log filter, e.g. info or taskforge=debug (RUST_LOG replaces it)";
}

/// Environment variable naming the config file when `--config` is absent.
pub const CONFIG_FILE_ENV_VAR: &str = "TASKFORGE_CONFIG";

/// Environment variable that replaces `log.level` when set, as usual for tracing.
pub const RUST_LOG_ENV_VAR: &str = "RUST_LOG";

/// The `.env` file read at start-up, relative to the working directory.
pub const DOTENV_FILE: &str = ".env";

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    FileRead {
        /// The file.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or does not match the expected keys and types.
    #[error("config file {path}: {message}")]
    FileContent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The `.env` file could not be read or parsed.
    #[error("cannot read {path}: {message}")]
    Dotenv {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable or flag could not be read as its setting's type.
    #[error("{source_name}: {message}")]
    Value {
        /// The variable or flag, e.g. `TASKFORGE_CONNECTIONS_MAX` or `--connections-max`.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A setting's value is out of range or inconsistent with another.
    #[error("invalid {key} (set by {env_var} or --{flag}): {message}")]
    Invalid {
        /// The setting's file key.
        key: &'static str,
        /// Its environment variable.
        env_var: &'static str,
        /// Its flag.
        flag: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
        let setting = setting(key);
        ConfigError::Invalid {
            key,
            env_var: setting.map_or("-", |setting| setting.env_var),
            flag: setting.map_or("-", |setting| setting.flag),
            message: message.into(),
        }
    }
}

/// The setting with file key `key`.
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.key == key)
}

/// Where a configuration comes from. [`Config::load`] applies it.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The `--config` flag; when `None`, `TASKFORGE_CONFIG` names the file, if set.
    pub config_file: Option<PathBuf>,
    /// Variables from the `.env` file (see [`read_dotenv`]).
    pub dotenv: BTreeMap<String, String>,
    /// The process environment. A variable here beats the same one in `dotenv`.
    pub environment: BTreeMap<String, String>,
    /// Command-line flags as (setting key, value), in the order given.
    pub flags: Vec<(String, String)>,
}

impl ConfigSources {
    /// The value of environment variable `name`: the process's, else the `.env` file's.
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.environment
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }

    /// The process environment, keeping only variables whose name and value are UTF-8.
    pub fn process_environment() -> BTreeMap<String, String> {
        std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect()
    }
}

/// Reads a `.env` file into a map; a missing file is an empty map. Values may refer to
/// other variables (`$HOME`), as dotenvy resolves them.
pub fn read_dotenv(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let dotenv_error = |message: String| ConfigError::Dotenv {
        path: path.to_path_buf(),
        message,
    };
    let entries = match dotenvy::from_path_iter(path) {
        Ok(entries) => entries,
        Err(error) if error.not_found() => return Ok(BTreeMap::new()),
        Err(error) => return Err(dotenv_error(error.to_string())),
    };
    let mut variables = BTreeMap::new();
    for entry in entries {
        let (name, value) = entry.map_err(|error| dotenv_error(error.to_string()))?;
        variables.insert(name, value);
    }
    Ok(variables)
}

impl Config {
    /// The built-in defaults for `environment`.
    pub fn defaults(environment: Environment) -> Config {
        let production_like = environment != Environment::Development;
        let (listen_addr, log_format, log_level) = if production_like {
            (LISTEN_ADDR_PUBLIC_DEFAULT, LogFormat::Json, "info")
        } else {
            (LISTEN_ADDR_DEFAULT, LogFormat::Text, "info,taskforge=debug")
        };
        Config {
            environment,
            server: ServerSettings {
                listen_addr: parse_default_addr(listen_addr),
                admin_listen_addr: parse_default_addr(ADMIN_LISTEN_ADDR_DEFAULT),
                connections_max: CONNECTIONS_MAX_DEFAULT,
                handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS_DEFAULT,
                idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
                requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX_DEFAULT,
                write_timeout_ms: WRITE_TIMEOUT_MS_DEFAULT,
                frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
                shutdown_grace_ms: SHUTDOWN_GRACE_MS_DEFAULT,
            },
            broker: BrokerSettings {
                data_dir: PathBuf::from(DATA_DIR_DEFAULT),
                fsync: FSYNC_DEFAULT.to_string(),
                payload_bytes_max: PAYLOAD_BYTES_MAX_DEFAULT,
                result_bytes_max: RESULT_BYTES_MAX_DEFAULT,
                batch_jobs_max: BATCH_JOBS_MAX_DEFAULT,
                heartbeat_timeout_ms: u64::from(HEARTBEAT_TIMEOUT_MS_DEFAULT),
                worker_retention_ms: WORKER_RETENTION_MS_DEFAULT,
                log_lines_per_execution_max: LOG_LINES_PER_EXECUTION_MAX_DEFAULT,
                retention_ms_default: RETENTION_MS_DEFAULT,
                cache_capacity_bytes: CACHE_CAPACITY_BYTES_DEFAULT,
                checkpoint_every_ms: CHECKPOINT_EVERY_MS_DEFAULT,
                journal_checkpoint_bytes: JOURNAL_CHECKPOINT_BYTES_DEFAULT,
                root_token: None,
                key_pepper: None,
            },
            log: LogSettings {
                format: log_format,
                level: log_level.to_string(),
            },
        }
    }

    /// Builds the configuration from `sources`, layer by layer, and validates it.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let config_file = sources
            .config_file
            .clone()
            .or_else(|| sources.variable(CONFIG_FILE_ENV_VAR).map(PathBuf::from));
        let file_table = match &config_file {
            Some(path) => Some((path, read_config_file(path)?)),
            None => None,
        };

        let environment = resolve_environment(sources, file_table.as_ref().map(|(_, t)| t))?;
        let mut merged = toml::Table::try_from(Config::defaults(environment)).map_err(|error| {
            ConfigError::Value {
                source_name: "defaults".into(),
                message: error.to_string(),
            }
        })?;

        if let Some((path, table)) = file_table {
            merge_tables(&mut merged, table);
            // Check the file's keys and types now, so that its errors name the file.
            config_from_table(merged.clone()).map_err(|error| ConfigError::FileContent {
                path: path.clone(),
                message: error.to_string(),
            })?;
        }
        for setting in SETTINGS {
            if let Some(value) = sources.dotenv.get(setting.env_var) {
                set_from_string(
                    &mut merged,
                    setting,
                    value,
                    &format!(".env {}", setting.env_var),
                )?;
            }
        }
        for setting in SETTINGS {
            if let Some(value) = sources.environment.get(setting.env_var) {
                set_from_string(&mut merged, setting, value, setting.env_var)?;
            }
        }
        for (key, value) in &sources.flags {
            let setting = setting(key).ok_or_else(|| ConfigError::Value {
                source_name: format!("--set {key}"),
                message: "no such setting".into(),
            })?;
            set_from_string(&mut merged, setting, value, &format!("--{}", setting.flag))?;
        }

        let config = config_from_table(merged).map_err(|error| {
            match error.key.as_deref().and_then(setting) {
                Some(setting) => ConfigError::invalid(setting.key, error.message),
                None => ConfigError::Value {
                    source_name: "environment or flags".into(),
                    message: error.to_string(),
                },
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value and the relations between them, with a message naming the
    /// setting and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        let broker = &self.broker;
        // Port 0 asks the OS for a free port, so two port-0 addresses never collide.
        if server.listen_addr == server.admin_listen_addr && server.listen_addr.port() != 0 {
            return Err(ConfigError::invalid(
                "server.admin_listen_addr",
                format!(
                    "must differ from server.listen_addr ({})",
                    server.listen_addr
                ),
            ));
        }
        for (key, value) in [
            ("server.connections_max", u64::from(server.connections_max)),
            ("server.handshake_timeout_ms", server.handshake_timeout_ms),
            ("server.idle_timeout_ms", u64::from(server.idle_timeout_ms)),
            (
                "server.requests_in_flight_max",
                u64::from(server.requests_in_flight_max),
            ),
            ("server.write_timeout_ms", server.write_timeout_ms),
            (
                "broker.payload_bytes_max",
                u64::from(broker.payload_bytes_max),
            ),
            (
                "broker.result_bytes_max",
                u64::from(broker.result_bytes_max),
            ),
            ("broker.batch_jobs_max", u64::from(broker.batch_jobs_max)),
            ("broker.heartbeat_timeout_ms", broker.heartbeat_timeout_ms),
            ("broker.worker_retention_ms", broker.worker_retention_ms),
            ("broker.retention_ms_default", broker.retention_ms_default),
            (
                "broker.log_lines_per_execution_max",
                u64::from(broker.log_lines_per_execution_max),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if server.frame_bytes_max > FRAME_BYTES_CEILING {
            return Err(ConfigError::invalid(
                "server.frame_bytes_max",
                format!(
                    "{} is over the protocol's ceiling of {FRAME_BYTES_CEILING} bytes",
                    server.frame_bytes_max
                ),
            ));
        }
        if server.frame_bytes_max < HANDSHAKE_FRAME_BYTES_MAX {
            return Err(ConfigError::invalid(
                "server.frame_bytes_max",
                format!(
                    "{} is below the handshake limit of {HANDSHAKE_FRAME_BYTES_MAX} bytes",
                    server.frame_bytes_max
                ),
            ));
        }
        for (key, value) in [
            ("broker.payload_bytes_max", broker.payload_bytes_max),
            ("broker.result_bytes_max", broker.result_bytes_max),
        ] {
            let fits = value
                .checked_add(JOB_ENVELOPE_BYTES_MAX)
                .is_some_and(|needed| needed <= server.frame_bytes_max);
            if !fits {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{value} bytes plus {JOB_ENVELOPE_BYTES_MAX} bytes of job envelope do \
                         not fit in server.frame_bytes_max ({} bytes); lower it or raise \
                         server.frame_bytes_max",
                        server.frame_bytes_max
                    ),
                ));
            }
        }
        self.fsync_policy()?;
        if broker.cache_capacity_bytes < CACHE_CAPACITY_BYTES_MIN {
            return Err(ConfigError::invalid(
                "broker.cache_capacity_bytes",
                format!("must be at least {CACHE_CAPACITY_BYTES_MIN} bytes"),
            ));
        }
        if broker.journal_checkpoint_bytes < JOURNAL_CHECKPOINT_BYTES_MIN {
            return Err(ConfigError::invalid(
                "broker.journal_checkpoint_bytes",
                format!("must be at least {JOURNAL_CHECKPOINT_BYTES_MIN} bytes"),
            ));
        }
        if broker.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("broker.data_dir", "must not be empty"));
        }
        if let Some(token) = &broker.root_token {
            let length = token.expose().len();
            if !(ROOT_TOKEN_BYTES_MIN..=CREDENTIAL_BYTES_MAX).contains(&length) {
                return Err(ConfigError::invalid(
                    "broker.root_token",
                    format!(
                        "must be {ROOT_TOKEN_BYTES_MIN} to {CREDENTIAL_BYTES_MAX} bytes long \
                         (got {length}); unset it to have one generated"
                    ),
                ));
            }
            if token.expose().chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    "broker.root_token",
                    "must not contain spaces",
                ));
            }
        }
        if let Some(pepper) = &broker.key_pepper {
            if pepper.expose().len() < KEY_PEPPER_BYTES_MIN {
                return Err(ConfigError::invalid(
                    "broker.key_pepper",
                    format!("must be at least {KEY_PEPPER_BYTES_MIN} bytes long"),
                ));
            }
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!("{:?} is not a tracing filter: {error}", self.log.level),
            ));
        }
        Ok(())
    }

    /// The fsync policy named by `broker.fsync`.
    pub fn fsync_policy(&self) -> Result<FsyncPolicy, ConfigError> {
        self.broker
            .fsync
            .parse()
            .map_err(|message| ConfigError::invalid("broker.fsync", message))
    }

    /// The limits the broker enforces on request contents.
    pub fn broker_limits(&self) -> BrokerLimits {
        BrokerLimits {
            payload_bytes_max: self.broker.payload_bytes_max,
            result_bytes_max: self.broker.result_bytes_max,
            batch_jobs_max: self.broker.batch_jobs_max,
            response_bytes_max: self.server.frame_bytes_max
                - taskforge_protocol::frame::HEADER_AFTER_LENGTH_BYTES as u32,
        }
    }

    /// The broker's configuration, given the resolved root token.
    pub fn broker_config(
        &self,
        root_token: &str,
        key_pepper: &str,
    ) -> Result<BrokerConfig, ConfigError> {
        Ok(BrokerConfig {
            fsync: self.fsync_policy()?,
            limits: self.broker_limits(),
            root_token: root_token.to_string(),
            key_pepper: blake3::derive_key(KEY_PEPPER_CONTEXT, key_pepper.as_bytes()),
            rng_seed: None,
            core: CoreSettings {
                heartbeat_timeout_ms: self.broker.heartbeat_timeout_ms,
                worker_retention_ms: self.broker.worker_retention_ms,
                log_lines_per_execution_max: self.broker.log_lines_per_execution_max,
                retention_ms_default: self.broker.retention_ms_default,
            },
        })
    }

    /// The effective configuration as TOML, with every secret replaced by
    /// [`REDACTED`]. This is what `taskforge server --print-config` prints. Fails only for
    /// an integer beyond TOML's range (over `i64::MAX`), which [`Config::load`] never
    /// produces.
    pub fn to_toml_redacted(&self) -> Result<String, toml::ser::Error> {
        let mut redacted = self.clone();
        if redacted.broker.key_pepper.is_some() {
            redacted.broker.key_pepper = Some(Secret::new(REDACTED));
        }
        if redacted.broker.root_token.is_some() {
            redacted.broker.root_token = Some(Secret::new(REDACTED));
        }
        toml::to_string_pretty(&redacted)
    }
}

fn parse_default_addr(text: &str) -> SocketAddr {
    match text.parse() {
        Ok(addr) => addr,
        Err(error) => unreachable!("built-in address {text:?} is valid: {error}"),
    }
}

fn read_config_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileRead {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str::<toml::Table>(&text).map_err(|error| ConfigError::FileContent {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// The environment: flag, else variable (process, then `.env`), else the file's
/// `environment` key, else development.
fn resolve_environment(
    sources: &ConfigSources,
    file_table: Option<&toml::Table>,
) -> Result<Environment, ConfigError> {
    let flag = sources
        .flags
        .iter()
        .rev()
        .find(|(key, _)| key == "environment");
    let (source_name, text) = if let Some((_, value)) = flag {
        ("--env".to_string(), value.as_str())
    } else if let Some(value) = sources.environment.get("TASKFORGE_ENV") {
        ("TASKFORGE_ENV".to_string(), value.as_str())
    } else if let Some(value) = sources.dotenv.get("TASKFORGE_ENV") {
        (".env TASKFORGE_ENV".to_string(), value.as_str())
    } else if let Some(value) = file_table.and_then(|table| table.get("environment")) {
        let text = value.as_str().ok_or_else(|| ConfigError::Value {
            source_name: "config file key environment".into(),
            message: "must be a string".into(),
        })?;
        ("config file key environment".to_string(), text)
    } else {
        return Ok(Environment::Development);
    };
    text.parse().map_err(|message| ConfigError::Value {
        source_name,
        message,
    })
}

/// Overlays `overlay` on `base`: tables merge key by key, anything else replaces.
fn merge_tables(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge_tables(base_table, overlay_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Sets `setting` in `table` from its string form, read according to its kind.
fn set_from_string(
    table: &mut toml::Table,
    setting: &Setting,
    text: &str,
    source_name: &str,
) -> Result<(), ConfigError> {
    let value =
        match setting.kind {
            SettingKind::Text => toml::Value::String(text.to_string()),
            SettingKind::Integer => {
                let number = text.trim().replace('_', "").parse::<i64>().map_err(|_| {
                    ConfigError::Value {
                        source_name: source_name.to_string(),
                        message: format!("{text:?} is not a whole number"),
                    }
                })?;
                toml::Value::Integer(number)
            }
        };
    let mut path = setting.key.split('.').peekable();
    let mut current = table;
    while let Some(part) = path.next() {
        if path.peek().is_none() {
            current.insert(part.to_string(), value);
            return Ok(());
        }
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::Value {
                    source_name: source_name.to_string(),
                    message: format!("{part} is not a table in the config file"),
                })
            }
        };
    }
    Ok(())
}

/// Why a merged table did not deserialize into a [`Config`].
struct TableError {
    /// The dotted key the error is about, when it can be told.
    key: Option<String>,
    /// What serde reported.
    message: String,
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn config_from_table(table: toml::Table) -> Result<Config, TableError> {
    // Through text, so that an error carries a span that locates its key.
    let text = toml::to_string(&table).map_err(|error| TableError {
        key: None,
        message: error.to_string(),
    })?;
    toml::from_str::<Config>(&text).map_err(|error| TableError {
        key: error.span().and_then(|span| key_at(&text, span.start)),
        message: error.message().to_string(),
    })
}

/// The dotted key of the `key = value` line containing byte `offset` of `text`, found from
/// that line and the `[section]` header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let section = before[..line_start]
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix('[')?.strip_suffix(']'));
    Some(match section {
        Some(section) => format!("{section}.{}", key.trim()),
        None => key.trim().to_string(),
    })
}

/// The flags of `taskforge server` that set configuration: one per entry of [`SETTINGS`],
/// plus `--set KEY=VALUE` for any setting by its file key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingFlags {
    /// (setting key, value) pairs in the order given.
    pub values: Vec<(String, String)>,
}

/// Id of the repeatable `--set KEY=VALUE` flag.
const SET_FLAG: &str = "set";

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<SettingFlags, clap::Error> {
        let mut values = Vec::new();
        if let Some(assignments) = matches.get_many::<String>(SET_FLAG) {
            for assignment in assignments {
                let Some((key, value)) = assignment.split_once('=') else {
                    return Err(clap::Error::raw(
                        clap::error::ErrorKind::InvalidValue,
                        format!("--set expects KEY=VALUE, got {assignment:?}"),
                    ));
                };
                values.push((key.trim().to_string(), value.to_string()));
            }
        }
        // Dedicated flags come after `--set`, so they win over it.
        for setting in SETTINGS {
            if let Some(value) = matches.get_one::<String>(setting.flag) {
                values.push((setting.key.to_string(), value.clone()));
            }
        }
        Ok(SettingFlags { values })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = SettingFlags::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for SettingFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        let command = command.arg(
            clap::Arg::new(SET_FLAG)
                .long(SET_FLAG)
                .value_name("KEY=VALUE")
                .action(clap::ArgAction::Append)
                .help("Sets any setting by its config-file key, e.g. server.idle_timeout_ms=60000"),
        );
        SETTINGS.iter().fold(command, |command, setting| {
            command.arg(
                clap::Arg::new(setting.flag)
                    .long(setting.flag)
                    .value_name(if setting.kind == SettingKind::Integer {
                        "N"
                    } else {
                        "VALUE"
                    })
                    .help(format!("{} [env: {}]", setting.help, setting.env_var)),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        SettingFlags::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn sources() -> ConfigSources {
        ConfigSources::default()
    }

    fn variables(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write config");
        file
    }

    fn invalid_key(error: ConfigError) -> &'static str {
        match error {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected an Invalid error, got {other}"),
        }
    }

    #[test]
    fn defaults_are_development_and_valid() {
        let config = Config::load(&sources()).expect("defaults load");
        assert_eq!(config, Config::defaults(Environment::Development));
        assert_eq!(config.server.listen_addr.to_string(), LISTEN_ADDR_DEFAULT);
        assert_eq!(
            config.server.admin_listen_addr.to_string(),
            ADMIN_LISTEN_ADDR_DEFAULT
        );
        assert_eq!(config.server.handshake_timeout_ms, 2_000);
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(config.log.level, "info,taskforge=debug");
        assert_eq!(config.fsync_policy().expect("fsync"), FsyncPolicy::Always);
        for environment in [Environment::Staging, Environment::Production] {
            Config::defaults(environment)
                .validate()
                .expect("environment defaults are valid");
        }
    }

    #[test]
    fn production_environment_picks_its_defaults() {
        let mut sources = sources();
        sources.environment = variables(&[("TASKFORGE_ENV", "production")]);
        let config = Config::load(&sources).expect("load");
        assert_eq!(config.environment, Environment::Production);
        assert_eq!(
            config.server.listen_addr.to_string(),
            LISTEN_ADDR_PUBLIC_DEFAULT
        );
        assert_eq!(
            config.server.admin_listen_addr.to_string(),
            ADMIN_LISTEN_ADDR_DEFAULT,
            "the admin port stays on localhost"
        );
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.log.level, "info");
        assert_eq!(config.broker.fsync, "always");
    }

    #[test]
    fn environment_precedence_is_flag_env_dotenv_file() {
        let file = config_file("environment = \"staging\"\n");
        let mut sources = sources();
        sources.config_file = Some(file.path().to_path_buf());
        assert_eq!(
            Config::load(&sources).expect("file").environment,
            Environment::Staging
        );
        sources.dotenv = variables(&[("TASKFORGE_ENV", "production")]);
        assert_eq!(
            Config::load(&sources).expect("dotenv").environment,
            Environment::Production
        );
        sources.environment = variables(&[("TASKFORGE_ENV", "development")]);
        assert_eq!(
            Config::load(&sources).expect("env").environment,
            Environment::Development
        );
        sources.flags = vec![("environment".into(), "staging".into())];
        assert_eq!(
            Config::load(&sources).expect("flag").environment,
            Environment::Staging
        );
    }

    #[test]
    fn every_layer_overrides_the_one_below() {
        let file = config_file(
            "[server]\nconnections_max = 10\nidle_timeout_ms = 10\nwrite_timeout_ms = 10\n\
             frame_bytes_max = 1048576\n",
        );
        let mut sources = sources();
        sources.config_file = Some(file.path().to_path_buf());
        sources.dotenv = variables(&[
            ("TASKFORGE_IDLE_TIMEOUT_MS", "20"),
            ("TASKFORGE_WRITE_TIMEOUT_MS", "20"),
            ("TASKFORGE_FRAME_BYTES_MAX", "2097152"),
        ]);
        sources.environment = variables(&[
            ("TASKFORGE_WRITE_TIMEOUT_MS", "30"),
            ("TASKFORGE_FRAME_BYTES_MAX", "3_145_728"),
        ]);
        sources.flags = vec![("server.frame_bytes_max".into(), "4194304".into())];
        let config = Config::load(&sources).expect("load");
        let defaults = Config::defaults(Environment::Development);
        assert_eq!(
            config.server.handshake_timeout_ms,
            defaults.server.handshake_timeout_ms
        );
        assert_eq!(config.server.connections_max, 10, "file beats defaults");
        assert_eq!(config.server.idle_timeout_ms, 20, ".env beats the file");
        assert_eq!(config.server.write_timeout_ms, 30, "environment beats .env");
        assert_eq!(
            config.server.frame_bytes_max, 4_194_304,
            "flags beat the environment"
        );
    }

    #[test]
    fn file_overrides_environment_defaults() {
        let file = config_file("environment = \"production\"\n[log]\nformat = \"text\"\n");
        let mut sources = sources();
        sources.config_file = Some(file.path().to_path_buf());
        let config = Config::load(&sources).expect("load");
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(
            config.log.level, "info",
            "the rest keeps production defaults"
        );
    }

    #[test]
    fn config_file_can_come_from_the_environment() {
        let file = config_file("[broker]\nbatch_jobs_max = 7\n");
        let mut sources = sources();
        let path = file.path().to_string_lossy().into_owned();
        sources.environment = variables(&[(CONFIG_FILE_ENV_VAR, path.as_str())]);
        assert_eq!(
            Config::load(&sources).expect("load").broker.batch_jobs_max,
            7
        );
    }

    #[test]
    fn dedicated_flags_and_set_flags_parse() {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            settings: SettingFlags,
        }
        let command = <Command as clap::Parser>::try_parse_from([
            "server",
            "--set",
            "server.idle_timeout_ms=60000",
            "--listen",
            "127.0.0.1:9000",
            "--fsync",
            "interval:50",
        ])
        .expect("flags parse");
        let sources = ConfigSources {
            flags: command.settings.values,
            ..ConfigSources::default()
        };
        let config = Config::load(&sources).expect("load");
        assert_eq!(config.server.idle_timeout_ms, 60_000);
        assert_eq!(config.server.listen_addr.to_string(), "127.0.0.1:9000");
        assert_eq!(
            config.fsync_policy().expect("fsync"),
            FsyncPolicy::IntervalMs(50)
        );
    }

    #[test]
    fn every_setting_key_exists_in_config_with_its_kind() {
        let mut config = Config::defaults(Environment::Development);
        config.broker.root_token = Some(Secret::new("tfr_0123456789abcdef"));
        config.broker.key_pepper = Some(Secret::new("tfp_0123456789abcdef"));
        let table = toml::Value::Table(toml::Table::try_from(config).expect("serializes"));
        for setting in SETTINGS {
            let found = setting
                .key
                .split('.')
                .try_fold(&table, |value, part| value.get(part));
            let found = found.unwrap_or_else(|| panic!("{} is not a Config key", setting.key));
            match setting.kind {
                SettingKind::Integer => assert!(found.is_integer(), "{} kind", setting.key),
                SettingKind::Text => assert!(found.is_str(), "{} kind", setting.key),
            }
            assert!(
                setting.env_var.starts_with("TASKFORGE_"),
                "{}",
                setting.env_var
            );
        }
    }

    #[test]
    fn invalid_fsync_policy_is_refused_with_its_names() {
        let mut sources = sources();
        sources.environment = variables(&[("TASKFORGE_FSYNC", "sometimes")]);
        let error = Config::load(&sources).expect_err("invalid fsync");
        let message = error.to_string();
        assert!(message.contains("broker.fsync"), "{message}");
        assert!(message.contains("TASKFORGE_FSYNC"), "{message}");
        assert!(message.contains("--fsync"), "{message}");
        assert!(message.contains("interval:<ms>"), "{message}");
        assert_eq!(invalid_key(error), "broker.fsync");
    }

    #[test]
    fn frame_size_over_the_ceiling_is_refused() {
        let mut config = Config::defaults(Environment::Development);
        config.server.frame_bytes_max = FRAME_BYTES_CEILING + 1;
        let error = config.validate().expect_err("over ceiling");
        assert!(error.to_string().contains("ceiling"), "{error}");
        assert_eq!(invalid_key(error), "server.frame_bytes_max");
        config.server.frame_bytes_max = HANDSHAKE_FRAME_BYTES_MAX - 1;
        assert_eq!(
            invalid_key(config.validate().expect_err("under")),
            "server.frame_bytes_max"
        );
    }

    #[test]
    fn payload_that_does_not_fit_a_frame_is_refused() {
        let mut config = Config::defaults(Environment::Development);
        config.server.frame_bytes_max = 64 * 1024;
        config.broker.payload_bytes_max = 64 * 1024;
        config.broker.result_bytes_max = 1024;
        assert_eq!(
            invalid_key(config.validate().expect_err("payload")),
            "broker.payload_bytes_max"
        );
        config.broker.payload_bytes_max = 1024;
        config.broker.result_bytes_max = u32::MAX;
        assert_eq!(
            invalid_key(config.validate().expect_err("result")),
            "broker.result_bytes_max"
        );
    }

    #[test]
    fn other_invalid_values_are_refused() {
        let valid = Config::defaults(Environment::Development);
        let mut config = valid.clone();
        config.server.connections_max = 0;
        assert_eq!(
            invalid_key(config.validate().expect_err("zero")),
            "server.connections_max"
        );
        let mut config = valid.clone();
        config.server.admin_listen_addr = config.server.listen_addr;
        assert_eq!(
            invalid_key(config.validate().expect_err("same")),
            "server.admin_listen_addr"
        );
        let mut config = valid.clone();
        config.server.listen_addr = "127.0.0.1:0".parse().expect("address");
        config.server.admin_listen_addr = config.server.listen_addr;
        assert!(
            config.validate().is_ok(),
            "two ephemeral ports never collide"
        );
        let mut config = valid.clone();
        config.broker.root_token = Some(Secret::new("short"));
        assert_eq!(
            invalid_key(config.validate().expect_err("short")),
            "broker.root_token"
        );
        let mut config = valid.clone();
        config.log.level = "[not a filter".into();
        assert_eq!(
            invalid_key(config.validate().expect_err("filter")),
            "log.level"
        );
        let mut config = valid.clone();
        config.broker.cache_capacity_bytes = 1;
        assert_eq!(
            invalid_key(config.validate().expect_err("cache")),
            "broker.cache_capacity_bytes"
        );
        let mut config = valid;
        config.broker.journal_checkpoint_bytes = 1;
        assert_eq!(
            invalid_key(config.validate().expect_err("journal")),
            "broker.journal_checkpoint_bytes"
        );
    }

    #[test]
    fn unreadable_values_name_their_source() {
        let mut sources = sources();
        sources.environment = variables(&[("TASKFORGE_CONNECTIONS_MAX", "many")]);
        let message = Config::load(&sources)
            .expect_err("not a number")
            .to_string();
        assert!(
            message.starts_with("TASKFORGE_CONNECTIONS_MAX"),
            "{message}"
        );

        let sources = ConfigSources {
            flags: vec![("server.listen_addr".into(), "nowhere".into())],
            ..ConfigSources::default()
        };
        let error = Config::load(&sources).expect_err("bad address");
        assert!(error.to_string().contains("--listen"), "{error}");
        assert_eq!(invalid_key(error), "server.listen_addr");

        let sources = ConfigSources {
            flags: vec![("server.no_such_thing".into(), "1".into())],
            ..ConfigSources::default()
        };
        let message = Config::load(&sources)
            .expect_err("unknown flag key")
            .to_string();
        assert!(message.contains("no such setting"), "{message}");

        let sources = ConfigSources {
            environment: variables(&[("TASKFORGE_ENV", "prod")]),
            ..ConfigSources::default()
        };
        let message = Config::load(&sources)
            .expect_err("bad environment")
            .to_string();
        assert!(message.contains("TASKFORGE_ENV"), "{message}");
    }

    #[test]
    fn unknown_or_mistyped_file_keys_are_refused() {
        let file = config_file("[server]\nlisten = \"0.0.0.0:1\"\n");
        let mut sources = sources();
        sources.config_file = Some(file.path().to_path_buf());
        let message = Config::load(&sources).expect_err("unknown key").to_string();
        assert!(message.contains("config file"), "{message}");
        assert!(message.contains("listen"), "{message}");

        let file = config_file("[server]\nconnections_max = \"lots\"\n");
        sources.config_file = Some(file.path().to_path_buf());
        let message = Config::load(&sources).expect_err("bad type").to_string();
        assert!(message.contains("config file"), "{message}");
        assert!(message.contains("server.connections_max"), "{message}");

        sources.config_file = Some(PathBuf::from("/nonexistent/taskforge.toml"));
        let message = Config::load(&sources)
            .expect_err("missing file")
            .to_string();
        assert!(message.contains("/nonexistent/taskforge.toml"), "{message}");
    }

    #[test]
    fn print_config_redacts_the_root_token_and_the_key_pepper() {
        let token = "tfr_0123456789abcdef0123456789abcdef";
        let pepper = "tfp_fedcba9876543210fedcba9876543210";
        let mut sources = sources();
        sources.environment = variables(&[
            ("TASKFORGE_ROOT_TOKEN", token),
            ("TASKFORGE_KEY_PEPPER", pepper),
        ]);
        let config = Config::load(&sources).expect("load");
        let printed = config.to_toml_redacted().expect("prints");
        assert!(!printed.contains(pepper), "{printed}");
        assert!(
            !format!("{config:?}").contains(pepper),
            "Debug must not show the pepper"
        );
        assert_eq!(
            config.broker.root_token.as_ref().map(Secret::expose),
            Some(token)
        );
        let printed = config.to_toml_redacted().expect("prints");
        assert!(!printed.contains(token), "{printed}");
        assert!(
            printed.contains(&format!("root_token = \"{REDACTED}\"")),
            "{printed}"
        );
        assert!(
            !format!("{config:?}").contains(token),
            "Debug must not show the token"
        );

        // The printed form is itself a valid config file.
        let reparsed: Config = toml::from_str(&printed).expect("printed config parses");
        assert_eq!(reparsed.server, config.server);
        assert_eq!(reparsed.log, config.log);
    }

    #[test]
    fn dotenv_file_is_read_and_a_missing_one_is_empty() {
        let file = config_file("TASKFORGE_LISTEN=127.0.0.1:7800\n# comment\nOTHER=\"x y\"\n");
        let variables = read_dotenv(file.path()).expect("dotenv");
        assert_eq!(
            variables.get("TASKFORGE_LISTEN").map(String::as_str),
            Some("127.0.0.1:7800")
        );
        assert_eq!(variables.get("OTHER").map(String::as_str), Some("x y"));
        let missing = read_dotenv(Path::new("/nonexistent/.env")).expect("missing is fine");
        assert!(missing.is_empty());
    }

    #[test]
    fn real_environment_beats_dotenv_for_lookups() {
        let sources = ConfigSources {
            dotenv: variables(&[("RUST_LOG", "debug"), ("ONLY_DOTENV", "1")]),
            environment: variables(&[("RUST_LOG", "warn")]),
            ..ConfigSources::default()
        };
        assert_eq!(sources.variable("RUST_LOG"), Some("warn"));
        assert_eq!(sources.variable("ONLY_DOTENV"), Some("1"));
        assert_eq!(sources.variable("MISSING"), None);
    }
}
