//! The CRI front door: accepts HTTP/2 on the unix socket and routes each call either to
//! an intercepted ImageService handler or to verbatim forwarding. Decides no policy.

pub mod answer;
pub mod budget;
pub mod call;
mod connection;
pub mod forward;
pub mod images;
pub mod pinned;
mod presence;
pub mod pull_image;
pub mod socket;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use futures_util::FutureExt;
use http::{Request, Response};
use tokio::net::UnixListener;
use tokio::task::JoinSet;
use tonic::body::Body;

use crate::backend::BackendSet;
use crate::credentials::Resolver;
use crate::telemetry::grpc::{GrpcMetrics, Method, ObservedBody};
use crate::transport::body::{AnswerBody, RecvBody};
use crate::transport::quiet_io::QuietUnixStream;
use status::CallError;

/// What every call can reach.
pub struct ServerState {
    pub backends: BackendSet,
    pub pulls: pull_image::Pulls,
    credentials: parking_lot::RwLock<Arc<Resolver>>,
    pub grpc_metrics: GrpcMetrics,
    pub pinned: pinned::PinnedSet,
}

impl ServerState {
    pub fn new(backends: BackendSet, pulls: pull_image::Pulls, credentials: Resolver) -> Self {
        ServerState {
            backends,
            pulls,
            credentials: parking_lot::RwLock::new(Arc::new(credentials)),
            grpc_metrics: GrpcMetrics::default(),
            pinned: pinned::PinnedSet::default(),
        }
    }

    /// The credential resolver in force now (pulls keep the one they started with).
    pub fn credentials(&self) -> Arc<Resolver> {
        self.credentials.read().clone()
    }

    pub fn replace_credentials(&self, resolver: Resolver) {
        *self.credentials.write() = Arc::new(resolver);
    }
}

/// Serves one call: intercepted paths go to their handler, everything else is
/// forwarded to the default backend untouched. The returned future owns what it needs;
/// a forwarded call is already on its way to the backend when this returns.
pub fn dispatch(
    state: &Arc<ServerState>,
    request: Request<RecvBody>,
) -> impl Future<Output = Response<ObservedBody<AnswerBody>>> + Send + 'static {
    let started = std::time::Instant::now();
    let method = Method::of(request.uri().path());
    let metrics = state.grpc_metrics.clone();
    answer_call(state, request).map(move |response| metrics.observe(method, started, response))
}

fn answer_call(
    state: &Arc<ServerState>,
    request: Request<RecvBody>,
) -> impl Future<Output = Response<AnswerBody>> + Send + 'static {
    // A cheap clone (shared bytes), kept for the error log.
    let uri = request.uri().clone();
    let answering = match images::Intercepted::of(uri.path()) {
        // Boxed: the intercepted path's state is large, and every forwarded call would
        // otherwise carry (and copy) it.
        Some(method) => Either::Left(Box::pin(intercept(state.clone(), method, request))),
        // The caller's stream goes to the backend and the backend's comes back, each
        // read as it arrives.
        None => Either::Right(
            forward::forward_streamed(state.backends.default_backend(), request)
                .map(|answer| answer.map(|response| response.map(AnswerBody::Streamed))),
        ),
    };
    answering.map(move |result| {
        result.unwrap_or_else(|err| error_response(uri.path(), err).map(AnswerBody::Made))
    })
}

async fn intercept(
    state: Arc<ServerState>,
    method: images::Intercepted,
    request: Request<RecvBody>,
) -> Result<Response<AnswerBody>, CallError> {
    let call = call::UnaryCall::read(request).await?;
    images::handle(&state, method, call).await
}

fn error_response(path: &str, err: CallError) -> Response<Body> {
    let status = err.into_status();
    tracing::debug!(path, code = ?status.code(), message = status.message(), "call failed");
    answer::status_response(&status)
}

/// Accepts connections until `shutdown` resolves, then lets in-flight calls finish for
/// up to `grace` (new calls are refused with GOAWAY) and drops what is left.
pub async fn serve(
    listener: UnixListener,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let stream = match QuietUnixStream::from_tokio(stream) {
            Ok(stream) => crate::transport::authority::AuthorityFixingStream::new(stream),
            Err(err) => {
                tracing::warn!(error = %err, "cannot register an accepted connection");
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let serving = connection::serve_connection(stream, state.clone(), stopped.clone());
        connections.spawn(serving);
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(?grace, "shutdown grace elapsed with calls still in flight");
        connections.abort_all();
    }
}
