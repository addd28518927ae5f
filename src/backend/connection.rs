//! The forwarding path's connection to a backend: one HTTP/2 connection over its unix
//! socket, driven with the `h2` crate directly. Per call: the request head and every
//! body frame already received go out in one write (no task between the caller and the
//! connection; a task pumps the rest of a body only when it is still arriving), and the
//! answer streams back as it comes. Connects on first use; when the connection has
//! ended (the runtime restarted or went away), the next call connects again at once, so
//! an outage costs each caller one refused connect and recovery takes one call.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, Response};
use parking_lot::Mutex;
use tokio::net::UnixStream;

use crate::h2_body::{send_body, RecvBody, SendableBody};
use crate::quiet_io::QuietUnixStream;

/// How long a connect may take before the call is answered `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Flow-control windows as hyper's client sets them: big answers (ListImages on a full
/// node) need no window round trips.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

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
    Http2(#[from] h2::Error),
}

/// One live connection: its request handle and whether its driver has ended.
#[derive(Clone)]
struct Live {
    sender: SendRequest<Bytes>,
    ended: Arc<AtomicBool>,
}

/// A lazily (re)connected HTTP/2 connection to one backend socket.
pub struct Http2Connection {
    path: PathBuf,
    current: Mutex<Option<Live>>,
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

    /// Starts one request (given the origin the runtimes expect): on a live connection
    /// its head and every body frame already received are handed to h2 now, and the
    /// returned future only waits for the answer's head (the body streams). Only a
    /// reconnect makes the start itself wait.
    pub fn send<B: SendableBody>(self: &Arc<Self>, request: Request<B>) -> Sending {
        match self.live() {
            Some(sender) => start(sender, request),
            None => {
                let connection = self.clone();
                Sending::Waiting(Box::pin(async move {
                    let sender = connection.reconnect().await?;
                    start(sender, request).await
                }))
            }
        }
    }

    fn live(&self) -> Option<SendRequest<Bytes>> {
        let current = self.current.lock();
        let live = current.as_ref()?;
        (!live.ended.load(Ordering::Acquire)).then(|| live.sender.clone())
    }

    async fn reconnect(&self) -> Result<SendRequest<Bytes>, ConnectionError> {
        let _one_connect_at_a_time = self.connecting.lock().await;
        if let Some(sender) = self.live() {
            return Ok(sender);
        }
        let live = self.connect().await?;
        let sender = live.sender.clone();
        *self.current.lock() = Some(live);
        Ok(sender)
    }

    async fn connect(&self) -> Result<Live, ConnectionError> {
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
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(stream)
            .await?;
        let ended = Arc::new(AtomicBool::new(false));
        let (path, flag) = (self.path.clone(), ended.clone());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(backend = %path.display(), error = %err, "backend connection ended");
            }
            flag.store(true, Ordering::Release);
        });
        Ok(Live { sender, ended })
    }
}

/// A forwarded call on its way: the answer awaited from h2, a start that has to wait
/// (a reconnect), or a start that failed. Small and owning, so a call's state stays
/// small and is not copied around (`Waiting` is boxed; it is the rare case).
pub enum Sending {
    Answer(h2::client::ResponseFuture),
    Waiting(Pin<Box<dyn Future<Output = SendResult> + Send>>),
    Failed(Option<ConnectionError>),
}

type SendResult = Result<Response<RecvBody>, ConnectionError>;

impl Future for Sending {
    type Output = SendResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SendResult> {
        match &mut *self {
            Sending::Answer(response) => Pin::new(response)
                .poll(cx)
                .map(|answer| Ok(answer?.map(RecvBody::new))),
            Sending::Waiting(waiting) => waiting.as_mut().poll(cx),
            Sending::Failed(err) => match err.take() {
                Some(err) => Poll::Ready(Err(err)),
                None => panic!("`Sending` polled after it failed"),
            },
        }
    }
}

/// Hands the request to h2 on `sender`'s connection.
fn start<B: SendableBody>(mut sender: SendRequest<Bytes>, request: Request<B>) -> Sending {
    // A fresh handle has no stream of its own pending, so it is ready at once unless
    // the connection has failed; the noop waker is never kept in that case.
    let mut cx = Context::from_waker(Waker::noop());
    match sender.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => match send_request(sender, request) {
            Ok(response) => Sending::Answer(response),
            Err(err) => Sending::Failed(Some(err.into())),
        },
        Poll::Ready(Err(err)) => Sending::Failed(Some(err.into())),
        // Never for a fresh handle; waits, then starts as above.
        Poll::Pending => Sending::Waiting(Box::pin(async move {
            start(sender.ready().await?, request).await
        })),
    }
}

/// The head, then every body frame already received, in h2's send queue.
fn send_request<B: SendableBody>(
    mut sender: SendRequest<Bytes>,
    request: Request<B>,
) -> Result<h2::client::ResponseFuture, h2::Error> {
    let (mut parts, body) = request.into_parts();
    parts.uri = with_origin(std::mem::take(&mut parts.uri));
    let end_now = body.is_end_stream();
    let (response, stream) = sender.send_request(Request::from_parts(parts, ()), end_now)?;
    if !end_now {
        send_body(body, stream);
    }
    Ok(response)
}

/// `http://localhost` + the request's path: the origin grpc-go clients send and the
/// runtimes expect (the caller's own `:authority` never reaches the backend).
fn with_origin(uri: http::Uri) -> http::Uri {
    let mut parts = uri.into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(http::uri::Authority::from_static("localhost"));
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    http::Uri::from_parts(parts).unwrap_or_default()
}
