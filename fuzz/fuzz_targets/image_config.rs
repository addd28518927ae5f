//! An image config read from containerd's content store, for the chain ID of its top
//! layer: arbitrary bytes give a `sha256:` chain ID or an error, never a panic.
#![no_main]
use imageshim::backend::unpacked::top_chain_id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(chain) = top_chain_id("sha256:fuzz", data) {
        let (algorithm, encoded) = chain.split_once(':').expect("a digest");
        assert!(algorithm == "sha256" || algorithm == "sha512");
        assert!(encoded.len() >= 64);
    }
});
