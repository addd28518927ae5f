//! Lets every `:authority` the runtimes accept reach the HTTP/2 server (`h2`).
//!
//! gRPC C-core (≥ 1.57: Python, C++, Ruby) and grpc-java send the socket path, or its
//! %-encoded form, as `:authority` on unix sockets; some clients send it empty. grpc-go
//! servers (containerd, CRI-O) accept any of these, while h2 resets such a stream with
//! PROTOCOL_ERROR because the value is not a URI authority (hyperium/h2#487). This is a
//! read-side filter on each CRI connection, in front of h2: it follows the client's
//! HTTP/2 frames and, in a request header block whose `:authority` h2 would refuse,
//! replaces that value with `localhost`. Nothing else is changed or loosened:
//!
//! - the first request decides: when its `:authority` is one h2 accepts, the connection
//!   passes raw from then on (grpc-go clients: the kubelet, crictl); when it is not, the
//!   connection's header blocks are re-encoded as HPACK literals without indexing (the
//!   client's dynamic table is tracked here, h2's stays empty), same fields, same order,
//!   with every refused `:authority` replaced;
//! - anything this filter cannot follow (not HTTP/2, a frame out of order, an HPACK
//!   error, an oversized block) is handed to h2 byte for byte from that point on, so h2
//!   answers it exactly as it would without the filter.
//!
//! Writes (server → client) are not touched. Must not interpret anything but frame
//! boundaries and request header blocks.

use std::ops::Range;

use super::h2c::hpack::Decoder;
use bytes::{BufMut, BytesMut};

mod frames;
mod io;

use frames::{encode_literals, headers_frame_fields, write_header_frames};

pub use io::AuthorityFixingStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE of the server (the HTTP/2 default, never raised here).
pub(crate) const MAX_FRAME_PAYLOAD: usize = 16 * 1024;
/// A header block larger than this is handed to h2 raw (it refuses it itself).
const MAX_HELD_BLOCK: usize = 17 * 1024 * 1024;
/// The decoded header list the filter keeps for one block, counted as h2 counts its
/// header list (name, value and 32 bytes a field): h2's limit on this server. Past it
/// nothing more is copied and the block goes to h2 as it came, which refuses it.
pub(crate) const MAX_HEADER_LIST: usize = 16 * 1024 * 1024;
/// A HEADERS frame whose block no HPACK table decodes (index 0): h2 answers it by
/// ending the connection with COMPRESSION_ERROR.
const UNDECODABLE_BLOCK: [u8; 10] = [
    0,
    0,
    1,
    HEADERS,
    END_HEADERS | END_STREAM,
    0x7f,
    0xff,
    0xff,
    0xff,
    0x80,
];
/// What a refused `:authority` becomes, as grpc-go clients send it.
pub const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

/// True when h2 accepts `value` as `:authority`.
pub fn is_acceptable_authority(value: &[u8]) -> bool {
    !value.is_empty() && http::uri::Authority::try_from(value).is_ok()
}

/// Where the filter is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Preface,
    FrameHeader,
    /// Inside a frame that passes as it is.
    Payload {
        left: usize,
    },
    /// Collecting a HEADERS or CONTINUATION frame.
    HeaderFrame(FrameHead),
    /// Everything passes untouched from here on.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8]) -> FrameHead {
        FrameHead {
            len: (usize::from(bytes[0]) << 16)
                | (usize::from(bytes[1]) << 8)
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }
}

/// A request header block being collected across HEADERS and CONTINUATION frames.
struct HeldBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames exactly as received, for when they pass unchanged.
    raw: BytesMut,
}

/// The decoded fields of one block, names and values in one reused buffer.
#[derive(Default)]
struct Fields {
    bytes: Vec<u8>,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl Fields {
    fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let middle = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.spans.push((start..middle, middle..self.bytes.len()));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }
}

/// The client → server half of the filter: feed it what the client sent, it appends
/// what h2 should read.
pub struct AuthorityFilter {
    phase: Phase,
    /// Bytes of the current preface, frame header or header frame.
    held: BytesMut,
    block: Option<HeldBlock>,
    /// The client's HPACK table as h2 would keep it (the same decoder h2c uses:
    /// RFC 7541 §4.2 and h2's integer limit).
    decoder: Decoder,
    fields: Fields,
    reencode: bool,
}

impl Default for AuthorityFilter {
    fn default() -> Self {
        AuthorityFilter {
            phase: Phase::Preface,
            held: BytesMut::new(),
            block: None,
            decoder: Decoder::default(),
            fields: Fields::default(),
            reencode: false,
        }
    }
}

impl AuthorityFilter {
    /// True once everything passes untouched.
    pub fn is_raw(&self) -> bool {
        self.phase == Phase::Raw
    }

    /// True once the connection's header blocks are re-encoded (a refused
    /// `:authority` was seen).
    pub fn rewrites(&self) -> bool {
        self.reencode
    }

    /// Takes the next bytes the client sent; appends what h2 should read to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut BytesMut) {
        while !data.is_empty() {
            let taken = match self.phase {
                Phase::Raw => {
                    out.extend_from_slice(data);
                    data.len()
                }
                Phase::Payload { left } => {
                    let take = left.min(data.len());
                    out.extend_from_slice(&data[..take]);
                    self.phase = match left - take {
                        0 => Phase::FrameHeader,
                        left => Phase::Payload { left },
                    };
                    take
                }
                Phase::Preface => self.take_preface(data, out),
                Phase::FrameHeader => self.take_frame_header(data, out),
                Phase::HeaderFrame(head) => self.take_header_frame(head, data, out),
            };
            data = &data[taken..];
        }
    }

    /// The client closed its side: whatever is held goes to h2 as it came.
    pub fn finish(&mut self, out: &mut BytesMut) {
        let holding = !self.held.is_empty() || self.block.is_some();
        if holding && self.phase != Phase::Raw {
            self.pass_raw_from_here(out);
        }
    }

    fn take_preface(&mut self, data: &[u8], out: &mut BytesMut) -> usize {
        let take = (PREFACE.len() - self.held.len()).min(data.len());
        self.held.extend_from_slice(&data[..take]);
        if !PREFACE.starts_with(&self.held) {
            self.pass_raw_from_here(out);
        } else if self.held.len() == PREFACE.len() {
            out.extend_from_slice(&self.held.split());
            self.phase = Phase::FrameHeader;
        }
        take
    }

    fn take_frame_header(&mut self, data: &[u8], out: &mut BytesMut) -> usize {
        let take = (FRAME_HEADER_LEN - self.held.len()).min(data.len());
        self.held.extend_from_slice(&data[..take]);
        if self.held.len() == FRAME_HEADER_LEN {
            self.on_frame_head(FrameHead::parse(&self.held), out);
        }
        take
    }

    fn on_frame_head(&mut self, head: FrameHead, out: &mut BytesMut) {
        if head.len > MAX_FRAME_PAYLOAD {
            // Over the frame size this server advertised: h2 must see this frame head
            // as it came (after any block held so far, as it came too, unless blocks
            // are being re-encoded), and answers FRAME_SIZE_ERROR.
            if let Some(block) = self.block.take().filter(|_| !self.reencode) {
                out.extend_from_slice(&block.raw);
            }
            out.extend_from_slice(&self.held.split());
            self.phase = Phase::Raw;
            return;
        }
        let continues_block = self
            .block
            .as_ref()
            .map(|block| head.kind == CONTINUATION && head.stream == block.stream);
        let is_header_frame = match continues_block {
            Some(true) => true,
            Some(false) => return self.pass_raw_from_here(out),
            None if head.kind == HEADERS => true,
            None if head.kind == CONTINUATION => return self.pass_raw_from_here(out),
            None => false,
        };
        if !is_header_frame {
            out.extend_from_slice(&self.held.split());
            self.phase = match head.len {
                0 => Phase::FrameHeader,
                left => Phase::Payload { left },
            };
            return;
        }
        let held_so_far = self.block.as_ref().map_or(0, |b| b.raw.len());
        if held_so_far + head.len > MAX_HELD_BLOCK {
            return self.pass_raw_from_here(out);
        }
        self.phase = Phase::HeaderFrame(head);
        if head.len == 0 {
            self.on_header_frame(head, out);
        }
    }

    fn take_header_frame(&mut self, head: FrameHead, data: &[u8], out: &mut BytesMut) -> usize {
        let wanted = FRAME_HEADER_LEN + head.len - self.held.len();
        let take = wanted.min(data.len());
        self.held.extend_from_slice(&data[..take]);
        if take == wanted {
            self.on_header_frame(head, out);
        }
        take
    }

    /// A whole HEADERS or CONTINUATION frame is in `held`.
    fn on_header_frame(&mut self, head: FrameHead, out: &mut BytesMut) {
        let frame = self.held.split();
        let payload = &frame[FRAME_HEADER_LEN..];
        match self.block.as_mut() {
            Some(block) => {
                block.fragment.extend_from_slice(payload);
                block.raw.extend_from_slice(&frame);
            }
            None => match headers_frame_fields(head, payload) {
                Some((priority, fragment)) => {
                    self.block = Some(HeldBlock {
                        stream: head.stream,
                        end_stream: head.flags & END_STREAM != 0,
                        priority,
                        fragment: fragment.to_vec(),
                        raw: frame,
                    })
                }
                None => {
                    self.held = frame;
                    return self.pass_raw_from_here(out);
                }
            },
        }
        self.phase = Phase::FrameHeader;
        if head.flags & END_HEADERS != 0 {
            if let Some(block) = self.block.take() {
                self.release_block(block, out);
            }
        }
    }

    /// Decodes a complete block; passes it as received, or re-encoded with every
    /// refused `:authority` replaced.
    fn release_block(&mut self, block: HeldBlock, out: &mut BytesMut) {
        self.fields.clear();
        let fields = &mut self.fields;
        let mut refused = false;
        let mut size = 0usize;
        let decoded = self.decoder.decode(&block.fragment, |field| {
            let (name, value) = (field.name, field.value);
            size = size.saturating_add(name.len() + value.len() + 32);
            if size > MAX_HEADER_LIST {
                return; // decoded for the table only: nothing more is copied
            }
            refused |= name == b":authority" && !is_acceptable_authority(value);
            fields.push(name, value);
        });
        if decoded.is_err() || size > MAX_HEADER_LIST {
            self.block = Some(block);
            return self.pass_raw_from_here(out);
        }
        self.reencode |= refused;
        if !self.reencode {
            // A client sends one `:authority` on every request of a connection (grpc-go:
            // `localhost`): when the first request needs nothing, the rest passes raw,
            // at no cost per call.
            out.extend_from_slice(&block.raw);
            self.phase = Phase::Raw;
            return;
        }
        let encoded = encode_literals(&self.fields);
        write_header_frames(&block, &encoded, out);
    }

    /// Hands everything held, and all that follows, to h2 untouched. Once blocks have
    /// been re-encoded, h2's HPACK table no longer matches the client's, so raw blocks
    /// could decode to headers the client never sent: h2 is then given a block that
    /// no table decodes (index 0), and ends the connection with COMPRESSION_ERROR, as
    /// it would for the client's own undecodable input.
    fn pass_raw_from_here(&mut self, out: &mut BytesMut) {
        if self.reencode {
            self.block = None;
            self.held.clear();
            self.phase = Phase::Raw;
            out.put_slice(&UNDECODABLE_BLOCK);
            return;
        }
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.raw);
        }
        out.extend_from_slice(&self.held.split());
        self.phase = Phase::Raw;
    }
}

#[cfg(test)]
mod tests;
