//! Glue between the PullImage handler and the coordinator: the merge key of a request,
//! the pull job (forward the first caller's bytes, read the whole answer), and how a
//! backend answer counts as success or registry failure.

use std::sync::Arc;

use http::Response;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::{Code, Status};

use super::forward::{forward, grpc_timeout, CollectedResponse};
use super::images::UnaryCall;
use super::status::CallError;
use crate::backend::Backend;
use crate::cri::{self, PullImageRequest};
use crate::pull::{Coordinator, CredentialFingerprint, PullKey, PullOutcome, WaitError};
use crate::reference::Reference;

/// The shared outcome of one backend pull: its answer, or a shim-side failure.
pub type PullAnswer = Result<Arc<CollectedResponse>, Status>;

/// The coordinator specialised to backend answers.
pub type Pulls = Coordinator<PullAnswer>;

impl PullOutcome for PullAnswer {
    fn is_success(&self) -> bool {
        matches!(self, Ok(answer) if answer.is_ok())
    }

    fn is_registry_failure(&self) -> bool {
        match self {
            Ok(answer) => !matches!(
                answer.grpc_code(),
                Code::Ok
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Unavailable
                    | Code::ResourceExhausted
            ),
            Err(_) => false,
        }
    }
}

/// Runs (or joins) the pull for a validated request and answers this caller.
pub async fn pull_through_coordinator(
    pulls: &Pulls,
    backend: &Arc<Backend>,
    reference: &Reference,
    view: &PullImageRequest,
    call: UnaryCall,
) -> Result<Response<Body>, CallError> {
    let key = PullKey {
        image: reference.key(),
        handler: view.runtime_handler().to_string(),
        backend: backend.name.clone(),
        credentials: CredentialFingerprint(cri::credential_fingerprint(view.auth.as_ref())),
    };
    let deadline = grpc_timeout(&call.parts.headers).map(|limit| Instant::now() + limit);
    // The pull outlives any one caller: it must not carry the first caller's deadline.
    let mut request = call.to_request();
    request.headers_mut().remove("grpc-timeout");
    let backend = backend.clone();
    let job = move || async move {
        let response = forward(&backend, request)
            .await
            .map_err(CallError::into_status)?;
        let answer = CollectedResponse::read(response)
            .await
            .map_err(CallError::into_status)?;
        Ok(Arc::new(answer))
    };
    match pulls.pull(key, deadline, job).await {
        Ok(Ok(answer)) => Ok(answer.to_response()),
        Ok(Err(status)) => Err(CallError::Status(status)),
        Err(WaitError::DeadlineExceeded) => Err(CallError::DeadlineExceeded),
        Err(err @ WaitError::Cancelled) => {
            Err(CallError::Status(Status::cancelled(err.to_string())))
        }
    }
}
