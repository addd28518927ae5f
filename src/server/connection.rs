//! One caller's connection: HTTP/2 served with `h2` directly, with the settings a
//! grpc-go server would use (no stream limit, 16 MiB of headers) and hyper's windows and
//! frame size. Every call on the connection is polled inside the connection's own task —
//! no task per stream, no copy of the call's state into one — and a call whose stream
//! the caller resets is dropped at once, which cancels what it was waiting for (a
//! backend call, a pull wait). A call that panics is answered `INTERNAL`; the other
//! calls go on. Must not decide anything about a call: that is `dispatch`.

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
use http::{Request, Response};
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
    // One wait for the stop signal for the connection's life, not one per loop turn
    // (each would register and deregister a waiter).
    let stop_signal = stop.changed();
    tokio::pin!(stop_signal);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop_signal, if !stopping => {
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
    let uri = request.uri().clone();
    let answering = answer_or_internal(uri, dispatch(state.clone(), request.map(RecvBody::new)));
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

/// The answer `answering` gives, or `INTERNAL` naming the method when it panics.
async fn answer_or_internal(
    uri: http::Uri,
    answering: impl Future<Output = Response<Body>>,
) -> Response<Body> {
    match AssertUnwindSafe(answering).catch_unwind().await {
        Ok(response) => response,
        Err(_panic) => {
            let path = uri.path();
            tracing::error!(path, "a call panicked; answering INTERNAL");
            let message = format!("imageshim failed serving {path}; see its log");
            answer::status_response(&tonic::Status::internal(message))
        }
    }
}

/// Sends the head, then the body through `send_body` (its frames already received in
/// the same write).
fn send_response(mut respond: SendResponse<Bytes>, response: Response<Body>) {
    // No connection-specific header can be here: h2 refused them in the backend's
    // answer, and imageshim's own answers have none (h2 checks again as it sends).
    let (parts, body) = response.into_parts();
    let end = body.is_end_stream();
    match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(stream) if !end => send_body(body, stream),
        Ok(_) => {}
        Err(err) => tracing::debug!(error = %err, "cannot send an answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_call_is_answered_internal_naming_its_method() {
        let uri = http::Uri::from_static("/runtime.v1.RuntimeService/Version");
        let response = answer_or_internal(uri, async { panic!("boom") }).await;
        assert!(response.body().is_end_stream(), "trailers-only");
        assert_eq!(response.headers().get("grpc-status").unwrap(), "13");
        let message = response.headers().get("grpc-message").unwrap();
        assert!(message.to_str().unwrap().contains("Version"), "{message:?}");
    }
}
