use bytes::BytesMut;
use loona_hpack::{Decoder, Encoder};

use super::*;

type Field = (Vec<u8>, Vec<u8>);

fn request(authority: &str, path: &str) -> Vec<Field> {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "1999m"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a client writes: preface, SETTINGS, then HEADERS + DATA per request, its
/// encoder indexing as it goes (as C-core does).
fn client_bytes(requests: &[Vec<Field>]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    for (i, fields) in requests.iter().enumerate() {
        let stream = 1 + 2 * i as u32;
        let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
        out.extend(frame(HEADERS, END_HEADERS, stream, &block));
        out.extend(frame(0x0, END_STREAM, stream, b"\0\0\0\0\0"));
    }
    out
}

/// Splits what h2 would read into frames: (type, flags, stream, payload).
fn frames_after_preface(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    assert!(bytes.starts_with(PREFACE));
    let mut rest = &bytes[PREFACE.len()..];
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let head = FrameHead::parse(rest);
        let payload = rest[9..9 + head.len].to_vec();
        frames.push((head.kind, head.flags, head.stream, payload));
        rest = &rest[9 + head.len..];
    }
    frames
}

/// The header lists h2 would decode from `bytes`.
fn server_view(bytes: &[u8]) -> Vec<Vec<Field>> {
    let mut decoder = Decoder::new();
    let mut blocks = Vec::new();
    let mut current = Vec::new();
    for (kind, flags, _, payload) in frames_after_preface(bytes) {
        if kind == HEADERS || kind == CONTINUATION {
            let start = if kind == HEADERS && flags & PRIORITY != 0 {
                5
            } else {
                0
            };
            current.extend_from_slice(&payload[start..]);
            if flags & END_HEADERS != 0 {
                blocks.push(decoder.decode(&current).unwrap());
                current.clear();
            }
        }
    }
    blocks
}

fn filter_in_chunks(input: &[u8], chunk: usize) -> Vec<u8> {
    let mut filter = AuthorityFilter::default();
    let mut out = BytesMut::new();
    for piece in input.chunks(chunk) {
        filter.feed(piece, &mut out);
    }
    filter.finish(&mut out);
    out.to_vec()
}

#[test]
fn acceptable_authorities_are_what_h2_takes() {
    assert!(is_acceptable_authority(b"localhost"));
    assert!(is_acceptable_authority(b"127.0.0.1:8080"));
    assert!(!is_acceptable_authority(b"/run/imageshim/imageshim.sock"));
    assert!(!is_acceptable_authority(
        b"%2Frun%2Fimageshim%2Fimageshim.sock"
    ));
    assert!(!is_acceptable_authority(b""));
}

#[test]
fn acceptable_authorities_pass_byte_for_byte() {
    let input = client_bytes(&[request("localhost", "/a"), request("localhost", "/b")]);
    for chunk in [1, 7, 4096] {
        assert_eq!(filter_in_chunks(&input, chunk), input);
    }
}

#[test]
fn socket_paths_become_localhost_and_nothing_else_changes() {
    for authority in ["/tmp/x/imageshim.sock", "%2Ftmp%2Fx%2Fimageshim.sock", ""] {
        let requests = vec![
            request(authority, "/runtime.v1.RuntimeService/Version"),
            request(authority, "/runtime.v1.ImageService/ListImages"),
            request(authority, "/runtime.v1.RuntimeService/Version"),
        ];
        let input = client_bytes(&requests);
        for chunk in [1, 3, 64, 1 << 20] {
            let seen = server_view(&filter_in_chunks(&input, chunk));
            assert_eq!(seen.len(), 3);
            for (fields, sent) in seen.iter().zip(&requests) {
                let expected: Vec<Field> = sent
                    .iter()
                    .map(|(n, v)| match &n[..] {
                        b":authority" => (n.clone(), b"localhost".to_vec()),
                        _ => (n.clone(), v.clone()),
                    })
                    .collect();
                assert_eq!(fields, &expected, "authority {authority:?}, chunk {chunk}");
            }
        }
    }
}

#[test]
fn after_a_good_first_request_the_connection_passes_raw() {
    // The first request decides; a later refused authority reaches h2 as sent (h2
    // refuses it, as without the filter), and nothing else is followed.
    let requests = vec![
        request("localhost", "/a"),
        request("/tmp/s.sock", "/b"),
        request("localhost", "/c"),
    ];
    let input = client_bytes(&requests);
    let mut filter = AuthorityFilter::default();
    let mut out = BytesMut::new();
    filter.feed(&input, &mut out);
    assert_eq!(&out[..], &input[..]);
    assert!(filter.is_raw());
}

#[test]
fn data_and_other_frames_are_untouched_and_flags_are_kept() {
    let out = filter_in_chunks(&client_bytes(&[request("/s.sock", "/a")]), 2);
    let frames = frames_after_preface(&out);
    let kinds: Vec<(u8, u8, u32)> = frames.iter().map(|f| (f.0, f.1, f.2)).collect();
    assert_eq!(
        kinds,
        vec![(4, 0, 0), (HEADERS, END_HEADERS, 1), (0, END_STREAM, 1)]
    );
    assert_eq!(frames[2].3, b"\0\0\0\0\0");
}

#[test]
fn padding_priority_and_continuations_are_understood() {
    let mut encoder = Encoder::new();
    let mut fields = request("/s.sock", "/a");
    fields.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let block = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
    let (first, rest) = block.split_at(100);
    let mut payload = vec![3u8]; // pad length
    payload.extend_from_slice(&[0, 0, 0, 0, 15]); // priority
    payload.extend_from_slice(first);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &payload));
    // Continuations within the 16 KiB frame size the server advertises.
    let pieces: Vec<&[u8]> = rest.chunks(MAX_FRAME_PAYLOAD).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let flags = if i + 1 == pieces.len() {
            END_HEADERS
        } else {
            0
        };
        input.extend(frame(CONTINUATION, flags, 1, piece));
    }
    let out = filter_in_chunks(&input, 1000);
    let frames = frames_after_preface(&out);
    assert_eq!(frames[0].0, HEADERS);
    assert_eq!(frames[0].1, PRIORITY | END_STREAM);
    assert_eq!(&frames[0].3[..5], &[0, 0, 0, 0, 15]);
    assert!(frames[1..].iter().all(|f| f.0 == CONTINUATION));
    assert!(frames.iter().all(|f| f.3.len() <= MAX_FRAME_PAYLOAD));
    assert_eq!(frames.last().unwrap().1, END_HEADERS);
    let seen = server_view(&out);
    assert_eq!(seen[0][3].1, b"localhost");
    assert_eq!(seen[0][7], fields[7]);
}

#[test]
fn what_cannot_be_followed_reaches_h2_unchanged() {
    // Not HTTP/2.
    let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(filter_in_chunks(&http1, 3), http1);
    // CONTINUATION without HEADERS, then a refused authority: h2 sees the same bytes.
    let mut bad = PREFACE.to_vec();
    bad.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
    bad.extend(client_bytes(&[request("/s.sock", "/a")])[PREFACE.len()..].to_vec());
    assert_eq!(filter_in_chunks(&bad, 4), bad);
    // An HPACK error (index 0) passes as it came.
    let mut broken = PREFACE.to_vec();
    broken.extend(frame(HEADERS, END_HEADERS, 1, &[0x80]));
    assert_eq!(filter_in_chunks(&broken, 4), broken);
    // Padding longer than the frame.
    let mut padded = PREFACE.to_vec();
    padded.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82]));
    assert_eq!(filter_in_chunks(&padded, 4), padded);
    // A truncated stream: what was held is released at the end.
    let cut = client_bytes(&[request("/s.sock", "/a")]);
    let cut = &cut[..cut.len() - 20];
    assert_eq!(filter_in_chunks(cut, 4096), cut);
}

#[test]
fn after_a_rewrite_what_cannot_be_followed_ends_the_connection() {
    // h2's table no longer matches the client's: raw bytes could decode to other
    // headers, so h2 gets a block no table decodes instead.
    let mut input = client_bytes(&[request("/s.sock", "/a")]);
    input.extend(frame(HEADERS, END_HEADERS, 3, &[0xff, 0xff, 0x7f]));
    let out = filter_in_chunks(&input, 9);
    let frames = frames_after_preface(&out);
    let last = frames.last().unwrap();
    assert_eq!(
        (last.0, last.2, &last.3[..]),
        (HEADERS, 0x7fff_ffff, &[0x80][..])
    );
    assert_eq!(
        frames.len(),
        4,
        "settings, rewritten request, data, poison: {frames:?}"
    );
}

/// Issue 19 row 1: one 4 KiB literal added to the table, then referenced 20,000 times
/// (80 MB decoded from 40 KB sent). The filter copies at most h2's header-list limit,
/// then hands the block to h2 as it came (nothing was rewritten), which refuses it.
#[test]
fn a_block_decoding_past_the_header_list_limit_is_not_copied_past_it() {
    let mut block = vec![0x40, 0x03, b'x', b'-', b'a', 0x7f, 0x9f, 0x1e];
    block.extend(std::iter::repeat_n(0x76, 3998));
    block.extend(std::iter::repeat_n(0xbe, 20_000));
    let mut sent = PREFACE.to_vec();
    sent.extend(frame(0x4, 0, 0, &[]));
    let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME_PAYLOAD).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let flags = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        sent.extend(frame(kind, flags, 1, chunk));
    }
    let mut filter = AuthorityFilter::default();
    let mut out = BytesMut::new();
    filter.feed(&sent, &mut out);
    assert!(
        filter.fields.bytes.capacity() <= 2 * MAX_HEADER_LIST,
        "{} bytes copied",
        filter.fields.bytes.capacity()
    );
    assert_eq!(&out[..], &sent[..], "handed to h2 byte for byte");
    assert!(filter.is_raw());
}

/// Issue 19 row 3: once blocks are re-encoded, a HEADERS frame over the 16 KiB the
/// server advertised reaches h2 as it came (h2 answers FRAME_SIZE_ERROR), instead of
/// being re-split into frames h2 would accept.
#[test]
fn an_oversize_frame_reaches_h2_as_it_came() {
    let mut sent = client_bytes(&[request("/run/containerd/containerd.sock", "/a")]);
    let oversize = frame(HEADERS, END_HEADERS, 3, &vec![0x82; 20_002]);
    sent.extend_from_slice(&oversize);
    let mut filter = AuthorityFilter::default();
    let mut out = BytesMut::new();
    filter.feed(&sent, &mut out);
    assert!(
        out.ends_with(&oversize),
        "the oversize frame passes untouched"
    );
    assert!(filter.is_raw());
}

/// Found by fuzzing: an oversize frame right after an unfinished HEADERS frame (no
/// rewriting) must not swallow the held frame: h2 reads both exactly as sent.
#[test]
fn an_oversize_frame_after_a_held_block_keeps_the_block() {
    let mut sent = PREFACE.to_vec();
    sent.extend(frame(HEADERS, 0, 255, &[]));
    sent.extend_from_slice(&[0xff, 0xff, 0xff, HEADERS, END_HEADERS, 0, 0, 0, 1]);
    sent.extend_from_slice(&[0x82; 40]);
    let mut filter = AuthorityFilter::default();
    let mut out = BytesMut::new();
    filter.feed(&sent, &mut out);
    assert_eq!(&out[..], &sent[..]);
}

/// Issue 19 row 10: the filter decodes with imageshim's RFC 7541 §4.2 decoder, so a
/// size update after a field is refused here as h2 would refuse it — never dropped by
/// re-encoding. On a rewriting connection h2 then gets a block no table decodes.
#[test]
fn a_late_size_update_is_refused_not_re_encoded_away() {
    let mut sent = client_bytes(&[request("/run/containerd/containerd.sock", "/a")]);
    sent.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &[0x82, 0x20, 0x82],
    ));
    let mut filter = AuthorityFilter::default();
    let mut out = BytesMut::new();
    filter.feed(&sent, &mut out);
    assert!(
        out.ends_with(&UNDECODABLE_BLOCK),
        "h2 is handed a block it cannot decode"
    );
    assert!(filter.is_raw());
}
