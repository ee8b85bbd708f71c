//! Where the CLI connects and with which credentials.
//!
//! Each value comes from the first of: a flag; its environment variable; the selected
//! context of the profile file; the default. The profile file
//! (`$TASKFORGE_PROFILE`, else `$XDG_CONFIG_HOME/taskforge/config.toml`, else
//! `~/.config/taskforge/config.toml`) holds named contexts, like kubectl's:
//!
//! ```toml
//! current_context = "local"
//!
//! [contexts.local]
//! addr = "127.0.0.1:7700"
//! root_token_file = "/srv/taskforge/data/root_token"
//!
//! [contexts.staging]
//! addr = "taskforge.staging.internal:7700"
//! root_token = "..."            # keep this file mode 0600
//! ```
//!
//! `--context NAME` (or `TASKFORGE_CONTEXT`) picks a context; otherwise `current_context`.
//!
//! # Credentials
//! The CLI acts as the root token or as an API key. The first layer that names any
//! credential wins: the flags (`--root-token`, `--root-token-file`, `--api-key`), then the
//! variables (`TASKFORGE_ROOT_TOKEN`, `TASKFORGE_ROOT_TOKEN_FILE`, `TASKFORGE_API_KEY`),
//! then the context (`root_token`, `root_token_file`, `api_key`). Within a layer a token
//! beats its file, and naming both a root token and an API key is a usage error, because
//! which one was meant cannot be guessed.
//!
//! # Project
//! `--project ID`, else `TASKFORGE_PROJECT`, else the context's `project` names the project
//! the session works in (the handshake's project); without one, the root token works in the
//! default project 1 and an API key in its own.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use taskforge::client::{Client, ClientError, ClientOptions};
use taskforge_protocol::{Credentials, ProjectId};

use super::CliError;

/// Address used when no flag, variable or context names one: the broker's default.
pub const ADDR_DEFAULT: &str = "127.0.0.1:7700";

/// Default time one request may take, in ms. Bulk steps move up to `BULK_JOBS_MAX` jobs
/// each, which takes well under this.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// Time connecting plus the handshake may take, in ms.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Largest profile file read, in bytes; a real one is a few hundred bytes.
pub const PROFILE_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Largest token file read, in bytes; tokens are well under 100 bytes.
pub const TOKEN_FILE_BYTES_MAX: u64 = 4 * 1024;

/// Environment variable naming the profile file.
pub const PROFILE_ENV_VAR: &str = "TASKFORGE_PROFILE";

/// Environment variable holding an API key.
pub const API_KEY_ENV_VAR: &str = "TASKFORGE_API_KEY";

/// Environment variable naming the project to work in.
pub const PROJECT_ENV_VAR: &str = "TASKFORGE_PROJECT";

/// Connection flags of every online command.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Broker address, host:port [env: TASKFORGE_ADDR] [default: 127.0.0.1:7700]
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Root token; visible in the process list, so prefer TASKFORGE_ROOT_TOKEN or a file
    /// [env: TASKFORGE_ROOT_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub root_token: Option<String>,
    /// File holding the root token (e.g. the broker's <data dir>/root_token)
    /// [env: TASKFORGE_ROOT_TOKEN_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    pub root_token_file: Option<PathBuf>,
    /// API key `tf_<key id>_<secret>`, to act as that key instead of the root token;
    /// visible in the process list, so prefer TASKFORGE_API_KEY [env: TASKFORGE_API_KEY]
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Project id to work in (and, for `key create|list`, whose keys)
    /// [env: TASKFORGE_PROJECT] [default: the credential's own: 1 for the root token]
    #[arg(long, global = true, value_name = "ID")]
    pub project: Option<ProjectId>,
    /// Context of the profile file to use [env: TASKFORGE_CONTEXT]
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Profile file [env: TASKFORGE_PROFILE] [default: ~/.config/taskforge/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Give up on a request after this many ms
    #[arg(long, global = true, value_name = "MS", default_value_t = REQUEST_TIMEOUT_MS_DEFAULT)]
    pub timeout_ms: u64,
}

/// The profile file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    /// The context used when none is named.
    current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    contexts: BTreeMap<String, Context>,
}

/// One named context.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Context {
    /// Broker address.
    addr: Option<String>,
    /// Root token in clear (the file should then be mode 0600).
    root_token: Option<String>,
    /// File holding the root token.
    root_token_file: Option<PathBuf>,
    /// API key in clear (the file should then be mode 0600).
    api_key: Option<String>,
    /// Project id to work in.
    project: Option<ProjectId>,
}

/// A resolved connection target.
#[derive(Debug, Clone)]
pub struct Target {
    /// host:port.
    pub addr: String,
    /// What the hello presents.
    pub credentials: Credentials,
    /// The project the hello names; `None`: the credential's own.
    pub project: Option<ProjectId>,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

/// A variable's value if set and not blank.
fn variable(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The default profile path, if a home or config directory is known.
fn default_profile_path() -> Option<PathBuf> {
    if let Some(config_home) = std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(config_home).join("taskforge/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(".config/taskforge/config.toml"))
}

/// Reads at most `limit` bytes of `path` as text.
fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<String, CliError> {
    let file = std::fs::File::open(path).map_err(|error| {
        CliError::usage(format!(
            "cannot open the {what} {}: {error}",
            path.display()
        ))
    })?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|error| {
            CliError::usage(format!(
                "cannot read the {what} {}: {error}",
                path.display()
            ))
        })?;
    if text.len() as u64 > limit {
        return Err(CliError::usage(format!(
            "the {what} {} is larger than {limit} bytes; is it the right file?",
            path.display()
        )));
    }
    Ok(text)
}

/// Warns when a profile holding a token in clear can be read by others.
#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(metadata) = std::fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "taskforge: warning: {} holds a token and is readable by other users; run \
                 `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

impl ConnectionArgs {
    /// Loads the selected context: `None` when no profile file exists and none was asked
    /// for by name.
    fn context(&self) -> Result<(Option<Context>, Option<PathBuf>), CliError> {
        let named_file = self
            .profile
            .clone()
            .or_else(|| variable(PROFILE_ENV_VAR).map(PathBuf::from));
        let context_name = self
            .context
            .clone()
            .or_else(|| variable("TASKFORGE_CONTEXT"));
        let path = match named_file.clone().or_else(default_profile_path) {
            Some(path) => path,
            None if context_name.is_some() => {
                return Err(CliError::usage(
                    "--context needs a profile file, but HOME is not set; pass --profile FILE",
                ))
            }
            None => return Ok((None, None)),
        };
        if !path.exists() {
            if named_file.is_some() || context_name.is_some() {
                return Err(CliError::usage(format!(
                    "the profile file {} does not exist; create it with `current_context = \
                     \"NAME\"` and a `[contexts.NAME]` table holding `addr` and \
                     `root_token_file` (or `root_token`, or `api_key`)",
                    path.display()
                )));
            }
            return Ok((None, None));
        }
        let text = read_bounded(&path, PROFILE_FILE_BYTES_MAX, "profile file")?;
        let profile: ProfileFile = toml::from_str(&text).map_err(|error| {
            CliError::usage(format!(
                "the profile file {} is invalid: {error}",
                path.display()
            ))
        })?;
        let Some(name) = context_name.or(profile.current_context.clone()) else {
            return Ok((None, Some(path)));
        };
        match profile.contexts.get(&name) {
            Some(context) => {
                if context.root_token.is_some() || context.api_key.is_some() {
                    warn_if_readable_by_others(&path);
                }
                Ok((Some(context.clone()), Some(path)))
            }
            None => {
                let known: Vec<&str> = profile.contexts.keys().map(String::as_str).collect();
                Err(CliError::usage(format!(
                    "the profile file {} has no context {name:?} (it has: {})",
                    path.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        }
    }

    /// Works out the address and credentials.
    pub fn resolve(&self) -> Result<Target, CliError> {
        let (context, profile_path) = self.context()?;
        let context = context.unwrap_or_default();
        let addr = self
            .addr
            .clone()
            .or_else(|| variable("TASKFORGE_ADDR"))
            .or(context.addr.clone())
            .unwrap_or_else(|| ADDR_DEFAULT.to_string());
        let credentials = match self.flag_credentials()? {
            Some(credentials) => credentials,
            None => match environment_credentials()? {
                Some(credentials) => credentials,
                None => match context_credentials(&context)? {
                    Some(credentials) => credentials,
                    None => {
                        let profile = profile_path
                            .or_else(default_profile_path)
                            .map_or("the profile file".to_string(), |path| {
                                path.display().to_string()
                            });
                        return Err(CliError::usage(format!(
                            "no credentials: pass --root-token-file FILE (the broker writes \
                             <data dir>/root_token) or set TASKFORGE_ROOT_TOKEN; to act as an \
                             API key set TASKFORGE_API_KEY; or add root_token_file or api_key to \
                             a context in {profile}"
                        )));
                    }
                },
            },
        };
        let project = match self.project {
            Some(project) => Some(project),
            None => match variable(PROJECT_ENV_VAR) {
                Some(text) => Some(text.trim().parse::<ProjectId>().map_err(|_| {
                    CliError::usage(format!(
                        "{PROJECT_ENV_VAR}={text:?} is not a project id; `taskforge project \
                         list --org ID` shows the ids"
                    ))
                })?),
                None => context.project,
            },
        };
        Ok(Target {
            addr,
            credentials,
            project,
            request_timeout: Duration::from_millis(self.timeout_ms),
        })
    }

    /// The credential the flags name, if any.
    fn flag_credentials(&self) -> Result<Option<Credentials>, CliError> {
        let root = match (&self.root_token, &self.root_token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(file)) => Some(read_token_file(file)?),
            (None, None) => None,
        };
        one_credential(root, self.api_key.clone(), "--root-token", "--api-key")
    }
}

/// The credential the environment names, if any.
fn environment_credentials() -> Result<Option<Credentials>, CliError> {
    let root = match variable("TASKFORGE_ROOT_TOKEN") {
        Some(token) => Some(token),
        None => match variable("TASKFORGE_ROOT_TOKEN_FILE") {
            Some(file) => Some(read_token_file(Path::new(&file))?),
            None => None,
        },
    };
    one_credential(
        root,
        variable(API_KEY_ENV_VAR),
        "TASKFORGE_ROOT_TOKEN",
        API_KEY_ENV_VAR,
    )
}

/// The credential the selected context names, if any.
fn context_credentials(context: &Context) -> Result<Option<Credentials>, CliError> {
    let root = match (&context.root_token, &context.root_token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(file)) => Some(read_token_file(file)?),
        (None, None) => None,
    };
    one_credential(
        root,
        context.api_key.clone(),
        "the context's root_token",
        "its api_key",
    )
}

/// The one credential of a layer: a root token or an API key, not both.
fn one_credential(
    root_token: Option<String>,
    api_key: Option<String>,
    root_source: &str,
    key_source: &str,
) -> Result<Option<Credentials>, CliError> {
    match (root_token, api_key) {
        (Some(_), Some(_)) => Err(CliError::usage(format!(
            "both {root_source} and {key_source} are set; keep only the one to act as"
        ))),
        (Some(token), None) => Ok(Some(Credentials::RootToken(token))),
        (None, Some(key)) => {
            let key = key.trim().to_string();
            if !key.starts_with("tf_") {
                return Err(CliError::usage(format!(
                    "{key_source} does not look like an API key (tf_<key id>_<secret>); use \
                     the secret `taskforge key create` printed"
                )));
            }
            Ok(Some(Credentials::ApiKey(key)))
        }
        (None, None) => Ok(None),
    }
}

/// Reads a token file, trimming the trailing newline.
fn read_token_file(path: &Path) -> Result<String, CliError> {
    let text = read_bounded(path, TOKEN_FILE_BYTES_MAX, "token file")?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CliError::usage(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_string())
}

impl Target {
    /// Connects and performs the handshake, once (no reconnect loop: a person is waiting).
    pub async fn connect(&self) -> Result<Client, CliError> {
        let mut options = ClientOptions::new(self.credentials.clone());
        options.client_name = "taskforge-cli".into();
        options.project_id = self.project;
        options.request_timeout = self.request_timeout;
        options.connect_timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
        options.reconnect.attempts_max = 1;
        Client::connect(&self.addr, options)
            .await
            .map_err(|error| match error {
                ClientError::Io(error) => CliError::connection(format!(
                    "cannot connect to the broker at {}: {error}. Is it running? Check --addr, \
                     TASKFORGE_ADDR or the context's addr",
                    self.addr
                )),
                ClientError::Timeout => CliError::connection(format!(
                    "no handshake with {} within {CONNECT_TIMEOUT_MS} ms. Is it a TaskForge \
                     broker? Check --addr, TASKFORGE_ADDR or the context's addr",
                    self.addr
                )),
                other => CliError::from(other),
            })
    }
}
