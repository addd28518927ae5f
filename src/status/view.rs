//! The admin view (`/debug/pulls`, read by `imageshim status`): every queued and
//! running pull with its progress, the cap, and backend readiness. Serializable both
//! ways; carries image names but never a credential (the key's credential fingerprint
//! is not part of it).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::backend::health::Health;
use crate::backend::BackendSet;
use crate::config::BackendKind;
use crate::pull::{FlightPhase, FlightView};
use crate::server::pull_image::Pulls;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub cap: CapView,
    pub waiters: usize,
    pub backends: Vec<BackendView>,
    pub pulls: Vec<PullView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapView {
    pub in_use: usize,
    /// `None`: unlimited.
    pub size: Option<usize>,
    pub queued: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendView {
    pub name: String,
    pub kind: String,
    pub ready: bool,
    pub last_answer_seconds_ago: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullView {
    pub image: String,
    pub handler: String,
    pub backend: String,
    /// `queued` or `running`.
    pub state: String,
    pub waiters: usize,
    /// Seconds since the pull was first asked for.
    pub elapsed_seconds: f64,
    /// Seconds since it got its cap permit (running only).
    pub running_seconds: Option<f64>,
    /// `None`: not measured (queued, CRI-O, or not yet sampled).
    pub bytes_done: Option<u64>,
    /// `None` or 0: not known yet.
    pub bytes_total: Option<u64>,
    pub bytes_per_second: Option<f64>,
    pub last_progress_seconds_ago: Option<f64>,
}

/// Builds views from the live coordinator and probes.
pub struct Viewer {
    pub pulls: Pulls,
    pub health: Arc<Health>,
    pub kinds: Vec<(String, BackendKind)>,
}

impl Viewer {
    pub fn new(pulls: Pulls, health: Arc<Health>, backends: &BackendSet) -> Self {
        let kinds = backends
            .all()
            .iter()
            .map(|b| (b.name.clone(), b.kind))
            .collect();
        Viewer {
            pulls,
            health,
            kinds,
        }
    }

    pub fn view(&self) -> StatusView {
        let now = Instant::now();
        let flights = self.pulls.flights();
        let pulls: Vec<PullView> = flights.iter().map(|f| pull_view(f, now)).collect();
        let (in_use, size) = self.pulls.cap_usage();
        StatusView {
            cap: CapView {
                in_use,
                size,
                queued: pulls.iter().filter(|p| p.state == "queued").count(),
            },
            waiters: flights.iter().map(|f| f.waiters).sum(),
            backends: self.backend_views(),
            pulls,
        }
    }

    fn backend_views(&self) -> Vec<BackendView> {
        self.health
            .readiness()
            .into_iter()
            .map(|r| BackendView {
                kind: self
                    .kinds
                    .iter()
                    .find(|(name, _)| *name == r.backend)
                    .map_or("", |(_, kind)| kind_name(*kind))
                    .to_string(),
                name: r.backend,
                ready: r.ready,
                last_answer_seconds_ago: r.last_answer_age.map(|a| a.as_secs_f64()),
                error: r.last_error,
            })
            .collect()
    }
}

fn kind_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Containerd => "containerd",
        BackendKind::CriO => "cri-o",
    }
}

fn pull_view(flight: &FlightView, now: Instant) -> PullView {
    let mut view = PullView {
        image: flight.key.image.clone(),
        handler: flight.key.handler.clone(),
        backend: flight.key.backend.clone(),
        state: "queued".into(),
        waiters: flight.waiters,
        elapsed_seconds: now.duration_since(flight.enqueued_at).as_secs_f64(),
        running_seconds: None,
        bytes_done: None,
        bytes_total: None,
        bytes_per_second: None,
        last_progress_seconds_ago: None,
    };
    if let FlightPhase::Running {
        started_at,
        progress,
    } = &flight.phase
    {
        view.state = "running".into();
        view.running_seconds = Some(now.duration_since(*started_at).as_secs_f64());
        let progress = progress.get();
        if progress.measured {
            view.bytes_done = Some(progress.bytes_done);
            view.bytes_total = Some(progress.bytes_total);
            view.bytes_per_second = Some(progress.bytes_per_second);
            view.last_progress_seconds_ago =
                Some(now.duration_since(progress.last_progress).as_secs_f64());
        }
    }
    view
}
