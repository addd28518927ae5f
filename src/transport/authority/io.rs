//! The connection wrapper that puts an [`AuthorityFilter`] on the client's bytes before
//! h2 reads them; writes pass through untouched (vectored writes included). Must not
//! buffer more than one read ahead.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{AuthorityFilter, MAX_FRAME_PAYLOAD};

/// Output held back between reads above this is given back to the allocator once
/// drained, so an idle connection keeps no buffer.
const KEPT_CAPACITY: usize = MAX_FRAME_PAYLOAD;

/// A connection whose reads go through an [`AuthorityFilter`]; writes pass as they are.
pub struct AuthorityFixingStream<S> {
    inner: S,
    filter: AuthorityFilter,
    /// Filtered bytes not yet handed to the reader.
    out: BytesMut,
    eof: bool,
}

impl<S> AuthorityFixingStream<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFixingStream {
            inner,
            filter: AuthorityFilter::default(),
            out: BytesMut::new(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFixingStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                if this.out.is_empty() && this.out.capacity() > KEPT_CAPACITY {
                    this.out = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.filter.is_raw() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Read straight into the reader's buffer (no buffer of our own per
            // connection), then put back what the filter makes of those bytes.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() == before {
                this.eof = true;
                this.filter.finish(&mut this.out);
            } else {
                this.filter.feed(&buf.filled()[before..], &mut this.out);
                buf.set_filled(before);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFixingStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
