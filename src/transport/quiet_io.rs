//! A unix stream socket that asks the event loop for read readiness only. tokio's own
//! `UnixStream` registers for reads and writes (edge-triggered), so every time the peer
//! drains what imageshim wrote, epoll wakes the thread for a write readiness nobody
//! waits for: at one call at a time that was one or two extra sleeps and wake-ups per
//! forwarded call (measured with `voluntary_ctxt_switches`). Here writes go straight to
//! the socket; only a write that would block registers a duplicate of the descriptor for
//! write readiness, dropped again once the write went through. On a backend connection
//! a lone PING ACK is held until the next write or a millisecond (`held_ack`). Owns the
//! descriptor; must not buffer anything else.

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

mod held_ack;

use held_ack::AckHolder;

/// A connected unix stream registered for read readiness only.
#[derive(Debug)]
pub struct QuietUnixStream {
    /// The socket, registered for read readiness; writes use it directly.
    socket: Arc<AsyncFd<UnixStream>>,
    /// Registered for write readiness while a write is blocked, else none.
    write_wait: Option<AsyncFd<OwnedFd>>,
    /// Set on backend connections: a lone PING ACK held for a moment (`held_ack`).
    held_ack: Option<Arc<AckHolder>>,
}

impl QuietUnixStream {
    /// Takes over a connected socket (switched to non-blocking here).
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(QuietUnixStream {
            socket: Arc::new(register(stream, Interest::READABLE)?),
            write_wait: None,
            held_ack: None,
        })
    }

    /// Holds a lone PING ACK until the next write or `held_ack::ACK_DELAY` (see
    /// `held_ack`): for the connection to a backend that pings with its answers.
    pub fn with_held_ping_acks(mut self) -> Self {
        self.held_ack = Some(AckHolder::start(Arc::downgrade(&self.socket)));
        self
    }

    /// Takes over a tokio stream (its registration is dropped first).
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<Self> {
        Self::new(stream.into_std()?)
    }

    /// Writes `slices` as soon as the socket takes them (a held PING ACK first); waits
    /// for write readiness only after a write would have blocked.
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(holder) = &self.held_ack {
            if holder.held.lock().hold_if_lone_ack(slices) {
                holder.held_one();
                return Poll::Ready(Ok(held_ack::PING_ACK_LEN));
            }
        }
        loop {
            match self.try_write(slices) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                done => {
                    self.write_wait = None;
                    return Poll::Ready(done);
                }
            }
            let waiter = match &mut self.write_wait {
                Some(waiter) => waiter,
                None => {
                    let fd = self.socket.get_ref().as_fd().try_clone_to_owned()?;
                    self.write_wait.insert(register(fd, Interest::WRITABLE)?)
                }
            };
            let mut guard = ready!(waiter.poll_write_ready(cx))?;
            // Readiness is re-armed by the next would-block; clear it so the loop
            // waits for a fresh edge rather than spinning.
            guard.clear_ready();
        }
    }

    fn try_write(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut socket = self.socket.get_ref();
        match &self.held_ack {
            Some(holder) => holder.held.lock().write_ahead_of(socket, slices),
            None => socket.write_vectored(slices),
        }
    }
}

impl Drop for QuietUnixStream {
    fn drop(&mut self) {
        if let Some(holder) = &self.held_ack {
            holder.close();
        }
    }
}

/// Registers an owned descriptor with the runtime's reactor for `interest` only.
fn register<T: std::os::fd::AsRawFd>(owner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `owner` is a `UnixStream` or `OwnedFd`: it owns its descriptor, keeps it
    // open until it is dropped with the `AsyncFd`, and always returns the same one.
    unsafe { AsyncFd::register_with_interest(owner, interest) }.map_err(|err| err.into_parts().1)
}

impl AsyncRead for QuietUnixStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.socket.poll_read_ready(cx))?;
            // SAFETY: `read_into` only writes into the slice, never reads it.
            let unfilled = unsafe { buf.unfilled_mut() };
            let room = unfilled.len();
            match guard.try_io(|socket| read_into(socket.get_ref(), unfilled)) {
                Ok(Ok(read)) => {
                    if read > 0 && read < room {
                        // A short read drained the socket: wait for the next edge
                        // instead of a read that would only say "would block". (The
                        // guard clears only the readiness it saw; a newer edge stays.)
                        guard.clear_ready();
                    }
                    // SAFETY: the kernel initialised the first `read` bytes.
                    unsafe { buf.assume_init(read) };
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// One `read(2)` into possibly uninitialised memory (what tokio's own streams do): no
/// zeroing of the reader's buffer before every read.
fn read_into(socket: &UnixStream, into: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `into.len()` bytes at `into`, which is valid for
    // writes of that length; the descriptor is open for the call.
    let read = unsafe { libc::read(socket.as_raw_fd(), into.as_mut_ptr().cast(), into.len()) };
    usize::try_from(read).map_err(|_| io::Error::last_os_error())
}

impl AsyncWrite for QuietUnixStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_slices(cx, slices)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.socket.get_ref().shutdown(std::net::Shutdown::Write) {
            Err(err) if err.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(err)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pair() -> (QuietUnixStream, QuietUnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (
            QuietUnixStream::new(a).unwrap(),
            QuietUnixStream::new(b).unwrap(),
        )
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_end_of_stream_is_seen() {
        let (mut a, mut b) = pair();
        a.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        let slices = [IoSlice::new(b"po"), IoSlice::new(b"ng")];
        let written = b.write_vectored(&slices).await.unwrap();
        assert_eq!(written, 4);
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        b.shutdown().await.unwrap();
        assert_eq!(a.read(&mut got).await.unwrap(), 0, "end of stream");
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_buffer_waits_for_the_reader() {
        let (mut a, mut b) = pair();
        let big = vec![7u8; 8 * 1024 * 1024];
        let writer = tokio::spawn(async move {
            a.write_all(&big).await.unwrap();
            assert!(
                a.write_wait.is_none(),
                "write registration dropped once done"
            );
            a
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !writer.is_finished(),
            "the socket buffer is smaller than 8 MiB"
        );
        let mut received = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while received.len() < 8 * 1024 * 1024 {
            let read = b.read(&mut chunk).await.unwrap();
            assert!(read > 0);
            received.extend_from_slice(&chunk[..read]);
        }
        assert!(received.iter().all(|byte| *byte == 7));
        let _a = writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_held_ping_ack_goes_out_on_its_own_or_ahead_of_the_next_write() {
        let (a, mut b) = pair();
        let mut a = a.with_held_ping_acks();
        let ack = [0, 0, 8, 6, 1, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9];
        a.write_all(&ack).await.unwrap();
        let mut got = [0u8; 17];
        let flushed = std::time::Duration::from_secs(2);
        tokio::time::timeout(flushed, b.read_exact(&mut got))
            .await
            .expect("the flush task writes a held ack no write carries")
            .unwrap();
        assert_eq!(got, ack, "written by the flush task");
        a.write_all(&ack).await.unwrap();
        a.write_all(b"next frame").await.unwrap();
        let mut both = vec![0u8; 27];
        b.read_exact(&mut both).await.unwrap();
        assert_eq!(&both[..17], &ack, "the ack first");
        assert_eq!(&both[17..], b"next frame");
        let holder = a.held_ack.clone().expect("holding");
        drop(a);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            Arc::strong_count(&holder),
            1,
            "the flush task ended with the stream"
        );
    }

    #[tokio::test]
    async fn writing_to_a_closed_peer_is_an_error_not_a_hang() {
        let (mut a, b) = pair();
        drop(b);
        let err = a.write_all(&[1u8; 1024]).await.expect_err("peer is gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
