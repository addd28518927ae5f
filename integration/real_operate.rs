//! Ring 3 for operators (issue 10): what `/debug/pulls`, `/metrics`, `/readyz` and
//! `imageshim status` show of real pulls on the real containerd behind a slow (throttled)
//! or stalling registry front; stalled pulls aborted; pinned images kept.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::real_faults::PrivateContainerd;
use crate::support::oci::{push_sized_image, push_sized_image_with_bytes};
use crate::support::stallproxy::StallProxy;
use crate::support::{backend_toml, RealEnv, Shim};
use imageshim::cri::{self, paths};
use imageshim::status::view::{PullView, StatusView};

const BINARY: &str = env!("CARGO_BIN_EXE_imageshim");

fn nonce() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn view(shim: &Shim) -> StatusView {
    let (code, body) = shim.admin_get("/debug/pulls").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls the view until `ready` holds (at most 30 s).
async fn until_view(shim: &Shim, what: &str, ready: impl Fn(&StatusView) -> bool) -> StatusView {
    let started = Instant::now();
    loop {
        let seen = view(shim).await;
        if ready(&seen) {
            return seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn running(view: &StatusView) -> Vec<&PullView> {
    view.pulls.iter().filter(|p| p.state == "running").collect()
}

fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn status_command(shim: &Shim, args: &[&str]) -> String {
    let addr = shim
        .running
        .as_ref()
        .unwrap()
        .admin_addr()
        .unwrap()
        .to_string();
    let output = std::process::Command::new(BINARY)
        .args(["status", "--admin", &addr])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_two_shows_two_running_pulls_with_growing_bytes_and_four_queued() {
    let Some((env, _turn)) = RealEnv::acquire_containerd(module_path!()).await else {
        return;
    };
    let proxy = StallProxy::start(&env.registry, 0, false).await;
    // containerd 1.6 writes a download to its content store in 1 MiB steps: 640 KiB/s
    // gives a step every ~1.6 s and a pull of ~4 MiB that lasts ~7 s.
    proxy.set_throttle(32 * 1024);
    env.plain_http_registry(&proxy.address);
    let run = nonce();
    let images: Vec<(String, u64)> = (0..6)
        .map(|i| {
            let repo = format!("op/slow-{run}-{i}");
            let (_, bytes) = push_sized_image_with_bytes(
                &env.registry,
                &repo,
                "v1",
                4 * 1024 * 1024 + i * 65536,
            );
            (format!("{}/{repo}:v1", proxy.address), bytes)
        })
        .collect();
    let config = format!(
        "{}[pull]\nserialize_image_pulls = false\nmax_parallel_image_pulls = 2\n",
        env.runtime_backend("")
    );
    let shim = Shim::start(&config).await;
    let pulls: Vec<_> = images
        .iter()
        .map(|(image, _)| {
            let (client, image) = (shim.client.clone(), image.clone());
            tokio::spawn(async move { client.pull(&image).await })
        })
        .collect();
    let measured = until_view(&shim, "2 running with bytes, 4 queued", |v| {
        let running = running(v);
        running.len() == 2
            && v.cap.queued == 4
            && running.iter().all(|p| p.bytes_done.unwrap_or(0) > 0)
    })
    .await;
    for pull in running(&measured) {
        let expected = images
            .iter()
            .find(|(image, _)| *image == pull.image)
            .unwrap()
            .1;
        assert_eq!(
            pull.bytes_total,
            Some(expected),
            "each pull's own bytes: {pull:#?}"
        );
        assert!(pull.bytes_done.unwrap() < expected);
    }
    assert_eq!(
        (measured.cap.in_use, measured.cap.size, measured.waiters),
        (2, Some(2), 6)
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = view(&shim).await;
    let grew = running(&measured).iter().all(|before| {
        later
            .pulls
            .iter()
            .all(|now| now.image != before.image || now.bytes_done > before.bytes_done)
    });
    assert!(grew, "bytes grow: {measured:#?} then {later:#?}");
    let from_cli: StatusView = serde_json::from_str(&status_command(&shim, &["--json"])).unwrap();
    assert_eq!(
        (running(&from_cli).len(), from_cli.cap.queued),
        (2, 4),
        "{from_cli:#?}"
    );
    let table = status_command(&shim, &[]);
    println!("imageshim status:\n{table}");
    assert!(
        table.contains("cap: 2 / 2 running, 4 queued; 6 waiting callers"),
        "{table}"
    );
    assert_eq!(table.matches("running ").count(), 2, "{table}");
    let (_, metrics) = shim.admin_get("/metrics").await;
    println!("{metrics}");
    assert_eq!(
        metric_value(&metrics, "imageshim_pulls_in_flight{state=\"running\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&metrics, "imageshim_pulls_in_flight{state=\"queued\"}"),
        Some(4.0)
    );
    assert_eq!(metric_value(&metrics, "imageshim_pull_waiters"), Some(6.0));
    assert!(metric_value(&metrics, "imageshim_pull_bytes_total").unwrap() > 0.0);
    proxy.set_throttle(0);
    for pull in pulls {
        pull.await.unwrap().expect("every pull succeeds");
    }
    let (_, metrics) = shim.admin_get("/metrics").await;
    assert_eq!(
        metric_value(&metrics, "imageshim_pulls_total{result=\"success\"}"),
        Some(6.0)
    );
    assert_eq!(
        metric_value(&metrics, "imageshim_pulls_in_flight{state=\"running\"}"),
        Some(0.0)
    );
    assert!(
        metrics.contains("imageshim_grpc_requests_total{method=\"PullImage\",code=\"OK\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("imageshim_backend_up{backend=\"runtime\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pull_is_aborted_for_every_waiter_and_the_next_queued_pull_starts() {
    let Some((env, _turn)) = RealEnv::acquire_containerd(module_path!()).await else {
        return;
    };
    let proxy = StallProxy::start(&env.registry, 0, true).await;
    env.plain_http_registry(&proxy.address);
    let run = nonce();
    push_sized_image(&env.registry, &format!("op/stall-{run}"), "v1", 512 * 1024);
    push_sized_image(&env.registry, &format!("op/after-{run}"), "v1", 4096);
    let stalled = format!("{}/op/stall-{run}:v1", proxy.address);
    let after = format!("{}/op/after-{run}:v1", env.registry);
    let config = format!(
        "{}[pull]\nprogress_timeout = \"3s\"\n",
        env.runtime_backend("")
    );
    let shim = Shim::start(&config).await;
    let started = Instant::now();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (client, image) = (shim.client.clone(), stalled.clone());
            tokio::spawn(async move { client.pull(&image).await })
        })
        .collect();
    until_view(&shim, "stalled pull running", |v| {
        running(v).len() == 1 && v.waiters == 3
    })
    .await;
    let next = {
        let (client, image) = (shim.client.clone(), after.clone());
        tokio::spawn(async move { client.pull(&image).await })
    };
    until_view(&shim, "next pull queued", |v| v.cap.queued == 1).await;
    for waiter in waiters {
        let status = waiter.await.unwrap().expect_err("a stalled pull fails");
        assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
        let message = status.message();
        for part in [format!("op/stall-{run}:v1"), "3s".into(), "bytes".into()] {
            assert!(message.contains(&part), "{part} in {message}");
        }
    }
    let aborted_after = started.elapsed();
    assert!(aborted_after >= Duration::from_secs(3), "{aborted_after:?}");
    assert!(
        next.await.unwrap().is_ok(),
        "the queued pull ran after the abort"
    );
    let (_, metrics) = shim.admin_get("/metrics").await;
    assert_eq!(
        metric_value(&metrics, "imageshim_pulls_total{result=\"stalled\"}"),
        Some(1.0)
    );
    proxy.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_image_is_pulled_at_start_reported_pinned_and_pulled_again_when_removed() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let image = format!("{}/op/pinned-{}:v1", env.registry, nonce());
    let repo = image
        .split_once('/')
        .unwrap()
        .1
        .split_once(':')
        .unwrap()
        .0
        .to_string();
    push_sized_image(&env.registry, &repo, "v1", 4096);
    let config = format!("{}[[pinned]]\nimage = {image:?}\n", env.runtime_backend(""));
    let shim = Shim::start(&config).await;
    let direct = env.direct();
    direct
        .until_present(&image, "pinned image pulled at start")
        .await;
    assert!(
        !direct.image_status(&image).await.unwrap().pinned,
        "the runtime does not pin it"
    );
    assert!(
        shim.client.image_status(&image).await.unwrap().pinned,
        "reported pinned"
    );
    let listed: cri::ListImagesResponse = shim
        .client
        .call(paths::LIST_IMAGES, cri::ListImagesRequest::default())
        .await
        .unwrap();
    // containerd 2.x pins its own sandbox image; imageshim marks only its [[pinned]].
    let direct_list: cri::ListImagesResponse = direct
        .call(paths::LIST_IMAGES, cri::ListImagesRequest::default())
        .await
        .unwrap();
    let pinned_directly: Vec<_> = direct_list.images.iter().filter(|i| i.pinned).collect();
    let pinned: Vec<_> = listed.images.iter().filter(|i| i.pinned).collect();
    assert_eq!(
        pinned.len(),
        pinned_directly.len() + 1,
        "only the pinned image is marked"
    );
    assert!(pinned.iter().any(|i| i.repo_tags.contains(&image)));
    shim.client.remove_image(&image).await.unwrap();
    let back = direct
        .until_present(&image, "pulled again after removal")
        .await;
    println!("pinned image back {back:?} after RemoveImage");
    assert!(shim.client.image_status(&image).await.unwrap().pinned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_naming_the_backend_while_containerd_is_down_and_200_after() {
    let Some((_env, _turn)) = RealEnv::acquire_containerd(module_path!()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let containerd = PrivateContainerd::start(dir.path());
    let shim = Shim::start(&backend_toml(
        "private",
        "containerd",
        &containerd.socket(),
        true,
        &[],
        "",
    ))
    .await;
    let until_ready = |want: u16| {
        let shim = &shim;
        async move {
            let started = Instant::now();
            loop {
                let (code, body) = shim.admin_get("/readyz").await;
                if code == want {
                    return (body, started.elapsed());
                }
                assert!(started.elapsed() < Duration::from_secs(15), "{code} {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    until_ready(200).await;
    assert_eq!(shim.admin_get("/healthz").await.0, 200);
    containerd.kill();
    let (body, after) = until_ready(503).await;
    assert!(body.contains("backend private"), "{body}");
    println!("/readyz 503 {after:?} after the kill: {body}");
    let (_, metrics) = shim.admin_get("/metrics").await;
    assert!(
        metrics.contains("imageshim_backend_up{backend=\"private\"} 0"),
        "{metrics}"
    );
    let containerd = PrivateContainerd::start(dir.path());
    let (_, after) = until_ready(200).await;
    println!("/readyz 200 {after:?} after the restart");
    drop(containerd);
}
