//! How far one running pull has got, as a backend monitor measures it (bytes done and
//! expected), and the stall rule: a measured pull whose bytes have not moved for the
//! progress timeout, with downloads not yet complete, is stalled. Knows no backend: the
//! monitor in `status` writes here; the pull task only reads.

use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

/// Progress of one pull. Shared by the pull task and the monitor that measures it.
#[derive(Debug)]
pub struct Progress {
    state: Mutex<ProgressState>,
    bytes_counter: Counter,
}

/// A copy of a pull's progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressState {
    /// False until a monitor measured this pull (and again while it cannot).
    pub measured: bool,
    pub bytes_done: u64,
    /// Bytes the pull is known to need; 0 while unknown.
    pub bytes_total: u64,
    /// Every known download finished (the runtime is unpacking): not a stall.
    pub downloads_complete: bool,
    /// When bytes last moved (or the pull started).
    pub last_progress: Instant,
    /// Download rate, smoothed over the last measurements.
    pub bytes_per_second: f64,
    /// When the last measurement was recorded.
    pub sampled_at: Option<Instant>,
}

impl Progress {
    pub(crate) fn new(started: Instant, bytes_counter: Counter) -> Self {
        Progress {
            state: Mutex::new(ProgressState {
                measured: false,
                bytes_done: 0,
                bytes_total: 0,
                downloads_complete: false,
                last_progress: started,
                bytes_per_second: 0.0,
                sampled_at: None,
            }),
            bytes_counter,
        }
    }

    pub fn get(&self) -> ProgressState {
        *self.state.lock()
    }

    /// Records a measurement; moving bytes (or a new total) count as progress.
    pub fn record(&self, bytes_done: u64, bytes_total: u64, downloads_complete: bool) {
        let mut state = self.state.lock();
        let now = Instant::now();
        if !state.measured {
            // Measuring (again) starts the stall clock afresh.
            state.last_progress = now;
        }
        update_rate(&mut state, bytes_done, now);
        if bytes_done > state.bytes_done {
            self.bytes_counter.inc_by(bytes_done - state.bytes_done);
            state.bytes_done = bytes_done;
            state.last_progress = now;
        }
        if bytes_total != state.bytes_total {
            state.bytes_total = bytes_total;
            state.last_progress = now;
        }
        state.measured = true;
        state.downloads_complete = downloads_complete;
    }

    /// The monitor cannot measure this pull now; the stall rule does not apply.
    pub fn unmeasured(&self) {
        self.state.lock().measured = false;
    }

    /// Resolves with the bytes reached once the pull has stalled for `timeout`.
    pub(crate) async fn stalled(&self, timeout: Duration) -> u64 {
        loop {
            let state = self.get();
            let due = state.last_progress + timeout;
            if Instant::now() >= due {
                if state.measured && !state.downloads_complete {
                    return state.bytes_done;
                }
                tokio::time::sleep(timeout.min(Duration::from_secs(1))).await;
                continue;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Half the weight on the newest interval's rate.
fn update_rate(state: &mut ProgressState, bytes_done: u64, now: Instant) {
    if let Some(at) = state.sampled_at {
        let seconds = now.duration_since(at).as_secs_f64();
        if seconds > 0.0 {
            let moved = bytes_done.saturating_sub(state.bytes_done) as f64;
            state.bytes_per_second = 0.5 * state.bytes_per_second + 0.5 * moved / seconds;
        }
    }
    state.sampled_at = Some(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_measured_pull_without_moving_bytes_stalls_after_the_timeout() {
        let progress = Progress::new(Instant::now(), Counter::default());
        progress.record(10, 100, false);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        progress.record(20, 100, false);
        assert_eq!(progress.stalled(Duration::from_secs(5)).await, 20);
        assert_eq!(started.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn unmeasured_or_unpacking_pulls_never_stall() {
        let progress = Progress::new(Instant::now(), Counter::default());
        let never = tokio::time::timeout(
            Duration::from_secs(60),
            progress.stalled(Duration::from_secs(5)),
        );
        assert!(never.await.is_err(), "unmeasured");
        progress.record(100, 100, true);
        let never = tokio::time::timeout(
            Duration::from_secs(60),
            progress.stalled(Duration::from_secs(5)),
        );
        assert!(never.await.is_err(), "downloads complete");
    }

    #[test]
    fn bytes_counter_grows_by_the_bytes_moved() {
        let counter = Counter::default();
        let progress = Progress::new(Instant::now(), counter.clone());
        progress.record(10, 100, false);
        progress.record(5, 100, false);
        progress.record(70, 100, false);
        assert_eq!(counter.get(), 70);
    }
}
