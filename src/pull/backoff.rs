//! Optional node-wide failure backoff: after a key's pull fails with a registry error,
//! identical pulls get the same answer without a backend call for a window that starts
//! at 10 s, doubles per failure up to 300 s, and resets after 600 s without a failure
//! (the kubelet's per-pod numbers, applied per key: `backOffPeriod` and
//! `MaxContainerBackOff` in `pkg/kubelet/kubelet.go`, reset as `flowcontrol.Backoff`
//! does after twice the maximum).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// True for a pull failure that came from the registry side and so counts for backoff:
/// not a success, nor the caller's or the node's own trouble (cancelled, deadline,
/// runtime unavailable, out of resources).
pub fn is_registry_failure_code(code: tonic::Code) -> bool {
    use tonic::Code;
    !matches!(
        code,
        Code::Ok
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unavailable
            | Code::ResourceExhausted
    )
}

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
pub const RESET_AFTER: Duration = Duration::from_secs(600);

struct Entry<O> {
    window: Duration,
    last_failure: Instant,
    outcome: O,
}

/// Failure windows per key.
pub struct Backoff<K, O> {
    entries: HashMap<K, Entry<O>>,
}

impl<K: Hash + Eq + Clone, O: Clone> Default for Backoff<K, O> {
    fn default() -> Self {
        Backoff {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, O: Clone> Backoff<K, O> {
    /// The stored failure while `key` is inside its window.
    pub fn active(&mut self, key: &K, now: Instant) -> Option<O> {
        let entry = self.entries.get(key)?;
        if now.duration_since(entry.last_failure) >= RESET_AFTER {
            self.entries.remove(key);
            return None;
        }
        (now < entry.last_failure + entry.window).then(|| entry.outcome.clone())
    }

    /// Records a registry failure, growing the window.
    pub fn failed(&mut self, key: &K, outcome: O, now: Instant) -> Duration {
        let window = match self.entries.get(key) {
            Some(e) if now.duration_since(e.last_failure) < RESET_AFTER => (e.window * 2).min(MAX),
            _ => INITIAL,
        };
        self.entries.insert(
            key.clone(),
            Entry {
                window,
                last_failure: now,
                outcome,
            },
        );
        window
    }

    /// A success clears the key's history.
    pub fn succeeded(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_cap_and_reset() {
        let mut backoff: Backoff<&str, &str> = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(backoff.failed(&"k", "e1", t0), INITIAL);
        assert_eq!(
            backoff.active(&"k", t0 + Duration::from_secs(9)),
            Some("e1")
        );
        assert_eq!(backoff.active(&"k", t0 + Duration::from_secs(10)), None);
        let mut now = t0 + Duration::from_secs(10);
        let mut windows = vec![];
        for _ in 0..7 {
            windows.push(backoff.failed(&"k", "e", now).as_secs());
            now += Duration::from_secs(1);
        }
        assert_eq!(windows, [20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(
            backoff.failed(&"k", "e", now + RESET_AFTER),
            INITIAL,
            "reset after 600 s quiet"
        );
        backoff.succeeded(&"k");
        assert_eq!(backoff.active(&"k", now + RESET_AFTER), None);
        assert_eq!(backoff.active(&"other", now), None);
    }
}
