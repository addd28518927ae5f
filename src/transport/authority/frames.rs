//! HTTP/2 frame pieces the authority filter reads and writes: the fields of a HEADERS
//! frame, a header block as HPACK literals, and HEADERS + CONTINUATION frames. Pure.

use bytes::{BufMut, BytesMut};
use loona_hpack::encoder::encode_integer_into;

use super::{
    is_acceptable_authority, Fields, FrameHead, HeldBlock, CONTINUATION, END_HEADERS, END_STREAM,
    HEADERS, MAX_FRAME_PAYLOAD, PADDED, PRIORITY, REPLACEMENT_AUTHORITY,
};

/// The priority bytes and header block fragment of a HEADERS frame; None when its
/// padding or priority do not fit (h2 refuses it).
pub(super) fn headers_frame_fields(
    head: FrameHead,
    payload: &[u8],
) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if head.flags & PADDED != 0 {
        padding = usize::from(*rest.first()?);
        rest = &rest[1..];
    }
    let mut priority = None;
    if head.flags & PRIORITY != 0 {
        priority = Some(<[u8; 5]>::try_from(rest.get(..5)?).ok()?);
        rest = &rest[5..];
    }
    let end = rest.len().checked_sub(padding)?;
    Some((priority, &rest[..end]))
}

/// Every field as a literal without indexing, new name, no Huffman (RFC 7541 §6.2.2),
/// refused authorities replaced.
pub(super) fn encode_literals(fields: &Fields) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(fields.bytes.len() + 3 * fields.spans.len());
    for (name, value) in &fields.spans {
        let name = &fields.bytes[name.clone()];
        let mut value = &fields.bytes[value.clone()];
        if name == b":authority" && !is_acceptable_authority(value) {
            value = REPLACEMENT_AUTHORITY;
        }
        encoded.push(0x00);
        for text in [name, value] {
            let _ = encode_integer_into(text.len(), 7, 0, &mut encoded);
            encoded.extend_from_slice(text);
        }
    }
    encoded
}

/// A HEADERS frame (keeping END_STREAM and priority, dropping padding) and as many
/// CONTINUATION frames as the block needs.
pub(super) fn write_header_frames(block: &HeldBlock, encoded: &[u8], out: &mut BytesMut) {
    let priority_len = if block.priority.is_some() { 5 } else { 0 };
    let mut rest = encoded;
    let mut first = true;
    loop {
        let room = MAX_FRAME_PAYLOAD - if first { priority_len } else { 0 };
        let chunk = &rest[..room.min(rest.len())];
        rest = &rest[chunk.len()..];
        let mut flags = if rest.is_empty() { END_HEADERS } else { 0 };
        let (kind, extra): (u8, &[u8]) = match (first, &block.priority) {
            (true, Some(priority)) => (HEADERS, priority),
            (true, None) => (HEADERS, &[]),
            (false, _) => (CONTINUATION, &[]),
        };
        if first {
            flags |= if block.end_stream { END_STREAM } else { 0 };
            flags |= if priority_len > 0 { PRIORITY } else { 0 };
        }
        let len = extra.len() + chunk.len();
        out.put_slice(&(len as u32).to_be_bytes()[1..]);
        out.put_u8(kind);
        out.put_u8(flags);
        out.put_u32(block.stream);
        out.put_slice(extra);
        out.put_slice(chunk);
        first = false;
        if rest.is_empty() {
            break;
        }
    }
}
