//! The kubelet's glob match of credential keys (from config.json and plugin answers):
//! no panic, a pattern without metacharacters matches exactly itself, and time stays
//! linear (libFuzzer's timeout catches backtracking blow-ups).
#![no_main]
use imageshim::credentials::fuzzing::glob_match;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, name) = text.split_once('\n').unwrap_or((text, ""));
    let matched = glob_match(pattern, name);
    if !pattern.contains(['*', '?', '[', '\\']) {
        assert_eq!(matched, pattern == name, "{pattern:?} {name:?}");
    }
});
