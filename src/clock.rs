//! Time, injected. The broker core never reads a clock: the service layer asks a [`Clock`]
//! and passes `now_ms` in, so tests and simulations control time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A source of wall-clock time in ms since the Unix epoch, and a way to wait for a moment.
pub trait Clock: Send + Sync + 'static {
    /// Now, in ms since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Resolves once `now_ms() >= at_ms`. A manual clock resolves when a test advances it.
    fn sleep_until(
        &self,
        at_ms: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or(0)
    }

    fn sleep_until(
        &self,
        at_ms: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let now_ms = self.now_ms();
                if now_ms >= at_ms {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(at_ms - now_ms)).await;
            }
        })
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
    changed: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> ManualClock {
        let (changed, _) = watch::channel(start_ms);
        ManualClock {
            now_ms: Arc::new(AtomicU64::new(start_ms)),
            changed: Arc::new(changed),
        }
    }

    /// Moves the clock forward by `delta_ms` and wakes every sleeper now due.
    pub fn advance(&self, delta_ms: u64) {
        let now_ms = self.now_ms.fetch_add(delta_ms, Ordering::SeqCst) + delta_ms;
        self.changed.send_replace(now_ms);
    }

    /// Sets the clock to `now_ms` (which may be earlier, to test clock jumps).
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
        self.changed.send_replace(now_ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn sleep_until(
        &self,
        at_ms: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        let mut changed = self.changed.subscribe();
        Box::pin(async move {
            while self.now_ms() < at_ms {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = ManualClock::new(1_000);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(1_500).await })
        };
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(499);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(1);
        sleeper.await.expect("sleeper finishes");
        assert_eq!(clock.now_ms(), 1_500);
    }
}
