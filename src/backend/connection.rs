//! The forwarding path's connection to a backend: one HTTP/2 connection over its unix
//! socket, run by imageshim's own lean client (`h2c`). Per call: the request head and
//! every body frame already received go out in one write (no task between the caller
//! and the connection; a task pumps the rest of a body only when it is still arriving),
//! and the answer streams back as it comes. Connects on first use; when the connection has
//! ended (the runtime restarted or went away), the next call connects again at once, so
//! an outage costs each caller one refused connect and recovery takes one call.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use parking_lot::Mutex;
use tokio::net::UnixStream;

use crate::transport::body::SendableBody;
use crate::transport::h2c::{self, AnswerStream, SendError};
use crate::transport::quiet_io::QuietUnixStream;

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
    #[error("the call to the backend failed")]
    Http2(#[from] h2c::Error),
}

/// A lazily (re)connected HTTP/2 connection to one backend socket.
pub struct Http2Connection {
    path: PathBuf,
    current: Mutex<Option<Arc<h2c::Connection>>>,
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

    /// Starts one request: on a live connection its head and every body frame already
    /// received are queued now, and the returned future only waits for the answer's
    /// head (the body streams). Only a reconnect or the backend's stream limit makes
    /// the start itself wait.
    pub fn send<B: SendableBody>(self: &Arc<Self>, request: Request<B>) -> Sending {
        let request = match self.live() {
            Some(connection) => match connection.send(request) {
                Ok(answer) => return Sending::Answer(answer),
                Err(SendError::AtLimit(request)) => {
                    return Sending::Waiting(Box::pin(send_when_below_limit(connection, *request)))
                }
                // Ended or going away since it was looked at: the call goes on a new one.
                Err(SendError::Closed(request)) => *request,
            },
            None => request,
        };
        let this = self.clone();
        Sending::Waiting(Box::pin(async move {
            send_when_below_limit(this.reconnect().await?, request).await
        }))
    }

    fn live(&self) -> Option<Arc<h2c::Connection>> {
        let current = self.current.lock();
        let live = current.as_ref()?;
        (!live.is_closed()).then(|| live.clone())
    }

    async fn reconnect(&self) -> Result<Arc<h2c::Connection>, ConnectionError> {
        let _one_connect_at_a_time = self.connecting.lock().await;
        if let Some(connection) = self.live() {
            return Ok(connection);
        }
        let connection = Arc::new(self.connect().await?);
        *self.current.lock() = Some(connection.clone());
        Ok(connection)
    }

    async fn connect(&self) -> Result<h2c::Connection, ConnectionError> {
        let connect_error = |source| ConnectionError::Connect {
            path: self.path.clone(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.path))
            .await
            .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect_error)?;
        let stream = QuietUnixStream::from_tokio(stream)
            .map_err(connect_error)?
            .with_held_ping_acks();
        let (connection, driver) = h2c::Connection::start(stream);
        let path = self.path.clone();
        tokio::spawn(async move {
            if let Err(err) = driver.await {
                tracing::debug!(backend = %path.display(), error = %err, "backend connection ended");
            }
        });
        Ok(connection)
    }
}

/// Sends `request` on `connection` once it is below the backend's stream limit, and
/// waits for the answer's head.
async fn send_when_below_limit<B: SendableBody>(
    connection: Arc<h2c::Connection>,
    request: Request<B>,
) -> SendResult {
    Ok(connection.send_when_below_limit(request).await?.await?)
}

/// A forwarded call on its way: the answer awaited from h2, a start that has to wait
/// (a reconnect), or a start that failed. Small and owning, so a call's state stays
/// small and is not copied around (`Waiting` is boxed; it is the rare case).
pub enum Sending {
    Answer(h2c::ResponseFuture),
    Waiting(Pin<Box<dyn Future<Output = SendResult> + Send>>),
    Failed(Option<ConnectionError>),
}

type SendResult = Result<Response<AnswerStream>, ConnectionError>;

impl Future for Sending {
    type Output = SendResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SendResult> {
        match &mut *self {
            Sending::Answer(response) => Pin::new(response).poll(cx).map_err(Into::into),
            Sending::Waiting(waiting) => waiting.as_mut().poll(cx),
            Sending::Failed(err) => match err.take() {
                Some(err) => Poll::Ready(Err(err)),
                None => panic!("`Sending` polled after it failed"),
            },
        }
    }
}
