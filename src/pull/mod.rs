//! The pull coordinator: merges concurrent pulls of one key into one backend pull that
//! lives independently of its callers, lets every caller wait with its own deadline and
//! cancellation, enforces the node's FIFO pull cap, and optionally backs off failing
//! keys. Knows nothing of credential formats or wire messages: a pull is a future.

pub mod backoff;
pub mod cap;
mod flight;
pub mod progress;
pub mod stats;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use tokio::time::Instant;

use backoff::Backoff;
use cap::Cap;
use flight::{Flight, WaiterGuard};
pub use flight::{FlightPhase, FlightView};
pub use progress::{Progress, ProgressState};
pub use stats::{PullResult, PullStats, PullStatsSnapshot};

use crate::cri::CredentialFingerprint;

/// What makes two pulls the same pull: the image, where the runtime puts it, the
/// backend and the credentials. `handler` (the first caller's) is only shown.
#[derive(Clone, Debug)]
pub struct PullKey {
    /// The normalised reference.
    pub image: String,
    /// Where the backend unpacks this pull (see `backend::landing`).
    pub lands_in: String,
    pub backend: String,
    pub credentials: CredentialFingerprint,
    /// The runtime handler the first caller named (empty: the default); not part of
    /// the key's identity.
    pub handler: String,
}

impl PullKey {
    fn identity(&self) -> (&str, &str, &str, &CredentialFingerprint) {
        (
            &self.image,
            &self.lands_in,
            &self.backend,
            &self.credentials,
        )
    }
}

impl PartialEq for PullKey {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for PullKey {}

impl std::hash::Hash for PullKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state)
    }
}

/// What a finished pull produced, as the coordinator needs to see it.
pub trait PullOutcome: Clone + Send + Sync + 'static {
    /// A failure that came from the registry side (eligible for backoff).
    fn is_registry_failure(&self) -> bool;
    /// True when the pull succeeded.
    fn is_success(&self) -> bool;
    /// What every waiter gets when the pull task itself failed (panicked or was torn
    /// down) instead of producing an outcome.
    fn task_failed(image: &str, why: &str) -> Self;
    /// What every waiter gets when the pull stalled: no byte moved for `timeout`.
    fn stalled(image: &str, timeout: Duration, bytes_done: u64) -> Self;
}

/// Why a caller stopped waiting without an outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("deadline exceeded while waiting for the image pull")]
    DeadlineExceeded,
    #[error("the image pull was cancelled before it finished")]
    Cancelled,
}

/// Coordinator options, from `[pull]`; replaceable while running (pulls that already
/// started keep the options they started with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullOptions {
    /// `None` = unlimited.
    pub permits: Option<usize>,
    pub cancel_abandoned: bool,
    pub failure_backoff: bool,
    /// `None` = stalled pulls are never aborted.
    pub progress_timeout: Option<Duration>,
}

/// Merges, caps and tracks pulls. Cheap to clone.
pub struct Coordinator<O: PullOutcome> {
    shared: Arc<Shared<O>>,
}

impl<O: PullOutcome> Clone for Coordinator<O> {
    fn clone(&self) -> Self {
        Coordinator {
            shared: self.shared.clone(),
        }
    }
}

pub(crate) struct Shared<O: PullOutcome> {
    flights: Mutex<HashMap<PullKey, Arc<Flight<O>>>>,
    cap: Cap,
    options: RwLock<PullOptions>,
    backoff: Mutex<Backoff<PullKey, O>>,
    stats: PullStats,
}

impl<O: PullOutcome> Coordinator<O> {
    pub fn new(options: PullOptions) -> Self {
        Coordinator {
            shared: Arc::new(Shared {
                flights: Mutex::new(HashMap::new()),
                cap: Cap::new(options.permits),
                options: RwLock::new(options),
                backoff: Mutex::new(Backoff::default()),
                stats: PullStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> PullStatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The metrics, for registration.
    pub fn metrics(&self) -> &PullStats {
        &self.shared.stats
    }

    /// Applies new options to pulls that start from now on; the cap resizes at once
    /// (queued pulls start when it grows; running ones finish when it shrinks).
    pub fn reconfigure(&self, options: PullOptions) {
        *self.shared.options.write() = options;
        self.shared.cap.set_limit(options.permits);
    }

    pub fn options(&self) -> PullOptions {
        *self.shared.options.read()
    }

    /// The cap: (permits in use, size; `None` = unlimited).
    pub fn cap_usage(&self) -> (usize, Option<usize>) {
        self.shared.cap.usage()
    }

    /// Every queued and running pull, oldest first.
    pub fn flights(&self) -> Vec<FlightView> {
        let flights = self.shared.flights.lock();
        let mut views: Vec<FlightView> = flights.values().map(|f| f.view()).collect();
        drop(flights);
        views.sort_by_key(|v| v.sequence);
        views
    }

    /// Waits for the outcome of the pull for `key`, starting it with `job` when no pull
    /// for that key is in flight. The caller's `deadline` and its own cancellation
    /// (dropping this future) affect only this caller.
    pub async fn pull<Fut>(
        &self,
        key: PullKey,
        deadline: Option<Instant>,
        job: impl FnOnce() -> Fut,
    ) -> Result<O, WaitError>
    where
        Fut: Future<Output = O> + Send + 'static,
    {
        if let Some(outcome) = self.backed_off(&key) {
            return Ok(outcome);
        }
        let guard = self.join_or_start(key, job);
        let mut results = guard.flight().subscribe();
        let wait = results.wait_for(Option::is_some);
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, wait).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(WaitError::DeadlineExceeded),
            },
            None => wait.await,
        };
        let outcome = outcome
            .map(|o| o.clone())
            .map_err(|_| WaitError::Cancelled)?;
        drop(guard);
        outcome.ok_or(WaitError::Cancelled)
    }

    fn backed_off(&self, key: &PullKey) -> Option<O> {
        if !self.options().failure_backoff {
            return None;
        }
        let outcome = self.shared.backoff.lock().active(key, Instant::now())?;
        self.shared.stats.result(PullResult::backed_off).inc();
        tracing::info!(image = %key.image, handler = %key.handler, "pull refused: key is backing off after a registry failure");
        Some(outcome)
    }

    fn join_or_start<Fut>(&self, key: PullKey, job: impl FnOnce() -> Fut) -> WaiterGuard<O>
    where
        Fut: Future<Output = O> + Send + 'static,
    {
        let mut flights = self.shared.flights.lock();
        if let Some(flight) = flights.get(&key) {
            self.shared.stats.merged.inc();
            return WaiterGuard::join(self.shared.clone(), flight.clone());
        }
        let flight = Arc::new(Flight::new(key.clone()));
        flights.insert(key.clone(), flight.clone());
        let ticket = self.shared.cap.enqueue();
        let guard = WaiterGuard::join(self.shared.clone(), flight.clone());
        drop(flights);
        let task = tokio::spawn(flight::run(
            self.shared.clone(),
            key.clone(),
            flight.clone(),
            ticket,
            job(),
        ));
        tokio::spawn(flight::supervise(self.shared.clone(), key, flight, task));
        guard
    }
}

#[cfg(test)]
mod tests;
