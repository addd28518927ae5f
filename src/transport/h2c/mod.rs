//! A lean HTTP/2 client for the forwarding path's connection to a backend: gRPC calls
//! out, answers back, as nothing more than frames. A call's head and the body frames
//! already received are encoded straight into the connection's write queue (HPACK
//! without tables: a copy), its answer is decoded into a plain head and a queue of data
//! that the caller reads without a task in between; one driver task per connection
//! reads and writes (`driver`). Flow control, settings, PING, GOAWAY and resets as RFC
//! 9113 asks of a client. Must not look inside messages or keep anything a finished
//! call left.

mod driver;
mod frame;
pub(crate) mod hpack;
mod huffman;
mod receive;
mod state;
mod streams;

use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use state::Error;
pub use streams::{AnswerStream, ResponseFuture, SendError};

use crate::transport::quiet_io::QuietUnixStream;
use state::{State, CONNECTION_WINDOW, STREAM_WINDOW};

/// The connection state its callers and its driver share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// A stream slot was freed (for callers over the backend's stream limit).
    slot_freed: Notify,
}

/// One HTTP/2 connection to a backend: starts calls on it.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    /// Starts the connection on `io`: the preface and imageshim's settings are queued
    /// and the returned driver (to be spawned) writes them and runs the connection.
    pub fn start(
        io: QuietUnixStream,
    ) -> (
        Connection,
        impl std::future::Future<Output = Result<(), Error>> + Send + 'static,
    ) {
        let shared = Arc::new(Shared::default());
        queue_preface(&mut shared.state.lock().out);
        let driver = driver::drive(shared.clone(), io);
        (Connection { shared }, driver)
    }

    /// Whether the connection has ended or is going away (new calls need another).
    pub fn is_closed(&self) -> bool {
        !self.shared.state.lock().open()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.client_gone = true;
        state.wake_driver();
    }
}

fn queue_preface(out: &mut BytesMut) {
    out.extend_from_slice(frame::PREFACE);
    frame::write_settings(
        &[
            (frame::SETTINGS_ENABLE_PUSH, 0),
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW as u32),
            (frame::SETTINGS_HEADER_TABLE_SIZE, hpack::TABLE_SIZE as u32),
        ],
        out,
    );
    let increment = CONNECTION_WINDOW - frame::DEFAULT_WINDOW;
    frame::write_window_update(0, increment as u32, out);
}

/// Entry points for the fuzz targets in `fuzz/` (the parsers of backend bytes); not an
/// API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes `blocks` in turn with one HPACK decoder (its dynamic table carried from
    /// block to block): each block's fields, or `None` where it does not decode.
    pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    pub fn hpack_blocks(blocks: &[&[u8]]) -> Vec<Option<Fields>> {
        let mut decoder = super::hpack::Decoder::default();
        blocks
            .iter()
            .map(|block| {
                let mut fields = Vec::new();
                decoder
                    .decode(block, |f| fields.push((f.name.to_vec(), f.value.to_vec())))
                    .ok()
                    .map(|()| fields)
            })
            .collect()
    }

    /// A Huffman-coded string decoded, or `None`.
    pub fn huffman(encoded: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        super::huffman::decode(encoded, &mut out).ok().map(|()| out)
    }

    /// Frame heads, padding and settings read from arbitrary bytes, as the driver
    /// reads them: the frames found (kind and payload length).
    pub fn frames(mut data: &[u8]) -> Vec<(u8, usize)> {
        use super::frame;
        let mut found = Vec::new();
        while data.len() >= frame::HEAD_LEN {
            let head = frame::Head::parse(data);
            let end = (frame::HEAD_LEN + head.length).min(data.len());
            let payload = &data[frame::HEAD_LEN..end];
            let _ = frame::unpadded(&head, payload);
            if head.kind == frame::SETTINGS {
                let _ = frame::settings(payload).count();
            }
            found.push((head.kind, head.length));
            data = &data[end..];
        }
        found
    }
}

#[cfg(test)]
mod tests;
