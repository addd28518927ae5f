//! Ring 2 for the pull coordinator: imageshim in-process in front of a fake backend
//! whose pulls can be held, counted and failed — merge, cap, FIFO, deadlines,
//! cancellation and abandonment, where timing must be exact.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::support::{backend_toml, pullfake, Shim};
use imageshim::cri::{self, paths};
use imageshim::pull::PullStatsSnapshot;
use tonic::Code;

async fn shim(fake: &crate::support::fake::FakeBackend, pull: &str) -> Shim {
    let config = format!(
        "{}[pull]\n{pull}\n",
        backend_toml("fake", "containerd", &fake.socket, true, &["kata"], "")
    );
    Shim::start(&config).await
}

fn request(image: &str, handler: &str, user: Option<&str>) -> cri::PullImageRequest {
    cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            runtime_handler: handler.into(),
            ..Default::default()
        }),
        auth: user.map(|u| cri::AuthConfig {
            username: u.into(),
            password: format!("{u}-password"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spawn_pull(
    shim: &Shim,
    request: cri::PullImageRequest,
) -> tokio::task::JoinHandle<Result<String, tonic::Status>> {
    let client = shim.client.clone();
    tokio::spawn(async move {
        client
            .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, request)
            .await
            .map(|r| r.image_ref)
    })
}

/// Polls the shim's pull statistics until `ready` holds (2 s at most).
async fn until(shim: &Shim, what: &str, ready: impl Fn(&PullStatsSnapshot) -> bool) {
    for _ in 0..400 {
        if ready(&shim.running.as_ref().unwrap().pull_stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        shim.running.as_ref().unwrap().pull_stats()
    );
}

#[tokio::test]
async fn a_hundred_callers_of_one_image_make_one_backend_pull() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "").await;
    let callers: Vec<_> = (0..100)
        .map(|_| spawn_pull(&shim, request("busybox", "", None)))
        .collect();
    until(&shim, "100 waiters", |s| s.waiters == 100).await;
    gate.open();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), "sha256:busybox");
    }
    assert_eq!(gate.pulls(), 1);
    let stats = shim.running.as_ref().unwrap().pull_stats();
    assert_eq!(
        (
            stats.started_total,
            stats.merged_total,
            stats.succeeded_total
        ),
        (1, 99, 1)
    );
    // The key is forgotten once the pull ends: the next pull goes to the backend.
    assert!(spawn_pull(&shim, request("busybox", "", None))
        .await
        .unwrap()
        .is_ok());
    assert_eq!(gate.pulls(), 2);
}

#[tokio::test]
async fn different_credentials_and_handlers_never_share_a_pull() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "serialize_image_pulls = false").await;
    let callers = vec![
        spawn_pull(&shim, request("busybox", "", Some("alice"))),
        spawn_pull(&shim, request("busybox", "", Some("alice"))),
        spawn_pull(&shim, request("busybox", "", Some("bob"))),
        spawn_pull(&shim, request("busybox", "", None)),
        spawn_pull(&shim, request("docker.io/library/busybox:latest", "", None)),
        spawn_pull(&shim, request("busybox", "kata", None)),
    ];
    until(&shim, "6 waiters", |s| s.waiters == 6).await;
    gate.open();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    // alice (merged twice), bob, anonymous (two spellings of one image), kata.
    assert_eq!(gate.pulls(), 4, "{:?}", gate.started());
    let sent = fake.calls_to(paths::PULL_IMAGE);
    let users: Vec<String> = sent
        .iter()
        .map(|c| {
            c.decode::<cri::PullImageRequest>()
                .auth
                .map(|a| a.username)
                .unwrap_or_default()
        })
        .collect();
    assert!(users.contains(&"alice".to_string()) && users.contains(&"bob".to_string()));
}

#[tokio::test]
async fn a_caller_with_a_1ms_deadline_gets_deadline_exceeded_and_others_succeed() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "").await;
    let others: Vec<_> = (0..5)
        .map(|_| spawn_pull(&shim, request("busybox", "", None)))
        .collect();
    until(&shim, "5 waiters", |s| s.waiters == 5).await;
    let hasty =
        crate::support::raw::pull_with_timeout(&shim.socket, &request("busybox", "", None), "1m")
            .await;
    assert_eq!(hasty.0, (Code::DeadlineExceeded as i32).to_string());
    gate.open();
    for caller in others {
        assert_eq!(caller.await.unwrap().unwrap(), "sha256:busybox");
    }
    assert_eq!((gate.pulls(), gate.cancelled.load(SeqCst)), (1, 0));
    let forwarded = &fake.calls_to(paths::PULL_IMAGE)[0];
    assert!(
        forwarded.headers.get("grpc-timeout").is_none(),
        "the pull carries no caller's deadline"
    );
}

#[tokio::test]
async fn a_caller_that_leaves_does_not_disturb_the_others() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "").await;
    let leaving = spawn_pull(&shim, request("busybox", "", None));
    let staying = spawn_pull(&shim, request("busybox", "", None));
    until(&shim, "2 waiters", |s| s.waiters == 2).await;
    leaving.abort();
    until(&shim, "1 waiter", |s| s.waiters == 1).await;
    gate.open();
    assert_eq!(staying.await.unwrap().unwrap(), "sha256:busybox");
    assert_eq!((gate.pulls(), gate.cancelled.load(SeqCst)), (1, 0));
}

#[tokio::test]
async fn last_waiter_gone_cancels_a_running_pull_and_drops_a_queued_one() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "cancel_abandoned = true").await;
    let running = spawn_pull(&shim, request("first", "", None));
    until(&shim, "first running", |s| s.running == 1).await;
    let queued = spawn_pull(&shim, request("second", "", None));
    until(&shim, "second queued", |s| s.queued == 1).await;
    queued.abort();
    until(&shim, "queued pull dropped", |s| {
        s.cancelled_total == 1 && s.queued == 0
    })
    .await;
    running.abort();
    until(&shim, "running pull cancelled", |s| s.cancelled_total == 2).await;
    for _ in 0..200 {
        if gate.cancelled.load(SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        gate.cancelled.load(SeqCst),
        1,
        "the backend saw its pull cancelled"
    );
    assert_eq!(
        gate.started(),
        ["first"],
        "the queued pull never reached the backend"
    );
}

#[tokio::test]
async fn last_waiter_gone_lets_a_running_pull_finish_when_configured() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "cancel_abandoned = false").await;
    let caller = spawn_pull(&shim, request("busybox", "", None));
    until(&shim, "running", |s| s.running == 1).await;
    caller.abort();
    until(&shim, "no waiter", |s| s.waiters == 0).await;
    gate.open();
    until(&shim, "finished", |s| s.succeeded_total == 1).await;
    assert_eq!(
        (gate.finished.load(SeqCst), gate.cancelled.load(SeqCst)),
        (1, 0)
    );
}

#[tokio::test]
async fn queued_pulls_start_in_arrival_order() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "serialize_image_pulls = true").await;
    let mut callers = vec![spawn_pull(&shim, request("p0", "", None))];
    until(&shim, "p0 running", |s| s.running == 1).await;
    for i in 1..6u64 {
        callers.push(spawn_pull(&shim, request(&format!("p{i}"), "", None)));
        until(&shim, "queued", |s| s.queued == i).await;
    }
    gate.open();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    assert_eq!(gate.started(), ["p0", "p1", "p2", "p3", "p4", "p5"]);
    assert_eq!(gate.max_in_flight.load(SeqCst), 1);
}

#[tokio::test]
async fn with_max_3_the_backend_never_sees_a_4th_concurrent_pull() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(
        &fake,
        "serialize_image_pulls = false\nmax_parallel_image_pulls = 3",
    )
    .await;
    *gate.work.lock().unwrap() = Duration::from_millis(20);
    gate.open();
    let callers: Vec<_> = (0..50)
        .map(|i| spawn_pull(&shim, request(&format!("image-{i}"), "", None)))
        .collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    assert_eq!(gate.pulls(), 50);
    assert_eq!(
        gate.max_in_flight.load(SeqCst),
        3,
        "the cap is reached and never passed"
    );
}

#[tokio::test]
async fn merged_callers_take_no_permit_and_image_status_never_waits() {
    let (fake, gate) = pullfake::start().await;
    let shim = shim(&fake, "").await;
    let mut callers: Vec<_> = (0..10)
        .map(|_| spawn_pull(&shim, request("held", "", None)))
        .collect();
    until(&shim, "10 waiters, 1 running", |s| {
        s.waiters == 10 && s.running == 1
    })
    .await;
    let stats = shim.running.as_ref().unwrap().pull_stats();
    assert_eq!(
        (stats.queued, stats.merged_total),
        (0, 9),
        "merged callers are not queued"
    );
    callers.push(spawn_pull(&shim, request("other", "", None)));
    until(&shim, "other queued", |s| s.queued == 1).await;
    let started = std::time::Instant::now();
    let status: Result<cri::ImageStatusResponse, _> = shim
        .client
        .call(
            paths::IMAGE_STATUS,
            cri::ImageStatusRequest {
                image: request("held", "", None).image,
                verbose: false,
            },
        )
        .await;
    assert!(status.is_ok() && started.elapsed() < Duration::from_secs(1));
    gate.open();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_backend_error_reaches_every_waiter_verbatim() {
    let (fake, gate) = pullfake::start().await;
    *gate.fail_with.lock().unwrap() = Some((
        Code::NotFound,
        "RegistryUnavailable: registry said no".into(),
    ));
    let shim = shim(&fake, "").await;
    let callers: Vec<_> = (0..10)
        .map(|_| spawn_pull(&shim, request("busybox", "", None)))
        .collect();
    until(&shim, "10 waiters", |s| s.waiters == 10).await;
    gate.open();
    for caller in callers {
        let err = caller.await.unwrap().unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (Code::NotFound, "RegistryUnavailable: registry said no")
        );
    }
    assert_eq!(gate.pulls(), 1);
}

#[tokio::test]
async fn failure_backoff_repeats_a_registry_failure_without_a_backend_call() {
    let (fake, gate) = pullfake::start().await;
    *gate.fail_with.lock().unwrap() = Some((Code::Unknown, "failed to pull: not found".into()));
    gate.open();
    let shim = shim(&fake, "failure_backoff = true").await;
    for _ in 0..3 {
        let err = spawn_pull(&shim, request("missing", "", None))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.message(), "failed to pull: not found");
    }
    assert_eq!(
        gate.pulls(),
        1,
        "later identical pulls did not reach the backend"
    );
    let _ = spawn_pull(&shim, request("other", "", None)).await.unwrap();
    assert_eq!(gate.pulls(), 2, "another key is unaffected");
    assert_eq!(
        shim.running.as_ref().unwrap().pull_stats().backed_off_total,
        2
    );
}

#[tokio::test]
async fn a_parallel_maximum_with_serialized_pulls_is_refused() {
    let text = "socket = \"/tmp/x.sock\"\n[[backend]]\nname = \"c\"\nkind = \"containerd\"\nendpoint = \"unix:///x.sock\"\ndefault = true\n[pull]\nmax_parallel_image_pulls = 5\n";
    // A config that breaks the kubelet's cap rule never exists: parsing refuses it.
    let err = imageshim::config::Config::parse(text)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains(
            "max_parallel_image_pulls (5) must be 1 or unset when serialize_image_pulls is true"
        ),
        "{err}"
    );
}
