//! What one caller connection may hold in buffered request bytes: intercepted calls
//! read their request whole (up to the 16 MiB message limit), so without a budget a
//! client could open many streams and make imageshim hold 16 MiB for each. A call that
//! would take the connection past its budget is refused (RESOURCE_EXHAUSTED), never
//! waited for: waiting could wedge a connection whose streams all wait. Bytes return
//! when the call that read them is done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Request bytes one connection may have buffered at once: two calls of the largest
/// message the kubelet sends.
pub const CONNECTION_BUDGET: usize = 32 * 1024 * 1024;

/// One connection's budget, shared by its calls (carried in each request's
/// extensions).
#[derive(Debug, Clone, Default)]
pub struct RequestBudget(Arc<AtomicUsize>);

/// Bytes a call holds against its connection's budget, returned on drop.
#[derive(Debug, Default)]
pub struct BudgetHold {
    budget: Option<RequestBudget>,
    bytes: usize,
}

/// The connection's buffered request bytes would pass the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this connection's buffered request bytes would exceed {CONNECTION_BUDGET} bytes; retry when its other calls are done")]
pub struct OverBudget;

impl RequestBudget {
    /// Bytes buffered on the connection now.
    pub fn in_use(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl BudgetHold {
    /// A hold on `budget` (none: an own call, not counted).
    pub fn on(budget: Option<RequestBudget>) -> Self {
        BudgetHold { budget, bytes: 0 }
    }

    /// Takes `bytes` more, or refuses when the connection would pass its budget.
    pub fn take(&mut self, bytes: usize) -> Result<(), OverBudget> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let taken = budget
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|total| *total <= CONNECTION_BUDGET)
            });
        match taken {
            Ok(_) => {
                self.bytes += bytes;
                Ok(())
            }
            Err(_) => Err(OverBudget),
        }
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.0.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_against_their_connection_and_return_on_drop() {
        let budget = RequestBudget::default();
        let mut first = BudgetHold::on(Some(budget.clone()));
        first.take(CONNECTION_BUDGET - 10).unwrap();
        let mut second = BudgetHold::on(Some(budget.clone()));
        assert_eq!(second.take(11), Err(OverBudget));
        second.take(10).unwrap();
        assert_eq!(budget.in_use(), CONNECTION_BUDGET);
        drop(first);
        assert_eq!(budget.in_use(), 10);
        drop(second);
        assert_eq!(budget.in_use(), 0);
        let mut own = BudgetHold::on(None);
        own.take(usize::MAX).unwrap();
    }
}
