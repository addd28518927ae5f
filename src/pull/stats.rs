//! The coordinator's counters, gauges and histograms, as Prometheus metrics
//! (`prometheus-client`): registered once by the wiring, read by tests through
//! [`PullStatsSnapshot`]. Labels are closed enums; no image name ever becomes a label.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How a pull ended, for `imageshim_pulls_total{result}`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum PullResult {
    success,
    failure,
    cancelled,
    stalled,
    backed_off,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: PullResult,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum FlightState {
    queued,
    running,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: FlightState,
}

/// Live pull statistics. Gauges go up and down; counters only up.
#[derive(Debug, Clone)]
pub struct PullStats {
    pub(super) queued: Gauge,
    pub(super) running: Gauge,
    pub(super) waiters: Gauge,
    in_flight: Family<StateLabels, Gauge>,
    pub(super) started: Counter,
    pub(super) merged: Counter,
    results: Family<ResultLabels, Counter>,
    pub(super) bytes: Counter,
    pub(super) pull_duration: Histogram,
    pub(super) queue_wait: Histogram,
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
    pub stalled_total: u64,
    pub backed_off_total: u64,
    pub bytes_total: u64,
}

fn seconds_buckets() -> Histogram {
    // 10 ms .. ~3 h.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

impl Default for PullStats {
    fn default() -> Self {
        let in_flight = Family::<StateLabels, Gauge>::default();
        let gauge = |state| in_flight.get_or_create_owned(&StateLabels { state });
        PullStats {
            queued: gauge(FlightState::queued),
            running: gauge(FlightState::running),
            in_flight: in_flight.clone(),
            waiters: Gauge::default(),
            started: Counter::default(),
            merged: Counter::default(),
            results: Family::default(),
            bytes: Counter::default(),
            pull_duration: seconds_buckets(),
            queue_wait: seconds_buckets(),
        }
    }
}

impl PullStats {
    pub fn snapshot(&self) -> PullStatsSnapshot {
        let result = |result| self.result(result).get();
        PullStatsSnapshot {
            queued: self.queued.get().max(0) as u64,
            running: self.running.get().max(0) as u64,
            waiters: self.waiters.get().max(0) as u64,
            started_total: self.started.get(),
            merged_total: self.merged.get(),
            succeeded_total: result(PullResult::success),
            failed_total: result(PullResult::failure),
            cancelled_total: result(PullResult::cancelled),
            stalled_total: result(PullResult::stalled),
            backed_off_total: result(PullResult::backed_off),
            bytes_total: self.bytes.get(),
        }
    }

    /// The counter of pulls that ended with `result`.
    pub(super) fn result(&self, result: PullResult) -> Counter {
        self.results.get_or_create_owned(&ResultLabels { result })
    }

    pub(super) fn observe(histogram: &Histogram, elapsed: Duration) {
        histogram.observe(elapsed.as_secs_f64());
    }

    /// Adds every pull metric to `registry` (prefixed by the caller).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pulls_in_flight",
            "Backend pulls queued for a cap permit or running",
            self.in_flight.clone(),
        );
        registry.register(
            "pull_waiters",
            "Callers waiting for a pull",
            self.waiters.clone(),
        );
        registry.register(
            "pulls_merged",
            "Callers that joined a pull already in flight",
            self.merged.clone(),
        );
        registry.register(
            "pulls",
            "Backend pulls by how they ended",
            self.results.clone(),
        );
        registry.register(
            "pull_bytes",
            "Bytes downloaded by running pulls (containerd backends)",
            self.bytes.clone(),
        );
        registry.register(
            "pull_duration_seconds",
            "Time from cap permit to outcome",
            self.pull_duration.clone(),
        );
        registry.register(
            "pull_queue_wait_seconds",
            "Time a pull waited for a cap permit",
            self.queue_wait.clone(),
        );
    }
}

/// A gauge held up for as long as this guard lives (also when a task unwinds).
pub(super) struct GaugeGuard<'a>(&'a Gauge);

impl<'a> GaugeGuard<'a> {
    pub(super) fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
