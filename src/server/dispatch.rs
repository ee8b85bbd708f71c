//! The one seam between the server and the broker. The server calls nothing else of the
//! broker, which keeps dispatch free of business logic and lets the connection handler be
//! tested against a scripted stand-in.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use taskforge_protocol::{ErrorBody, HelloRequest, Request, Response};

use crate::broker::{Broker, Session};
use crate::metrics::Metrics;

/// What the server needs from the broker.
pub(crate) trait Dispatcher: Send + Sync + 'static {
    /// Checks a HELLO's credentials. Called on a blocking thread: it may hash a password.
    fn authenticate(&self, hello: &HelloRequest) -> Result<Session, ErrorBody>;

    /// Runs one request for `session`; the answer comes after its durability point.
    fn handle(
        self: Arc<Self>,
        session: Arc<Session>,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, ErrorBody>>;

    /// The broker's clock, for the pre-handshake PING.
    fn now_ms(&self) -> u64;

    /// Shutdown has begun: answer waiting long-polls now (empty) instead of holding the
    /// grace period up; everything else keeps working.
    fn release_long_polls(&self);

    /// Final commit and stop, once every connection is done.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

impl Dispatcher for Broker {
    fn authenticate(&self, hello: &HelloRequest) -> Result<Session, ErrorBody> {
        Broker::authenticate(self, hello)
    }

    fn handle(
        self: Arc<Self>,
        session: Arc<Session>,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, ErrorBody>> {
        Box::pin(async move { Broker::handle(&self, &session, request).await })
    }

    fn now_ms(&self) -> u64 {
        Broker::now_ms(self)
    }

    fn release_long_polls(&self) {
        Broker::release_long_polls(self)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(Broker::shutdown(self))
    }
}

/// A dispatcher that counts every request it passes on: outcome by operation, duration,
/// and the job flow its answer shows. Counting reads answers only, so dispatch still has
/// no business logic.
pub(crate) struct Metered {
    /// Where requests go.
    inner: Arc<dyn Dispatcher>,
    /// Where they are counted.
    metrics: Arc<Metrics>,
}

impl Metered {
    /// Counts requests to `inner` in `metrics`.
    pub(crate) fn new(inner: Arc<dyn Dispatcher>, metrics: Arc<Metrics>) -> Metered {
        Metered { inner, metrics }
    }
}

impl Dispatcher for Metered {
    fn authenticate(&self, hello: &HelloRequest) -> Result<Session, ErrorBody> {
        self.inner.authenticate(hello)
    }

    fn handle(
        self: Arc<Self>,
        session: Arc<Session>,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, ErrorBody>> {
        let opcode = request.opcode();
        let started = Instant::now();
        let handling = Arc::clone(&self.inner).handle(session, request);
        Box::pin(async move {
            let outcome = handling.await;
            let now_ms = self.inner.now_ms();
            self.metrics
                .observe_request(opcode, &outcome, started.elapsed(), now_ms);
            outcome
        })
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn release_long_polls(&self) {
        self.inner.release_long_polls()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }
}
