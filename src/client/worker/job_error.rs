//! [`JobError`]: what a handler returns when a job failed.

use taskforge_protocol::Retry;

/// A handler's failure: the message stored with the job, optional details (a stack trace,
/// say) stored in the execution record, and whether to retry it.
///
/// Any `std::error::Error` converts into one (retried with backoff, its chain of sources
/// as details), so `?` works in handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// What went wrong; truncated to `ERROR_MESSAGE_BYTES_MAX` bytes when sent.
    pub(super) message: String,
    /// Whether and when the broker retries the job.
    pub(super) retry: Retry,
    /// More about it; truncated to `ERROR_DETAILS_BYTES_MAX` bytes when sent.
    pub(super) details: Option<String>,
}

impl JobError {
    /// A failure retried after the job's backoff, if attempts remain.
    pub fn new(message: impl Into<String>) -> JobError {
        JobError {
            message: message.into(),
            retry: Retry::Backoff,
            details: None,
        }
    }

    /// A failure that makes the job dead at once (bad input that no retry fixes).
    pub fn permanent(message: impl Into<String>) -> JobError {
        JobError::new(message).with_retry(Retry::Never)
    }

    /// A failure retried at `run_at_ms` (ms since the Unix epoch), if attempts remain.
    pub fn retry_at(message: impl Into<String>, run_at_ms: u64) -> JobError {
        JobError::new(message).with_retry(Retry::At(run_at_ms))
    }

    /// The same failure with another retry wish.
    pub fn with_retry(mut self, retry: Retry) -> JobError {
        self.retry = retry;
        self
    }

    /// The same failure with details (a stack trace, the input that failed...), sent in
    /// FAIL's `error_details` and shown by `taskforge job executions`.
    pub fn with_details(mut self, details: impl Into<String>) -> JobError {
        self.details = Some(details.into());
        self
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether and when the broker retries the job.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// More about the failure, if given.
    pub fn details(&self) -> Option<&str> {
        self.details.as_deref()
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for JobError {
    fn from(error: E) -> JobError {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            causes.push(format!("caused by: {cause}"));
            source = cause.source();
        }
        let job_error = JobError::new(error.to_string());
        if causes.is_empty() {
            job_error
        } else {
            job_error.with_details(causes.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_errors_convert_from_std_errors_and_keep_their_retry() {
        let parse_error = "x".parse::<u32>().expect_err("not a number");
        let error = JobError::from(parse_error);
        assert_eq!(error.retry(), Retry::Backoff);
        assert_eq!(error.message(), "invalid digit found in string");
        assert_eq!(error.details(), None);
        assert_eq!(JobError::retry_at("later", 42).retry(), Retry::At(42));
        assert_eq!(
            JobError::new("x").with_retry(Retry::Never),
            JobError::permanent("x")
        );
    }

    #[test]
    fn details_come_from_the_builder_or_the_source_chain() {
        let error = JobError::permanent("bad row").with_details("row 7: missing id");
        assert_eq!(error.details(), Some("row 7: missing id"));
        assert_eq!(error.retry(), Retry::Never);
        let io = std::io::Error::other("disk on fire");
        let wrapped = std::io::Error::new(std::io::ErrorKind::NotFound, io);
        // io::Error's source is the wrapped error's source, so test with a chain of our own.
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("upload failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = JobError::from(Outer(wrapped));
        assert_eq!(error.message(), "upload failed");
        assert!(
            error
                .details()
                .is_some_and(|details| details.starts_with("caused by: disk on fire")),
            "{error:?}"
        );
    }
}
