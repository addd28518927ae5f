//! The extra hop measured (started by hack/bench): the same CRI calls against
//! containerd directly, through imageshim, through nghttpx (a mature C HTTP/2 proxy) and
//! through socat (a byte relay: the floor of any hop), in interleaved rounds in one run.
//! For Version, ListContainers, ImageStatus and ListImages (with the store filled) at 1,
//! 16 and 64 callers on one connection each, like the kubelet's: p50/p90/p99, µs added
//! over direct, throughput and its ratio to direct, and CPU µs per call of the hop and of
//! containerd (per-thread schedstat around each round). Then 100 merged pulls and
//! imageshim's RSS idle and after 1,000 concurrent calls.
//! Environment: BENCH_{CONTAINERD,IMAGESHIM,NGHTTPX,SOCAT}_{SOCK,PID}, BENCH_REGISTRY,
//! BENCH_REGISTRY_LOG, BENCH_IMAGES, BENCH_ROUNDS; BENCH_ONLY limits the shapes to those
//! whose label contains it and skips the pulls and memory figures (for quick comparisons
//! while profiling).
#![allow(clippy::unwrap_used, unreachable_pub)] // example code: failures panic loudly

#[path = "../common/mod.rs"]
mod common;
mod rounds;

use std::time::{Duration, Instant};

use common::client::CriClient;
use common::{oci, procstat::rss_kib};
use imageshim::cri::{self, paths};
use rounds::{interleaved, RawMessage, Shape, Tally, Target};

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (hack/bench sets it)"))
}

fn target(name: &'static str, key: &str) -> Target {
    let pid = (key != "CONTAINERD").then(|| env(&format!("BENCH_{key}_PID")));
    Target {
        name,
        client: CriClient::new(env(&format!("BENCH_{key}_SOCK")).as_ref()),
        pid,
    }
}

#[tokio::main]
async fn main() {
    let registry = env("BENCH_REGISTRY");
    let images: usize = env("BENCH_IMAGES").parse().unwrap();
    let rounds: usize = env("BENCH_ROUNDS").parse().unwrap();
    let containerd_pid = env("BENCH_CONTAINERD_PID");
    let shim_pid = env("BENCH_IMAGESHIM_PID");
    let targets = [
        target("containerd", "CONTAINERD"),
        target("imageshim", "IMAGESHIM"),
        target("nghttpx", "NGHTTPX"),
        target("socat", "SOCAT"),
    ];
    let idle_rss = rss_kib(&shim_pid);
    fill_store(&targets[0].client, &registry, images).await;
    println!("| call (callers) | via | p50 / p90 / p99 µs | added p50 µs | calls/s | vs direct | hop CPU µs/call | containerd CPU µs/call |");
    println!("|---|---|---|---|---|---|---|---|");
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for shape in shapes(&registry, images) {
        if !shape.0.contains(&only) {
            continue;
        }
        let tallies = interleaved(&targets, &containerd_pid, &shape.1, rounds).await;
        print_rows(&shape.0, &targets, &tallies);
    }
    if !only.is_empty() {
        return; // a quick comparison: no pulls, no memory figures
    }
    let loaded_rss = rss_kib(&shim_pid);
    let burst_rss = after_concurrent_calls(&targets[1].client, 1000, &shim_pid).await;
    merged_pulls(&targets[1].client, &targets[0].client, &registry).await;
    println!(
        "imageshim RSS: idle {idle_rss} KiB, after the rounds {loaded_rss} KiB, with 1,000 concurrent calls {burst_rss} KiB"
    );
}

fn encoded(message: &impl prost::Message) -> Vec<u8> {
    message.encode_to_vec()
}

/// Every measured shape, named.
fn shapes(registry: &str, images: usize) -> Vec<(String, Shape)> {
    let status = encoded(&cri::ImageStatusRequest {
        image: Some(cri::ImageSpec {
            image: format!("{registry}/bench/img-0:v1"),
            ..Default::default()
        }),
        verbose: false,
    });
    let calls: [(&str, &'static str, Vec<u8>, usize); 4] = [
        (
            "Version",
            VERSION,
            encoded(&cri::VersionRequest::default()),
            1,
        ),
        ("ListContainers", LIST_CONTAINERS, Vec::new(), 1),
        ("ImageStatus", paths::IMAGE_STATUS, status, 1),
        (
            "ListImages",
            paths::LIST_IMAGES,
            encoded(&cri::ListImagesRequest::default()),
            20,
        ),
    ];
    let mut shapes = Vec::new();
    for callers in [1usize, 16, 64] {
        for (name, path, request, divisor) in &calls {
            let calls_per_round = match callers {
                1 => 1500,
                _ => 4000,
            } / divisor;
            let label = match *name {
                "ListImages" => format!("ListImages, {images} images ({callers})"),
                other => format!("{other} ({callers})"),
            };
            shapes.push((
                label,
                Shape {
                    path,
                    request: request.clone(),
                    callers,
                    calls_per_round: calls_per_round.max(callers),
                },
            ));
        }
    }
    shapes
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_rows(label: &str, targets: &[Target], tallies: &[Tally]) {
    let direct = &tallies[0];
    for (target, tally) in targets.iter().zip(tallies) {
        let calls = tally.latencies.len();
        let added = match target.pid {
            None => "—".to_string(),
            Some(_) => format!(
                "{:+.0}",
                micros(tally.percentile(50)) - micros(direct.percentile(50))
            ),
        };
        let hop_cpu = match target.pid {
            None => "—".to_string(),
            Some(_) => format!("{:.1}", Tally::cpu_us_per_call(tally.hop_cpu_ns, calls)),
        };
        println!(
            "| {label} | {} | {:.0} / {:.0} / {:.0} | {added} | {:.0} | {:.2} | {hop_cpu} | {:.1} |",
            target.name,
            micros(tally.percentile(50)),
            micros(tally.percentile(90)),
            micros(tally.percentile(99)),
            tally.per_second(),
            tally.per_second() / direct.per_second(),
            Tally::cpu_us_per_call(tally.containerd_cpu_ns, calls),
        );
    }
}

/// Pushes `images` test images and pulls each into containerd (8 at a time).
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
    for chunk in (0..images).collect::<Vec<_>>().chunks(8) {
        let pulls: Vec<_> = chunk
            .iter()
            .map(|i| {
                let (client, image) = (direct.clone(), format!("{registry}/bench/img-{i}:v1"));
                tokio::spawn(async move { client.pull(&image).await.expect("pull") })
            })
            .collect();
        for pull in pulls {
            pull.await.unwrap();
        }
    }
}

/// imageshim's RSS while `calls` Version calls are in flight at once.
async fn after_concurrent_calls(shim: &CriClient, calls: usize, pid: &str) -> u64 {
    let request = encoded(&cri::VersionRequest::default());
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let (client, request) = (shim.clone(), request.clone());
            tokio::spawn(async move {
                let _: RawMessage = client.call(VERSION, RawMessage(request)).await.unwrap();
            })
        })
        .collect();
    let mut peak = rss_kib(pid);
    for task in tasks {
        peak = peak.max(rss_kib(pid));
        task.await.unwrap();
    }
    peak.max(rss_kib(pid))
}

/// 100 concurrent pulls of one fresh image, through imageshim and directly.
async fn merged_pulls(shim: &CriClient, direct: &CriClient, registry: &str) {
    tokio::task::spawn_blocking({
        let registry = registry.to_string();
        move || {
            oci::build_and_push(&registry, "bench/merge-shim", &["v1"], None, None);
            oci::build_and_push(&registry, "bench/merge-direct", &["v1"], None, None);
        }
    })
    .await
    .unwrap();
    let wall = |client: &CriClient, image: String| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            for result in client.pull_concurrently(&image, 100).await {
                result.expect("pull");
            }
            started.elapsed()
        }
    };
    let via = wall(shim, format!("{registry}/bench/merge-shim:v1")).await;
    let straight = wall(direct, format!("{registry}/bench/merge-direct:v1")).await;
    let log = std::fs::read_to_string(env("BENCH_REGISTRY_LOG")).unwrap_or_default();
    let gets = |repo: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("\"GET /v2/{repo}/manifests/")))
            .count()
    };
    println!();
    println!(
        "100 concurrent pulls of one image: imageshim {:.0} ms, {} manifest GET(s); containerd {:.0} ms, {} manifest GET(s)",
        micros(via) / 1e3,
        gets("bench/merge-shim"),
        micros(straight) / 1e3,
        gets("bench/merge-direct"),
    );
}
