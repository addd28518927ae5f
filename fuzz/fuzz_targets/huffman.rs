//! Huffman decoding (RFC 7541 appendix B) of backend strings, differential against
//! loona-hpack's decoder (reached through a literal header field).
#![no_main]
use imageshim::transport::h2c::fuzzing::huffman;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(4000)];
    let ours = huffman(data);
    // A literal without indexing, name "x", Huffman value `data`.
    let mut block = vec![0x00, 0x01, b'x'];
    let len = data.len();
    if len < 127 {
        block.push(0x80 | len as u8);
    } else {
        block.push(0xff);
        let mut rest = len - 127;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
    }
    block.extend_from_slice(data);
    let theirs = loona_hpack::Decoder::new()
        .decode(&block)
        .ok()
        .map(|fields| fields[0].1.clone());
    assert_eq!(ours, theirs, "{data:02x?}");
});
