//! The kubelet's files as adopt reads and edits them (systemd env files with flags,
//! k3s's config.yaml, KubeletConfiguration YAML): arbitrary text gives settings or
//! errors and edited text, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        imageshim::adopt::fuzzing::kubelet_files(text);
    }
});
