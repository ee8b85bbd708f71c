//! A connection's requests in flight. They run concurrently inside the connection's own
//! task, so that a long FETCH never delays a PING on the same connection, without a task
//! spawn, a scheduler hand-off and a wake-up per request. A panic inside the broker ends
//! one request (answered INTERNAL), not the connection or the server.
//!
//! The price: requests progress only while the session loop polls [`InFlight::next`], and
//! one request's synchronous work (a long storage scan, say) holds up the others of its
//! connection, though never another connection's.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures::future::{AbortHandle, Abortable};
use futures::stream::{FuturesUnordered, StreamExt as _};
use futures::FutureExt as _;
use taskforge_protocol::{ErrorBody, ErrorCode, Opcode, Response};
use tracing::Instrument as _;

/// A finished request.
pub(crate) struct Completed {
    /// The client's id for it.
    pub(crate) request_id: u32,
    /// Its operation.
    pub(crate) opcode: Opcode,
    /// The broker's answer, or INTERNAL if handling it panicked.
    pub(crate) outcome: Result<Response, ErrorBody>,
}

/// What one request's future yields: its id and operation, and its outcome unless it was
/// aborted.
type Finished = (u32, Opcode, Option<Result<Response, ErrorBody>>);

/// One request being handled.
type Handling = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// The running requests of one connection. Dropping it drops them unanswered.
#[derive(Default)]
pub(crate) struct InFlight {
    /// The requests' futures, polled by [`InFlight::next`].
    handling: FuturesUnordered<Handling>,
    /// The operation and abort handle of each request in flight, by request id.
    running: HashMap<u32, (Opcode, AbortHandle)>,
}

impl InFlight {
    /// Requests running.
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// True when nothing runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// True when `request_id` is running.
    pub(crate) fn contains(&self, request_id: u32) -> bool {
        self.running.contains_key(&request_id)
    }

    /// Starts `handling` as request `request_id`. The caller has checked the id is free.
    pub(crate) fn spawn<F>(&mut self, request_id: u32, opcode: Opcode, handling: F)
    where
        F: Future<Output = Result<Response, ErrorBody>> + Send + 'static,
    {
        let span = tracing::debug_span!("request", request_id, opcode = opcode.name());
        let (abort, registration) = AbortHandle::new_pair();
        let guarded = AssertUnwindSafe(handling.instrument(span)).catch_unwind();
        let running = Abortable::new(guarded, registration).map(move |result| {
            let outcome = match result {
                Ok(Ok(outcome)) => Some(outcome),
                Ok(Err(_panic)) => {
                    tracing::error!(
                        request_id,
                        opcode = opcode.name(),
                        "handling a request panicked; answering INTERNAL"
                    );
                    Some(Err(ErrorBody::new(
                        ErrorCode::Internal,
                        "internal error while handling this request; the server logged it",
                    )))
                }
                // Aborted: it has no one left to answer.
                Err(_aborted) => None,
            };
            (request_id, opcode, outcome)
        });
        self.handling.push(Box::pin(running));
        self.running.insert(request_id, (opcode, abort));
    }

    /// The next request to finish, or `None` when nothing runs. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Completed> {
        loop {
            let (request_id, opcode, outcome) = self.handling.next().await?;
            self.running.remove(&request_id);
            if let Some(outcome) = outcome {
                return Some(Completed {
                    request_id,
                    opcode,
                    outcome,
                });
            }
        }
    }

    /// Aborts every running request; their answers are never sent.
    pub(crate) fn abort_all(&mut self) {
        self.handling.clear();
        self.running.clear();
    }

    /// Aborts the running requests of operation `opcode`; their answers are never sent.
    pub(crate) fn abort_opcode(&mut self, opcode: Opcode) -> usize {
        let mut aborted = 0;
        for (_, abort) in self
            .running
            .values()
            .filter(|(running, _)| *running == opcode)
        {
            abort.abort();
            aborted += 1;
        }
        aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskforge_protocol::Pong;

    #[tokio::test]
    async fn a_panicking_request_is_answered_internal_and_others_complete() {
        let mut in_flight = InFlight::default();
        in_flight.spawn(1, Opcode::Ping, async { panic!("broker bug") });
        in_flight.spawn(2, Opcode::Ping, async {
            Ok(Response::Ping(Pong { server_time_ms: 7 }))
        });
        assert!(in_flight.contains(1) && in_flight.contains(2));
        let mut answers = Vec::new();
        while let Some(completed) = in_flight.next().await {
            answers.push((completed.request_id, completed.outcome));
        }
        answers.sort_by_key(|(request_id, _)| *request_id);
        match &answers[..] {
            [(1, Err(error)), (2, Ok(Response::Ping(Pong { server_time_ms: 7 })))] => {
                assert_eq!(error.error_code(), ErrorCode::Internal);
            }
            other => panic!("unexpected answers {other:?}"),
        }
        assert!(in_flight.is_empty());
        assert!(!in_flight.contains(1));
    }

    #[tokio::test]
    async fn aborted_requests_are_not_answered() {
        let mut in_flight = InFlight::default();
        in_flight.spawn(9, Opcode::Fetch, std::future::pending());
        assert_eq!(in_flight.len(), 1);
        in_flight.abort_all();
        assert!(in_flight.next().await.is_none());
        assert!(in_flight.is_empty());
    }

    #[tokio::test]
    async fn aborting_one_operation_leaves_the_others_running() {
        let mut in_flight = InFlight::default();
        in_flight.spawn(1, Opcode::Fetch, std::future::pending());
        in_flight.spawn(2, Opcode::Ping, async {
            Ok(Response::Ping(Pong { server_time_ms: 1 }))
        });
        assert_eq!(in_flight.abort_opcode(Opcode::Fetch), 1);
        let completed = in_flight.next().await.expect("the PING completes");
        assert_eq!(completed.request_id, 2);
        assert!(in_flight.next().await.is_none());
        assert!(!in_flight.contains(1));
    }
}
