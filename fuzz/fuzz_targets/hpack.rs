//! HPACK decoding of backend header blocks (h2c), differential against loona-hpack:
//! the input is split into blocks decoded in turn with one table; wherever both
//! decoders accept a block, they must give the same fields. imageshim may refuse more
//! (RFC 7541 §4.2, h2's integer limit), never accept differently.
#![no_main]
use imageshim::transport::h2c::fuzzing::hpack_blocks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let blocks: Vec<&[u8]> = data.split(|b| *b == 0xfe).take(8).collect();
    let ours = hpack_blocks(&blocks);
    let mut theirs = loona_hpack::Decoder::new();
    theirs.set_max_allowed_table_size(4096);
    for (block, ours) in blocks.iter().zip(ours) {
        let Some(ours) = ours else {
            return; // our table may now differ from theirs: stop comparing
        };
        let Ok(fields) = theirs.decode(block) else {
            // loona-hpack refuses some blocks RFC 7541 and h2 accept: size updates
            // alone or several at the start. Anything else it refuses, imageshim must.
            let starts_with_size_update = block.first().is_some_and(|b| b & 0xe0 == 0x20);
            assert!(
                starts_with_size_update,
                "imageshim accepted a block loona-hpack refuses: {block:02x?}"
            );
            return;
        };
        assert_eq!(ours, fields, "{block:02x?}");
    }
});
