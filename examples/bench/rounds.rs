//! One measured call shape (method, request, callers) against every target, in
//! interleaved rounds: latencies of every call, wall time, and the CPU the target's
//! proxy process and containerd spent meanwhile.

use std::time::{Duration, Instant};

use crate::common::client::CriClient;
use crate::common::procstat::cpu_ns;

/// Something to call: containerd itself or a hop in front of it.
pub struct Target {
    pub name: &'static str,
    pub client: CriClient,
    /// The hop's process (`None` for containerd directly).
    pub pid: Option<String>,
}

/// What one target did over all rounds of one shape.
#[derive(Default)]
pub struct Tally {
    pub latencies: Vec<Duration>,
    pub wall: Duration,
    pub hop_cpu_ns: u64,
    pub containerd_cpu_ns: u64,
}

impl Tally {
    pub fn percentile(&self, p: usize) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
    }

    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    pub fn cpu_us_per_call(ns: u64, calls: usize) -> f64 {
        ns as f64 / 1e3 / calls as f64
    }
}

/// A call shape.
pub struct Shape {
    pub path: &'static str,
    pub request: Vec<u8>,
    pub callers: usize,
    pub calls_per_round: usize,
}

/// `rounds` rounds; in each, every target in turn (the order rotates) serves
/// `calls_per_round` calls from `callers` concurrent callers.
pub async fn interleaved(
    targets: &[Target],
    containerd_pid: &str,
    shape: &Shape,
    rounds: usize,
) -> Vec<Tally> {
    let mut tallies: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
    for round in 0..rounds {
        for offset in 0..targets.len() {
            let index = (round + offset) % targets.len();
            let target = &targets[index];
            let hop_before = target.pid.as_deref().map_or(0, cpu_ns);
            let containerd_before = cpu_ns(containerd_pid);
            let started = Instant::now();
            let latencies = run(&target.client, shape).await;
            let tally = &mut tallies[index];
            tally.wall += started.elapsed();
            tally.containerd_cpu_ns += cpu_ns(containerd_pid) - containerd_before;
            tally.hop_cpu_ns += target.pid.as_deref().map_or(0, cpu_ns) - hop_before;
            tally.latencies.extend(latencies);
        }
    }
    tallies
}

async fn run(client: &CriClient, shape: &Shape) -> Vec<Duration> {
    let per_caller = shape.calls_per_round.div_ceil(shape.callers);
    let mut tasks = Vec::new();
    for _ in 0..shape.callers {
        let (client, request, path) = (client.clone(), shape.request.clone(), shape.path);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_caller);
            for _ in 0..per_caller {
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
    all
}

/// Any message, as bytes: every target gets the same encoded request.
#[derive(Clone, Default)]
pub struct RawMessage(pub Vec<u8>);

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
