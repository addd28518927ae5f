//! imageshim: a CRI image-service shim. It forwards every CRI call to the container
//! runtime verbatim and intercepts the ImageService calls to key images by
//! (reference, runtime handler), merge and cap pulls, inject registry credentials and
//! route each handler to the runtime that serves it.
//!
//! # Map
//!
//! - [`adopt`]: reads a node's kubelet and runtime settings into imageshim's config and
//!   prints the kubelet change (and the way back); writes nothing else.
//! - [`cli`], [`config`], [`app`]: arguments, the validated `config.toml`, and the
//!   wiring that builds everything, serves, reloads on SIGHUP and shuts down; `app`
//!   owns the background tasks (readiness probes, progress monitor, pinned images,
//!   admin endpoint), each restarted by a supervisor if it panics.
//! - [`server`]: the CRI front door on the unix socket. `socket` (its life, systemd
//!   activation), `connection` (one caller's HTTP/2, its calls polled in its own
//!   task, its request budget in `budget`), `call` (buffering one unary call), `images` (the intercepted methods, one table),
//!   `pull_image` (PullImage glue to the coordinator), `forward` (verbatim HTTP/2 to a
//!   backend), `answer` (the frame shapes of every answer imageshim builds) and
//!   `status` (the one place errors become gRPC statuses).
//! - [`cri`]: the small CRI wire views and wire edits; [`reference`](mod@reference): the distribution
//!   grammar and image keys.
//! - [`backend`]: backends, handler routing and discovery (`discovery`), where each
//!   runtime puts a pull (`landing`), lazily connected channels.
//! - [`pull`]: the coordinator — merge table, FIFO cap, waiters, supervised pull tasks,
//!   backoff, stats. Knows pulls as futures, nothing of wire or credential formats.
//! - [`credentials`]: docker config files, credential-provider plugins and their cache,
//!   the kubelet's matching rules; resolves the candidates for an image; its metrics.
//! - [`telemetry`]: logging setup, per-call gRPC metrics, the admin HTTP endpoint
//!   (`/metrics`, `/healthz`, `/readyz`, `/debug/pulls`).
//! - [`transport`]: the HTTP/2 plumbing the mission stands on, in one place — the
//!   caller side's `:authority` filter (`transport::authority`), imageshim's own client
//!   to the runtime (`transport::h2c`), the body type both sides use
//!   (`transport::body`) and the unix stream under them (`transport::quiet_io`). A
//!   newcomer following a pull can skip it.
//! - [`status`]: what operators see of pulls — the progress monitor for containerd
//!   backends (content store ingests, attribution to pulls), the admin view, and
//!   `imageshim status`.
//! - `server::pinned`: `[[pinned]]` images kept present and reported pinned;
//!   `backend::health`: readiness probes; `backend::content`: containerd's content store.
//!
//! # One PullImage, from socket to backend
//!
//! 1. `server::serve` accepts the connection; `server::connection` serves its HTTP/2
//!    with `h2`, reading through `transport::authority`. `server::dispatch` finds
//!    `/runtime.v1.ImageService/PullImage` in `images::Intercepted` and reads the call
//!    whole (`call::UnaryCall`).
//! 2. `images::pull_image` decodes a view (`cri::PullImageRequest`), parses the
//!    reference (`reference::Reference`) and routes the handler to a backend
//!    (`backend::BackendSet::route`); an invalid one is answered `InvalidArgument` here.
//! 3. `pull_image::pull_through_coordinator` keys the pull (normalised reference,
//!    where the backend puts it — `backend::landing` —, backend,
//!    `cri::CredentialFingerprint`) and joins or starts it in
//!    `pull::Coordinator`, waiting with the caller's own deadline.
//! 4. The pull task waits for a cap permit, resolves credentials when the request has
//!    none (`credentials::Resolver`), appends each candidate's `auth` on the wire
//!    (`cri::wire`) and forwards the caller's bytes (`forward::forward`) until one pull
//!    succeeds; the answer is read whole and shared with every waiter.
//! 5. Each waiter's answer is re-emitted in a gRPC server's frame shape
//!    (`answer::Answer`); errors of imageshim's own become statuses in `status`.

pub mod adopt;
pub mod app;
pub mod backend;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod cri;
pub mod pull;
pub mod reference;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod transport;

/// An error and its causes, once each, joined by `: ` (as anyhow's `{:#}` prints them).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors print their source themselves; say it once.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
