//! Frame heads, padding and SETTINGS payloads read from arbitrary backend bytes: no
//! panic, and every frame found lies within the input.
#![no_main]
use imageshim::transport::h2c::fuzzing::frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let found = frames(data);
    assert!(found.len() <= data.len() / 9);
});
