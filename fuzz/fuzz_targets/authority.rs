//! The `:authority` filter on arbitrary client bytes, fed in arbitrary pieces: no
//! panic; while it rewrites nothing, what h2 reads is what the client sent, byte for
//! byte; and its output never grows past what re-encoding can add.
#![no_main]
use bytes::BytesMut;
use imageshim::transport::authority::AuthorityFilter;
use libfuzzer_sys::fuzz_target;

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
    }
});
