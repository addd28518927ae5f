//! What the backend connection's callers and its driver share, under one lock: the bytes
//! waiting to be written, every open stream (what has arrived for it, both flow-control
//! windows, who waits on it) and the connection's own windows and limits. Plain data
//! and small operations on it; must not do I/O or wait.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use super::frame;

/// Window imageshim gives each stream and the whole connection for answers: big
/// answers (ListImages on a full node) need no window round trips.
pub(super) const STREAM_WINDOW: i64 = 2 * 1024 * 1024;
pub(super) const CONNECTION_WINDOW: i64 = 5 * 1024 * 1024;

/// Why a call on the backend connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the backend connection failed: {0}")]
    Io(std::io::ErrorKind),
    #[error("the backend closed the connection")]
    Closed,
    #[error("the backend reset the stream (HTTP/2 error code {0:#x})")]
    Reset(u32),
    #[error("the backend is going away (HTTP/2 error code {0:#x}); the call was not processed")]
    Refused(u32),
    #[error("the backend broke the HTTP/2 protocol: {0}")]
    Protocol(&'static str),
    #[error("the call's request body failed")]
    RequestBody,
    #[error("the backend stopped reading: {0} bytes queued for it")]
    NotReading(usize),
}

/// Bytes queued for a backend that does not read before the connection is given up:
/// far above what a reading backend ever leaves queued (its windows, ≤ 16 MiB for
/// grpc-go, bound the request data in flight). Small in unit tests.
pub(super) const MAX_UNWRITTEN: usize = if cfg!(test) { 1 } else { 64 } * 1024 * 1024;
/// Replies to the backend's PING and SETTINGS frames queued while it does not read
/// them: past this much the connection ends (a peer that pings without reading cannot
/// grow imageshim's memory).
pub(super) const MAX_CONTROL_UNWRITTEN: usize = if cfg!(test) { 64 } else { 256 } * 1024;

/// A stream's answer head: status and fields.
#[derive(Debug)]
pub(super) struct AnswerHead {
    pub(super) status: StatusCode,
    pub(super) fields: HeaderMap,
}

/// One open stream.
#[derive(Debug)]
pub(super) struct Stream {
    /// The answer's head, until the caller takes it.
    pub(super) head: Option<AnswerHead>,
    pub(super) head_taken: bool,
    pub(super) data: VecDeque<Bytes>,
    pub(super) trailers: Option<HeaderMap>,
    /// END_STREAM arrived.
    pub(super) recv_ended: bool,
    /// The stream failed; what the reader and the body pump are told.
    pub(super) error: Option<Error>,
    pub(super) reader: Option<Waker>,
    /// What the backend may still send before imageshim gives window back.
    pub(super) recv_window: i64,
    /// Consumed by the caller, not yet given back.
    pub(super) recv_unacked: i64,
    pub(super) send_window: i64,
    /// The request body's pump, waiting for window.
    pub(super) sender: Option<Waker>,
    /// END_STREAM went out.
    pub(super) send_ended: bool,
    pub(super) reader_alive: bool,
    pub(super) pump_alive: bool,
}

impl Stream {
    pub(super) fn new(send_window: i64) -> Self {
        Stream {
            head: None,
            head_taken: false,
            data: VecDeque::new(),
            trailers: None,
            recv_ended: false,
            error: None,
            reader: None,
            recv_window: STREAM_WINDOW,
            recv_unacked: 0,
            send_window,
            sender: None,
            send_ended: false,
            reader_alive: true,
            pump_alive: false,
        }
    }

    /// Fails the stream (unless it already has), waking whoever waits on it.
    pub(super) fn fail(&mut self, error: Error) {
        self.error.get_or_insert(error);
        self.wake_both();
    }

    pub(super) fn wake_both(&mut self) {
        wake(&mut self.reader);
        self.wake_sender();
    }

    /// Wakes the request body's pump (window arrived, or the stream is over).
    pub(super) fn wake_sender(&mut self) {
        wake(&mut self.sender);
    }

    fn buffered(&self) -> i64 {
        self.data.iter().map(|data| data.len() as i64).sum()
    }
}

/// Wakes whoever waits in `slot`, once.
fn wake(slot: &mut Option<Waker>) {
    if let Some(waker) = slot.take() {
        waker.wake();
    }
}

/// Stream ids are unique odd numbers: they need no hashing.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id);
    }
}

pub(super) type Streams = HashMap<u32, Stream, BuildHasherDefault<IdHasher>>;

/// The connection's shared state.
#[derive(Debug)]
pub(super) struct State {
    /// Frames waiting for the driver to write them.
    pub(super) out: BytesMut,
    pub(super) driver: Option<Waker>,
    pub(super) streams: Streams,
    pub(super) next_id: u32,
    pub(super) send_window: i64,
    pub(super) recv_window: i64,
    pub(super) recv_unacked: i64,
    pub(super) peer_initial_window: i64,
    pub(super) peer_max_frame: usize,
    pub(super) peer_max_streams: usize,
    /// Bytes of PING/SETTINGS replies queued since the queue was last empty.
    pub(super) control_unwritten: usize,
    /// The backend raised its stream limit: calls waiting for a slot must try again.
    pub(super) stream_limit_raised: bool,
    /// Set once the connection failed or closed: no new streams.
    pub(super) failure: Option<Error>,
    /// GOAWAY arrived: no new streams; the open ones finish.
    pub(super) going_away: bool,
    /// The last `Connection` handle is gone: the driver ends once streams have.
    pub(super) client_gone: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            out: BytesMut::with_capacity(16 * 1024),
            driver: None,
            streams: Streams::default(),
            next_id: 1,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: CONNECTION_WINDOW,
            recv_unacked: 0,
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            peer_max_streams: usize::MAX,
            stream_limit_raised: false,
            control_unwritten: 0,
            failure: None,
            going_away: false,
            client_gone: false,
        }
    }
}

impl State {
    /// The driver has something to write or do.
    pub(super) fn wake_driver(&mut self) {
        wake(&mut self.driver);
    }

    /// Whether new streams may start here.
    pub(super) fn open(&self) -> bool {
        self.failure.is_none() && !self.going_away
    }

    /// Writes as much of `data` on `id` as the windows allow (in frames the peer
    /// accepts), END_STREAM with its last byte when `end`. What is left stays in `data`.
    pub(super) fn send_data(&mut self, id: u32, data: &mut Bytes, end: bool) {
        let Some(stream) = self.streams.get_mut(&id) else {
            data.clear();
            return;
        };
        if data.is_empty() && end {
            frame::write(frame::DATA, frame::END_STREAM, id, &[], &mut self.out);
            stream.send_ended = true;
            return;
        }
        while !data.is_empty() {
            let room = self.send_window.min(stream.send_window).max(0) as usize;
            let chunk = data.len().min(room).min(self.peer_max_frame);
            if chunk == 0 {
                return;
            }
            let last = chunk == data.len() && end;
            let flags = if last { frame::END_STREAM } else { 0 };
            frame::write(frame::DATA, flags, id, &data.split_to(chunk), &mut self.out);
            self.send_window -= chunk as i64;
            stream.send_window -= chunk as i64;
            stream.send_ended |= last;
        }
    }

    /// The caller consumed `length` bytes of `id`'s answer: gives window back once half
    /// of it is used (the stream's only while more may come).
    pub(super) fn release(&mut self, id: u32, length: usize) {
        let length = length as i64;
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.recv_unacked += length;
            if !stream.recv_ended && stream.recv_unacked >= STREAM_WINDOW / 2 {
                frame::write_window_update(id, stream.recv_unacked as u32, &mut self.out);
                stream.recv_window += stream.recv_unacked;
                stream.recv_unacked = 0;
                self.wake_driver();
            }
        }
        self.release_connection(length);
    }

    /// Gives the connection's window back for `length` bytes nobody will read.
    pub(super) fn release_connection(&mut self, length: i64) {
        self.recv_unacked += length;
        if self.recv_unacked >= CONNECTION_WINDOW / 2 {
            frame::write_window_update(0, self.recv_unacked as u32, &mut self.out);
            self.recv_window += self.recv_unacked;
            self.recv_unacked = 0;
            self.wake_driver();
        }
    }

    /// The reader (answer future or body) of `id` is gone: a stream not yet finished
    /// both ways is cancelled, what it buffered is given back, and it is forgotten once
    /// its pump is gone too. True when a stream slot was freed.
    pub(super) fn reader_gone(&mut self, id: u32) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        stream.reader_alive = false;
        let finished = stream.recv_ended && stream.send_ended;
        if !finished && stream.error.is_none() && self.failure.is_none() {
            frame::write_rst(id, frame::CANCEL, &mut self.out);
            stream.fail(Error::Reset(frame::CANCEL));
            self.wake_driver();
        }
        let stream = &self.streams[&id];
        let unread = stream.buffered();
        let forget = !stream.pump_alive;
        self.release_connection(unread);
        forget && self.streams.remove(&id).is_some()
    }

    /// The request body's pump of `id` ended. True when a stream slot was freed.
    pub(super) fn pump_gone(&mut self, id: u32) -> bool {
        let Some(stream) = self.streams.get_mut(&id) else {
            return false;
        };
        stream.pump_alive = false;
        !stream.reader_alive && self.streams.remove(&id).is_some()
    }

    /// The connection ended with `error`: every stream fails, no new ones start.
    pub(super) fn fail_all(&mut self, error: Error) {
        let error = self.failure.get_or_insert(error).clone();
        for stream in self.streams.values_mut() {
            if !(stream.recv_ended && stream.send_ended) {
                stream.fail(error.clone());
            } else {
                stream.wake_both();
            }
        }
    }
}
