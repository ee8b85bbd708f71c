//! What commands print: tables and key/value lists for people, JSON for scripts.
//!
//! With `--json` every command prints exactly one JSON document on stdout (the protocol's
//! response type, serialized with serde) and nothing else there; messages and progress go
//! to stderr.

use comfy_table::{presets, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use taskforge_protocol::{JobCounts, JobState};

use super::CliError;

/// Bytes of a payload or result shown as text before it is cut.
pub const BYTES_SHOWN_MAX: usize = 1024;

/// Bytes of binary data shown as hex.
pub const HEX_SHOWN_BYTES_MAX: usize = 32;

/// How a command prints.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of tables.
    pub json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON.
    pub fn json<T: Serialize>(&self, value: &T) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|error| CliError::failed(format!("cannot encode JSON: {error}")))?;
        println!("{text}");
        Ok(())
    }

    /// Prints `value` as JSON with `--json`, else what `human` prints.
    pub fn print<T: Serialize>(&self, value: &T, human: impl FnOnce(&T)) -> Result<(), CliError> {
        if self.json {
            self.json(value)
        } else {
            human(value);
            Ok(())
        }
    }

    /// A progress bar on stderr for `total` items, hidden with `--json` (and by indicatif
    /// when stderr is not a terminal).
    pub fn progress(&self, total: u64, what: &str) -> ProgressBar {
        if self.json {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    }
}

/// A table with the given header and no borders (columns separated by spaces, like
/// kubectl's).
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().copied());
    table
}

/// Prints field/value pairs, one per line, aligned.
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        println!("{name:<width$}  {value}");
    }
}

/// A time in ms since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms"),
            |time| time.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
        )
}

/// An optional time, `-` when absent.
pub fn optional_time(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_string(), time)
}

/// An optional value, `-` when absent.
pub fn optional<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}

/// Bytes for a person: the text if it is printable UTF-8 (cut at [`BYTES_SHOWN_MAX`]),
/// else the size and a hex prefix.
pub fn bytes(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            if text.len() <= BYTES_SHOWN_MAX {
                text.to_string()
            } else {
                let mut cut = BYTES_SHOWN_MAX;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("{}… ({} bytes)", &text[..cut], data.len())
            }
        }
        _ => {
            let shown = &data[..data.len().min(HEX_SHOWN_BYTES_MAX)];
            let more = if data.len() > shown.len() { "…" } else { "" };
            format!(
                "<{} bytes of binary> {}{more}",
                data.len(),
                hex::encode(shown)
            )
        }
    }
}

/// The column names of [`count_cells`], in the same order.
pub const COUNT_COLUMNS: [&str; 7] = [
    "SCHEDULED",
    "READY",
    "LEASED",
    "SUCCEEDED",
    "DEAD",
    "CANCELLED",
    "EXPIRED",
];

/// A queue's counts as table cells (blocked is left out until dependencies exist).
pub fn count_cells(counts: &JobCounts) -> [String; 7] {
    [
        counts.scheduled,
        counts.ready,
        counts.leased,
        counts.succeeded,
        counts.dead,
        counts.cancelled,
        counts.expired,
    ]
    .map(|count| count.to_string())
}

/// Parses a state name (`ready`, `dead`, ...).
pub fn parse_state(text: &str) -> Result<JobState, String> {
    JobState::ALL
        .iter()
        .copied()
        .find(|state| state.name() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = JobState::ALL.iter().map(|state| state.name()).collect();
            format!("unknown state {text:?}; one of {}", names.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_show_text_or_a_hex_prefix() {
        assert_eq!(bytes(b"hello"), "hello");
        assert_eq!(bytes(&[0, 1, 2]), "<3 bytes of binary> 000102");
        let long = "é".repeat(BYTES_SHOWN_MAX);
        assert!(bytes(long.as_bytes()).ends_with(&format!("({} bytes)", long.len())));
    }

    #[test]
    fn states_parse_by_name() {
        assert_eq!(parse_state("dead"), Ok(JobState::Dead));
        assert!(parse_state("failed").is_err());
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00.000Z");
    }
}
