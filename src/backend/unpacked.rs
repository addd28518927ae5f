//! Whether an image is unpacked in a given containerd snapshotter — what "present for a
//! handler" means on containerd 2.x. Reads the image config's `rootfs.diff_ids` from the
//! content store, derives the top layer's chain ID (the committed snapshot's key) and
//! asks the snapshots service for it, through `containerd-client` in namespace `k8s.io`.
//! Read-only; the config → chain ID mapping never changes, so it is cached (bounded).

use std::num::NonZeroUsize;

use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::StatSnapshotRequest;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use super::content::{namespaced, ContentError, ContentStore};

/// Image configs larger than this are not read (real ones are a few KiB).
const CONFIG_LIMIT: usize = 4 * 1024 * 1024;
/// How many config → chain ID mappings are kept.
const CHAIN_CACHE: usize = 4096;

/// Why an unpack check could not answer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackedError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("image config {digest} is not valid JSON with rootfs.diff_ids")]
    Config {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image config {digest} lists no layers")]
    NoLayers { digest: String },
    #[error("image config {digest} has a diff_id that is not a digest")]
    BadDiffId { digest: String },
    #[error("containerd snapshots service")]
    Snapshots(#[source] tonic::Status),
}

/// Checks images against containerd's snapshotters over one backend's channel.
pub struct UnpackedCheck {
    content: ContentStore,
    snapshots: SnapshotsClient<Channel>,
    chains: Mutex<lru::LruCache<String, String>>,
}

impl std::fmt::Debug for UnpackedCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnpackedCheck")
    }
}

impl UnpackedCheck {
    pub fn new(channel: Channel) -> Self {
        UnpackedCheck {
            content: ContentStore::new(channel.clone()),
            snapshots: SnapshotsClient::new(channel),
            chains: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CHAIN_CACHE).expect("non-zero"),
            )),
        }
    }

    /// True when the image whose config is `config_digest` (its image ID) is unpacked
    /// in `snapshotter`.
    pub async fn is_unpacked(
        &self,
        config_digest: &str,
        snapshotter: &str,
    ) -> Result<bool, UnpackedError> {
        let chain = self.top_chain_id(config_digest).await?;
        let request = namespaced(StatSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: chain,
        });
        match self.snapshots.clone().stat(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => Err(UnpackedError::Snapshots(status)),
        }
    }

    async fn top_chain_id(&self, config_digest: &str) -> Result<String, UnpackedError> {
        if let Some(known) = self.chains.lock().get(config_digest) {
            return Ok(known.clone());
        }
        let config = self.content.read_blob(config_digest, CONFIG_LIMIT).await?;
        let chain = top_chain_id(config_digest, &config)?;
        self.chains
            .lock()
            .put(config_digest.to_string(), chain.clone());
        Ok(chain)
    }
}

#[derive(Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// The chain ID of an image config's top layer (OCI image spec: `ChainID(L0) =
/// DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`).
pub fn top_chain_id(digest: &str, config: &[u8]) -> Result<String, UnpackedError> {
    let parsed: ImageConfig =
        serde_json::from_slice(config).map_err(|source| UnpackedError::Config {
            digest: digest.to_string(),
            source,
        })?;
    if !parsed.rootfs.diff_ids.iter().all(|id| is_digest(id)) {
        return Err(UnpackedError::BadDiffId {
            digest: digest.to_string(),
        });
    }
    let mut layers = parsed.rootfs.diff_ids.into_iter();
    let mut chain = layers.next().ok_or_else(|| UnpackedError::NoLayers {
        digest: digest.to_string(),
    })?;
    for diff_id in layers {
        let next = Sha256::digest(format!("{chain} {diff_id}"));
        chain = format!("sha256:{}", hex_lower(&next));
    }
    Ok(chain)
}

/// `algorithm:encoded` as the OCI image spec's digest grammar allows it, with the
/// registered algorithms' exact lengths (containerd refuses anything else).
fn is_digest(text: &str) -> bool {
    let Some((algorithm, encoded)) = text.split_once(':') else {
        return false;
    };
    let hex = |len: usize| {
        encoded.len() == len
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match algorithm {
        "sha256" => hex(64),
        "sha512" => hex(128),
        _ => false,
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let one = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{a}"]}}}}"#);
        assert_eq!(top_chain_id("c", one.as_bytes()).unwrap(), a);
        let two = format!(r#"{{"rootfs":{{"type":"layers","diff_ids":["{a}","{b}"]}}}}"#);
        let want = format!("sha256:{}", hex_lower(&Sha256::digest(format!("{a} {b}"))));
        assert_eq!(top_chain_id("c", two.as_bytes()).unwrap(), want);
        assert!(top_chain_id("c", br#"{"rootfs":{"diff_ids":[]}}"#).is_err());
        assert!(top_chain_id("c", b"not json").is_err());
        // Found by the image_config fuzz target: an empty diff_id gave an empty chain ID.
        let empty = br#"{"rootfs":{"type":"lA9ers","diff_ids":[""]}}"#;
        assert!(matches!(
            top_chain_id("c", empty),
            Err(UnpackedError::BadDiffId { .. })
        ));
        let short = br#"{"rootfs":{"diff_ids":["sha256:abc"]}}"#;
        assert!(top_chain_id("c", short).is_err());
    }
}
