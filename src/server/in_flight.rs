//! A connection's requests in flight. Each runs in its own task, so that a long FETCH
//! never delays a PING on the same connection and a panic inside the broker ends one
//! request (answered INTERNAL), not the connection or the server.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use taskforge_protocol::{ErrorBody, ErrorCode, Opcode, Response};
use tokio::task::{AbortHandle, Id, JoinSet};
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

/// One running request.
struct Running {
    /// The client's id for it.
    request_id: u32,
    /// Its operation.
    opcode: Opcode,
    /// Stops its task.
    abort: AbortHandle,
}

/// The running requests of one connection. Dropping it aborts them.
#[derive(Default)]
pub(crate) struct InFlight {
    /// The request tasks.
    tasks: JoinSet<Result<Response, ErrorBody>>,
    /// Which request each task runs (found again when a task panics), and its abort handle.
    requests: HashMap<Id, Running>,
    /// Request ids in flight, to refuse a duplicate.
    request_ids: HashSet<u32>,
}

impl InFlight {
    /// Requests running.
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }

    /// True when nothing runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// True when `request_id` is running.
    pub(crate) fn contains(&self, request_id: u32) -> bool {
        self.request_ids.contains(&request_id)
    }

    /// Starts `handling` as request `request_id`. The caller has checked the id is free.
    pub(crate) fn spawn<F>(&mut self, request_id: u32, opcode: Opcode, handling: F)
    where
        F: Future<Output = Result<Response, ErrorBody>> + Send + 'static,
    {
        let span = tracing::debug_span!("request", request_id, opcode = opcode.name());
        let abort: AbortHandle = self.tasks.spawn(handling.instrument(span));
        self.requests.insert(
            abort.id(),
            Running {
                request_id,
                opcode,
                abort,
            },
        );
        self.request_ids.insert(request_id);
    }

    /// The next request to finish, or `None` when nothing runs. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Completed> {
        loop {
            let (task_id, outcome) = match self.tasks.join_next_with_id().await? {
                Ok((task_id, outcome)) => (task_id, outcome),
                Err(error) => {
                    let task_id = error.id();
                    if !error.is_panic() {
                        // Aborted: it has no one left to answer.
                        self.forget(task_id);
                        continue;
                    }
                    let running = self.requests.get(&task_id);
                    let request_id = running.map(|running| running.request_id);
                    let opcode = running.map(|running| running.opcode);
                    tracing::error!(
                        request_id,
                        opcode = opcode.map(Opcode::name),
                        "handling a request panicked; answering INTERNAL"
                    );
                    let error = ErrorBody::new(
                        ErrorCode::Internal,
                        "internal error while handling this request; the server logged it",
                    );
                    (task_id, Err(error))
                }
            };
            if let Some((request_id, opcode)) = self.forget(task_id) {
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
        self.tasks.abort_all();
    }

    /// Aborts the running requests of operation `opcode`; their answers are never sent.
    pub(crate) fn abort_opcode(&mut self, opcode: Opcode) -> usize {
        let mut aborted = 0;
        for running in self
            .requests
            .values()
            .filter(|running| running.opcode == opcode)
        {
            running.abort.abort();
            aborted += 1;
        }
        aborted
    }

    fn forget(&mut self, task_id: Id) -> Option<(u32, Opcode)> {
        let running = self.requests.remove(&task_id)?;
        self.request_ids.remove(&running.request_id);
        Some((running.request_id, running.opcode))
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
