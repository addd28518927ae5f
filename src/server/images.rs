//! Thin handlers for the intercepted ImageService calls: read a view of the request,
//! validate, route by runtime handler, forward the caller's own bytes, and mark answers
//! with the handler the request named. Policy lives elsewhere.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;

use super::forward::{forward, rebuild_request, CollectedResponse};
use super::status::CallError;
use super::ServerState;
use crate::backend::Backend;
use crate::cri::{self, paths, wire, ImageSpec};
use crate::reference::Reference;

/// The caller's request, read whole: parts and the framed body bytes.
pub struct UnaryCall {
    pub parts: http::request::Parts,
    pub framed: Bytes,
}

impl UnaryCall {
    pub async fn read<B>(request: Request<B>) -> Result<Self, CallError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let framed = read_limited(body).await?;
        Ok(UnaryCall { parts, framed })
    }

    pub fn decode<M: Message + Default>(&self) -> Result<M, CallError> {
        Ok(M::decode(wire::unframe(&self.framed)?)?)
    }

    /// The caller's request, byte for byte, ready to forward again.
    pub fn to_request(&self) -> Request<Body> {
        rebuild_request(&self.parts, self.framed.clone())
    }
}

/// Reads a unary request body up to the message limit; a message whose declared length
/// is over the limit is refused as soon as its 5-byte prefix arrives, so an oversized
/// request is never buffered.
async fn read_limited<B>(body: B) -> Result<Bytes, CallError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let limit = wire::MAX_MESSAGE_BYTES + 5;
    let mut body = std::pin::pin!(body);
    let mut framed = bytes::BytesMut::new();
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|err| CallError::Body(err.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        framed.extend_from_slice(&data);
        let declared = framed
            .get(1..5)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize);
        if framed.len() > limit || declared.is_some_and(|len| len > wire::MAX_MESSAGE_BYTES) {
            let size = declared
                .unwrap_or(framed.len())
                .max(wire::MAX_MESSAGE_BYTES + 1);
            return Err(CallError::Wire(wire::WireError::TooLarge(size)));
        }
    }
    Ok(framed.freeze())
}

/// Serves an intercepted call (ImageFsInfo goes to the default backend as it is).
pub async fn handle(state: &ServerState, call: UnaryCall) -> Result<Response<Body>, CallError> {
    match call.parts.uri.path() {
        paths::PULL_IMAGE => pull_image(state, call).await,
        paths::IMAGE_STATUS => image_status(state, call).await,
        paths::LIST_IMAGES => list_images(state, call).await,
        paths::REMOVE_IMAGE => remove_image(state, call).await,
        _ => forward(state.backends.default_backend(), call.to_request()).await,
    }
}

/// True for the paths `handle` serves itself.
pub fn is_intercepted(path: &str) -> bool {
    matches!(
        path,
        paths::PULL_IMAGE
            | paths::IMAGE_STATUS
            | paths::LIST_IMAGES
            | paths::REMOVE_IMAGE
            | paths::IMAGE_FS_INFO
    )
}

async fn pull_image(state: &ServerState, call: UnaryCall) -> Result<Response<Body>, CallError> {
    let view: cri::PullImageRequest = call.decode()?;
    let image = view.image_name();
    let reference = Reference::parse(image).map_err(|source| CallError::Reference {
        image: image.to_string(),
        source,
    })?;
    let handler = view.runtime_handler();
    let backend = state.backends.route(handler)?;
    tracing::debug!(image = %reference, handler, backend = %backend.name, "pull image");
    let backend = backend.clone();
    super::pulls::pull_through_coordinator(state, &backend, &reference, &view, call).await
}

async fn image_status(state: &ServerState, call: UnaryCall) -> Result<Response<Body>, CallError> {
    let view: cri::ImageStatusRequest = call.decode()?;
    let handler = cri::spec_handler(view.image.as_ref()).to_string();
    let backend = state.backends.route(&handler)?;
    let response = forward(backend, call.to_request()).await?;
    if handler.is_empty() {
        return Ok(response);
    }
    mark_images_with_handler(response, &handler, true).await
}

async fn list_images(state: &ServerState, call: UnaryCall) -> Result<Response<Body>, CallError> {
    let view: cri::ListImagesRequest = call.decode()?;
    let handler =
        cri::spec_handler(view.filter.as_ref().and_then(|f| f.image.as_ref())).to_string();
    if handler.is_empty() && state.backends.all().len() > 1 {
        return list_images_everywhere(state.backends.all(), &call).await;
    }
    let backend = state.backends.route(&handler)?;
    let response = forward(backend, call.to_request()).await?;
    if handler.is_empty() {
        return Ok(response);
    }
    mark_images_with_handler(response, &handler, false).await
}

async fn remove_image(state: &ServerState, call: UnaryCall) -> Result<Response<Body>, CallError> {
    let view: cri::RemoveImageRequest = call.decode()?;
    let backend = state
        .backends
        .route(cri::spec_handler(view.image.as_ref()))?;
    forward(backend, call.to_request()).await
}

/// Asks every backend and concatenates the answers (repeated fields concatenate on the
/// wire); the first failure is returned as it is.
async fn list_images_everywhere(
    backends: &[std::sync::Arc<Backend>],
    call: &UnaryCall,
) -> Result<Response<Body>, CallError> {
    let mut first: Option<CollectedResponse> = None;
    let mut merged = Vec::new();
    for backend in backends {
        let collected = CollectedResponse::read(forward(backend, call.to_request()).await?).await?;
        if !collected.is_ok() {
            return Ok(collected.to_response());
        }
        merged.extend_from_slice(wire::unframe(&collected.body)?);
        first.get_or_insert(collected);
    }
    let first = first.expect("at least one backend");
    Ok(first.to_response_with(wire::frame(&merged)))
}

/// Sets `Image.spec.runtime_handler` in an ImageStatus (`single`) or ListImages answer.
async fn mark_images_with_handler(
    response: Response<Body>,
    handler: &str,
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
    let spec = ImageSpec {
        runtime_handler: handler.to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    let edited = wire::rewrite_field(message, 1, |image| {
        let mut image = image.to_vec();
        wire::append_message_field(&mut image, 7, &spec);
        image
    })?;
    Ok(collected.to_response_with(wire::frame(&edited)))
}
