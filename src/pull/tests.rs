use super::*;
use crate::cri::CredentialFingerprint;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
struct Outcome(Result<&'static str, &'static str>);

impl PullOutcome for Outcome {
    fn is_registry_failure(&self) -> bool {
        self.0.is_err()
    }
    fn is_success(&self) -> bool {
        self.0.is_ok()
    }
    fn task_failed(_image: &str, _why: &str) -> Self {
        Outcome(Err("task failed"))
    }
    fn stalled(_image: &str, _timeout: Duration, _bytes_done: u64) -> Self {
        Outcome(Err("stalled"))
    }
}

fn key(image: &str) -> PullKey {
    PullKey {
        image: image.into(),
        lands_in: "snapshotter overlayfs".into(),
        handler: String::new(),
        backend: "b".into(),
        credentials: CredentialFingerprint([0; 32]),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_key_backs_off_for_its_window_then_retries() {
    let coordinator = Coordinator::new(PullOptions {
        permits: Some(1),
        cancel_abandoned: true,
        failure_backoff: true,
        progress_timeout: None,
    });
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let attempt = || {
        let calls = calls.clone();
        coordinator.pull(key("k"), None, move || async move {
            calls.fetch_add(1, SeqCst);
            Outcome(Err("registry said no"))
        })
    };
    assert_eq!(attempt().await.unwrap(), Outcome(Err("registry said no")));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(attempt().await.unwrap(), Outcome(Err("registry said no")));
    assert_eq!(calls.load(SeqCst), 1, "inside the 10 s window");
    tokio::time::advance(Duration::from_secs(2)).await;
    attempt().await.unwrap();
    assert_eq!(calls.load(SeqCst), 2, "the window passed");
    tokio::time::advance(Duration::from_secs(19)).await;
    attempt().await.unwrap();
    assert_eq!(calls.load(SeqCst), 2, "the second window is 20 s");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_deadline_is_its_own() {
    let coordinator: Coordinator<Outcome> = Coordinator::new(PullOptions {
        permits: None,
        cancel_abandoned: true,
        failure_backoff: false,
        progress_timeout: None,
    });
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Outcome(Ok("done"))
    };
    let patient = tokio::spawn({
        let coordinator = coordinator.clone();
        async move { coordinator.pull(key("k"), None, slow).await }
    });
    tokio::task::yield_now().await;
    let hasty = coordinator
        .pull(
            key("k"),
            Some(Instant::now() + Duration::from_millis(1)),
            slow,
        )
        .await;
    assert_eq!(hasty, Err(WaitError::DeadlineExceeded));
    assert_eq!(patient.await.unwrap(), Ok(Outcome(Ok("done"))));
    assert_eq!(coordinator.stats().started_total, 1);
}

#[tokio::test]
async fn a_panicking_pull_answers_every_waiter_frees_its_permit_and_forgets_the_key() {
    let coordinator = Coordinator::new(PullOptions {
        permits: Some(1),
        cancel_abandoned: true,
        failure_backoff: false,
        progress_timeout: None,
    });
    let (release, released) = tokio::sync::watch::channel(false);
    let panicking = || {
        let mut released = released.clone();
        let coordinator = coordinator.clone();
        async move {
            coordinator
                .pull(key("k"), None, move || async move {
                    let _ = released.wait_for(|r| *r).await;
                    panic!("a bug in the pull job");
                })
                .await
        }
    };
    let waiters = futures_util::future::join_all((0..3).map(|_| panicking()));
    let answers = tokio::spawn(waiters);
    tokio::time::sleep(Duration::from_millis(20)).await;
    release.send_replace(true);
    let answers = tokio::time::timeout(Duration::from_secs(5), answers)
        .await
        .expect("no waiter hangs")
        .unwrap();
    assert!(answers
        .iter()
        .all(|a| a == &Ok(Outcome(Err("task failed")))));
    let stats = coordinator.stats();
    assert_eq!((stats.running, stats.queued, stats.waiters), (0, 0, 0));
    // The key is gone and the single permit is back: a fresh pull runs and succeeds.
    let next = coordinator.pull(key("k"), None, || async { Outcome(Ok("pulled")) });
    let next = tokio::time::timeout(Duration::from_secs(5), next).await;
    assert_eq!(next.expect("permit returned"), Ok(Outcome(Ok("pulled"))));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_pull_answers_every_waiter_and_frees_its_permit() {
    let coordinator: Coordinator<Outcome> = Coordinator::new(PullOptions {
        permits: Some(1),
        cancel_abandoned: true,
        failure_backoff: false,
        progress_timeout: Some(Duration::from_secs(5)),
    });
    let hanging = std::future::pending::<Outcome>;
    let first = tokio::spawn({
        let c = coordinator.clone();
        async move { c.pull(key("stuck"), None, hanging).await }
    });
    let second = tokio::spawn({
        let c = coordinator.clone();
        async move { c.pull(key("stuck"), None, hanging).await }
    });
    let queued = tokio::spawn({
        let c = coordinator.clone();
        async move {
            c.pull(key("next"), None, || async { Outcome(Ok("pulled")) })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let flights = coordinator.flights();
    assert_eq!(flights.len(), 2);
    let FlightPhase::Running { progress, .. } = &flights[0].phase else {
        panic!("the first pull runs");
    };
    assert_eq!(flights[0].waiters, 2);
    assert!(matches!(flights[1].phase, FlightPhase::Queued));
    progress.record(1000, 5000, false);
    for waiter in [first, second] {
        let outcome = waiter.await.unwrap().unwrap();
        assert_eq!(outcome, Outcome(Err("stalled")));
    }
    assert_eq!(queued.await.unwrap().unwrap(), Outcome(Ok("pulled")));
    let stats = coordinator.stats();
    assert_eq!((stats.stalled_total, stats.succeeded_total), (1, 1));
    assert_eq!(stats.bytes_total, 1000);
}
