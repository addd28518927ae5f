//! Counters and gauges the coordinator keeps, ready for the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Live pull statistics. Gauges go up and down; counters only up.
#[derive(Debug, Default)]
pub struct PullStats {
    pub queued: AtomicU64,
    pub running: AtomicU64,
    pub waiters: AtomicU64,
    pub started_total: AtomicU64,
    pub merged_total: AtomicU64,
    pub succeeded_total: AtomicU64,
    pub failed_total: AtomicU64,
    pub cancelled_total: AtomicU64,
    pub dropped_while_queued_total: AtomicU64,
    pub backed_off_total: AtomicU64,
    pub queue_wait_micros_total: AtomicU64,
    pub pull_micros_total: AtomicU64,
}

/// A point-in-time copy of [`PullStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullStatsSnapshot {
    pub queued: u64,
    pub running: u64,
    pub waiters: u64,
    pub started_total: u64,
    pub merged_total: u64,
    pub succeeded_total: u64,
    pub failed_total: u64,
    pub cancelled_total: u64,
    pub dropped_while_queued_total: u64,
    pub backed_off_total: u64,
    pub queue_wait_micros_total: u64,
    pub pull_micros_total: u64,
}

impl PullStats {
    pub fn snapshot(&self) -> PullStatsSnapshot {
        PullStatsSnapshot {
            queued: self.queued.load(Relaxed),
            running: self.running.load(Relaxed),
            waiters: self.waiters.load(Relaxed),
            started_total: self.started_total.load(Relaxed),
            merged_total: self.merged_total.load(Relaxed),
            succeeded_total: self.succeeded_total.load(Relaxed),
            failed_total: self.failed_total.load(Relaxed),
            cancelled_total: self.cancelled_total.load(Relaxed),
            dropped_while_queued_total: self.dropped_while_queued_total.load(Relaxed),
            backed_off_total: self.backed_off_total.load(Relaxed),
            queue_wait_micros_total: self.queue_wait_micros_total.load(Relaxed),
            pull_micros_total: self.pull_micros_total.load(Relaxed),
        }
    }

    pub(super) fn add_duration(counter: &AtomicU64, elapsed: Duration) {
        counter.fetch_add(elapsed.as_micros() as u64, Relaxed);
    }
}

/// A gauge held up for as long as this guard lives (also when a task unwinds).
pub(super) struct GaugeGuard<'a>(&'a AtomicU64);

impl<'a> GaugeGuard<'a> {
    pub(super) fn enter(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Relaxed);
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
