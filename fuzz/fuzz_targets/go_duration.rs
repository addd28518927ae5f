//! Go durations from plugins and config: no panic; an accepted duration written back
//! in nanoseconds parses to itself. (The differential against Go itself is a unit test:
//! src/credentials/duration.rs runs Go's time.ParseDuration on generated inputs.)
#![no_main]
use imageshim::credentials::duration::parse_go_duration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = parse_go_duration(text) {
        let again = parse_go_duration(&format!("{}ns", duration.as_nanos()));
        assert_eq!(again, Ok(duration));
    }
});
