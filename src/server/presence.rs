//! "Present for a handler" on containerd 2.x: an ImageStatus answer that names an image
//! is kept only when that image is unpacked in the handler's snapshotter; otherwise the
//! caller hears "not present" (an empty answer) and pulls it for that handler. A check
//! that cannot be made leaves the runtime's answer as it was (and says so in the log).

use http::Response;
use prost::Message;
use tonic::body::Body;

use super::forward::CollectedResponse;
use super::status::CallError;
use crate::backend::Backend;
use crate::cri::{wire, ImageStatusResponse};
use crate::transport::body::AnswerBody;

/// The answer as it is when the image is unpacked in `snapshotter`, else an empty
/// ImageStatusResponse with the backend's own metadata.
pub(super) async fn present_in(
    backend: &Backend,
    answer: Response<AnswerBody>,
    snapshotter: &str,
) -> Result<Response<Body>, CallError> {
    let collected = CollectedResponse::read(answer.map(Body::new)).await?;
    if !collected.is_ok() || collected.body.is_empty() {
        return Ok(collected.to_response());
    }
    let view = ImageStatusResponse::decode(wire::unframe(&collected.body)?)?;
    let Some(image) = view.image else {
        return Ok(collected.to_response());
    };
    match backend.unpacked.is_unpacked(&image.id, snapshotter).await {
        Ok(true) => Ok(collected.to_response()),
        Ok(false) => {
            tracing::debug!(image = %image.id, snapshotter, backend = %backend.name, "image not unpacked for the handler: answered not present");
            Ok(collected.to_response_with(wire::frame(&[])))
        }
        Err(err) => {
            tracing::warn!(image = %image.id, snapshotter, backend = %backend.name, error = %crate::error_chain(&err), "cannot tell whether the image is unpacked; answering as the runtime did");
            Ok(collected.to_response())
        }
    }
}
