//! The pacing of a fixed arrival rate (`--rate`): a thread that hands out one permit per
//! enqueue request at the request's intended send time.
//!
//! tokio's timers tick once per millisecond and round deadlines up, so producers that slept
//! until their intended send times left in bursts, once per tick, up to a millisecond late.
//! Open-loop latency counts from the intended time, so that lateness, the load generator's
//! and not the server's, was in every sample: p50 enqueue→fetch was 1.4 ms at 7 000 jobs/s
//! even with `fsync=never`. A thread sleeping on the OS's timer wakes within tens of µs.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Longest single sleep of the pacing thread, so it notices the end of a phase soon.
const SLEEP_MS_MAX: u64 = 10;

/// Shortest single sleep of the pacing thread: at high rates it hands out the permits that
/// fell due meanwhile together, sending them at most this much late, instead of waking
/// (and waking a producer) for every request.
const SLEEP_US_MIN: u64 = 200;

/// When the requests of a phase are due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// The time origin of `start_ns`.
    pub(crate) origin: Instant,
    /// When request 0 is due, ns since `origin`.
    pub(crate) start_ns: u64,
    /// Time between requests, ns.
    pub(crate) interval_ns: f64,
    /// Requests in the phase, if it is bounded by a job count or a duration.
    pub(crate) requests: Option<u64>,
    /// Producer tasks: each needs one permit more to see that the phase is over.
    pub(crate) producer_tasks: usize,
}

/// The pacing thread and the permits it hands out.
pub(crate) struct Metronome {
    permits: Arc<Semaphore>,
    thread: Option<JoinHandle<()>>,
}

impl Metronome {
    /// Starts handing out permits on `schedule` until every request is due or `stop` is
    /// cancelled; then one more permit per producer task, so that none waits forever.
    pub(crate) fn start(
        schedule: Schedule,
        stop: CancellationToken,
    ) -> Result<Metronome, std::io::Error> {
        let permits = Arc::new(Semaphore::new(0));
        let thread = {
            let permits = Arc::clone(&permits);
            std::thread::Builder::new()
                .name("bench-metronome".to_string())
                .spawn(move || beat(schedule, &permits, &stop))?
        };
        Ok(Metronome {
            permits,
            thread: Some(thread),
        })
    }

    /// Waits for the next request's send time (or for the phase to end).
    pub(crate) async fn tick(&self) {
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
    }
}

impl Drop for Metronome {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // The thread only sleeps and adds permits: it cannot panic but on a broken
            // invariant, which the panic message has already reported.
            let _ = thread.join();
        }
    }
}

/// The pacing thread's loop.
fn beat(schedule: Schedule, permits: &Semaphore, stop: &CancellationToken) {
    let mut released: u64 = 0;
    while !stop.is_cancelled() && schedule.requests.is_none_or(|requests| released < requests) {
        let now_ns = u64::try_from(schedule.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let due = if now_ns < schedule.start_ns {
            0
        } else {
            ((now_ns - schedule.start_ns) as f64 / schedule.interval_ns) as u64 + 1
        };
        let due = schedule.requests.map_or(due, |requests| due.min(requests));
        if due > released {
            permits.add_permits(usize::try_from(due - released).unwrap_or(usize::MAX));
            released = due;
        }
        let next_ns = schedule.start_ns + (released as f64 * schedule.interval_ns) as u64;
        let wait = Duration::from_nanos(next_ns.saturating_sub(now_ns)).clamp(
            Duration::from_micros(SLEEP_US_MIN),
            Duration::from_millis(SLEEP_MS_MAX),
        );
        std::thread::sleep(wait);
    }
    permits.add_permits(schedule.producer_tasks);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(origin: Instant, requests: Option<u64>) -> Schedule {
        Schedule {
            origin,
            start_ns: u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            interval_ns: 2e6,
            requests,
            producer_tasks: 3,
        }
    }

    #[tokio::test]
    async fn permits_come_no_earlier_than_their_send_times_then_one_per_producer() {
        let origin = Instant::now();
        let schedule = schedule(origin, Some(5));
        let metronome =
            Metronome::start(schedule, CancellationToken::new()).expect("the thread starts");
        for request in 0..5_u32 {
            metronome.tick().await;
            let due = Duration::from_nanos(schedule.start_ns) + Duration::from_millis(2) * request;
            assert!(origin.elapsed() >= due, "request {request} came early");
        }
        for _ in 0..schedule.producer_tasks {
            metronome.tick().await;
        }
        drop(metronome);
    }

    #[tokio::test]
    async fn an_endless_schedule_ends_when_the_phase_stops() {
        let stop = CancellationToken::new();
        let metronome = Metronome::start(schedule(Instant::now(), None), stop.clone())
            .expect("the thread starts");
        metronome.tick().await;
        stop.cancel();
        for _ in 0..3 {
            metronome.tick().await;
        }
        drop(metronome);
    }
}
