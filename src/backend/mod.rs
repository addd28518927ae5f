//! The set of backends: one lazily connected channel per runtime, and routing of a
//! runtime handler to the backend that serves it. Must not know pull policy.

mod channel;
pub mod connection;
pub mod content;
pub mod discovery;
pub mod endpoint;
pub mod handler;
pub mod health;
pub mod landing;
pub mod unpacked;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tonic::transport::Channel;

use crate::config::{BackendConfig, BackendKind};
use discovery::RuntimeCatalog;
use endpoint::unix_socket_path;
use handler::{validate_handler, HandlerError};
use landing::RuntimeFamily;

/// How long a pull or status call waits for a `Version` answer that tells which
/// runtime is behind a backend (the readiness probe usually knows already).
const FAMILY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One container runtime imageshim forwards to.
#[derive(Debug)]
pub struct Backend {
    pub name: String,
    pub kind: BackendKind,
    pub endpoint: String,
    /// Forwarded calls: an `h2` connection driven directly.
    connection: Arc<connection::Http2Connection>,
    /// imageshim's own gRPC calls (readiness, containerd's content store).
    channel: Channel,
    /// The runtime's own config, when handlers are discovered from it.
    pub catalog: Option<RuntimeCatalog>,
    /// Which runtime answered `Version` last (it can change across restarts).
    family: parking_lot::Mutex<Option<RuntimeFamily>>,
    /// Which images are unpacked in which snapshotter (containerd 2.x).
    pub unpacked: unpacked::UnpackedCheck,
}

impl Backend {
    /// A backend whose channel connects on first use and reconnects after failures.
    pub fn connect_lazy(
        name: &str,
        kind: BackendKind,
        endpoint: &str,
        catalog: Option<RuntimeCatalog>,
    ) -> Result<Self, BackendError> {
        let path = unix_socket_path(endpoint).map_err(|source| BackendError::Endpoint {
            backend: name.to_string(),
            source,
        })?;
        // One lazily connected channel for imageshim's own calls (probes, content
        // store, snapshots).
        let channel = channel::unix_channel(path.clone());
        Ok(Backend {
            name: name.to_string(),
            kind,
            endpoint: endpoint.to_string(),
            connection: Arc::new(connection::Http2Connection::new(path.clone())),
            unpacked: unpacked::UnpackedCheck::new(channel.clone()),
            channel,
            catalog,
            family: parking_lot::Mutex::new(None),
        })
    }

    /// Records which runtime answered `Version`.
    pub fn note_version(&self, version: &crate::cri::VersionResponse) {
        let family = RuntimeFamily::from_version(&version.runtime_name, &version.runtime_version);
        *self.family.lock() = Some(family);
    }

    /// Which runtime is behind this backend: the last `Version` answer, or a fresh
    /// one; `Other` (the cautious rule) while it does not answer.
    pub async fn family(&self) -> RuntimeFamily {
        if let Some(known) = *self.family.lock() {
            return known;
        }
        match tokio::time::timeout(FAMILY_PROBE_TIMEOUT, health::ask_version(self)).await {
            Ok(Ok(version)) => {
                self.note_version(&version);
                self.family.lock().unwrap_or(RuntimeFamily::Other)
            }
            _ => RuntimeFamily::Other,
        }
    }

    /// Starts a forwarded call on the backend's HTTP/2 connection (see
    /// `Http2Connection::send`); the answer's body streams.
    pub fn send<B: crate::transport::body::SendableBody>(
        &self,
        request: http::Request<B>,
    ) -> connection::Sending {
        self.connection.send(request)
    }

    /// A tonic channel for imageshim's own calls (cheap to clone).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

/// Why a backend set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend {backend}")]
    Endpoint {
        backend: String,
        #[source]
        source: endpoint::EndpointError,
    },
    #[error("backend {backend}")]
    Discovery {
        backend: String,
        #[source]
        source: discovery::DiscoveryError,
    },
    #[error("no default backend configured")]
    NoDefault,
}

/// Why a runtime handler could not be routed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    InvalidHandler(#[from] HandlerError),
    #[error("unknown runtime handler {handler:?}; known handlers: {}", known.join(", "))]
    UnknownHandler { handler: String, known: Vec<String> },
}

/// All backends and the handler routing table.
#[derive(Debug)]
pub struct BackendSet {
    backends: Vec<Arc<Backend>>,
    default: usize,
    routes: HashMap<String, usize>,
    /// True when handlers were discovered: unknown handlers are then refused.
    strict: bool,
}

impl BackendSet {
    /// Builds the set from validated config, reading runtime configs for discovery.
    pub fn from_config(configs: &[BackendConfig]) -> Result<Self, BackendError> {
        let default = configs
            .iter()
            .position(|b| b.default)
            .ok_or(BackendError::NoDefault)?;
        let mut backends = Vec::new();
        let mut routes = HashMap::new();
        for (index, config) in configs.iter().enumerate() {
            let catalog = discover(config)?;
            backends.push(Arc::new(Backend::connect_lazy(
                &config.name,
                config.kind,
                &config.endpoint,
                catalog,
            )?));
            for handler in &config.handlers {
                routes.insert(handler.clone(), index);
            }
        }
        let strict = backends.iter().any(|b| b.catalog.is_some());
        for (index, backend) in backends.iter().enumerate() {
            for handler in backend.catalog.iter().flat_map(|c| c.handlers.keys()) {
                routes.entry(handler.clone()).or_insert(index);
            }
        }
        Ok(BackendSet {
            backends,
            default,
            routes,
            strict,
        })
    }

    pub fn default_backend(&self) -> &Arc<Backend> {
        &self.backends[self.default]
    }

    pub fn all(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The backend serving `handler` (empty = the default handler).
    pub fn route(&self, handler: &str) -> Result<&Arc<Backend>, RouteError> {
        if handler.is_empty() {
            return Ok(self.default_backend());
        }
        validate_handler(handler)?;
        match self.routes.get(handler) {
            Some(&index) => Ok(&self.backends[index]),
            None if self.strict => Err(RouteError::UnknownHandler {
                handler: handler.to_string(),
                known: self.known_handlers(),
            }),
            None => Ok(self.default_backend()),
        }
    }

    /// The backends' handlers as start-up reports them (see [`describe`]).
    pub fn describe(&self) -> (Vec<String>, Vec<String>) {
        describe(
            self.backends
                .iter()
                .map(|b| (b.name.as_str(), b.kind, b.catalog.as_ref())),
        )
    }

    /// Every handler with a route, sorted.
    pub fn known_handlers(&self) -> Vec<String> {
        let sorted: BTreeSet<&String> = self.routes.keys().collect();
        sorted.into_iter().cloned().collect()
    }
}

/// The discovered config of one `[[backend]]`, if it names one.
fn discover(config: &BackendConfig) -> Result<Option<RuntimeCatalog>, BackendError> {
    let Some(path) = &config.runtime_config else {
        return Ok(None);
    };
    discovery::discover(config.kind, path)
        .map(Some)
        .map_err(|source| BackendError::Discovery {
            backend: config.name.clone(),
            source,
        })
}

/// Reads every backend's runtime config, as `check-config` reports it.
pub fn describe_configs(
    configs: &[BackendConfig],
) -> Result<(Vec<String>, Vec<String>), BackendError> {
    let catalogs = configs
        .iter()
        .map(discover)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(describe(configs.iter().zip(&catalogs).map(
        |(c, catalog)| (c.name.as_str(), c.kind, catalog.as_ref()),
    )))
}

/// Per backend, each handler with where its images land; then warnings (handlers
/// whose snapshotter containerd 2.x's transfer service does not unpack into).
fn describe<'a>(
    backends: impl Iterator<Item = (&'a str, BackendKind, Option<&'a RuntimeCatalog>)>,
) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    for (name, kind, catalog) in backends {
        let Some(catalog) = catalog else {
            lines.push(format!(
                "backend {name}: handlers not discovered (no runtime_config)"
            ));
            continue;
        };
        lines.extend(describe_catalog(name, kind, catalog));
        for (handler, snapshotter) in catalog.handlers_missing_unpack() {
            warnings.push(format!(
                "backend {name}: handler {handler:?} unpacks into snapshotter {snapshotter:?}, which is not in plugins.'io.containerd.transfer.v1.local'.unpack_config: containerd 2.x fails its pulls (\"no unpack platforms defined\")"
            ));
        }
    }
    (lines, warnings)
}

/// One line per handler: where its images land.
fn describe_catalog(backend: &str, kind: BackendKind, catalog: &RuntimeCatalog) -> Vec<String> {
    let files: Vec<String> = catalog
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let mut lines = vec![format!("backend {backend}: read {}", files.join(", "))];
    for handler in catalog.handlers.keys() {
        let default = if *handler == catalog.default_handler {
            " (default)"
        } else {
            ""
        };
        let lands = match kind {
            BackendKind::CriO => "the one image store".to_string(),
            BackendKind::Containerd => format!(
                "snapshotter {} on containerd 2.x; the one snapshotter on 1.x",
                catalog.snapshotter_for(handler).unwrap_or("?")
            ),
        };
        lines.push(format!(
            "  handler {handler}{default}: images land in {lands}"
        ));
    }
    lines
}

#[cfg(test)]
mod tests;
