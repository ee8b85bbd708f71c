//! The root (super-admin) token: from configuration, or generated once into the data
//! directory.
//!
//! A generated token is written with mode 0600 through a temporary file that is then
//! linked into place, so a reader never sees a half-written token and two starts racing
//! on a fresh directory agree on one token. Its location is logged; the token never is.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::Secret;

/// Name of the token file inside the data directory.
pub const ROOT_TOKEN_FILE: &str = "root_token";

/// Prefix of generated root tokens, so a leaked one is recognizable (secret scanners).
pub const ROOT_TOKEN_PREFIX: &str = "tfr_";

/// Random bytes in a generated token: 256 bits, beyond any guessing.
pub const ROOT_TOKEN_RANDOM_BYTES: usize = 32;

/// Permissions of the token file: owner read/write only.
pub const ROOT_TOKEN_FILE_MODE: u32 = 0o600;

/// Largest token file read back; a real one is 69 bytes.
const ROOT_TOKEN_FILE_BYTES_MAX: u64 = 4 * 1024;

/// Where the root token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootTokenSource {
    /// `broker.root_token` / `TASKFORGE_ROOT_TOKEN` / `--root-token`.
    Configured,
    /// Read from this file, written by an earlier start.
    File(PathBuf),
    /// Generated now and written to this file.
    Generated(PathBuf),
}

/// The resolved root token.
#[derive(Clone)]
pub struct RootToken {
    /// The token in clear, for the broker and for the caller of `start` (tests).
    secret: Secret,
    /// Where it came from.
    pub source: RootTokenSource,
}

impl RootToken {
    /// The token in clear.
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }
}

impl std::fmt::Debug for RootToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootToken")
            .field("secret", &self.secret)
            .field("source", &self.source)
            .finish()
    }
}

/// Why the root token could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum RootTokenError {
    /// The token file or its directory could not be read or written.
    #[error("root token file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The token file exists but does not hold a usable token.
    #[error("root token file {path} is {problem}; delete it to have a new token generated")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The OS random number generator failed.
    #[error("cannot generate a root token: the OS random generator failed: {0}")]
    Random(getrandom::Error),
}

/// The root token: `configured` if set; else the one in `<data_dir>/root_token`; else a
/// new one, written there with mode 0600. Logs the file's location once per call; never
/// the token.
pub fn resolve_root_token(
    configured: Option<&Secret>,
    data_dir: &Path,
) -> Result<RootToken, RootTokenError> {
    resolve_secret(&ROOT_TOKEN_KIND, configured, data_dir)
}

/// The pepper that keys the hashes of API key secrets: from configuration, or generated
/// once into `<data_dir>/key_pepper` exactly like the root token. It is never stored in
/// the database, so a stolen database alone cannot be used to check guessed secrets.
pub fn resolve_key_pepper(
    configured: Option<&Secret>,
    data_dir: &Path,
) -> Result<RootToken, RootTokenError> {
    resolve_secret(&KEY_PEPPER_KIND, configured, data_dir)
}

/// A secret the server keeps in a file of the data directory when not configured.
struct SecretKind {
    /// File name in the data directory.
    file_name: &'static str,
    /// Prefix of generated values, so a value says what it is.
    prefix: &'static str,
    /// Name in log lines.
    label: &'static str,
}

const ROOT_TOKEN_KIND: SecretKind = SecretKind {
    file_name: ROOT_TOKEN_FILE,
    prefix: ROOT_TOKEN_PREFIX,
    label: "root token",
};

const KEY_PEPPER_KIND: SecretKind = SecretKind {
    file_name: KEY_PEPPER_FILE,
    prefix: KEY_PEPPER_PREFIX,
    label: "API key pepper",
};

/// File name of the generated API key pepper.
pub const KEY_PEPPER_FILE: &str = "key_pepper";

/// Prefix of a generated pepper.
pub const KEY_PEPPER_PREFIX: &str = "tfp_";

fn resolve_secret(
    kind: &SecretKind,
    configured: Option<&Secret>,
    data_dir: &Path,
) -> Result<RootToken, RootTokenError> {
    if let Some(secret) = configured {
        return Ok(RootToken {
            secret: secret.clone(),
            source: RootTokenSource::Configured,
        });
    }
    let path = data_dir.join(kind.file_name);
    if let Some(secret) = read_token_file(&path)? {
        tracing::info!(path = %path.display(), "using the {} stored in the data directory", kind.label);
        return Ok(RootToken {
            secret,
            source: RootTokenSource::File(path),
        });
    }
    let generated = generate_token(kind.prefix)?;
    let secret = match write_token_file(data_dir, &path, &generated)? {
        Written::Ours => {
            tracing::info!(
                path = %path.display(),
                "generated a {}; it is in this file (owner-only permissions)",
                kind.label
            );
            generated
        }
        // Another process wrote one first; use it, so both agree.
        Written::Theirs => match read_token_file(&path)? {
            Some(secret) => secret,
            None => return Err(bad_file(&path, "empty")),
        },
    };
    let source = RootTokenSource::Generated(path);
    Ok(RootToken { secret, source })
}

fn bad_file(path: &Path, problem: &'static str) -> RootTokenError {
    RootTokenError::BadFile {
        path: path.to_path_buf(),
        problem,
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RootTokenError + '_ {
    move |source| RootTokenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The token in `path`, or `None` when there is no such file.
fn read_token_file(path: &Path) -> Result<Option<Secret>, RootTokenError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path)(error)),
    };
    if !metadata.is_file() {
        return Err(bad_file(path, "not a regular file"));
    }
    if metadata.len() > ROOT_TOKEN_FILE_BYTES_MAX {
        return Err(bad_file(path, "too large to be a token"));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the root token file is readable by other users; chmod 600 it"
        );
    }
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(bad_file(path, "empty"));
    }
    if token.chars().any(char::is_whitespace) {
        return Err(bad_file(path, "not a single token (it contains spaces)"));
    }
    Ok(Some(Secret::new(token)))
}

/// `prefix` followed by 32 random bytes from the OS, in hex.
fn generate_token(prefix: &str) -> Result<Secret, RootTokenError> {
    let mut random = [0u8; ROOT_TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut random).map_err(RootTokenError::Random)?;
    Ok(Secret::new(format!("{prefix}{}", hex::encode(random))))
}

/// Whose token ended up in the file.
enum Written {
    /// This call's.
    Ours,
    /// One that was already there.
    Theirs,
}

/// Writes `token` to `path` atomically: a temporary file created 0600 in the same
/// directory, synced, then hard-linked to `path` (which, unlike rename, never replaces a
/// token another process put there), then the directory synced.
fn write_token_file(
    data_dir: &Path,
    path: &Path,
    token: &Secret,
) -> Result<Written, RootTokenError> {
    std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
    let temporary = data_dir.join(format!(".{ROOT_TOKEN_FILE}.{}.tmp", std::process::id()));
    let result = write_and_link(&temporary, path, token);
    // The temporary name is ours alone; remove it whatever happened.
    let _ = std::fs::remove_file(&temporary);
    let written = result?;
    std::fs::File::open(data_dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error(data_dir))?;
    Ok(written)
}

fn write_and_link(
    temporary: &Path,
    path: &Path,
    token: &Secret,
) -> Result<Written, RootTokenError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(ROOT_TOKEN_FILE_MODE)
        .open(temporary)
        .map_err(io_error(temporary))?;
    // The mode above is filtered by the umask; make sure it is exactly 0600.
    file.set_permissions(std::fs::Permissions::from_mode(ROOT_TOKEN_FILE_MODE))
        .map_err(io_error(temporary))?;
    file.write_all(format!("{}\n", token.expose()).as_bytes())
        .map_err(io_error(temporary))?;
    file.sync_all().map_err(io_error(temporary))?;
    match std::fs::hard_link(temporary, path) {
        Ok(()) => Ok(Written::Ours),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(Written::Theirs),
        Err(error) => Err(io_error(path)(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects everything a tracing subscriber writes.
    #[derive(Clone, Default)]
    struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

    impl CapturedLogs {
        fn text(&self) -> String {
            let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl std::io::Write for CapturedLogs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Serializes the tests that log. tracing caches per call site whether anyone listens;
    /// a call site first reached on a thread without a subscriber, while another test
    /// installs one, can stay cached as silent and make a capture miss its line.
    static LOGGING_TESTS: Mutex<()> = Mutex::new(());

    /// Runs `run` with a subscriber that captures everything logged on this thread.
    fn with_captured_logs<T>(run: impl FnOnce() -> T) -> (T, String) {
        let _serialized = LOGGING_TESTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let result = tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            run()
        });
        (result, logs.text())
    }

    #[test]
    fn generated_token_is_private_reused_and_never_logged() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (first, logs) = with_captured_logs(|| resolve_root_token(None, data_dir.path()));
        let first = first.expect("generated");
        let path = data_dir.path().join(ROOT_TOKEN_FILE);
        assert_eq!(first.source, RootTokenSource::Generated(path.clone()));
        assert!(first.expose().starts_with(ROOT_TOKEN_PREFIX));
        assert_eq!(
            first.expose().len(),
            ROOT_TOKEN_PREFIX.len() + 2 * ROOT_TOKEN_RANDOM_BYTES
        );

        let mode = std::fs::metadata(&path)
            .expect("token file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, ROOT_TOKEN_FILE_MODE, "mode is {mode:o}");
        assert!(
            logs.contains(&path.display().to_string()),
            "location logged: {logs}"
        );
        assert!(!logs.contains(first.expose()), "token logged: {logs}");
        assert!(
            !format!("{first:?}").contains(first.expose()),
            "Debug shows the token"
        );

        let (second, logs) = with_captured_logs(|| resolve_root_token(None, data_dir.path()));
        let second = second.expect("read back");
        assert_eq!(second.expose(), first.expose(), "the token is reused");
        assert_eq!(second.source, RootTokenSource::File(path));
        assert!(!logs.contains(first.expose()), "token logged: {logs}");

        let leftovers: Vec<_> = std::fs::read_dir(data_dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(ROOT_TOKEN_FILE)]);
    }

    #[test]
    fn configured_token_wins_and_writes_nothing() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let configured = Secret::new("tfr_configured_token_value");
        let token = resolve_root_token(Some(&configured), data_dir.path()).expect("configured");
        assert_eq!(token.expose(), "tfr_configured_token_value");
        assert_eq!(token.source, RootTokenSource::Configured);
        assert!(!data_dir.path().join(ROOT_TOKEN_FILE).exists());
    }

    #[test]
    fn missing_data_dir_is_created_and_distinct_dirs_get_distinct_tokens() {
        let parent = tempfile::tempdir().expect("temp dir");
        let (first, _) =
            with_captured_logs(|| resolve_root_token(None, &parent.path().join("a/b")));
        let (second, _) = with_captured_logs(|| resolve_root_token(None, &parent.path().join("c")));
        let (first, second) = (first.expect("first"), second.expect("second"));
        assert_ne!(first.expose(), second.expose());
    }

    #[test]
    fn unusable_token_files_are_reported() {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let path = data_dir.path().join(ROOT_TOKEN_FILE);
        std::fs::write(&path, "  \n").expect("write");
        let (error, _) = with_captured_logs(|| resolve_root_token(None, data_dir.path()));
        let error = error.expect_err("empty file");
        assert!(
            matches!(
                error,
                RootTokenError::BadFile {
                    problem: "empty",
                    ..
                }
            ),
            "{error}"
        );
        std::fs::write(&path, "tfr_abc\n").expect("write");
        let (token, _) = with_captured_logs(|| resolve_root_token(None, data_dir.path()));
        let token = token.expect("trimmed");
        assert_eq!(token.expose(), "tfr_abc");
    }
}
