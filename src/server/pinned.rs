//! Pinned images (`[[pinned]]`): kept on the node by pulling them at start and again
//! whenever they are missing (checked after every RemoveImage and once a minute), and
//! reported with `Image.pinned = true` so the kubelet's image GC never removes them.
//! Pulls go through the coordinator like any other, so they respect the cap.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prost::Message;
use tokio::sync::Notify;

use super::call::UnaryCall;
use super::forward::{forward, CollectedResponse};
use super::pull_image::pull_through_coordinator;
use super::status::{self, CallError};
use super::ServerState;
use crate::backend::BackendSet;
use crate::config::PinnedImage;
use crate::cri::{self, paths, ImageSpec};
use crate::reference::Reference;

/// Pinned images are checked this often even without a RemoveImage.
pub const RECHECK: Duration = Duration::from_secs(60);

/// One pinned image, routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// As configured: what the backend is asked for.
    pub image: String,
    pub reference: Reference,
    pub handler: String,
    pub backend: String,
}

/// The pinned images in force, and the bell that makes the keeper look again.
#[derive(Default)]
pub struct PinnedSet {
    pins: RwLock<Arc<Vec<Pin>>>,
    wake: Notify,
}

impl PinnedSet {
    /// Routes `[[pinned]]` entries to their backends; an unroutable handler is an error
    /// naming the entry.
    pub fn resolve(config: &[PinnedImage], backends: &BackendSet) -> Result<Vec<Pin>, String> {
        config
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let reference = Reference::parse(&entry.image)
                    .map_err(|e| format!("pinned[{i}].image: {e}"))?;
                let backend = backends
                    .route(&entry.handler)
                    .map_err(|e| format!("pinned[{i}].handler: {e}"))?;
                Ok(Pin {
                    image: entry.image.clone(),
                    reference,
                    handler: entry.handler.clone(),
                    backend: backend.name.clone(),
                })
            })
            .collect()
    }

    /// Puts `pins` in force and has the keeper check them at once.
    pub fn replace(&self, pins: Vec<Pin>) {
        *self.pins.write() = Arc::new(pins);
        self.wake.notify_one();
    }

    pub fn all(&self) -> Arc<Vec<Pin>> {
        self.pins.read().clone()
    }

    /// The pins served by `backend`.
    pub fn on_backend(&self, backend: &str) -> Vec<Pin> {
        self.all()
            .iter()
            .filter(|p| p.backend == backend)
            .cloned()
            .collect()
    }

    /// An image may have been removed: check the pins now.
    pub fn recheck(&self) {
        if !self.all().is_empty() {
            self.wake.notify_one();
        }
    }
}

/// True when one of `image`'s names is a pinned reference.
pub fn is_pinned(pins: &[Pin], image: &cri::Image) -> bool {
    image
        .repo_tags
        .iter()
        .chain(&image.repo_digests)
        .filter_map(|name| Reference::parse(name).ok())
        .any(|name| pins.iter().any(|pin| pin.reference.key() == name.key()))
}

/// Keeps every pinned image present, forever.
pub async fn keep_pinned(state: Arc<ServerState>) {
    loop {
        let pins = state.pinned.all();
        for pin in pins.iter() {
            if let Err(err) = ensure_present(&state, pin).await {
                tracing::warn!(image = %pin.image, handler = %pin.handler, error = %status::chain(&err), "pinned image is not on the node; retrying later");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RECHECK) => {}
            _ = state.pinned.wake.notified() => {}
        }
    }
}

fn spec(pin: &Pin) -> ImageSpec {
    ImageSpec {
        image: pin.image.clone(),
        runtime_handler: pin.handler.clone(),
        ..Default::default()
    }
}

async fn ensure_present(state: &ServerState, pin: &Pin) -> Result<(), CallError> {
    let backend = state.backends.route(&pin.handler)?.clone();
    let request = cri::ImageStatusRequest {
        image: Some(spec(pin)),
        verbose: false,
    };
    let call = UnaryCall::own(paths::IMAGE_STATUS, &request.encode_to_vec());
    let answer = CollectedResponse::read(forward(&backend, call.to_request()).await?)
        .await?
        .ok_or_status()?;
    let found: cri::ImageStatusResponse = Message::decode(cri::wire::unframe(&answer.body)?)?;
    if found.image.is_some() {
        return Ok(());
    }
    tracing::info!(image = %pin.image, handler = %pin.handler, backend = %backend.name, "pulling pinned image");
    let request = cri::PullImageRequest {
        image: Some(spec(pin)),
        ..Default::default()
    };
    let call = UnaryCall::own(paths::PULL_IMAGE, &request.encode_to_vec());
    let response =
        pull_through_coordinator(state, &backend, &pin.reference, &request, call).await?;
    CollectedResponse::read(response).await?.ok_or_status()?;
    Ok(())
}
