//! The node's pull cap: a FIFO semaphore whose queue order is fixed when a pull is
//! enqueued (synchronously), not when its task first runs. Permits return themselves
//! on drop, wherever they are dropped. The semantics are the kubelet's
//! `pkg/kubelet/images/puller.go` (serial and parallel pullers), applied to every
//! client.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::oneshot;

/// A permit to run one backend pull.
pub struct Permit {
    cap: Option<Arc<Mutex<CapState>>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(cap) = self.cap.take() {
            release(cap);
        }
    }
}

struct CapState {
    available: usize,
    queue: VecDeque<oneshot::Sender<Permit>>,
}

/// FIFO pull cap; `None` permits means unlimited.
#[derive(Clone)]
pub struct Cap {
    state: Option<Arc<Mutex<CapState>>>,
}

/// A place in the queue; resolves to a permit.
pub struct Ticket(oneshot::Receiver<Permit>);

impl Ticket {
    /// Waits for this ticket's turn.
    pub async fn granted(self) -> Permit {
        self.0.await.expect("the cap never drops a queued ticket")
    }
}

impl Cap {
    pub fn new(permits: Option<usize>) -> Cap {
        Cap {
            state: permits.map(|available| {
                Arc::new(Mutex::new(CapState {
                    available,
                    queue: VecDeque::new(),
                }))
            }),
        }
    }

    /// Takes a place in the queue now; the permit is granted in enqueue order.
    pub fn enqueue(&self) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let Some(state) = &self.state else {
            let _ = tx.send(Permit { cap: None });
            return Ticket(rx);
        };
        let mut locked = state.lock();
        if locked.available > 0 && locked.queue.is_empty() {
            locked.available -= 1;
            drop(locked);
            let _ = tx.send(Permit {
                cap: Some(state.clone()),
            });
        } else {
            locked.queue.push_back(tx);
        }
        Ticket(rx)
    }

    /// Permits currently free (`None` when unlimited).
    pub fn available(&self) -> Option<usize> {
        self.state.as_ref().map(|s| s.lock().available)
    }
}

/// Hands a returned permit to the oldest ticket still waiting, or frees it.
fn release(cap: Arc<Mutex<CapState>>) {
    let mut locked = cap.lock();
    while let Some(next) = locked.queue.pop_front() {
        if next.is_closed() {
            continue;
        }
        drop(locked);
        // If the receiver went away meanwhile, the permit comes back through Drop.
        let _ = next.send(Permit {
            cap: Some(cap.clone()),
        });
        return;
    }
    locked.available += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_are_granted_in_enqueue_order_and_skip_dropped_tickets() {
        let cap = Cap::new(Some(1));
        let first = cap.enqueue().granted().await;
        let second = cap.enqueue();
        let gone = cap.enqueue();
        let third = cap.enqueue();
        drop(gone);
        assert_eq!(cap.available(), Some(0));
        drop(first);
        let second = second.granted().await;
        drop(second);
        let third = third.granted().await;
        drop(third);
        assert_eq!(cap.available(), Some(1), "every permit came back");
    }

    #[tokio::test]
    async fn unlimited_never_waits() {
        let cap = Cap::new(None);
        let held: Vec<_> = (0..100).map(|_| cap.enqueue()).collect();
        for ticket in held {
            ticket.granted().await;
        }
        assert_eq!(cap.available(), None);
    }
}
