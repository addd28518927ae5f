//! One caller's connection: HTTP/2 served with `h2` directly, with the settings a grpc-go
//! server would use (no stream limit, 16 MiB of headers, hyper's windows). Every call on
//! the connection is polled inside the connection's own task — no task per stream, no
//! copy of the call's state into one — and a call whose stream the caller resets is
//! dropped at once, which cancels what it was waiting for (a backend call, a pull
//! wait). A call that panics is answered `INTERNAL`; the other calls go on. Must not
//! decide anything about a call: that is `dispatch`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, Request, Response};
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tonic::body::Body;

use super::{answer, dispatch, ServerState};
use crate::h2_body::{send_body, RecvBody};

/// Flow-control windows, frame and send-buffer sizes as hyper's server sets them.
const WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024 * 1024;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

fn http2_server() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS));
    builder
}

/// Serves `io` until the caller closes it; once `stop` turns true, refuses new calls
/// (GOAWAY) and returns when the calls in flight have been answered.
pub(super) async fn serve_connection<T>(
    io: T,
    state: Arc<ServerState>,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = match http2_server().handshake::<_, Bytes>(io).await {
        Ok(connection) => connection,
        Err(err) => {
            tracing::debug!(error = %err, "connection ended before its handshake");
            return;
        }
    };
    let mut calls = FuturesUnordered::new();
    let mut stopping = *stop.borrow();
    if stopping {
        connection.graceful_shutdown();
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.changed(), if !stopping => {
                stopping = true;
                connection.graceful_shutdown();
            }
            Some(()) = calls.next(), if !calls.is_empty() => {}
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => calls.push(serve_call(&state, request, respond)),
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "connection ended with an error");
                    break;
                }
                None => break,
            },
        }
    }
}

/// Answers one call on its stream.
async fn serve_call(
    state: &Arc<ServerState>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let path = request.uri().path().to_owned();
    let answering = answer_or_internal(path, dispatch(state.clone(), request.map(RecvBody::new)));
    let mut answering = pin!(answering);
    let answered = std::future::poll_fn(|cx| {
        if let Poll::Ready(response) = answering.as_mut().poll(cx) {
            return Poll::Ready(Some(response));
        }
        // The caller reset the stream: drop the call, cancelling what it waits for.
        respond.poll_reset(cx).map(|_| None)
    })
    .await;
    if let Some(response) = answered {
        send_response(respond, response);
    }
}

/// The answer `answering` gives, or `INTERNAL` naming `path` when it panics.
async fn answer_or_internal(
    path: String,
    answering: impl Future<Output = Response<Body>>,
) -> Response<Body> {
    match AssertUnwindSafe(answering).catch_unwind().await {
        Ok(response) => response,
        Err(_panic) => {
            tracing::error!(path, "a call panicked; answering INTERNAL");
            let message = format!("imageshim failed serving {path}; see its log");
            answer::status_response(&tonic::Status::internal(message))
        }
    }
}

/// Sends the head, then the body through `send_body` (its frames already received in
/// the same write).
fn send_response(mut respond: SendResponse<Bytes>, response: Response<Body>) {
    let (mut parts, body) = response.into_parts();
    strip_connection_headers(&mut parts.headers);
    let end = body.is_end_stream();
    match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(stream) if !end => send_body(body, stream),
        Ok(_) => {}
        Err(err) => tracing::debug!(error = %err, "cannot send an answer"),
    }
}

/// Drops the connection-specific headers HTTP/2 forbids (h2 refuses an answer that
/// carries one); gRPC servers never send them.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::TE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_call_is_answered_internal_naming_its_method() {
        let path = "/runtime.v1.RuntimeService/Version".to_string();
        let response = answer_or_internal(path, async { panic!("boom") }).await;
        assert!(response.body().is_end_stream(), "trailers-only");
        assert_eq!(response.headers().get("grpc-status").unwrap(), "13");
        let message = response.headers().get("grpc-message").unwrap();
        assert!(message.to_str().unwrap().contains("Version"), "{message:?}");
    }

    #[test]
    fn connection_specific_headers_never_reach_h2() {
        let mut headers = HeaderMap::new();
        for name in ["connection", "te", "keep-alive", "grpc-status"] {
            headers.insert(http::HeaderName::from_static(name), "x".parse().unwrap());
        }
        strip_connection_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("grpc-status"));
    }
}
