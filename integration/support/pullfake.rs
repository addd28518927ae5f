//! A fake backend whose PullImage can be held open, counted and failed on demand; the
//! other image calls answer at once.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imageshim::cri::{self, paths};
use tokio::sync::watch;

use super::fake::{handler, reply, reply_status, FakeBackend};

#[derive(Default)]
pub struct Gate {
    open: Mutex<Option<watch::Sender<bool>>>,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub finished: AtomicUsize,
    pub cancelled: AtomicUsize,
    /// Image strings in the order their pulls reached the backend.
    pub started: Mutex<Vec<String>>,
    /// When set, every pull fails with this status.
    pub fail_with: Mutex<Option<(tonic::Code, String)>>,
    /// How long an open-gated pull takes.
    pub work: Mutex<Duration>,
}

impl Gate {
    fn sender(&self) -> watch::Sender<bool> {
        self.open
            .lock()
            .unwrap()
            .get_or_insert_with(|| watch::Sender::new(false))
            .clone()
    }

    /// Lets held and future pulls complete.
    pub fn open(&self) {
        self.sender().send_replace(true);
    }

    pub fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    pub fn pulls(&self) -> usize {
        self.started.lock().unwrap().len()
    }
}

struct InFlight(Arc<Gate>, bool);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
        if !self.1 {
            self.0.cancelled.fetch_add(1, SeqCst);
        }
    }
}

async fn held_pull(gate: Arc<Gate>, image: String) -> http::Response<tonic::body::Body> {
    gate.started.lock().unwrap().push(image.clone());
    let now = gate.in_flight.fetch_add(1, SeqCst) + 1;
    gate.max_in_flight.fetch_max(now, SeqCst);
    let mut guard = InFlight(gate.clone(), false);
    let mut open = gate.sender().subscribe();
    let _ = open.wait_for(|o| *o).await;
    let work = *gate.work.lock().unwrap();
    tokio::time::sleep(work).await;
    guard.1 = true;
    gate.finished.fetch_add(1, SeqCst);
    drop(guard);
    if let Some((code, message)) = gate.fail_with.lock().unwrap().clone() {
        return reply_status(code, &message);
    }
    reply(&cri::PullImageResponse {
        image_ref: format!("sha256:{image}"),
    })
}

/// Starts the fake; the gate starts closed.
pub async fn start() -> (FakeBackend, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let shared = gate.clone();
    let backend = FakeBackend::start(handler(move |call| {
        let gate = shared.clone();
        async move {
            if call.path == paths::PULL_IMAGE {
                let request: cri::PullImageRequest = call.decode();
                return held_pull(gate, request.image_name().to_string()).await;
            }
            reply(&cri::ImageStatusResponse::default())
        }
    }))
    .await;
    (backend, gate)
}
