//! Background tasks with an owner: each runs under a supervisor that restarts it after
//! a panic (logged), and all stop when their `Tasks` is dropped.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Aborts the task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The background tasks of one running imageshim.
#[derive(Default)]
pub(crate) struct Tasks {
    supervisors: Vec<AbortOnDrop>,
}

impl Tasks {
    /// Runs `make()`'s future; restarts it a second after it panics. A task that
    /// returns is done.
    pub(crate) fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let supervisor = tokio::spawn(async move {
            loop {
                let mut task = AbortOnDrop(tokio::spawn(make()));
                match (&mut task.0).await {
                    Ok(()) => return,
                    Err(err) if err.is_panic() => {
                        tracing::error!(
                            task = name,
                            "background task panicked; restarting it in 1s"
                        );
                    }
                    Err(_) => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        self.supervisors.push(AbortOnDrop(supervisor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_dropping_stops_it() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Tasks::default();
        let counted = runs.clone();
        tasks.spawn("test", move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, SeqCst) < 2 {
                    panic!("boom");
                }
                std::future::pending::<()>().await;
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(SeqCst), 3);
        drop(tasks);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(SeqCst), 3);
    }
}
