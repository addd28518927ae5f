//! One in-flight pull: its waiters, its task (queue → permit → job → publish), and the
//! rule that a pull whose last caller has gone is dropped while queued and cancelled
//! (or finished, by config) while running.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::cap::{Permit, Ticket};
use super::stats::{GaugeGuard, PullStats};
use super::{PullKey, PullOutcome, Shared};

pub(crate) struct Flight<O> {
    result: watch::Sender<Option<O>>,
    waiters: watch::Sender<usize>,
}

impl<O: PullOutcome> Flight<O> {
    pub(crate) fn new() -> Self {
        Flight {
            result: watch::Sender::new(None),
            waiters: watch::Sender::new(0),
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
        shared.stats.waiters.fetch_add(1, Relaxed);
        WaiterGuard { shared, flight }
    }

    pub(crate) fn flight(&self) -> &Flight<O> {
        &self.flight
    }
}

impl<O: PullOutcome> Drop for WaiterGuard<O> {
    fn drop(&mut self) {
        self.shared.stats.waiters.fetch_sub(1, Relaxed);
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

/// The pull task: waits for a permit, runs the job, publishes the outcome.
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
    let stats = &shared.stats;
    let running = GaugeGuard::enter(&stats.running);
    let started = Instant::now();
    let outcome = if shared.cancel_abandoned {
        tokio::select! {
            outcome = job => Some(outcome),
            _ = abandoned(&shared, &key, &flight) => None,
        }
    } else {
        Some(job.await)
    };
    drop(permit);
    drop(running);
    PullStats::add_duration(&stats.pull_micros_total, started.elapsed());
    match outcome {
        Some(outcome) => publish(&shared, &key, &flight, outcome, started.elapsed()),
        None => {
            stats.cancelled_total.fetch_add(1, Relaxed);
            tracing::info!(image = %key.image, handler = %key.handler, backend = %key.backend, duration = ?started.elapsed(), "running pull cancelled: no caller left");
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
    let queued_at = Instant::now();
    let queued = GaugeGuard::enter(&stats.queued);
    let permit = tokio::select! {
        biased;
        permit = ticket.granted() => Some(permit),
        _ = abandoned(shared, key, flight) => None,
    };
    drop(queued);
    let Some(permit) = permit else {
        stats.dropped_while_queued_total.fetch_add(1, Relaxed);
        tracing::info!(image = %key.image, handler = %key.handler, backend = %key.backend, "queued pull dropped: no caller left");
        return None;
    };
    let queue_wait = queued_at.elapsed();
    stats.started_total.fetch_add(1, Relaxed);
    PullStats::add_duration(&stats.queue_wait_micros_total, queue_wait);
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
    let counter = if ok {
        &shared.stats.succeeded_total
    } else {
        &shared.stats.failed_total
    };
    counter.fetch_add(1, Relaxed);
    if let Some(backoff) = &shared.backoff {
        let mut backoff = backoff.lock();
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
    shared.stats.failed_total.fetch_add(1, Relaxed);
    tracing::error!(image = %key.image, handler = %key.handler, backend = %key.backend, why, "pull failed inside imageshim; its waiters get Internal");
    flight
        .result
        .send_replace(Some(O::task_failed(&key.image, why)));
}
