//! Backend readiness: each backend is asked `Version` every second; a backend is ready
//! while its last answer is recent. Feeds `/readyz` and `imageshim_backend_up`. Must
//! not change how calls are routed: a not-ready backend still gets every call.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::time::Instant;
use tonic::body::Body;
use tower::ServiceExt;

use super::{Backend, BackendSet};
use crate::cri::{wire, VersionRequest, VersionResponse};

/// The probe's user-agent, so a backend's logs tell probes from callers.
pub const PROBE_USER_AGENT: &str = "imageshim-readiness-probe";

/// How often each backend is asked.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A backend is ready while its last `Version` answer is younger than this.
pub const READY_WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

/// What the probes last saw of one backend.
#[derive(Debug, Clone, Default)]
struct ProbeState {
    last_ok: Option<Instant>,
    last_error: Option<String>,
}

/// Readiness of one backend, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub backend: String,
    pub ready: bool,
    /// Seconds since the last answer (`None`: never answered).
    pub last_answer_age: Option<Duration>,
    pub last_error: Option<String>,
}

/// The probes' findings for every backend.
pub struct Health {
    probes: Vec<(Arc<Backend>, Mutex<ProbeState>)>,
    up: Family<BackendLabels, Gauge>,
}

impl Health {
    pub fn new(backends: &BackendSet) -> Arc<Health> {
        Arc::new(Health {
            probes: backends
                .all()
                .iter()
                .map(|b| (b.clone(), Mutex::new(ProbeState::default())))
                .collect(),
            up: Family::default(),
        })
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "backend_up",
            "1 when the backend answered Version within the last 3 seconds",
            self.up.clone(),
        );
    }

    /// Every backend's readiness now (also brings `imageshim_backend_up` up to date).
    pub fn readiness(&self) -> Vec<Readiness> {
        let now = Instant::now();
        self.probes
            .iter()
            .map(|(backend, state)| {
                let state = state.lock().clone();
                let age = state.last_ok.map(|at| now.duration_since(at));
                let ready = age.is_some_and(|age| age < READY_WITHIN);
                // The gauge says what /readyz says, whenever either is read.
                self.up
                    .get_or_create(&BackendLabels {
                        backend: backend.name.clone(),
                    })
                    .set(i64::from(ready));
                Readiness {
                    backend: backend.name.clone(),
                    ready,
                    last_answer_age: age,
                    last_error: state.last_error,
                }
            })
            .collect()
    }

    /// Probes every backend forever, one call per [`PROBE_INTERVAL`] each.
    pub async fn probe_forever(self: Arc<Self>) {
        let mut loops = tokio::task::JoinSet::new();
        for index in 0..self.probes.len() {
            loops.spawn(self.clone().probe_one_forever(index));
        }
        while let Some(ended) = loops.join_next().await {
            if let Err(err) = ended {
                if err.is_panic() {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
        }
    }

    async fn probe_one_forever(self: Arc<Self>, index: usize) {
        let (backend, state) = &self.probes[index];
        let mut ticks = tokio::time::interval(PROBE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = tokio::time::timeout(PROBE_INTERVAL, ask_version(backend)).await;
            let result = result.unwrap_or_else(|_| Err("no answer within 1s".into()));
            if let Ok(version) = &result {
                backend.note_version(version);
            }
            self.record(backend, state, result.map(|_| ()));
        }
    }

    fn record(&self, backend: &Backend, state: &Mutex<ProbeState>, result: Result<(), String>) {
        let mut state = state.lock();
        let labels = BackendLabels {
            backend: backend.name.clone(),
        };
        match result {
            Ok(()) => {
                state.last_ok = Some(Instant::now());
                state.last_error = None;
                self.up.get_or_create(&labels).set(1);
            }
            Err(error) => {
                if state.last_error.as_ref() != Some(&error) {
                    tracing::warn!(backend = %backend.name, %error, "backend did not answer Version");
                }
                state.last_error = Some(error);
                let ready = state.last_ok.is_some_and(|at| at.elapsed() < READY_WITHIN);
                self.up.get_or_create(&labels).set(i64::from(ready));
            }
        }
    }
}

/// One `Version` call; `Err` says why it was not a successful answer.
pub(super) async fn ask_version(backend: &Backend) -> Result<VersionResponse, String> {
    let message = VersionRequest {
        version: "0.1.0".into(),
    }
    .encode_to_vec();
    let request = http::Request::builder()
        .method("POST")
        .uri("http://localhost/runtime.v1.RuntimeService/Version")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", PROBE_USER_AGENT)
        .body(Body::new(http_body_util::Full::new(wire::frame(&message))))
        .map_err(|e| e.to_string())?;
    let response = backend
        .channel()
        .oneshot(request)
        .await
        .map_err(|e| format!("unreachable: {}", crate::error_chain(&e)))?;
    if let Some(status) = response.headers().get("grpc-status") {
        status_result(status.as_bytes())?;
        return Ok(VersionResponse::default());
    }
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("answer broke off: {e}"))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body: Bytes = collected.to_bytes();
    match trailers.get("grpc-status") {
        Some(status) => status_result(status.as_bytes())?,
        None => return Err("answer without grpc-status".into()),
    }
    let message = wire::unframe(&body).map_err(|e| format!("Version answer: {e}"))?;
    VersionResponse::decode(message).map_err(|e| format!("Version answer: {e}"))
}

fn status_result(status: &[u8]) -> Result<(), String> {
    match status {
        b"0" => Ok(()),
        other => Err(format!(
            "Version answered grpc-status {}",
            String::from_utf8_lossy(other)
        )),
    }
}
