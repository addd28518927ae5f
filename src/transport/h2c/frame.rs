//! HTTP/2 frames (RFC 9113 §4, §6) as the backend connection reads and writes them:
//! the 9-byte head, the few payloads it builds, and the settings it reads. Must not
//! hold connection or stream state.

use bytes::{BufMut, BytesMut};

pub(super) const HEAD_LEN: usize = 9;
/// The client connection preface.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest frame the peer may send before its settings say otherwise, and the largest
/// imageshim accepts (it advertises no other).
pub(super) const DEFAULT_MAX_FRAME: usize = 16_384;
pub(super) const DEFAULT_WINDOW: i64 = 65_535;
pub(super) const MAX_WINDOW: i64 = (1 << 31) - 1;

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;

pub(super) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(super) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(super) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// Error codes (RFC 9113 §7).
pub(super) const NO_ERROR: u32 = 0x0;
pub(super) const PROTOCOL_ERROR: u32 = 0x1;
pub(super) const FLOW_CONTROL_ERROR: u32 = 0x3;
pub(super) const CANCEL: u32 = 0x8;

/// A frame's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) length: usize,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

impl Head {
    /// Reads a head from the first 9 bytes of `bytes` (which has at least 9).
    pub(super) fn parse(bytes: &[u8]) -> Head {
        Head {
            length: usize::from(bytes[0]) << 16
                | usize::from(bytes[1]) << 8
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    pub(super) fn write(&self, out: &mut BytesMut) {
        out.put_slice(&self.bytes());
    }

    pub(super) fn bytes(&self) -> [u8; HEAD_LEN] {
        let [_, l1, l2, l3] = (self.length as u32).to_be_bytes();
        let [s0, s1, s2, s3] = self.stream.to_be_bytes();
        [l1, l2, l3, self.kind, self.flags, s0, s1, s2, s3]
    }
}

/// Writes a frame with `payload`.
pub(super) fn write(kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut BytesMut) {
    Head {
        length: payload.len(),
        kind,
        flags,
        stream,
    }
    .write(out);
    out.put_slice(payload);
}

pub(super) fn write_rst(stream: u32, code: u32, out: &mut BytesMut) {
    write(RST_STREAM, 0, stream, &code.to_be_bytes(), out);
}

pub(super) fn write_window_update(stream: u32, increment: u32, out: &mut BytesMut) {
    write(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes(), out);
}

/// Writes a SETTINGS frame with `settings` (identifier, value).
pub(super) fn write_settings(settings: &[(u16, u32)], out: &mut BytesMut) {
    Head {
        length: settings.len() * 6,
        kind: SETTINGS,
        flags: 0,
        stream: 0,
    }
    .write(out);
    for (id, value) in settings {
        out.put_u16(*id);
        out.put_u32(*value);
    }
}

/// The settings in a SETTINGS payload (its length is a multiple of 6, checked by the
/// caller).
pub(super) fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).map(|setting| {
        (
            u16::from_be_bytes([setting[0], setting[1]]),
            u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]),
        )
    })
}

/// A 4-byte big-endian value at the start of `payload` (length checked by the caller).
pub(super) fn word(payload: &[u8]) -> u32 {
    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
}

/// The payload of a DATA or HEADERS frame without its padding (and, for HEADERS, its
/// priority fields); `None` when the padding is longer than the frame.
pub(super) fn unpadded(head: &Head, payload: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    let mut end = payload.len();
    if head.flags & PADDED != 0 {
        let padding = usize::from(*payload.first()?);
        start = 1;
        end = end.checked_sub(padding)?;
    }
    if head.kind == HEADERS && head.flags & PRIORITY_FLAG != 0 {
        start += 5;
    }
    (start <= end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips() {
        let head = Head {
            length: 70_000,
            kind: DATA,
            flags: END_STREAM,
            stream: 0x7fff_fff1,
        };
        let mut out = BytesMut::new();
        head.write(&mut out);
        assert_eq!(out.len(), HEAD_LEN);
        assert_eq!(Head::parse(&out), head);
        let reserved_bit_set = [0, 0, 0, 0, 0, 0x80, 0, 0, 1];
        assert_eq!(
            Head::parse(&reserved_bit_set).stream,
            1,
            "the R bit is ignored"
        );
    }

    #[test]
    fn padding_and_priority_are_stripped_or_refused() {
        let head = |kind, flags| Head {
            length: 0,
            kind,
            flags,
            stream: 1,
        };
        let padded = [2u8, b'a', b'b', 0, 0];
        assert_eq!(unpadded(&head(DATA, PADDED), &padded), Some(1..3));
        assert_eq!(unpadded(&head(DATA, PADDED), &[9u8, 1]), None);
        assert_eq!(unpadded(&head(DATA, PADDED), &[]), None);
        let prioritised = [0u8, 0, 0, 1, 16, 0x88];
        assert_eq!(
            unpadded(&head(HEADERS, PRIORITY_FLAG), &prioritised),
            Some(5..6)
        );
        assert_eq!(unpadded(&head(HEADERS, PRIORITY_FLAG), &[0u8; 3]), None);
    }
}
