//! The set of backends: one lazily connected channel per runtime, and routing of a
//! runtime handler to the backend that serves it. Must not know pull policy.

mod channel;
pub mod connection;
pub mod content;
pub mod discovery;
pub mod endpoint;
pub mod h2c;
pub mod handler;
pub mod health;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tonic::transport::Channel;

use crate::config::{BackendConfig, BackendKind};
use endpoint::unix_socket_path;
use handler::{validate_handler, HandlerError};

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
}

impl Backend {
    /// A backend whose channel connects on first use and reconnects after failures.
    pub fn connect_lazy(
        name: &str,
        kind: BackendKind,
        endpoint: &str,
    ) -> Result<Self, BackendError> {
        let path = unix_socket_path(endpoint).map_err(|source| BackendError::Endpoint {
            backend: name.to_string(),
            source,
        })?;
        Ok(Backend {
            name: name.to_string(),
            kind,
            endpoint: endpoint.to_string(),
            connection: Arc::new(connection::Http2Connection::new(path.clone())),
            channel: channel::unix_channel(path),
        })
    }

    /// Starts a forwarded call on the backend's HTTP/2 connection (see
    /// `Http2Connection::send`); the answer's body streams.
    pub fn send<B: crate::h2_body::SendableBody>(
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
            backends.push(Arc::new(Backend::connect_lazy(
                &config.name,
                config.kind,
                &config.endpoint,
            )?));
            for handler in &config.handlers {
                routes.insert(handler.clone(), index);
            }
        }
        let mut strict = false;
        for (index, config) in configs.iter().enumerate() {
            let Some(runtime_config) = &config.runtime_config else {
                continue;
            };
            strict = true;
            let found = discovery::discover(config.kind, runtime_config).map_err(|source| {
                BackendError::Discovery {
                    backend: config.name.clone(),
                    source,
                }
            })?;
            for handler in found {
                routes.entry(handler).or_insert(index);
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

    /// Every handler with a route, sorted.
    pub fn known_handlers(&self) -> Vec<String> {
        let sorted: BTreeSet<&String> = self.routes.keys().collect();
        sorted.into_iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
