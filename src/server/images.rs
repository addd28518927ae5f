//! Thin handlers for the intercepted ImageService calls: read a view of the request,
//! validate, route by runtime handler, forward the caller's own bytes, and mark answers
//! with the handler the request named. Policy lives elsewhere.

use http::Response;
use prost::Message;
use tonic::body::Body;

use super::call::UnaryCall;
use super::forward::{forward, forward_streamed, CollectedResponse};
use super::pinned::{is_pinned, Pin};
use super::status::CallError;
use super::ServerState;
use crate::backend::landing::status_snapshotter;
use crate::cri::{self, paths, wire, ImageSpec};
use crate::reference::Reference;
use crate::transport::body::AnswerBody;
use crate::transport::h2c::AnswerStream;

/// The intercepted ImageService methods: the one list of what `handle` serves itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intercepted {
    PullImage,
    ImageStatus,
    ListImages,
    RemoveImage,
    ImageFsInfo,
}

impl Intercepted {
    /// The intercepted method at `path`, if any.
    pub fn of(path: &str) -> Option<Intercepted> {
        Some(match path {
            paths::PULL_IMAGE => Intercepted::PullImage,
            paths::IMAGE_STATUS => Intercepted::ImageStatus,
            paths::LIST_IMAGES => Intercepted::ListImages,
            paths::REMOVE_IMAGE => Intercepted::RemoveImage,
            paths::IMAGE_FS_INFO => Intercepted::ImageFsInfo,
            _ => return None,
        })
    }
}

/// Serves an intercepted call (ImageFsInfo goes to the default backend as it is).
pub async fn handle(
    state: &ServerState,
    method: Intercepted,
    call: UnaryCall,
) -> Result<Response<AnswerBody>, CallError> {
    match method {
        Intercepted::PullImage => made(pull_image(state, call).await),
        Intercepted::ImageStatus => image_status(state, call).await,
        Intercepted::ListImages => list_images(state, call).await,
        Intercepted::RemoveImage => remove_image(state, call).await,
        Intercepted::ImageFsInfo => {
            streamed(forward_streamed(state.backends.default_backend(), call.into_request()).await)
        }
    }
}

/// An answer imageshim made.
fn made(answer: Result<Response<Body>, CallError>) -> Result<Response<AnswerBody>, CallError> {
    answer.map(|response| response.map(AnswerBody::Made))
}

/// The backend's answer, streamed back as it arrives.
fn streamed(
    answer: Result<Response<AnswerStream>, CallError>,
) -> Result<Response<AnswerBody>, CallError> {
    answer.map(|response| response.map(AnswerBody::Streamed))
}

async fn pull_image(state: &ServerState, call: UnaryCall) -> Result<Response<Body>, CallError> {
    let view: cri::PullImageRequest = call.decode()?;
    let image = view.image_name();
    let reference = Reference::parse(image).map_err(|source| CallError::Reference {
        image: image.to_string(),
        source,
    })?;
    // Routing uses the handler the request names; containerd's annotation only
    // decides, on containerd 2.x, which of its snapshotters the pull lands in.
    let handler = view.spec_handler();
    let backend = state.backends.route(handler)?;
    tracing::debug!(image = %reference, handler, backend = %backend.name, "pull image");
    let backend = backend.clone();
    super::pull_image::pull_through_coordinator(state, &backend, &reference, &view, call).await
}

async fn image_status(
    state: &ServerState,
    call: UnaryCall,
) -> Result<Response<AnswerBody>, CallError> {
    let view: cri::ImageStatusRequest = call.decode()?;
    let handler = cri::spec_handler(view.image.as_ref());
    let backend = state.backends.route(handler)?;
    // Only a named handler can need the snapshotter check (and the runtime's family).
    let snapshotter = match handler.is_empty() {
        true => None,
        false => status_snapshotter(backend.family().await, backend.catalog.as_ref(), handler)
            .map(str::to_string),
    };
    let answer = forward_and_mark(state, backend, call, handler, true).await;
    match snapshotter {
        None => answer,
        Some(snapshotter) => {
            made(super::presence::present_in(backend, answer?, &snapshotter).await)
        }
    }
}

async fn list_images(
    state: &ServerState,
    call: UnaryCall,
) -> Result<Response<AnswerBody>, CallError> {
    let view: cri::ListImagesRequest = call.decode()?;
    let handler =
        cri::spec_handler(view.filter.as_ref().and_then(|f| f.image.as_ref())).to_string();
    if handler.is_empty() && state.backends.all().len() > 1 {
        return made(list_images_everywhere(state, &call).await);
    }
    let backend = state.backends.route(&handler)?;
    forward_and_mark(state, backend, call, &handler, false).await
}

/// Forwards an ImageStatus (`single`) or ListImages call to `backend` (the one serving
/// `handler`); the answer streams back as it is unless it has images to mark.
async fn forward_and_mark(
    state: &ServerState,
    backend: &std::sync::Arc<crate::backend::Backend>,
    call: UnaryCall,
    handler: &str,
    single: bool,
) -> Result<Response<AnswerBody>, CallError> {
    let response = forward_streamed(backend, call.into_request()).await?;
    let pins = state.pinned.on_backend(&backend.name);
    if handler.is_empty() && pins.is_empty() {
        return streamed(Ok(response));
    }
    made(mark_images(response.map(Body::new), handler, &pins, single).await)
}

async fn remove_image(
    state: &ServerState,
    call: UnaryCall,
) -> Result<Response<AnswerBody>, CallError> {
    let view: cri::RemoveImageRequest = call.decode()?;
    let backend = state
        .backends
        .route(cri::spec_handler(view.image.as_ref()))?;
    let response = forward_streamed(backend, call.into_request()).await;
    state.pinned.recheck();
    streamed(response)
}

/// Asks every backend and concatenates the answers (repeated fields concatenate on the
/// wire); the first failure is returned as it is.
async fn list_images_everywhere(
    state: &ServerState,
    call: &UnaryCall,
) -> Result<Response<Body>, CallError> {
    let mut first: Option<CollectedResponse> = None;
    let mut merged = Vec::new();
    for backend in state.backends.all() {
        let collected = CollectedResponse::read(forward(backend, call.to_request()).await?).await?;
        if !collected.is_ok() {
            return Ok(collected.to_response());
        }
        let pins = state.pinned.on_backend(&backend.name);
        merged.extend_from_slice(&edit_images(wire::unframe(&collected.body)?, "", &pins)?);
        first.get_or_insert(collected);
    }
    let first = first.expect("at least one backend");
    Ok(first.to_response_with(wire::frame(&merged)))
}

/// Marks the images of an ImageStatus (`single`) or ListImages answer: the handler the
/// request named (`Image.spec.runtime_handler`) and `Image.pinned` for pinned images.
async fn mark_images(
    response: Response<Body>,
    handler: &str,
    pins: &[Pin],
    single: bool,
) -> Result<Response<Body>, CallError> {
    let collected = CollectedResponse::read(response).await?;
    if !collected.is_ok() || collected.body.is_empty() {
        return Ok(collected.to_response());
    }
    let message = wire::unframe(&collected.body)?;
    if single && !wire::has_field(message, 1)? {
        return Ok(collected.to_response());
    }
    let edited = edit_images(message, handler, pins)?;
    Ok(collected.to_response_with(wire::frame(&edited)))
}

/// Edits every `Image` (field 1) of an answer message on the wire, appending fields so
/// everything else stays byte for byte.
fn edit_images(message: &[u8], handler: &str, pins: &[Pin]) -> Result<Vec<u8>, CallError> {
    if handler.is_empty() && pins.is_empty() {
        return Ok(message.to_vec());
    }
    let spec = ImageSpec {
        runtime_handler: handler.to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut malformed = None;
    let edited = wire::rewrite_field(message, 1, |image| {
        let mut edited = image.to_vec();
        if !handler.is_empty() {
            wire::append_message_field(&mut edited, 7, &spec);
        }
        if !pins.is_empty() {
            match cri::Image::decode(image) {
                Ok(view) if !view.pinned && is_pinned(pins, &view) => {
                    wire::append_varint_field(&mut edited, 8, 1)
                }
                Ok(_) => {}
                Err(err) => malformed = Some(err),
            }
        }
        edited
    })?;
    match malformed {
        Some(err) => Err(err.into()),
        None => Ok(edited),
    }
}
