//! Long mixed load against a running imageshim in front of a real containerd and
//! registries (started by hack/soak): merged and distinct pulls, failing pulls,
//! credentialed pulls through a plugin, ImageStatus/ListImages, RuntimeService calls.
//! Samples imageshim's RSS, open fds and threads every 10 s; exits 1 on any unexpected
//! answer or on growth after warm-up.
//!   soak SHIM_SOCKET REGISTRY AUTH_REGISTRY SHIM_PID MINUTES
#![allow(clippy::unwrap_used, unreachable_pub)] // test and example code: failures panic loudly; pub is for sharing support code

mod common;

use common::{client, oci, procstat};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::CriClient;
use imageshim::cri::{self, paths};
use tonic::Code;

const IMAGES: usize = 8;

#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    unexpected: AtomicU64,
}

impl Tally {
    fn record(&self, what: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.calls.fetch_add(1, Relaxed);
        if !ok {
            self.unexpected.fetch_add(1, Relaxed);
            eprintln!("UNEXPECTED {what}: {}", detail());
        }
    }
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn remove(client: &CriClient, image: &str) {
    let request = cri::RemoveImageRequest { image: spec(image) };
    let _: Result<cri::RemoveImageResponse, _> = client.call(paths::REMOVE_IMAGE, request).await;
}

/// One kind of load, repeated until `stop`.
async fn worker(
    kind: usize,
    client: CriClient,
    images: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut round = 0usize;
    while !stop.load(Relaxed) {
        round += 1;
        match kind {
            0..=3 => pull_round(kind, round, &client, &images, &tally).await,
            _ => query_round(kind, &images[round % IMAGES], &client, &tally).await,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Merged (0), distinct (1), failing (2) and plugin-credentialed (3) pulls.
async fn pull_round(
    kind: usize,
    round: usize,
    client: &CriClient,
    images: &[String],
    tally: &Tally,
) {
    let image = &images[round % IMAGES];
    match kind {
        0 => {
            // 20 merged callers, then the image goes so the next round pulls again.
            let results = client.pull_concurrently(image, 20).await;
            let ok = results.iter().all(|r| r.is_ok());
            tally.record("merged pull", ok, || format!("{results:?}"));
            remove(client, image).await;
        }
        1 => {
            let result = client.pull(&images[(round + 3) % IMAGES]).await;
            tally.record("distinct pull", result.is_ok(), || format!("{result:?}"));
        }
        2 => {
            let missing = format!("{}-missing:{round}", images[0].rsplit_once(':').unwrap().0);
            let result = client.pull(&missing).await;
            let ok = matches!(&result, Err(s) if s.code() == Code::NotFound);
            tally.record("failing pull", ok, || format!("{result:?}"));
        }
        _ => {
            let private = &images[IMAGES];
            let result = client.pull(private).await;
            tally.record("plugin-credentialed pull", result.is_ok(), || {
                format!("{result:?}")
            });
            remove(client, private).await;
        }
    }
}

/// ImageStatus and ListImages (4), Version and ImageFsInfo (5).
async fn query_round(kind: usize, image: &str, client: &CriClient, tally: &Tally) {
    if kind == 4 {
        let request = cri::ImageStatusRequest {
            image: spec(image),
            verbose: false,
        };
        let status: Result<cri::ImageStatusResponse, _> =
            client.call(paths::IMAGE_STATUS, request).await;
        tally.record("ImageStatus", status.is_ok(), || format!("{status:?}"));
        let list: Result<cri::ListImagesResponse, _> = client
            .call(paths::LIST_IMAGES, cri::ListImagesRequest::default())
            .await;
        tally.record("ListImages", list.is_ok(), || format!("{list:?}"));
        return;
    }
    let version: Result<cri::VersionResponse, _> = client
        .call(
            "/runtime.v1.RuntimeService/Version",
            cri::VersionRequest::default(),
        )
        .await;
    tally.record("Version", version.is_ok(), || format!("{version:?}"));
    let fs: Result<cri::ImageFsInfoResponse, _> = client
        .call(paths::IMAGE_FS_INFO, cri::ImageFsInfoRequest::default())
        .await;
    tally.record("ImageFsInfo", fs.is_ok(), || format!("{fs:?}"));
}

/// RSS KiB, open fds, threads of `pid`.
fn sample(pid: &str) -> (u64, usize, u64) {
    let rss = procstat::rss_kib(pid);
    assert!(rss > 0, "imageshim runs");
    (
        rss,
        procstat::open_fds(pid),
        procstat::status_field(pid, "Threads"),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, registry, auth_registry, pid, minutes] = &args[..] else {
        panic!("usage: soak SHIM_SOCKET REGISTRY AUTH_REGISTRY SHIM_PID MINUTES");
    };
    let minutes: f64 = minutes.parse().expect("MINUTES");
    let images = push_images(registry, auth_registry);
    let images = Arc::new(images);
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let client = CriClient::new(std::path::Path::new(socket));
    let workers: Vec<_> = (0..6)
        .map(|kind| {
            tokio::spawn(worker(
                kind,
                client.clone(),
                images.clone(),
                stop.clone(),
                tally.clone(),
            ))
        })
        .collect();
    let samples = sample_until(pid, Duration::from_secs_f64(minutes * 60.0), &tally).await;
    stop.store(true, Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    std::process::exit(verdict(&samples, &tally));
}

/// Distinct test images on the plain registry, then a private one on the htpasswd
/// registry (last).
fn push_images(registry: &str, auth_registry: &str) -> Vec<String> {
    let run = std::process::id();
    let mut images: Vec<String> = (0..IMAGES)
        .map(|i| {
            let repo = format!("soak/image-{run}-{i}");
            oci::build_and_push(registry, &repo, &["v1"], None, None);
            format!("{registry}/{repo}:v1")
        })
        .collect();
    let private = format!("soak/private-{run}");
    let password = std::env::var("SOAK_AUTH_PASSWORD").expect("SOAK_AUTH_PASSWORD");
    let credentials = Some(("soak", password.as_str()));
    oci::build_and_push(auth_registry, &private, &["v1"], None, credentials);
    images.push(format!("{auth_registry}/{private}:v1"));
    images
}

/// Samples imageshim every 10 s for `length`, printing each sample.
async fn sample_until(pid: &str, length: Duration, tally: &Tally) -> Vec<(u64, usize, u64)> {
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < length {
        let wait = Duration::from_secs(10).min(length.saturating_sub(started.elapsed()));
        tokio::time::sleep(wait).await;
        let (rss, fds, threads) = sample(pid);
        println!(
            "t={:>5.0}s calls={:>7} unexpected={} rss={rss} KiB fds={fds} threads={threads}",
            started.elapsed().as_secs_f64(),
            tally.calls.load(Relaxed),
            tally.unexpected.load(Relaxed)
        );
        samples.push((rss, fds, threads));
    }
    samples
}

/// 0 when nothing unexpected happened and nothing grew after the first 30 s.
fn verdict(samples: &[(u64, usize, u64)], tally: &Tally) -> i32 {
    let warm = samples
        .iter()
        .take(3)
        .fold((0, 0, 0), |m, s| (m.0.max(s.0), m.1.max(s.1), m.2.max(s.2)));
    let last = *samples.last().expect("at least one sample");
    let grew = last.0 > warm.0 + warm.0 / 4 + 2048 || last.1 > warm.1 + 16 || last.2 > warm.2 + 4;
    let unexpected = tally.unexpected.load(Relaxed);
    println!(
        "soak: {} calls, {unexpected} unexpected; after warm-up rss {} → {} KiB, fds {} → {}, threads {} → {}",
        tally.calls.load(Relaxed), warm.0, last.0, warm.1, last.1, warm.2, last.2
    );
    if unexpected > 0 || grew {
        println!(
            "soak FAILED: {}",
            if grew {
                "growth after warm-up"
            } else {
                "unexpected answers"
            }
        );
        return 1;
    }
    0
}
