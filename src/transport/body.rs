//! Message bodies on `h2` streams, for both forwarding connections (caller → imageshim
//! and imageshim → backend): [`RecvBody`] reads an h2 receive stream as an HTTP body,
//! giving the window back as data is handed on; [`send_body`] writes an HTTP body onto
//! an h2 send stream — every frame already received in the same write as the head, a
//! task for the rest only when it is still arriving, stopped (and the body dropped, which
//! cancels its source) when the peer resets the stream. Must not look inside messages.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;

use crate::transport::h2c::AnswerStream;

/// A body that can be sent on an h2 stream from any task: the caller's or the
/// backend's stream as it arrives, or a body imageshim made.
pub trait SendableBody: HttpBody<Data = Bytes, Error: Send> + Unpin + Send + 'static {}

impl<B: HttpBody<Data = Bytes, Error: Send> + Unpin + Send + 'static> SendableBody for B {}

/// Sends every body frame that has already arrived now, so it leaves in the same write
/// as the head; a task sends the rest when the body is still arriving.
pub fn send_body<B: SendableBody>(mut body: B, mut stream: SendStream<Bytes>) {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(frame) => {
                if !send_frame(frame, body.is_end_stream(), &mut stream) {
                    return;
                }
            }
            Poll::Pending => {
                tokio::spawn(pump(body, stream));
                return;
            }
        }
    }
}

/// Sends one polled frame; false once the stream is finished (ended, trailers sent or
/// reset).
fn send_frame<E>(
    frame: Option<Result<Frame<Bytes>, E>>,
    end: bool,
    stream: &mut SendStream<Bytes>,
) -> bool {
    match frame {
        None => {
            let _ = stream.send_data(Bytes::new(), true);
            false
        }
        Some(Err(_)) => {
            stream.send_reset(h2::Reason::CANCEL);
            false
        }
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) => stream.send_data(data, end).is_ok() && !end,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                }
                false
            }
        },
    }
}

/// The rest of a body that was still arriving, sent as the peer's window allows; ends
/// when the body does or the peer resets the stream.
async fn pump<B: SendableBody>(mut body: B, mut stream: SendStream<Bytes>) {
    loop {
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) {
                return Poll::Ready(Some(frame));
            }
            // The peer reset the stream (or the connection ended): nobody reads the rest.
            stream.poll_reset(cx).map(|_| None)
        })
        .await;
        let Some(frame) = next else { return };
        let end = body.is_end_stream();
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    send_frame::<B::Error>(Some(Ok(frame)), end, &mut stream);
                    return;
                }
            },
            other => {
                send_frame(other, end, &mut stream);
                return;
            }
        };
        if send_within_window(&mut stream, data, end).await.is_err() || end {
            return;
        }
    }
}

async fn send_within_window(
    stream: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        return stream.send_data(data, end);
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx)).await;
        let granted = match granted {
            Some(granted) => granted?,
            None => return Ok(()),
        };
        let chunk = data.split_to(granted.min(data.len()));
        stream.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}

/// A call's answer body: the backend's stream as it arrives (a forwarded call, no box
/// or dynamic call in between), or an answer imageshim made.
pub enum AnswerBody {
    Streamed(AnswerStream),
    Made(Body),
}

impl HttpBody for AnswerBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        match self.get_mut() {
            AnswerBody::Streamed(body) => Pin::new(body).poll_frame(cx).map(|frame| {
                frame.map(|frame| frame.map_err(|err| tonic::Status::from_error(Box::new(err))))
            }),
            AnswerBody::Made(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnswerBody::Streamed(body) => body.is_end_stream(),
            AnswerBody::Made(body) => body.is_end_stream(),
        }
    }
}

/// An h2 receive stream as a body: data as it arrives (its window given back at once),
/// then the trailers.
pub struct RecvBody {
    recv: RecvStream,
    data_done: bool,
}

impl RecvBody {
    pub fn new(recv: RecvStream) -> Self {
        RecvBody {
            recv,
            data_done: false,
        }
    }
}

impl HttpBody for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => self.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let trailers: Poll<Result<Option<HeaderMap>, h2::Error>> = self.recv.poll_trailers(cx);
        trailers.map(|t| t.transpose().map(|t| t.map(Frame::trailers)))
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
