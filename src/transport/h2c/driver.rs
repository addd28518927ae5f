//! The backend connection's one task: reads frames and hands them to their streams,
//! answers what the protocol asks (SETTINGS, PING, window updates, GOAWAY) and writes
//! whatever the callers and itself queued, in as few writes as possible. When it ends
//! — the backend closed, a protocol error, a panic — every open stream is failed (a
//! guard does it, so nothing waits forever). Must not wait on a caller.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, Head};
use super::receive::Receiver;
use super::state::Error;
use super::Shared;
use crate::transport::quiet_io::QuietUnixStream;

/// The input buffer's size: large against a frame, so the copy of a partial frame to a
/// fresh buffer (when the frames before it are still being handed on) is rare.
const READ_BUFFER: usize = 256 * 1024;
/// Reads (and writes) in one poll before the driver lets other tasks run.
const MAX_ROUNDS_PER_POLL: usize = 32;
/// A read gets at least this much room.
const READ_ROOM: usize = 32 * 1024;

/// Drives the connection until it ends; every open stream has then failed.
pub(super) async fn drive(shared: Arc<Shared>, io: QuietUnixStream) -> Result<(), Error> {
    let guard = FailStreamsOnExit(shared.clone());
    let mut driver = Driver {
        shared,
        io,
        input: BytesMut::new(),
        output: Bytes::new(),
        receiver: Receiver::default(),
    };
    let result = poll_fn(|cx| driver.poll(cx)).await;
    if let Err(err) = &result {
        guard.0.state.lock().fail_all(err.clone());
    }
    result
}

struct Driver {
    shared: Arc<Shared>,
    io: QuietUnixStream,
    input: BytesMut,
    /// Taken from the shared queue, not yet (all) written.
    output: Bytes,
    receiver: Receiver,
}

impl Driver {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        for _ in 0..MAX_ROUNDS_PER_POLL {
            let read = self.poll_read_frames(cx)?;
            let written = self.poll_flush(cx)?;
            if read.is_ready() {
                continue;
            }
            let mut state = self.shared.state.lock();
            if written.is_ready() && !state.out.is_empty() {
                continue;
            }
            let idle = state.streams.is_empty();
            if state.failure.is_some() || (idle && (state.client_gone || state.going_away)) {
                drop(state);
                return self.close(cx);
            }
            state.driver = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // Still busy: let the callers run (and read what arrived) before going on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads what has arrived and hands every whole frame on. Ready when something was
    /// read (more may follow), pending when the socket is drained.
    fn poll_read_frames(&mut self, cx: &mut Context<'_>) -> Result<Poll<()>, Error> {
        self.make_room(READ_ROOM);
        let spare = self.input.spare_capacity_mut();
        let mut buf = ReadBuf::uninit(spare);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Pending => return Ok(Poll::Pending),
            Poll::Ready(Err(err)) => return Err(Error::Io(err.kind())),
            Poll::Ready(Ok(())) => {}
        }
        let read = buf.filled().len();
        if read == 0 {
            return Err(Error::Closed);
        }
        // SAFETY: the read initialised `read` bytes of the spare capacity.
        unsafe { self.input.set_len(self.input.len() + read) };
        while let Some(frame) = self.next_frame()? {
            let mut state = self.shared.state.lock();
            self.receiver.frame(&mut state, frame)?;
            if std::mem::take(&mut state.stream_limit_raised) {
                drop(state);
                self.shared.slot_freed.notify_waiters();
            }
        }
        Ok(Poll::Ready(()))
    }

    /// The next whole frame in the input, if one has arrived.
    fn next_frame(&mut self) -> Result<Option<(Head, Bytes)>, Error> {
        if self.input.len() < frame::HEAD_LEN {
            return Ok(None);
        }
        let head = Head::parse(&self.input);
        if head.length > frame::DEFAULT_MAX_FRAME {
            return Err(Error::Protocol("a frame is larger than the allowed size"));
        }
        let whole = frame::HEAD_LEN + head.length;
        if self.input.len() < whole {
            self.make_room(whole - self.input.len());
            return Ok(None);
        }
        let mut bytes = self.input.split_to(whole).freeze();
        Ok(Some((head, bytes.split_off(frame::HEAD_LEN))))
    }

    /// At least `room` free bytes after the input. Short of it, the unparsed rest moves
    /// to a fresh buffer (the old one lives on in the frames handed out); `reserve`
    /// would copy all of it, or the frames already handed on, again.
    fn make_room(&mut self, room: usize) {
        if self.input.capacity() - self.input.len() >= room {
            return;
        }
        let mut fresh = BytesMut::with_capacity(READ_BUFFER.max(self.input.len() + room));
        fresh.extend_from_slice(&self.input);
        self.input = fresh;
    }

    /// Writes everything queued. Ready once the queue is empty.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Result<Poll<()>, Error> {
        loop {
            if self.output.is_empty() {
                let mut state = self.shared.state.lock();
                if state.out.is_empty() {
                    state.control_unwritten = 0;
                    return Ok(Poll::Ready(()));
                }
                self.output = state.out.split().freeze();
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.output) {
                Poll::Pending => return Ok(Poll::Pending),
                Poll::Ready(Err(err)) => return Err(Error::Io(err.kind())),
                Poll::Ready(Ok(0)) => return Err(Error::Io(std::io::ErrorKind::WriteZero)),
                Poll::Ready(Ok(written)) => {
                    let _ = self.output.split_to(written);
                }
            }
        }
    }

    /// Says goodbye (best effort) and ends.
    fn close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        {
            let mut state = self.shared.state.lock();
            if state.failure.is_none() {
                // Last stream processed: 0 (imageshim accepts none); NO_ERROR.
                frame::write(frame::GOAWAY, 0, 0, &[0; 8], &mut state.out);
            }
        }
        let _ = self.poll_flush(cx);
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        let failure = self.shared.state.lock().failure.clone();
        Poll::Ready(failure.map_or(Ok(()), Err))
    }
}

/// Fails every stream still open when the driver ends, however it ends.
struct FailStreamsOnExit(Arc<Shared>);

impl Drop for FailStreamsOnExit {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.fail_all(Error::Closed);
        drop(state);
        self.0.slot_freed.notify_waiters();
    }
}
