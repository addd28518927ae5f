//! A raw HTTP/2 gRPC client for tests that must see exactly what travels: it sends the
//! headers it is given (a `grpc-timeout` it does not enforce itself, custom metadata)
//! and returns response headers, body bytes and trailers untouched.

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;

pub struct RawResponse {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: HeaderMap,
}

impl RawResponse {
    /// grpc-status and grpc-message, from trailers or (trailers-only) headers.
    pub fn status(&self) -> (String, String) {
        let get = |name: &str| {
            self.trailers
                .get(name)
                .or_else(|| self.headers.get(name))
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        (get("grpc-status"), get("grpc-message"))
    }
}

/// Sends one framed gRPC message on `path` with extra `headers`.
pub async fn raw_call(
    socket: &Path,
    path: &str,
    headers: &[(&str, &str)],
    framed: Bytes,
) -> RawResponse {
    try_raw_call(socket, path, headers, framed).await.unwrap()
}

/// Why a raw call got no answer.
#[derive(Debug)]
pub enum CallFailure {
    /// The call never reached the server (connect or handshake failed, or the server's
    /// GOAWAY refused the stream): gRPC clients retry these transparently.
    NeverStarted(String),
    Failed(hyper::Error),
}

/// Like `raw_call`, reporting failures.
pub async fn try_raw_call(
    socket: &Path,
    path: &str,
    headers: &[(&str, &str)],
    framed: Bytes,
) -> Result<RawResponse, CallFailure> {
    let never = |e: &dyn std::fmt::Display| CallFailure::NeverStarted(e.to_string());
    let stream = UnixStream::connect(socket).await.map_err(|e| never(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| never(&e))?;
    tokio::spawn(connection);
    let mut request = Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Full::new(framed)).unwrap())
        .await
        .map_err(
            |e| match refused_by_goaway(&e) || closed_while_sending(&e) {
                true => never(&e),
                false => CallFailure::Failed(e),
            },
        )?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(CallFailure::Failed)?;
    Ok(RawResponse {
        headers: parts.headers,
        trailers: collected.trailers().cloned().unwrap_or_default(),
        body: collected.to_bytes(),
    })
}

/// True when the server's GOAWAY refused the stream before processing it.
fn refused_by_goaway(err: &hyper::Error) -> bool {
    let h2 = std::error::Error::source(err).and_then(|s| s.downcast_ref::<h2::Error>());
    h2.is_some_and(|e| e.is_go_away() && e.is_remote())
}

/// True when the request could not be written because the server had closed the
/// connection: a stopping server sends GOAWAY before closing, and a gRPC client reads
/// it and retries the call on a new connection (hyper reports the write error first).
fn closed_while_sending(err: &hyper::Error) -> bool {
    let io = std::error::Error::source(err).and_then(|s| s.downcast_ref::<std::io::Error>());
    let h2_io = std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<h2::Error>())
        .and_then(h2::Error::get_io);
    io.or(h2_io).is_some_and(|e| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    })
}

/// A PullImage carrying a `grpc-timeout` the client does not enforce itself, as grpc-go
/// and the kubelet send it; returns (grpc-status, grpc-message).
pub async fn pull_with_timeout(
    socket: &Path,
    request: &imageshim::cri::PullImageRequest,
    timeout: &str,
) -> (String, String) {
    let framed = imageshim::cri::wire::frame(&prost::Message::encode_to_vec(request));
    let answer = raw_call(
        socket,
        imageshim::cri::paths::PULL_IMAGE,
        &[("grpc-timeout", timeout)],
        framed,
    )
    .await;
    answer.status()
}
