//! One in-flight pull: its waiters, its task (queue → permit → job → publish), and the
//! rule that a pull whose last caller has gone is dropped while queued and cancelled
//! (or finished, by config) while running.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use super::cap::{Permit, Ticket};
use super::progress::Progress;
use super::stats::{GaugeGuard, PullResult, PullStats};
use super::{PullKey, PullOutcome, Shared};

/// Orders flights by when they were enqueued, also when clocks tie.
static NEXT_SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) struct Flight<O> {
    sequence: u64,
    key: PullKey,
    enqueued_at: Instant,
    phase: Mutex<FlightPhase>,
    result: watch::Sender<Option<O>>,
    waiters: watch::Sender<usize>,
}

/// Where a pull is.
#[derive(Debug, Clone)]
pub enum FlightPhase {
    Queued,
    Running {
        started_at: Instant,
        progress: Arc<Progress>,
    },
}

/// One queued or running pull, as the admin view shows it.
#[derive(Debug, Clone)]
pub struct FlightView {
    pub sequence: u64,
    pub key: PullKey,
    pub enqueued_at: Instant,
    pub phase: FlightPhase,
    pub waiters: usize,
}

impl<O: PullOutcome> Flight<O> {
    pub(crate) fn new(key: PullKey) -> Self {
        Flight {
            sequence: NEXT_SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            key,
            enqueued_at: Instant::now(),
            phase: Mutex::new(FlightPhase::Queued),
            result: watch::Sender::new(None),
            waiters: watch::Sender::new(0),
        }
    }

    pub(crate) fn view(&self) -> FlightView {
        FlightView {
            sequence: self.sequence,
            key: self.key.clone(),
            enqueued_at: self.enqueued_at,
            phase: self.phase.lock().clone(),
            waiters: *self.waiters.borrow(),
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<O>> {
        self.result.subscribe()
    }
}

/// One caller's presence on a flight; leaving (drop) is what abandonment counts.
pub(crate) struct WaiterGuard<O: PullOutcome> {
    shared: Arc<Shared<O>>,
    flight: Arc<Flight<O>>,
}

impl<O: PullOutcome> WaiterGuard<O> {
    /// Must be called with the flight table locked, so abandonment sees it.
    pub(crate) fn join(shared: Arc<Shared<O>>, flight: Arc<Flight<O>>) -> Self {
        flight.waiters.send_modify(|n| *n += 1);
        shared.stats.waiters.inc();
        WaiterGuard { shared, flight }
    }

    pub(crate) fn flight(&self) -> &Flight<O> {
        &self.flight
    }
}

impl<O: PullOutcome> Drop for WaiterGuard<O> {
    fn drop(&mut self) {
        self.shared.stats.waiters.dec();
        self.flight.waiters.send_modify(|n| *n -= 1);
    }
}

/// Resolves once no caller is left, after removing the key under the table lock (so no
/// caller can join a flight that is being given up).
async fn abandoned<O: PullOutcome>(shared: &Shared<O>, key: &PullKey, flight: &Arc<Flight<O>>) {
    let mut waiters = flight.waiters.subscribe();
    loop {
        if waiters.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        let mut flights = shared.flights.lock();
        if *flight.waiters.borrow() == 0 {
            remove_if_same(&mut flights, key, flight);
            return;
        }
    }
}

fn remove_if_same<O>(
    flights: &mut std::collections::HashMap<PullKey, Arc<Flight<O>>>,
    key: &PullKey,
    flight: &Arc<Flight<O>>,
) {
    if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
        flights.remove(key);
    }
}

/// How a running pull ended.
enum Ended<O> {
    Outcome(O),
    Abandoned,
    Stalled { timeout: Duration, bytes_done: u64 },
}

/// The pull task: waits for a permit, runs the job (unless every caller leaves or it
/// stalls), publishes the outcome.
pub(crate) async fn run<O: PullOutcome>(
    shared: Arc<Shared<O>>,
    key: PullKey,
    flight: Arc<Flight<O>>,
    ticket: Ticket,
    job: impl std::future::Future<Output = O> + Send + 'static,
) {
    let Some(permit) = wait_for_permit(&shared, &key, &flight, ticket).await else {
        return;
    };
    let options = *shared.options.read();
    let stats = &shared.stats;
    let running = GaugeGuard::enter(&stats.running);
    let started = Instant::now();
    let progress = Arc::new(Progress::new(started, stats.bytes.clone()));
    *flight.phase.lock() = FlightPhase::Running {
        started_at: started,
        progress: progress.clone(),
    };
    let abandon = async {
        match options.cancel_abandoned {
            true => abandoned(&shared, &key, &flight).await,
            false => std::future::pending().await,
        }
    };
    let stall = async {
        match options.progress_timeout {
            Some(timeout) => (timeout, progress.stalled(timeout).await),
            None => std::future::pending().await,
        }
    };
    let ended = tokio::select! {
        outcome = job => Ended::Outcome(outcome),
        _ = abandon => Ended::Abandoned,
        (timeout, bytes_done) = stall => Ended::Stalled { timeout, bytes_done },
    };
    drop(permit);
    drop(running);
    conclude(&shared, &key, &flight, ended, started.elapsed());
}

/// Counts, logs and publishes how a running pull ended.
fn conclude<O: PullOutcome>(
    shared: &Shared<O>,
    key: &PullKey,
    flight: &Arc<Flight<O>>,
    ended: Ended<O>,
    elapsed: Duration,
) {
    let stats = &shared.stats;
    PullStats::observe(&stats.pull_duration, elapsed);
    match ended {
        Ended::Outcome(outcome) => publish(shared, key, flight, outcome, elapsed),
        Ended::Abandoned => {
            stats.result(PullResult::cancelled).inc();
            tracing::info!(image = %key.image, handler = %key.handler, backend = %key.backend, duration = ?elapsed, "running pull cancelled: no caller left");
        }
        Ended::Stalled {
            timeout,
            bytes_done,
        } => {
            remove_if_same(&mut shared.flights.lock(), key, flight);
            stats.result(PullResult::stalled).inc();
            let waiters = *flight.waiters.borrow();
            tracing::warn!(image = %key.image, handler = %key.handler, backend = %key.backend, ?timeout, bytes_done, waiters, "pull stalled: cancelled at the backend");
            let outcome = O::stalled(&key.image, timeout, bytes_done);
            flight.result.send_replace(Some(outcome));
        }
    }
}

/// Queues for a permit; `None` when every caller left while the pull was queued.
async fn wait_for_permit<O: PullOutcome>(
    shared: &Shared<O>,
    key: &PullKey,
    flight: &Arc<Flight<O>>,
    ticket: Ticket,
) -> Option<Permit> {
    let stats = &shared.stats;
    let queued_at = flight.enqueued_at;
    let queued = GaugeGuard::enter(&stats.queued);
    let permit = tokio::select! {
        biased;
        permit = ticket.granted() => Some(permit),
        _ = abandoned(shared, key, flight) => None,
    };
    drop(queued);
    let Some(permit) = permit else {
        stats.result(PullResult::cancelled).inc();
        tracing::info!(image = %key.image, handler = %key.handler, backend = %key.backend, "queued pull dropped: no caller left");
        return None;
    };
    let queue_wait = queued_at.elapsed();
    stats.started.inc();
    PullStats::observe(&stats.queue_wait, queue_wait);
    let waiters = *flight.waiters.borrow();
    tracing::info!(image = %key.image, handler = %key.handler, backend = %key.backend, waiters, ?queue_wait, "pull started");
    Some(permit)
}

fn publish<O: PullOutcome>(
    shared: &Shared<O>,
    key: &PullKey,
    flight: &Arc<Flight<O>>,
    outcome: O,
    duration: Duration,
) {
    remove_if_same(&mut shared.flights.lock(), key, flight);
    let ok = outcome.is_success();
    let result = if ok {
        PullResult::success
    } else {
        PullResult::failure
    };
    shared.stats.result(result).inc();
    if shared.options.read().failure_backoff {
        let mut backoff = shared.backoff.lock();
        if ok {
            backoff.succeeded(key);
        } else if outcome.is_registry_failure() {
            let window = backoff.failed(key, outcome.clone(), Instant::now());
            tracing::info!(image = %key.image, handler = %key.handler, ?window, "pull failed: backing off identical pulls");
        }
    }
    let waiters = *flight.waiters.borrow();
    tracing::info!(image = %key.image, handler = %key.handler, backend = %key.backend, waiters, ?duration, ok, "pull finished");
    flight.result.send_replace(Some(outcome));
}

/// Owns the pull task: whatever happens to it (a panic in the job, the runtime tearing
/// it down), every waiter gets an answer and the key leaves the merge table, so the next
/// caller starts a fresh pull. The task's permit went back when its future was dropped.
pub(crate) async fn supervise<O: PullOutcome>(
    shared: Arc<Shared<O>>,
    key: PullKey,
    flight: Arc<Flight<O>>,
    task: tokio::task::JoinHandle<()>,
) {
    let Err(err) = task.await else { return };
    let why = if err.is_panic() {
        "the pull task panicked"
    } else {
        "the pull task was stopped"
    };
    remove_if_same(&mut shared.flights.lock(), &key, &flight);
    shared.stats.result(PullResult::failure).inc();
    tracing::error!(image = %key.image, handler = %key.handler, backend = %key.backend, why, "pull failed inside imageshim; its waiters get Internal");
    flight
        .result
        .send_replace(Some(O::task_failed(&key.image, why)));
}
