//! The forwarding path's connection to a backend: one HTTP/2 connection over its unix
//! socket, driven by hyper's client directly (a cloned `SendRequest` per call — no
//! buffer task between the caller and the connection, unlike tonic's `Channel`).
//! Connects on first use; when the connection has closed (the runtime restarted or went
//! away), the next call connects again at once, so an outage costs each caller one
//! refused connect and recovery takes one call.

use std::path::PathBuf;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::UnixStream;
use tonic::body::Body;

/// How long a connect may take before the call is answered `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call did not reach the backend.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot connect to {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("http/2 handshake with {path} failed")]
    Handshake {
        path: PathBuf,
        #[source]
        source: hyper::Error,
    },
    #[error("the call to the backend failed")]
    Send(#[source] hyper::Error),
}

/// A lazily (re)connected HTTP/2 connection to one backend socket.
pub struct Http2Connection {
    path: PathBuf,
    current: Mutex<Option<SendRequest<Body>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Http2Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Connection")
            .field("path", &self.path)
            .finish()
    }
}

impl Http2Connection {
    pub fn new(path: PathBuf) -> Self {
        Http2Connection {
            path,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends one request (its URI is given the origin the runtimes expect) and returns
    /// the response head as soon as it arrives; the body streams.
    pub async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, ConnectionError> {
        set_origin(&mut request);
        let mut sender = self.sender().await?;
        sender
            .send_request(request)
            .await
            .map_err(ConnectionError::Send)
    }

    fn live(&self) -> Option<SendRequest<Body>> {
        self.current
            .lock()
            .as_ref()
            .filter(|sender| !sender.is_closed())
            .cloned()
    }

    async fn sender(&self) -> Result<SendRequest<Body>, ConnectionError> {
        if let Some(sender) = self.live() {
            return Ok(sender);
        }
        let _one_connect_at_a_time = self.connecting.lock().await;
        if let Some(sender) = self.live() {
            return Ok(sender);
        }
        let sender = self.connect().await?;
        *self.current.lock() = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> Result<SendRequest<Body>, ConnectionError> {
        let connect_error = |source| ConnectionError::Connect {
            path: self.path.clone(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.path))
            .await
            .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect_error)?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectionError::Handshake {
                path: self.path.clone(),
                source,
            })?;
        let path = self.path.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(backend = %path.display(), error = %err, "backend connection ended");
            }
        });
        Ok(sender)
    }
}

/// `http://localhost` + the request's path: the origin grpc-go clients send and the
/// runtimes expect (the caller's own `:authority` never reaches the backend).
fn set_origin(request: &mut Request<Body>) {
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(http::uri::Authority::from_static("localhost"));
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = http::Uri::from_parts(parts).unwrap_or_default();
}
