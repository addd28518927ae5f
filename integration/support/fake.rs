//! A fake CRI backend for hermetic tests: a real HTTP/2 gRPC server on a unix socket
//! that records every call (path, headers, body bytes) and answers with whatever the
//! test's handler returns — unary messages, statuses, streams, or nothing for a while.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use imageshim::cri::wire;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tonic::body::Body;

/// One call as the backend received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    /// The request URI's authority (the `:authority` the backend received).
    pub authority: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn decode<M: prost::Message + Default>(&self) -> M {
        M::decode(wire::unframe(&self.body).unwrap()).unwrap()
    }
}

pub type Reply = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
pub type Handler = Arc<dyn Fn(Recorded) -> Reply + Send + Sync>;

pub struct FakeBackend {
    pub socket: PathBuf,
    pub calls: Arc<Mutex<Vec<Recorded>>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBackend {
    pub async fn start(handler: Handler) -> FakeBackend {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (handler, recorded) = (handler.clone(), recorded.clone());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (handler, recorded) = (handler.clone(), recorded.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let call = Recorded {
                            path: parts.uri.path().to_string(),
                            authority: parts.uri.authority().map(|a| a.to_string()),
                            headers: parts.headers,
                            body,
                        };
                        if let Some(answer) = background_call(&call) {
                            return Ok(answer);
                        }
                        recorded.lock().unwrap().push(call.clone());
                        Ok::<_, Infallible>(handler(call).await)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .auto_date_header(false) // as containerd and CRI-O
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeBackend {
            socket,
            calls,
            _dir: dir,
            task,
        }
    }

    /// Paths received so far.
    pub fn paths(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.path.clone())
            .collect()
    }

    pub fn calls_to(&self, path: &str) -> Vec<Recorded> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }
}

/// imageshim's own background calls — its readiness probe (`Version` with the probe's
/// user-agent) and the progress monitor's containerd content calls — are answered here,
/// unrecorded, so a test sees only the calls its callers made.
fn background_call(call: &Recorded) -> Option<Response<Body>> {
    let user_agent = call
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if user_agent.starts_with(imageshim::backend::health::PROBE_USER_AGENT) {
        return Some(reply(&imageshim::cri::VersionResponse::default()));
    }
    if call.path.starts_with("/containerd.services.") {
        return Some(reply_status(tonic::Code::Unimplemented, "not containerd"));
    }
    None
}

/// A handler from an async closure.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    Arc::new(move |call| Box::pin(f(call)))
}

fn grpc_response() -> http::response::Builder {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    trailers
}

/// A successful unary answer.
pub fn reply<M: prost::Message>(message: &M) -> Response<Body> {
    reply_bytes(wire::frame(&message.encode_to_vec()), ok_trailers())
}

/// An answer with these framed bytes and trailers.
pub fn reply_bytes(framed: Bytes, trailers: HeaderMap) -> Response<Body> {
    // A stream of frames, not a sized body: like grpc-go, no content-length.
    let frames: [Result<Frame<Bytes>, Infallible>; 2] =
        [Ok(Frame::data(framed)), Ok(Frame::trailers(trailers))];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    grpc_response().body(Body::new(body)).unwrap()
}

/// A trailers-only error answer.
pub fn reply_status(code: tonic::Code, message: &str) -> Response<Body> {
    tonic::Status::new(code, message).into_http()
}

/// A streaming answer: each `Some(bytes)` sent on the returned sender becomes a
/// message; dropping the sender ends the stream with status OK. The sender's
/// `closed()` resolves when the caller goes away.
pub fn reply_stream() -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let stream = async_stream(
        move |out: mpsc::Sender<Result<Frame<Bytes>, Infallible>>| async move {
            loop {
                let message = tokio::select! {
                    message = rx.recv() => message,
                    _ = out.closed() => return,
                };
                let Some(message) = message else { break };
                if out
                    .send(Ok(Frame::data(wire::frame(&message))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = out.send(Ok(Frame::trailers(ok_trailers()))).await;
        },
    );
    (tx, grpc_response().body(Body::new(stream)).unwrap())
}

/// A body fed by a task; dropping the body ends the task's sender.
fn async_stream<F, Fut>(produce: F) -> StreamBody<ReceiverStream>
where
    F: FnOnce(mpsc::Sender<Result<Frame<Bytes>, Infallible>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(produce(tx));
    StreamBody::new(ReceiverStream(rx))
}

pub struct ReceiverStream(mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);

impl futures_util::Stream for ReceiverStream {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
