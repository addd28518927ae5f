//! Runtime handler names: what the kubelet and containerd accept as a handler (a
//! DNS-1123 label, as `k8s.io/apimachinery` `validation.IsDNS1123Label` checks
//! RuntimeClass handlers). Pure; used by the config check and by routing.

/// Validates a runtime handler name: a DNS-1123 label.
pub fn validate_handler(handler: &str) -> Result<(), HandlerError> {
    let bytes = handler.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let ends = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && ends(bytes[0])
        && ends(bytes[bytes.len() - 1])
        && bytes.iter().all(inner);
    if ok {
        Ok(())
    } else {
        Err(HandlerError(handler.to_string()))
    }
}

/// A runtime handler that is not a DNS-1123 label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("runtime handler {0:?} must be a DNS-1123 label (at most 63 characters of [a-z0-9-], starting and ending with a letter or digit)")]
pub struct HandlerError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_dns_1123_labels() {
        for ok in ["runc", "kata-qemu", "a", "gvisor2", &"a".repeat(63)] {
            assert!(validate_handler(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Runc",
            "-runc",
            "runc-",
            "run_c",
            "run.c",
            &"a".repeat(64),
        ] {
            assert!(validate_handler(bad).is_err(), "{bad}");
        }
    }
}
