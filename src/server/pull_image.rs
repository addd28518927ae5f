//! PullImage through the coordinator: the merge key of a request, and the pull job —
//! forward the first caller's bytes (with each resolved credential appended in the
//! order `credentials` decides, when the caller brought none) and read the whole answer.
//! What counts as a registry failure is `pull`'s call; statuses come from `status`.

use std::sync::Arc;

use http::Response;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::Status;

use prost::Message;

use super::call::UnaryCall;
use super::forward::{forward, grpc_timeout, rebuild_request, CollectedResponse};
use super::status::{self, CallError};
use super::ServerState;
use crate::backend::landing::{pull_lands_in, PullFacts};
use crate::backend::Backend;
use crate::credentials::{ProviderFailure, RegistryCredential, Resolver};
use crate::cri::wire;
use crate::cri::CredentialFingerprint;
use crate::cri::PullImageRequest;
use crate::pull::backoff::is_registry_failure_code;
use crate::pull::{Coordinator, PullKey, PullOutcome, WaitError};
use crate::reference::Reference;

/// The shared outcome of one backend pull: its answer, or a shim-side failure.
pub type PullAnswer = Result<Arc<CollectedResponse>, Status>;

/// The coordinator specialised to backend answers.
pub type Pulls = Coordinator<PullAnswer>;

impl PullOutcome for PullAnswer {
    fn is_success(&self) -> bool {
        matches!(self, Ok(answer) if answer.is_ok())
    }

    fn task_failed(image: &str, why: &str) -> Self {
        Err(status::pull_task_failed(image, why))
    }

    fn stalled(image: &str, timeout: std::time::Duration, bytes_done: u64) -> Self {
        Err(status::pull_stalled(image, timeout, bytes_done))
    }

    fn is_registry_failure(&self) -> bool {
        matches!(self, Ok(answer) if is_registry_failure_code(answer.grpc_code()))
    }
}

/// Runs (or joins) the pull for a validated request and answers this caller.
pub async fn pull_through_coordinator(
    state: &ServerState,
    backend: &Arc<Backend>,
    reference: &Reference,
    view: &PullImageRequest,
    mut call: UnaryCall,
) -> Result<Response<Body>, CallError> {
    let facts = PullFacts {
        spec_handler: view.spec_handler(),
        has_sandbox_config: view.sandbox_config.is_some(),
        annotation_handler: view.annotation_handler(),
    };
    let lands_in = pull_lands_in(backend.family().await, backend.catalog.as_ref(), facts);
    let key = PullKey {
        image: reference.key(),
        lands_in,
        backend: backend.name.clone(),
        credentials: CredentialFingerprint::of(view.auth.as_ref()),
        handler: view.spec_handler().to_string(),
    };
    // A timeout too far out to be an Instant is no deadline at all.
    let deadline =
        grpc_timeout(&call.parts.headers).and_then(|limit| Instant::now().checked_add(limit));
    // The pull outlives any one caller: it must not carry the first caller's deadline.
    call.parts.headers.remove(&super::forward::GRPC_TIMEOUT);
    let own_auth = view.auth.as_ref().is_some_and(|auth| !auth.is_empty());
    if own_auth {
        state.credentials().note_request_credentials();
    }
    let attempt = PullAttempt {
        backend: backend.clone(),
        resolver: state.credentials(),
        image: reference.name(),
        call,
    };
    let job = move || async move {
        if own_auth {
            attempt.pull_as_sent().await
        } else {
            attempt.pull_with_resolved_credentials().await
        }
    };
    match state.pulls.pull(key, deadline, job).await {
        Ok(Ok(answer)) => Ok(answer.to_response()),
        Ok(Err(status)) => Err(CallError::Status(status)),
        Err(WaitError::DeadlineExceeded) => Err(CallError::DeadlineExceeded),
        Err(err @ WaitError::Cancelled) => {
            Err(CallError::Status(Status::cancelled(err.to_string())))
        }
    }
}

/// Everything one backend pull needs, owned by the pull task.
struct PullAttempt {
    backend: Arc<Backend>,
    resolver: Arc<Resolver>,
    /// `host[:port]/path`, as the kubelet looks credentials up.
    image: String,
    call: UnaryCall,
}

impl PullAttempt {
    async fn send(&self, request: http::Request<Body>) -> PullAnswer {
        let response = forward(&self.backend, request)
            .await
            .map_err(CallError::into_status)?;
        let answer = CollectedResponse::read(response)
            .await
            .map_err(CallError::into_status)?;
        Ok(Arc::new(answer))
    }

    async fn pull_as_sent(&self) -> PullAnswer {
        self.send(self.call.to_request()).await
    }

    /// Pulls with the resolved credentials, in the order `credentials` decides.
    async fn pull_with_resolved_credentials(&self) -> PullAnswer {
        let resolution = self.resolver.resolve(&self.image).await;
        let answer = resolution
            .try_in_turn(
                |credential| async move {
                    match credential {
                        None => self.pull_as_sent().await,
                        Some(credential) => match self.request_with(&credential) {
                            Ok(request) => self.send(request).await,
                            Err(err) => Err(err.into_status()),
                        },
                    }
                },
                PullOutcome::is_success,
            )
            .await;
        if resolution.candidates.is_empty() {
            return note_plugin_failures(answer, &resolution.failures);
        }
        answer
    }

    /// The caller's bytes with `auth` (field 2) appended on the wire.
    fn request_with(
        &self,
        credential: &RegistryCredential,
    ) -> Result<http::Request<Body>, CallError> {
        let mut message = wire::unframe(&self.call.framed)?.to_vec();
        wire::append_message_field(
            &mut message,
            2,
            &credential.to_auth_config().encode_to_vec(),
        );
        Ok(rebuild_request(&self.call.parts, wire::frame(&message)))
    }
}

/// A failed anonymous pull also says which credential plugins failed.
fn note_plugin_failures(answer: PullAnswer, failures: &[ProviderFailure]) -> PullAnswer {
    if failures.is_empty() || answer.is_success() {
        return answer;
    }
    let status = match &answer {
        Ok(response) => response.status(),
        Err(status) => status.clone(),
    };
    Err(status::with_plugin_failures(&status, failures))
}
