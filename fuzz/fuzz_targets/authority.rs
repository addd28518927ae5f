//! The `:authority` filter on arbitrary client bytes, fed in arbitrary pieces: no
//! panic; while it rewrites nothing, what h2 reads is what the client sent, byte for
//! byte; when it rewrites (and followed everything), h2 decodes the same header lists
//! the client sent — in order, with only refused `:authority` values replaced.
#![no_main]
use bytes::BytesMut;
use imageshim::transport::authority::{is_acceptable_authority, AuthorityFilter};
use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The header blocks in `bytes` (after the preface), HEADERS + CONTINUATION joined,
/// padding and priority removed; `None` when a frame is cut short.
fn header_blocks(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut rest = bytes.strip_prefix(PREFACE)?;
    let (mut blocks, mut open): (Vec<Vec<u8>>, Option<Vec<u8>>) = (Vec::new(), None);
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let payload = rest.get(9..9 + len)?;
        rest = &rest[9 + len..];
        let fragment = match kind {
            0x1 => {
                let mut p = payload;
                let pad = if flags & 0x8 != 0 {
                    let (first, after) = p.split_first()?;
                    p = after;
                    usize::from(*first)
                } else {
                    0
                };
                if flags & 0x20 != 0 {
                    p = p.get(5..)?;
                }
                p.get(..p.len().checked_sub(pad)?)?
            }
            0x9 => payload,
            _ => continue,
        };
        open.get_or_insert_with(Vec::new)
            .extend_from_slice(fragment);
        if flags & 0x4 != 0 {
            blocks.push(open.take()?);
        }
    }
    Some(blocks)
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn decode_all(blocks: &[Vec<u8>]) -> Option<Vec<Fields>> {
    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(4096);
    blocks.iter().map(|b| decoder.decode(b).ok()).collect()
}

fuzz_target!(|data: &[u8]| {
    let (cut, bytes) = match data.split_first() {
        Some((cut, rest)) => (usize::from(*cut).max(1), rest),
        None => return,
    };
    let mut filter = AuthorityFilter::default();
    let mut out = BytesMut::new();
    for piece in bytes.chunks(cut) {
        filter.feed(piece, &mut out);
    }
    filter.finish(&mut out);
    if !filter.rewrites() {
        assert_eq!(
            &out[..],
            bytes,
            "passed untouched when nothing is rewritten"
        );
        return;
    }
    if filter.is_raw() {
        return; // it stopped following: h2 gets a block no table decodes, by design
    }
    let Some(sent) = header_blocks(bytes).and_then(|b| decode_all(&b)) else {
        return;
    };
    let seen = decode_all(&header_blocks(&out).expect("the filter writes whole frames"))
        .expect("h2 can decode every block the filter writes");
    let expected: Vec<Fields> = sent
        .into_iter()
        .map(|fields| {
            fields
                .into_iter()
                .map(|(name, value)| {
                    if name == b":authority" && !is_acceptable_authority(&value) {
                        (name, b"localhost".to_vec())
                    } else {
                        (name, value)
                    }
                })
                .collect()
        })
        .collect();
    assert_eq!(seen, expected, "the same header lists, authority replaced");
});
