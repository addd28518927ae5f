//! The kubelet's CredentialProviderConfig (one file of `--image-credential-provider-config`,
//! YAML or JSON) parsed and validated as imageshim loads it: problems or providers, never a
//! panic; a config whose plugin binaries are missing is never accepted with a plugin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(lines) = imageshim::credentials::fuzzing::provider_config(text) {
            assert!(
                lines.iter().all(|l| !l.contains("imageshim runs it")),
                "{lines:?}"
            );
        }
    }
});
