//! imageshim against direct containerd, measured in one run (started by hack/bench):
//! latency (p50/p99) and throughput of Version, ImageStatus and ListImages at 1 and 64
//! concurrent callers, 100 concurrent pulls of one image, and imageshim's RSS.
//!   bench SHIM_SOCKET CONTAINERD_SOCKET REGISTRY REGISTRY_LOG SHIM_PID IMAGES
#![allow(clippy::unwrap_used, unreachable_pub)] // test and example code: failures panic loudly; pub is for sharing support code

mod common;

use common::{client, oci, procstat};

use std::time::{Duration, Instant};

use client::CriClient;
use imageshim::cri::{self, paths};
use procstat::rss_kib;

const VERSION: &str = "/runtime.v1.RuntimeService/Version";

struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

async fn measure(
    client: &CriClient,
    path: &'static str,
    request: Vec<u8>,
    concurrency: usize,
    calls: usize,
) -> Figures {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, request) = (client.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..calls / concurrency {
                let message = RawMessage(request.clone());
                let t = Instant::now();
                let _: RawMessage = client.call(path, message).await.expect("call succeeds");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    Figures {
        p50: all[all.len() / 2],
        p99: all[all.len() * 99 / 100],
        per_second: all.len() as f64 / started.elapsed().as_secs_f64(),
    }
}

/// Any message, as bytes: both sides are compared on the same encoded request.
#[derive(Clone, Default)]
struct RawMessage(Vec<u8>);

impl prost::Message for RawMessage {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        _: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, 0, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

fn manifest_gets(log: &str, repo: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(&format!("\"GET /v2/{repo}/manifests/")))
        .count()
}

fn row(name: &str, shim: &Figures, direct: &Figures) {
    println!(
        "| {name} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.0} / {:.0} | {:.2}x |",
        shim.p50.as_secs_f64() * 1e3,
        shim.p99.as_secs_f64() * 1e3,
        direct.p50.as_secs_f64() * 1e3,
        direct.p99.as_secs_f64() * 1e3,
        shim.per_second,
        direct.per_second,
        shim.per_second / direct.per_second,
    );
}

/// Wall time of `callers` concurrent pulls of one image.
async fn pull_many(client: &CriClient, image: &str, callers: usize) -> Duration {
    let started = Instant::now();
    for result in client.pull_concurrently(image, callers).await {
        result.expect("pull");
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [shim_socket, containerd_socket, registry, registry_log, shim_pid, images] = &args[..]
    else {
        panic!("usage: bench SHIM_SOCKET CONTAINERD_SOCKET REGISTRY REGISTRY_LOG SHIM_PID IMAGES");
    };
    let images: usize = images.parse().unwrap();
    let shim = CriClient::new(shim_socket.as_ref());
    let direct = CriClient::new(containerd_socket.as_ref());
    let idle_rss = rss_kib(shim_pid);
    fill_store(&direct, registry, images).await;
    latency_table(&shim, &direct, registry).await;
    let loaded_rss = rss_kib(shim_pid);
    merged_pulls(&shim, &direct, registry, registry_log).await;
    println!("imageshim RSS: idle {idle_rss} KiB, after load {loaded_rss} KiB");
}

/// Pushes `images` test images and pulls each into containerd.
async fn fill_store(direct: &CriClient, registry: &str, images: usize) {
    eprintln!("pushing and pulling {images} images…");
    let registry_for_push = registry.to_string();
    tokio::task::spawn_blocking(move || {
        for i in 0..images {
            let repo = format!("bench/img-{i}");
            oci::build_and_push(&registry_for_push, &repo, &["v1"], None, None);
        }
    })
    .await
    .unwrap();
    for i in 0..images {
        pull_many(direct, &format!("{registry}/bench/img-{i}:v1"), 1).await;
    }
}

/// Version, ImageStatus and ListImages at 1 and 64 callers, imageshim then containerd.
async fn latency_table(shim: &CriClient, direct: &CriClient, registry: &str) {
    let status_request = prost::Message::encode_to_vec(&cri::ImageStatusRequest {
        image: Some(cri::ImageSpec {
            image: format!("{registry}/bench/img-0:v1"),
            ..Default::default()
        }),
        verbose: false,
    });
    let version_request = prost::Message::encode_to_vec(&cri::VersionRequest::default());
    let list_request = prost::Message::encode_to_vec(&cri::ListImagesRequest::default());
    println!("| call (concurrency) | imageshim p50 / p99 | containerd p50 / p99 | calls/s imageshim / containerd | throughput ratio |");
    println!("|---|---|---|---|---|");
    for concurrency in [1usize, 64] {
        let calls = if concurrency == 1 { 500 } else { 3200 };
        for (name, path, request, calls) in [
            ("Version", VERSION, &version_request, calls),
            ("ImageStatus", paths::IMAGE_STATUS, &status_request, calls),
            ("ListImages", paths::LIST_IMAGES, &list_request, calls / 10),
        ] {
            let calls = calls.max(concurrency);
            let via = measure(shim, path, request.clone(), concurrency, calls).await;
            let straight = measure(direct, path, request.clone(), concurrency, calls).await;
            row(&format!("{name} ({concurrency})"), &via, &straight);
        }
    }
}

/// 100 concurrent pulls of one fresh image, through imageshim and directly.
async fn merged_pulls(shim: &CriClient, direct: &CriClient, registry: &str, registry_log: &str) {
    tokio::task::spawn_blocking({
        let registry = registry.to_string();
        move || {
            oci::build_and_push(&registry, "bench/merge-shim", &["v1"], None, None);
            oci::build_and_push(&registry, "bench/merge-direct", &["v1"], None, None);
        }
    })
    .await
    .unwrap();
    let via_one = pull_many(shim, &format!("{registry}/bench/merge-shim:v1"), 100).await;
    let straight = pull_many(direct, &format!("{registry}/bench/merge-direct:v1"), 100).await;
    println!();
    println!(
        "100 concurrent pulls of one image: imageshim {:.0} ms, {} manifest GET(s); containerd {:.0} ms, {} manifest GET(s)",
        via_one.as_secs_f64() * 1e3,
        manifest_gets(registry_log, "bench/merge-shim"),
        straight.as_secs_f64() * 1e3,
        manifest_gets(registry_log, "bench/merge-direct"),
    );
}
