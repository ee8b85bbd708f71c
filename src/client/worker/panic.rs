//! Handler panics as values, with where they happened.
//!
//! [`CatchPanic`] polls a handler inside `catch_unwind`, so a panic ends the handler with
//! its message instead of tearing down a task. The location and (when `RUST_BACKTRACE` or
//! `RUST_LIB_BACKTRACE` asks for one) the backtrace are only known to the panic hook, so
//! [`install_hook`] wraps the process's hook once: while a handler is being polled on a
//! thread, the hook also records them in a thread-local that [`CatchPanic`] reads right
//! after the unwind, on the same thread. The previous hook still runs (the panic is still
//! printed). A hook installed later by the application replaces this one; panics then come
//! without details.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

thread_local! {
    /// True while a handler is being polled on this thread.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Where the last captured panic happened, for the [`CatchPanic`] that catches it.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Wraps the process's panic hook (once) so panics in handlers record their location and
/// backtrace.
pub(super) fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let mut details = match info.location() {
                    Some(location) => format!(
                        "panicked at {}:{}:{}",
                        location.file(),
                        location.line(),
                        location.column()
                    ),
                    None => "panicked at an unknown location".to_string(),
                };
                let backtrace = Backtrace::capture();
                if backtrace.status() == BacktraceStatus::Captured {
                    details.push_str("\nstack backtrace:\n");
                    details.push_str(&backtrace.to_string());
                }
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(details));
            }
            previous(info);
        }));
    });
}

/// A handler that panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HandlerPanic {
    /// The panic's message.
    pub(super) message: String,
    /// Its location and backtrace, when the hook saw it.
    pub(super) details: Option<String>,
}

/// A future that turns a panic of `inner` into `Err(HandlerPanic)`.
pub(super) struct CatchPanic<F> {
    /// Boxed, so this wrapper is `Unpin` without projection.
    inner: Pin<Box<F>>,
}

impl<F: Future> CatchPanic<F> {
    pub(super) fn new(inner: F) -> CatchPanic<F> {
        CatchPanic {
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, HandlerPanic>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.inner;
        // A panic the handler caught itself may have left a record; it is not this one's.
        LAST_PANIC.with(|last| last.borrow_mut().take());
        let was_capturing = CAPTURING.with(|capturing| capturing.replace(true));
        // The future is never polled again after a panic (this returns Ready), so any
        // state the unwind broke is never observed.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(context)));
        CAPTURING.with(|capturing| capturing.set(was_capturing));
        match polled {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                let details = LAST_PANIC.with(|last| last.borrow_mut().take());
                Poll::Ready(Err(HandlerPanic {
                    message: panic_message(payload.as_ref()),
                    details,
                }))
            }
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_its_message_and_location() {
        install_hook();
        let caught = CatchPanic::new(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("boom {}", 7);
            }
        })
        .await;
        let panic = caught.expect_err("it panicked");
        assert_eq!(panic.message, "boom 7");
        let details = panic.details.expect("the hook saw it");
        assert!(
            details.starts_with(&format!("panicked at {}:", file!())),
            "{details}"
        );
        assert_eq!(CatchPanic::new(async { 5 }).await, Ok(5));
    }
}
