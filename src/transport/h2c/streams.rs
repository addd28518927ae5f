//! One call on the backend connection, from the caller's side: starting it (head and
//! the body frames already received, queued at once; a pump task for a body still
//! arriving), awaiting the answer's head, reading its body. Dropping the answer before
//! the stream finished cancels it (RST_STREAM). Must not block or do I/O.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response, Version};
use http_body::{Body as HttpBody, Frame};

use super::frame::{self, Head};
use super::state::{Error, State, Stream, MAX_UNWRITTEN};
use super::{hpack, Connection, Shared};
use crate::transport::body::SendableBody;

/// Why a call did not start; the request comes back, untouched.
#[derive(Debug)]
pub enum SendError<B> {
    /// The backend's limit of concurrent streams is reached: try again when a slot
    /// is freed.
    AtLimit(Box<Request<B>>),
    /// The connection has ended or is going away: try on a new one.
    Closed(Box<Request<B>>),
}

/// The `:authority` of every call: the origin grpc-go clients send and the runtimes
/// expect (the caller's own never reaches the backend).
const AUTHORITY: &[u8] = b"localhost";

impl Connection {
    /// Starts `request`: queues its head and the body frames already received.
    pub fn send<B: SendableBody>(
        &self,
        request: Request<B>,
    ) -> Result<ResponseFuture, SendError<B>> {
        let (id, end) = {
            let mut state = self.shared.state.lock();
            if state.next_id > MAX_STREAM_ID {
                // Stream ids are used up: the next call takes a new connection.
                state.going_away = true;
            }
            if state.out.len() >= MAX_UNWRITTEN && state.failure.is_none() {
                // The backend stopped reading: its calls fail now rather than at their
                // deadlines, and the next call takes a new connection.
                let queued = state.out.len();
                state.fail_all(Error::NotReading(queued));
                state.wake_driver();
            }
            if !state.open() {
                return Err(SendError::Closed(Box::new(request)));
            }
            if state.streams.len() >= state.peer_max_streams {
                return Err(SendError::AtLimit(Box::new(request)));
            }
            let id = state.next_id;
            state.next_id += 2;
            let end = request.body().is_end_stream();
            queue_head(&mut state, id, &request, end);
            let mut stream = Stream::new(state.peer_initial_window);
            stream.send_ended = end;
            stream.pump_alive = !end;
            state.streams.insert(id, stream);
            state.wake_driver();
            (id, end)
        };
        if !end {
            send_body(request.into_body(), self.shared.clone(), id);
        }
        Ok(ResponseFuture {
            stream: Some(StreamRef {
                shared: self.shared.clone(),
                id,
            }),
        })
    }

    /// `send`, waiting for a stream slot while the backend's limit is reached.
    pub async fn send_when_below_limit<B: SendableBody>(
        self: Arc<Self>,
        mut request: Request<B>,
    ) -> Result<ResponseFuture, Error> {
        loop {
            // Registered before the attempt, so a slot freed meanwhile is not missed.
            let freed = self.shared.slot_freed.notified();
            match self.send(request) {
                Ok(answer) => return Ok(answer),
                Err(SendError::Closed(_)) => {
                    let state = self.shared.state.lock();
                    return Err(state.failure.clone().unwrap_or(Error::Closed));
                }
                Err(SendError::AtLimit(again)) => {
                    request = *again;
                    freed.await;
                }
            }
        }
    }
}

const MAX_STREAM_ID: u32 = (1 << 31) - 1;

/// HEADERS (and CONTINUATION when the block is larger than a frame) for `request`.
fn queue_head<B>(state: &mut State, id: u32, request: &Request<B>, end: bool) {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let start = state.out.len();
    state.out.extend_from_slice(&[0; frame::HEAD_LEN]);
    hpack::encode_request(
        path.as_bytes(),
        AUTHORITY,
        request.headers(),
        &mut state.out,
    );
    let end_flag = if end { frame::END_STREAM } else { 0 };
    let length = state.out.len() - start - frame::HEAD_LEN;
    if length <= state.peer_max_frame {
        let head = Head {
            length,
            kind: frame::HEADERS,
            flags: frame::END_HEADERS | end_flag,
            stream: id,
        };
        state.out[start..start + frame::HEAD_LEN].copy_from_slice(&head.bytes());
        return;
    }
    let block = state.out.split_off(start + frame::HEAD_LEN).freeze();
    state.out.truncate(start);
    let mut chunks = block.chunks(state.peer_max_frame).peekable();
    let mut kind = frame::HEADERS;
    let mut flags = end_flag;
    while let Some(chunk) = chunks.next() {
        if chunks.peek().is_none() {
            flags |= frame::END_HEADERS;
        }
        frame::write(kind, flags, id, chunk, &mut state.out);
        (kind, flags) = (frame::CONTINUATION, 0);
    }
}

/// A handle on one stream; the reader's side cancels the stream when dropped early.
#[derive(Debug)]
struct StreamRef {
    shared: Arc<Shared>,
    id: u32,
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        let freed = self.shared.state.lock().reader_gone(self.id);
        if freed {
            self.shared.slot_freed.notify_waiters();
        }
    }
}

/// The answer's head, awaited.
#[derive(Debug)]
pub struct ResponseFuture {
    /// Handed to the answer's body once the head is in.
    stream: Option<StreamRef>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<AnswerStream>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let handle = this
            .stream
            .as_ref()
            .expect("`ResponseFuture` polled after it completed");
        let mut state = handle.shared.state.lock();
        let stream = state
            .streams
            .get_mut(&handle.id)
            .expect("a stream lives while its reader does");
        if let Some(head) = stream.head.take() {
            stream.head_taken = true;
            drop(state);
            let body = AnswerStream {
                stream: this.stream.take().expect("checked above"),
                trailers_taken: false,
            };
            let mut response = Response::new(body);
            *response.status_mut() = head.status;
            *response.headers_mut() = head.fields;
            *response.version_mut() = Version::HTTP_2;
            return Poll::Ready(Ok(response));
        }
        if let Some(error) = &stream.error {
            return Poll::Ready(Err(error.clone()));
        }
        set_waker(&mut stream.reader, cx.waker());
        Poll::Pending
    }
}

fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(current) if current.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// The answer's body: data as it arrives (window given back as it is read), then the
/// trailers.
#[derive(Debug)]
pub struct AnswerStream {
    stream: StreamRef,
    trailers_taken: bool,
}

impl HttpBody for AnswerStream {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let id = this.stream.id;
        let mut state = this.stream.shared.state.lock();
        let state = &mut *state;
        let Some(stream) = state.streams.get_mut(&id) else {
            return Poll::Ready(None);
        };
        if let Some(data) = stream.data.pop_front() {
            let length = data.len();
            state.release(id, length);
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if stream.recv_ended {
            if this.trailers_taken {
                return Poll::Ready(None);
            }
            this.trailers_taken = true;
            return Poll::Ready(stream.trailers.take().map(|t| Ok(Frame::trailers(t))));
        }
        if let Some(error) = &stream.error {
            return Poll::Ready(Some(Err(error.clone())));
        }
        set_waker(&mut stream.reader, cx.waker());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let state = self.stream.shared.state.lock();
        state.streams.get(&self.stream.id).is_none_or(|stream| {
            stream.recv_ended
                && stream.data.is_empty()
                && (self.trailers_taken || stream.trailers.is_none())
        })
    }
}

/// Queues the body frames already received; a task sends the rest as it arrives.
fn send_body<B: SendableBody>(body: B, shared: Arc<Shared>, id: u32) {
    let mut pump = Pump {
        body,
        shared,
        id,
        pending: None,
    };
    let mut cx = Context::from_waker(Waker::noop());
    if pump.poll_send(&mut cx).is_pending() {
        tokio::spawn(std::future::poll_fn(move |cx| pump.poll_send(cx)));
    }
}

/// A request body on its way: what the windows did not take yet, then the next frame.
struct Pump<B> {
    body: B,
    shared: Arc<Shared>,
    id: u32,
    pending: Option<(Bytes, bool)>,
}

impl<B: SendableBody> Pump<B> {
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if let Some((mut data, end)) = self.pending.take() {
                let mut state = self.shared.state.lock();
                let Some(stream) = state.streams.get(&self.id) else {
                    return Poll::Ready(());
                };
                if stream.error.is_some() || stream.send_ended {
                    return Poll::Ready(());
                }
                state.send_data(self.id, &mut data, end);
                state.wake_driver();
                let stream = state.streams.get_mut(&self.id).expect("checked above");
                if !data.is_empty() || (end && !stream.send_ended) {
                    set_waker(&mut stream.sender, cx.waker());
                    self.pending = Some((data, end));
                    return Poll::Pending;
                }
                if end {
                    return Poll::Ready(());
                }
            }
            let frame = match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => return self.wait_for_body(cx),
            };
            let end = self.body.is_end_stream();
            match frame {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending = Some((data, end)),
                    Err(frame) => return self.finish(frame.into_trailers().ok()),
                },
                None => self.pending = Some((Bytes::new(), true)),
                Some(Err(_)) => return self.fail(),
            }
        }
    }

    /// The body has nothing yet: waits, unless the stream is already over.
    fn wait_for_body(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.shared.state.lock();
        match state.streams.get_mut(&self.id) {
            Some(stream) if stream.error.is_none() && !stream.send_ended => {
                set_waker(&mut stream.sender, cx.waker());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Trailers end the request (none: an empty END_STREAM).
    fn finish(&mut self, trailers: Option<HeaderMap>) -> Poll<()> {
        let mut state = self.shared.state.lock();
        let state = &mut *state;
        let Some(stream) = state.streams.get_mut(&self.id) else {
            return Poll::Ready(());
        };
        if stream.error.is_none() && !stream.send_ended {
            stream.send_ended = true;
            let trailers = trailers.unwrap_or_default();
            let mut block = BytesMut::new();
            hpack::encode_fields(&trailers, &mut block);
            let flags = frame::END_STREAM | frame::END_HEADERS;
            frame::write(frame::HEADERS, flags, self.id, &block, &mut state.out);
            state.wake_driver();
        }
        Poll::Ready(())
    }

    /// The caller's body failed: the backend's stream is cancelled.
    fn fail(&mut self) -> Poll<()> {
        let mut state = self.shared.state.lock();
        let state = &mut *state;
        if let Some(stream) = state.streams.get_mut(&self.id) {
            if stream.error.is_none() {
                stream.fail(Error::RequestBody);
                frame::write_rst(self.id, frame::CANCEL, &mut state.out);
                state.wake_driver();
            }
        }
        Poll::Ready(())
    }
}

impl<B> Drop for Pump<B> {
    fn drop(&mut self) {
        let freed = self.shared.state.lock().pump_gone(self.id);
        if freed {
            self.shared.slot_freed.notify_waiters();
        }
    }
}
