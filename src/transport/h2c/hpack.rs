//! HPACK (RFC 7541) for the backend connection. Requests are encoded without touching
//! any table: pseudo-headers by static index, every other field as a raw literal
//! (never indexed when marked sensitive), so encoding is a copy. Answers are decoded
//! with the static and dynamic tables and Huffman strings, as the backend sends them.
//! Must not keep or log header values beyond the dynamic table the protocol requires.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::huffman::{self, HuffmanError};

/// The dynamic table size imageshim allows the backend (the protocol's default).
pub(crate) const TABLE_SIZE: usize = 4096;

/// Why a header block cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("header block uses index {0}, which no table holds")]
    BadIndex(usize),
    #[error("header block integer overflows")]
    Overflow,
    #[error("dynamic table size update to {0} is over the allowed {TABLE_SIZE}")]
    TableTooLarge(usize),
    #[error("dynamic table size update after a field (RFC 7541 section 4.2)")]
    LateSizeUpdate,
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
}

/// RFC 7541 appendix A: the static table, index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Static indices of the request pseudo-headers imageshim sends.
const METHOD_POST: u8 = 3;
const PATH: u8 = 4;
const SCHEME_HTTP: u8 = 6;
const AUTHORITY: u8 = 1;

/// Encodes a request head: `POST`, `http`, `authority`, `path`, then `fields` in order.
/// Connection-specific fields never reach here (h2 refused them from the caller).
pub(super) fn encode_request(
    path: &[u8],
    authority: &[u8],
    fields: &HeaderMap,
    out: &mut BytesMut,
) {
    out.put_u8(0x80 | METHOD_POST);
    out.put_u8(0x80 | SCHEME_HTTP);
    literal_with_name_index(AUTHORITY, authority, out);
    literal_with_name_index(PATH, path, out);
    encode_fields(fields, out);
}

/// Encodes `fields` as raw literals (never indexed when marked sensitive).
pub(super) fn encode_fields(fields: &HeaderMap, out: &mut BytesMut) {
    for (name, value) in fields {
        // 0001xxxx never indexed, 0000xxxx without indexing; name index 0: literal name.
        out.put_u8(if value.is_sensitive() { 0x10 } else { 0x00 });
        string(name.as_str().as_bytes(), out);
        string(value.as_bytes(), out);
    }
}

fn literal_with_name_index(index: u8, value: &[u8], out: &mut BytesMut) {
    out.put_u8(index); // 0000xxxx: without indexing, name from the static table
    string(value, out);
}

fn string(value: &[u8], out: &mut BytesMut) {
    integer(value.len(), 7, 0, out);
    out.put_slice(value);
}

fn integer(value: usize, prefix_bits: u8, flags: u8, out: &mut BytesMut) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.put_u8((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.put_u8(rest as u8);
}

/// The backend's header compression state: its dynamic table.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    table: VecDeque<Entry>,
    size: usize,
    max_size: Option<usize>,
}

/// A dynamic table entry, with its field already parsed (once, when it was inserted) so
/// that each later use is a clone: a backend indexes the fields it repeats.
#[derive(Debug)]
struct Entry {
    name: Vec<u8>,
    value: Vec<u8>,
    parsed: Option<(HeaderName, HeaderValue)>,
}

/// One decoded field: its bytes, and its parsed form when a table entry holds one.
#[derive(Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
    pub(super) parsed: Option<&'a (HeaderName, HeaderValue)>,
}

/// A field that is a valid regular header (not a pseudo-header), parsed.
pub(super) fn parse_field(name: &[u8], value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    if name.first() == Some(&b':') {
        return None;
    }
    Some((
        HeaderName::from_bytes(name).ok()?,
        HeaderValue::from_bytes(value).ok()?,
    ))
}

/// A field's representation, from its first byte.
enum Representation {
    Indexed,
    Literal { name_prefix: u8, index: bool },
    SizeUpdate,
}

fn representation(first: u8) -> Representation {
    match first {
        0x80..=0xff => Representation::Indexed,
        0x40..=0x7f => Representation::Literal {
            name_prefix: 6,
            index: true,
        },
        0x20..=0x3f => Representation::SizeUpdate,
        _ => Representation::Literal {
            name_prefix: 4,
            index: false,
        },
    }
}

impl Decoder {
    /// Decodes one whole header block, handing every field to `field` in order.
    pub(crate) fn decode(
        &mut self,
        mut block: &[u8],
        mut field: impl FnMut(Field<'_>),
    ) -> Result<(), HpackError> {
        let mut name = Vec::new();
        let mut value = Vec::new();
        let mut fields_seen = false;
        while let Some(&first) = block.first() {
            let representation = representation(first);
            let size_update = matches!(representation, Representation::SizeUpdate);
            if size_update && fields_seen {
                return Err(HpackError::LateSizeUpdate);
            }
            fields_seen |= !size_update;
            match representation {
                Representation::Indexed => {
                    let index = read_integer(&mut block, 7)?;
                    field(self.entry(index)?);
                }
                Representation::SizeUpdate => {
                    let size = read_integer(&mut block, 5)?;
                    if size > TABLE_SIZE {
                        return Err(HpackError::TableTooLarge(size));
                    }
                    self.max_size = Some(size);
                    self.evict_to(size);
                }
                Representation::Literal { name_prefix, index } => {
                    let name_index = read_integer(&mut block, name_prefix)?;
                    name.clear();
                    value.clear();
                    match name_index {
                        0 => read_string(&mut block, &mut name)?,
                        at => name.extend_from_slice(self.entry(at)?.name),
                    }
                    read_string(&mut block, &mut value)?;
                    let parsed = index.then(|| parse_field(&name, &value)).flatten();
                    field(Field {
                        name: &name,
                        value: &value,
                        parsed: parsed.as_ref(),
                    });
                    if index {
                        self.insert(Entry {
                            name: std::mem::take(&mut name),
                            value: std::mem::take(&mut value),
                            parsed,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<Field<'_>, HpackError> {
        if (1..=STATIC.len()).contains(&index) {
            let (name, value) = STATIC[index - 1];
            return Ok(Field {
                name: name.as_bytes(),
                value: value.as_bytes(),
                parsed: None,
            });
        }
        self.table
            .get(index.wrapping_sub(STATIC.len() + 1))
            .map(|entry| Field {
                name: &entry.name,
                value: &entry.value,
                parsed: entry.parsed.as_ref(),
            })
            .ok_or(HpackError::BadIndex(index))
    }

    fn insert(&mut self, entry: Entry) {
        let size = entry_size(&entry.name, &entry.value);
        let max = self.max_size.unwrap_or(TABLE_SIZE);
        self.evict_to(max.saturating_sub(size));
        if size <= max {
            self.size += size;
            self.table.push_front(entry);
        }
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some(entry) = self.table.pop_back() else {
                break;
            };
            self.size -= entry_size(&entry.name, &entry.value);
        }
    }
}

fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

/// An HPACK integer: at most 4 continuation bytes after the prefix, as h2 allows
/// (values up to about 2^28; nothing imageshim accepts is larger).
fn read_integer(block: &mut &[u8], prefix_bits: u8) -> Result<usize, HpackError> {
    const MAX_CONTINUATION: u32 = 4;
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let max = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max;
    if value == max {
        for continuation in 0..MAX_CONTINUATION {
            let (&byte, after) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = after;
            value += usize::from(byte & 0x7f) << (7 * continuation);
            if byte & 0x80 == 0 {
                *block = rest;
                return Ok(value);
            }
        }
        return Err(HpackError::Overflow);
    }
    *block = rest;
    Ok(value)
}

fn read_string(block: &mut &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let huffman = block.first().is_some_and(|first| first & 0x80 != 0);
    let length = read_integer(block, 7)?;
    if block.len() < length {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = block.split_at(length);
    *block = rest;
    if huffman {
        huffman::decode(raw, out)?;
    } else {
        out.extend_from_slice(raw);
    }
    Ok(())
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
mod tests;
