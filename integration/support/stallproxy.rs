//! A registry front for fault, merge and progress tests: an HTTP/1 proxy on 127.0.0.1
//! to a real registry that can stall blob downloads part-way (headers and the first
//! bytes sent, then nothing), throttle them (a slow registry; the rate can change while
//! downloads run), hold them whole until the test opens a gate, and be killed — listener
//! and every open connection at once — as a registry process dying mid-pull looks to
//! containerd.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

type ProxyBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub struct StallProxy {
    pub address: String,
    /// Blob GETs seen so far.
    pub blob_gets: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
    throttle: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

/// A throttled blob sends this often.
const THROTTLE_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// Bytes of a blob sent before a stalled download stops.
const SENT_BEFORE_STALL: usize = 64 * 1024;

impl StallProxy {
    /// Serves on `port` (0: any), stalling blob GETs when `stall`.
    pub async fn start(upstream: &str, port: u16, stall: bool) -> StallProxy {
        Self::start_gated(upstream, port, stall, true).await
    }

    /// Like `start`; with `open` false, blob answers wait until [`StallProxy::open`].
    pub async fn start_gated(upstream: &str, port: u16, stall: bool, open: bool) -> StallProxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let blob_gets = Arc::new(AtomicUsize::new(0));
        let stalling = Arc::new(AtomicBool::new(stall));
        let throttle = Arc::new(AtomicUsize::new(0));
        let throttling = throttle.clone();
        let (upstream, counter) = (upstream.to_string(), blob_gets.clone());
        let gate = tokio::sync::watch::Sender::new(open);
        let gate_rx = gate.subscribe();
        let mut tasks = JoinSet::new();
        let mut connections = JoinSet::new();
        tasks.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (upstream, counter, stalling, gate, throttling) = (
                    upstream.clone(),
                    counter.clone(),
                    stalling.clone(),
                    gate_rx.clone(),
                    throttling.clone(),
                );
                let service = hyper::service::service_fn(move |request| {
                    let (upstream, counter, stalling, mut gate, throttling) = (
                        upstream.clone(),
                        counter.clone(),
                        stalling.clone(),
                        gate.clone(),
                        throttling.clone(),
                    );
                    async move {
                        let is_blob = request.uri().path().contains("/blobs/");
                        if is_blob {
                            let _ = gate.wait_for(|open| *open).await;
                        }
                        let answer = proxy(&upstream, request, &counter, &stalling).await;
                        Ok::<_, Infallible>(throttled(answer, is_blob, throttling))
                    }
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StallProxy {
            address,
            blob_gets,
            gate,
            throttle,
            tasks,
        }
    }

    /// Blob answers send `bytes` per 50 ms from now on (0: as fast as they can),
    /// including those already being sent.
    pub fn set_throttle(&self, bytes: usize) {
        self.throttle.store(bytes, SeqCst);
    }

    /// Lets held blob answers go.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Closes the listener and every connection (their tasks are aborted).
    pub fn kill(mut self) {
        self.tasks.abort_all();
    }
}

async fn proxy(
    upstream: &str,
    request: Request<Incoming>,
    blob_gets: &AtomicUsize,
    stalling: &AtomicBool,
) -> Response<ProxyBody> {
    let is_blob_get =
        request.method() == http::Method::GET && request.uri().path().contains("/blobs/");
    if is_blob_get {
        blob_gets.fetch_add(1, SeqCst);
    }
    let (mut parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    // Origin-form, as a client talking to the registry directly sends it.
    parts.uri = parts
        .uri
        .path_and_query()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    parts
        .headers
        .insert(http::header::HOST, upstream.parse().unwrap());
    let stream = TcpStream::connect(upstream).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let answer = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await
        .unwrap();
    let (parts, body) = answer.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    if is_blob_get && stalling.load(SeqCst) && bytes.len() > SENT_BEFORE_STALL {
        let first = bytes.slice(..SENT_BEFORE_STALL);
        let frames = futures_util::stream::iter([Ok(Frame::data(first))])
            .chain(futures_util::stream::pending());
        return Response::from_parts(parts, BodyExt::boxed(StreamBody::new(frames)));
    }
    let body = Full::new(bytes).map_err(|never: Infallible| match never {});
    Response::from_parts(parts, BodyExt::boxed(body))
}

/// A blob answer re-sent at the throttle's rate, read afresh at every tick.
fn throttled(
    answer: Response<ProxyBody>,
    is_blob: bool,
    throttle: Arc<AtomicUsize>,
) -> Response<ProxyBody> {
    if !is_blob || throttle.load(SeqCst) == 0 {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let chunks = futures_util::stream::unfold(
        (body, Bytes::new(), throttle),
        |(mut body, mut pending, throttle)| async move {
            while pending.is_empty() {
                match body.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => pending = data,
                        Err(_) => continue,
                    },
                    Err(err) => return Some((Err(err), (body, pending, throttle))),
                }
            }
            let rate = throttle.load(SeqCst);
            let take = match rate {
                0 => pending.len(),
                rate => {
                    tokio::time::sleep(THROTTLE_TICK).await;
                    rate.min(pending.len())
                }
            };
            let chunk = pending.split_to(take);
            Some((Ok(Frame::data(chunk)), (body, pending, throttle)))
        },
    );
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(chunks)))
}
