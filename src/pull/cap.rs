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
    cap: Arc<Mutex<CapState>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut locked = self.cap.lock();
        locked.in_use -= 1;
        grant_while_room(&self.cap, locked);
    }
}

struct CapState {
    /// `None` = unlimited.
    limit: Option<usize>,
    in_use: usize,
    queue: VecDeque<oneshot::Sender<Permit>>,
}

impl CapState {
    fn has_room(&self) -> bool {
        self.limit.is_none_or(|limit| self.in_use < limit)
    }
}

/// FIFO pull cap; its size can change while pulls hold permits.
#[derive(Clone)]
pub struct Cap {
    state: Arc<Mutex<CapState>>,
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
            state: Arc::new(Mutex::new(CapState {
                limit: permits,
                in_use: 0,
                queue: VecDeque::new(),
            })),
        }
    }

    /// Takes a place in the queue now; the permit is granted in enqueue order.
    pub fn enqueue(&self) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let mut locked = self.state.lock();
        locked.queue.push_back(tx);
        grant_while_room(&self.state, locked);
        Ticket(rx)
    }

    /// Resizes the cap: queued tickets are granted at once if it grew; when it shrank,
    /// permits in use finish and no new one is granted until usage is under the limit.
    pub fn set_limit(&self, permits: Option<usize>) {
        let mut locked = self.state.lock();
        locked.limit = permits;
        grant_while_room(&self.state, locked);
    }

    /// Permits currently free (`None` when unlimited).
    pub fn available(&self) -> Option<usize> {
        let locked = self.state.lock();
        locked
            .limit
            .map(|limit| limit.saturating_sub(locked.in_use))
    }

    /// (permits in use, limit).
    pub fn usage(&self) -> (usize, Option<usize>) {
        let locked = self.state.lock();
        (locked.in_use, locked.limit)
    }
}

/// Grants permits to the oldest tickets still waiting while the cap has room.
fn grant_while_room<'a>(
    cap: &'a Arc<Mutex<CapState>>,
    mut locked: parking_lot::MutexGuard<'a, CapState>,
) {
    while locked.has_room() {
        let Some(next) = locked.queue.pop_front() else {
            return;
        };
        if next.is_closed() {
            continue;
        }
        locked.in_use += 1;
        drop(locked);
        // If the receiver went away meanwhile, the permit comes back through Drop.
        let _ = next.send(Permit { cap: cap.clone() });
        locked = cap.lock();
    }
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
    async fn a_grown_cap_grants_queued_tickets_and_a_shrunk_one_waits_for_returns() {
        let cap = Cap::new(Some(1));
        let first = cap.enqueue().granted().await;
        let second = cap.enqueue();
        let third = cap.enqueue();
        cap.set_limit(Some(2));
        let second = second.granted().await;
        assert_eq!(cap.usage(), (2, Some(2)));
        cap.set_limit(Some(1));
        drop(first);
        assert_eq!(
            cap.usage(),
            (1, Some(1)),
            "no grant while over the new limit"
        );
        drop(second);
        let third = third.granted().await;
        assert_eq!(cap.usage(), (1, Some(1)));
        cap.set_limit(None);
        let more: Vec<_> = (0..5).map(|_| cap.enqueue()).collect();
        for ticket in more {
            ticket.granted().await;
        }
        drop(third);
        assert_eq!(cap.available(), None);
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
