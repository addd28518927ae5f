//! One caller's connection: HTTP/2 served with `h2` directly, with the settings a
//! grpc-go server would use (16 MiB of headers), hyper's windows and frame size, at most
//! 1,024 concurrent streams and a budget for the request bytes its calls buffer
//! (`budget`). Every call on the connection is polled inside the connection's own task —
//! no task per stream, no copy of the call's state into one — and a call whose stream
//! the caller resets is dropped at once, which cancels what it was waiting for (a
//! backend call, a pull wait). A call that panics is answered `INTERNAL`; the other
//! calls go on. Must not decide anything about a call: that is `dispatch`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::CatchUnwind;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tonic::body::Body;

use super::budget::RequestBudget;
use super::{answer, dispatch, ServerState};
use crate::transport::body::{send_body, RecvBody, SendableBody};

/// Flow-control windows, frame and send-buffer sizes as hyper's server sets them.
const WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_HEADER_LIST: u32 = crate::transport::authority::MAX_HEADER_LIST as u32;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Streams one caller may have open at once (grpc-go clients queue past it).
pub(super) const MAX_CONCURRENT_STREAMS: u32 = 1024;

fn http2_server() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
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
    let budget = RequestBudget::default();
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
                Some(Ok((mut request, respond))) => {
                    request.extensions_mut().insert(budget.clone());
                    calls.push(serve_call(&state, request, respond))
                }
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
fn serve_call(
    state: &Arc<ServerState>,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) -> ServedCall<impl Future<Output = Response<impl SendableBody>>> {
    let uri = request.uri().clone();
    let answering = dispatch(state, request.map(RecvBody::new));
    ServedCall {
        answering: AssertUnwindSafe(answering).catch_unwind(),
        respond: Some(respond),
        uri,
    }
}

pin_project_lite::pin_project! {
    /// One call on its stream: its answer in the making (held once, in place: no future
    /// wraps another by value) and the stream the answer goes to.
    struct ServedCall<F> {
        #[pin]
        answering: CatchUnwind<AssertUnwindSafe<F>>,
        respond: Option<SendResponse<Bytes>>,
        uri: http::Uri,
    }
}

impl<F, B> Future for ServedCall<F>
where
    F: Future<Output = Response<B>>,
    B: SendableBody,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let Some(respond) = this.respond else {
            return Poll::Ready(());
        };
        let answered = match this.answering.poll(cx) {
            Poll::Ready(answered) => answered,
            // The caller reset the stream: the call is dropped with this future, which
            // cancels what it waits for.
            Poll::Pending => return respond.poll_reset(cx).map(|_| ()),
        };
        let respond = this.respond.take().expect("checked above");
        match answered {
            Ok(response) => send_response(respond, response),
            Err(_panic) => send_response(respond, panic_answer(this.uri)),
        }
        Poll::Ready(())
    }
}

/// `INTERNAL` naming the method, for a call that panicked.
fn panic_answer(uri: &http::Uri) -> Response<Body> {
    let path = uri.path();
    tracing::error!(path, "a call panicked; answering INTERNAL");
    let message = format!("imageshim failed serving {path}; see its log");
    answer::status_response(&tonic::Status::internal(message))
}

/// Sends the head, then the body through `send_body` (its frames already received in
/// the same write).
fn send_response(mut respond: SendResponse<Bytes>, response: Response<impl SendableBody>) {
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
    use http_body::Body as _;

    #[test]
    fn a_panicked_call_is_answered_internal_naming_its_method() {
        let uri = http::Uri::from_static("/runtime.v1.RuntimeService/Version");
        let response = panic_answer(&uri);
        assert!(response.body().is_end_stream(), "trailers-only");
        assert_eq!(response.headers().get("grpc-status").unwrap(), "13");
        let message = response.headers().get("grpc-message").unwrap();
        assert!(message.to_str().unwrap().contains("Version"), "{message:?}");
    }

    #[tokio::test]
    async fn a_call_that_panics_is_answered_on_its_stream() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut connection = http2_server().handshake::<_, Bytes>(server_io).await?;
            let (request, respond) = connection.accept().await.expect("a call")?;
            let panicking = std::future::ready(()).map(|()| -> Response<Body> { panic!("boom") });
            let served = ServedCall {
                answering: AssertUnwindSafe(panicking).catch_unwind(),
                respond: Some(respond),
                uri: request.uri().clone(),
            };
            tokio::select! {
                () = served => {}
                _ = std::future::poll_fn(|cx| connection.poll_closed(cx)) => {}
            }
            // Drive the connection until the client has read the answer and gone.
            std::future::poll_fn(|cx| connection.poll_closed(cx)).await
        });
        let (mut client, connection) = h2::client::handshake(client_io).await.unwrap();
        let driver = tokio::spawn(connection);
        let request = Request::post("http://localhost/runtime.v1.RuntimeService/Version")
            .body(())
            .unwrap();
        let (response, _body) = client.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.headers().get("grpc-status").unwrap(), "13");
        let message = response.headers().get("grpc-message").unwrap();
        assert!(message.to_str().unwrap().contains("Version"), "{message:?}");
        drop(client);
        driver.abort();
        let _ = server.await;
    }

    /// Every call's state is moved into the connection's set of calls and polled there:
    /// it has to stay small (it was 6 KiB when futures wrapped futures by value).
    #[test]
    fn a_calls_state_stays_small() {
        fn output_size<A, B, C, R>(_: impl Fn(A, B, C) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let size = output_size(|state: &Arc<ServerState>, request, respond| {
            serve_call(state, request, respond)
        });
        assert!(size <= 1024, "a call's state is {size} bytes");
    }
}
