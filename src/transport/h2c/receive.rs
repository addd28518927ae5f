//! What each frame from the backend does to the connection's state (RFC 9113 §6): data
//! and answer heads to their streams (within the windows imageshim gave), settings,
//! pings, window updates, resets and GOAWAY to the connection. A broken frame is a
//! connection error returned to the driver. Must not do I/O.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use super::frame::{self, Head};
use super::hpack::{parse_field, Decoder, Field};
use super::state::{AnswerHead, Error, State, MAX_CONTROL_UNWRITTEN};

/// The backend's header compression state and a header block still arriving.
#[derive(Default)]
pub(super) struct Receiver {
    decoder: Decoder,
    /// HEADERS without END_HEADERS: the stream, its flags and the block so far.
    continuation: Option<(u32, u8, BytesMut)>,
}

type Result<T = ()> = std::result::Result<T, Error>;

impl Receiver {
    pub(super) fn frame(&mut self, state: &mut State, (head, payload): (Head, Bytes)) -> Result {
        if let Some((stream, _, _)) = &self.continuation {
            if head.kind != frame::CONTINUATION || head.stream != *stream {
                return Err(Error::Protocol("a header block was interrupted"));
            }
        }
        match head.kind {
            frame::DATA => data(state, &head, payload),
            frame::HEADERS => self.headers(state, &head, &payload),
            frame::CONTINUATION => self.continuation(state, &head, &payload),
            frame::RST_STREAM => reset(state, &head, &payload),
            frame::SETTINGS => settings(state, &head, &payload),
            frame::PING => ping(state, &head, &payload),
            frame::GOAWAY => goaway(state, &head, &payload),
            frame::WINDOW_UPDATE => window_update(state, &head, &payload),
            frame::PUSH_PROMISE => Err(Error::Protocol("a push promise, though push is off")),
            _ => Ok(()), // PRIORITY and unknown frames: nothing to do
        }
    }

    fn headers(&mut self, state: &mut State, head: &Head, payload: &[u8]) -> Result {
        if head.stream == 0 {
            return Err(Error::Protocol("headers on stream 0"));
        }
        let range = frame::unpadded(head, payload).ok_or(Error::Protocol("bad padding"))?;
        let fragment = &payload[range];
        if head.flags & frame::END_HEADERS == 0 {
            self.continuation = Some((head.stream, head.flags, BytesMut::from(fragment)));
            return Ok(());
        }
        self.block(state, head.stream, head.flags, fragment)
    }

    fn continuation(&mut self, state: &mut State, head: &Head, payload: &[u8]) -> Result {
        let Some((stream, flags, mut block)) = self.continuation.take() else {
            return Err(Error::Protocol("a continuation without headers"));
        };
        block.extend_from_slice(payload);
        if block.len() > MAX_HEADER_BLOCK {
            return Err(Error::Protocol("a header block is too large"));
        }
        if head.flags & frame::END_HEADERS == 0 {
            self.continuation = Some((stream, flags, block));
            return Ok(());
        }
        self.block(state, stream, flags, &block)
    }

    /// A whole header block: the answer's head, or its trailers.
    fn block(&mut self, state: &mut State, id: u32, flags: u8, block: &[u8]) -> Result {
        let mut decoded = DecodedFields::default();
        self.decoder
            .decode(block, |field| decoded.add(field))
            .map_err(|_| Error::Protocol("a header block does not decode"))?;
        let Some(stream) = state.streams.get_mut(&id) else {
            return Ok(()); // a stream imageshim has forgotten: decoded for the table only
        };
        if let Some(problem) = decoded.problem {
            stream.fail(Error::Protocol(problem));
            frame::write_rst(id, frame::PROTOCOL_ERROR, &mut state.out);
            state.wake_driver();
            return Ok(());
        }
        let end = flags & frame::END_STREAM != 0;
        if stream.head.is_none() && !stream.head_taken {
            match decoded.status {
                Some(status) if status.is_informational() && !end => return Ok(()),
                Some(status) => {
                    stream.head = Some(AnswerHead {
                        status,
                        fields: decoded.fields,
                    })
                }
                None => stream.fail(Error::Protocol("an answer without :status")),
            }
        } else {
            stream.trailers = Some(decoded.fields);
        }
        stream.recv_ended |= end;
        stream.wake_both();
        Ok(())
    }
}

/// Largest header block (as sent, HEADERS and CONTINUATION together) imageshim takes
/// from the backend.
const MAX_HEADER_BLOCK: usize = 2 * 1024 * 1024;
/// Largest decoded header list imageshim keeps for one answer head or trailers,
/// counted as RFC 7541 counts table entries (name, value and 32 bytes each), as h2
/// counts its header list size. Past it the stream fails; the block is still decoded
/// (for the connection's table) but nothing more of it is kept.
pub(super) const MAX_HEADER_LIST: usize = 1024 * 1024;

/// A decoded header block: `:status`, the fields, the first thing wrong with them.
#[derive(Default)]
struct DecodedFields {
    status: Option<StatusCode>,
    fields: HeaderMap,
    problem: Option<&'static str>,
    /// The decoded size so far.
    size: usize,
}

impl DecodedFields {
    fn add(&mut self, field: Field<'_>) {
        self.size = self
            .size
            .saturating_add(field.name.len() + field.value.len() + 32);
        if self.size > MAX_HEADER_LIST {
            self.problem
                .get_or_insert("an answer header list over 1 MiB");
        }
        if self.problem.is_some() {
            return; // the stream fails: keep nothing more
        }
        if let Some((name, value)) = field.parsed {
            self.append(name.clone(), value.clone());
            return;
        }
        if field.name == b":status" {
            self.status = StatusCode::from_bytes(field.value).ok();
            if self.status.is_none() {
                self.problem.get_or_insert("an invalid :status");
            }
        } else if field.name.first() == Some(&b':') {
            self.problem
                .get_or_insert("a request pseudo-header in an answer");
        } else if let Some((name, value)) = parse_field(field.name, field.value) {
            self.append(name, value);
        } else {
            self.problem.get_or_insert("an invalid header field");
        }
    }

    /// Keeps a field; more fields than a `HeaderMap` holds fail the stream.
    fn append(&mut self, name: http::HeaderName, value: http::HeaderValue) {
        if self.fields.try_append(name, value).is_err() {
            self.problem
                .get_or_insert("more answer header fields than can be kept");
        }
    }
}

fn data(state: &mut State, head: &Head, mut payload: Bytes) -> Result {
    let length = payload.len() as i64;
    if length > state.recv_window {
        return Err(Error::Protocol("data beyond the connection's window"));
    }
    state.recv_window -= length;
    let range = frame::unpadded(head, &payload).ok_or(Error::Protocol("bad padding"))?;
    let Some(stream) = state.streams.get_mut(&head.stream) else {
        state.release_connection(length);
        return Ok(());
    };
    if length > stream.recv_window {
        return Err(Error::Protocol("data beyond the stream's window"));
    }
    stream.recv_window -= length;
    if stream.recv_ended || stream.head.is_none() && !stream.head_taken {
        stream.fail(Error::Protocol("data outside an answer"));
    }
    let padding = length - range.len() as i64;
    let unread = stream.error.is_some() || !stream.reader_alive;
    if !unread && !range.is_empty() {
        payload.truncate(range.end);
        stream.data.push_back(payload.split_off(range.start));
    }
    stream.recv_ended |= head.flags & frame::END_STREAM != 0;
    stream.wake_both();
    state.release_connection(if unread { length } else { padding });
    Ok(())
}

fn reset(state: &mut State, head: &Head, payload: &[u8]) -> Result {
    if payload.len() != 4 || head.stream == 0 {
        return Err(Error::Protocol("a malformed RST_STREAM"));
    }
    let code = frame::word(payload);
    if let Some(stream) = state.streams.get_mut(&head.stream) {
        if code == frame::NO_ERROR && stream.recv_ended {
            // "Stop sending": the answer is complete.
            stream.send_ended = true;
            stream.wake_both();
        } else {
            stream.fail(Error::Reset(code));
        }
    }
    Ok(())
}

fn settings(state: &mut State, head: &Head, payload: &[u8]) -> Result {
    if head.flags & frame::ACK != 0 {
        return Ok(());
    }
    if payload.len() % 6 != 0 || head.stream != 0 {
        return Err(Error::Protocol("a malformed SETTINGS"));
    }
    for (id, value) in frame::settings(payload) {
        match id {
            frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                let value = i64::from(value);
                if value > frame::MAX_WINDOW {
                    return Err(Error::Protocol("an initial window over 2^31-1"));
                }
                let change = value - state.peer_initial_window;
                state.peer_initial_window = value;
                for stream in state.streams.values_mut() {
                    stream.send_window += change;
                    stream.wake_sender();
                }
            }
            frame::SETTINGS_MAX_FRAME_SIZE => {
                if !(16_384..=16_777_215).contains(&value) {
                    return Err(Error::Protocol("a max frame size out of range"));
                }
                state.peer_max_frame = value as usize;
            }
            frame::SETTINGS_MAX_CONCURRENT_STREAMS => {
                let value = value as usize;
                state.stream_limit_raised |= value > state.peer_max_streams;
                state.peer_max_streams = value;
            }
            _ => {}
        }
    }
    frame::write(frame::SETTINGS, frame::ACK, 0, &[], &mut state.out);
    control_reply_queued(state, frame::HEAD_LEN)
}

/// Counts a queued control-frame reply; a backend that keeps asking for them without
/// reading them ends its connection.
fn control_reply_queued(state: &mut State, bytes: usize) -> Result {
    state.control_unwritten += bytes;
    if state.control_unwritten > MAX_CONTROL_UNWRITTEN {
        return Err(Error::NotReading(state.out.len()));
    }
    Ok(())
}

fn ping(state: &mut State, head: &Head, payload: &[u8]) -> Result {
    if payload.len() != 8 || head.stream != 0 {
        return Err(Error::Protocol("a malformed PING"));
    }
    if head.flags & frame::ACK == 0 {
        frame::write(frame::PING, frame::ACK, 0, payload, &mut state.out);
        return control_reply_queued(state, frame::HEAD_LEN + payload.len());
    }
    Ok(())
}

fn goaway(state: &mut State, head: &Head, payload: &[u8]) -> Result {
    if payload.len() < 8 || head.stream != 0 {
        return Err(Error::Protocol("a malformed GOAWAY"));
    }
    let last = frame::word(payload) & 0x7fff_ffff;
    let code = frame::word(&payload[4..]);
    state.going_away = true;
    for (id, stream) in state.streams.iter_mut() {
        if *id > last {
            stream.fail(Error::Refused(code));
        }
    }
    Ok(())
}

fn window_update(state: &mut State, head: &Head, payload: &[u8]) -> Result {
    if payload.len() != 4 {
        return Err(Error::Protocol("a malformed WINDOW_UPDATE"));
    }
    let increment = i64::from(frame::word(payload) & 0x7fff_ffff);
    if head.stream == 0 {
        if increment == 0 || state.send_window + increment > frame::MAX_WINDOW {
            return Err(Error::Protocol("a bad connection window update"));
        }
        state.send_window += increment;
        for stream in state.streams.values_mut() {
            stream.wake_sender();
        }
    } else if let Some(stream) = state.streams.get_mut(&head.stream) {
        if increment == 0 || stream.send_window + increment > frame::MAX_WINDOW {
            stream.fail(Error::Protocol("a bad stream window update"));
            frame::write_rst(head.stream, frame::FLOW_CONTROL_ERROR, &mut state.out);
            return Ok(());
        }
        stream.send_window += increment;
        stream.wake_sender();
    }
    Ok(())
}
