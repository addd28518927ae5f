//! The small wire views of CRI v1 messages (generated from `proto/cri_view.proto`), the
//! gRPC framing and the wire edits imageshim makes. Owns message shapes and byte-level
//! edits; must not know about backends, pulls or credentials policy.

pub mod wire;

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/imageshim.cri.rs"));
}
pub use generated::*;

use std::fmt;

/// The gRPC paths imageshim intercepts; everything else is forwarded untouched.
pub mod paths {
    pub const PULL_IMAGE: &str = "/runtime.v1.ImageService/PullImage";
    pub const IMAGE_STATUS: &str = "/runtime.v1.ImageService/ImageStatus";
    pub const LIST_IMAGES: &str = "/runtime.v1.ImageService/ListImages";
    pub const REMOVE_IMAGE: &str = "/runtime.v1.ImageService/RemoveImage";
    pub const IMAGE_FS_INFO: &str = "/runtime.v1.ImageService/ImageFsInfo";
}

/// The sandbox annotation containerd 2.x reads a pull's runtime handler from when
/// `ImageSpec.runtime_handler` is empty (deprecated, to go in containerd 2.5). No other
/// runtime reads it.
pub const RUNTIME_HANDLER_ANNOTATION: &str = "io.containerd.cri.runtime-handler";

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthConfig(<redacted>)")
    }
}

impl AuthConfig {
    /// True when the caller supplied no credential at all.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.auth.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }
}

/// An opaque digest of a caller's credentials: what tells merged pulls apart, kept in
/// memory only, never printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CredentialFingerprint(pub(crate) [u8; 32]);

impl std::fmt::Debug for CredentialFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialFingerprint(<redacted>)")
    }
}

impl CredentialFingerprint {
    /// The fingerprint of a request's `auth` (none or empty: anonymous).
    pub fn of(auth: Option<&AuthConfig>) -> Self {
        CredentialFingerprint(credential_fingerprint(auth))
    }
}

/// SHA-256 over a canonical encoding of the caller's credentials, or of "anonymous"
/// when there are none.
fn credential_fingerprint(auth: Option<&AuthConfig>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    match auth.filter(|a| !a.is_empty()) {
        None => hasher.update(b"anonymous"),
        Some(a) => {
            hasher.update(b"imageshim-auth-v1");
            for field in [
                &a.username,
                &a.password,
                &a.auth,
                &a.server_address,
                &a.identity_token,
                &a.registry_token,
            ] {
                hasher.update((field.len() as u64).to_be_bytes());
                hasher.update(field.as_bytes());
            }
        }
    }
    hasher.finalize().into()
}

impl PullImageRequest {
    /// `ImageSpec.runtime_handler` (empty when none).
    pub fn spec_handler(&self) -> &str {
        spec_handler(self.image.as_ref())
    }

    /// containerd's sandbox annotation naming a runtime handler, if present.
    pub fn annotation_handler(&self) -> Option<&str> {
        self.sandbox_config
            .as_ref()
            .and_then(|c| c.annotations.get(RUNTIME_HANDLER_ANNOTATION))
            .map(String::as_str)
    }

    /// The image string exactly as the caller sent it.
    pub fn image_name(&self) -> &str {
        self.image.as_ref().map(|i| i.image.as_str()).unwrap_or("")
    }
}

/// The runtime handler a request's optional `ImageSpec` names (empty when none).
pub fn spec_handler(spec: Option<&ImageSpec>) -> &str {
    spec.map(|s| s.runtime_handler.as_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_config_debug_is_redacted() {
        let auth = AuthConfig {
            username: "u".into(),
            password: "hunter2-secret".into(),
            ..Default::default()
        };
        let printed = format!("{auth:?} {:?}", Some(&auth));
        assert!(!printed.contains("hunter2"), "{printed}");
        let req = PullImageRequest {
            auth: Some(auth),
            ..Default::default()
        };
        assert!(!format!("{req:?}").contains("hunter2"));
    }

    #[test]
    fn fingerprints_separate_credentials_and_treat_empty_as_anonymous() {
        let user = |u: &str, p: &str| AuthConfig {
            username: u.into(),
            password: p.into(),
            ..Default::default()
        };
        let anonymous = credential_fingerprint(None);
        assert_eq!(
            credential_fingerprint(Some(&AuthConfig::default())),
            anonymous
        );
        assert_ne!(credential_fingerprint(Some(&user("a", "b"))), anonymous);
        assert_ne!(
            credential_fingerprint(Some(&user("a", "b"))),
            credential_fingerprint(Some(&user("a", "c")))
        );
        // Field boundaries count: ("ab", "") is not ("a", "b").
        assert_ne!(
            credential_fingerprint(Some(&user("ab", ""))),
            credential_fingerprint(Some(&user("a", "b")))
        );
        assert_eq!(
            credential_fingerprint(Some(&user("a", "b"))),
            credential_fingerprint(Some(&user("a", "b")))
        );
    }

    #[test]
    fn the_spec_handler_and_containerds_annotation_are_read_apart() {
        let mut req = PullImageRequest::default();
        assert_eq!((req.spec_handler(), req.annotation_handler()), ("", None));
        let mut config = PodSandboxConfig::default();
        config.annotations.insert(
            "io.kubernetes.cri.runtime-handler".into(),
            "read-by-nobody".into(),
        );
        config
            .annotations
            .insert(RUNTIME_HANDLER_ANNOTATION.into(), "kata".into());
        req.sandbox_config = Some(config);
        assert_eq!(req.annotation_handler(), Some("kata"));
        req.image = Some(ImageSpec {
            runtime_handler: "gvisor".into(),
            ..Default::default()
        });
        assert_eq!(req.spec_handler(), "gvisor");
    }
}
