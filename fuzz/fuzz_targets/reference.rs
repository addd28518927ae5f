//! Image references from callers: no panic; an accepted reference's key parses again
//! to the same key.
#![no_main]
use imageshim::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = Reference::parse(text) {
        let key = reference.key();
        let again = Reference::parse(&key).expect("a key is a valid reference");
        assert_eq!(again.key(), key);
    }
});
