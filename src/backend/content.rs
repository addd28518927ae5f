//! containerd's content store, read through `containerd-client` in namespace `k8s.io`
//! (where the CRI plugin keeps images): active ingests (downloads in progress) and the
//! manifests a repository's pulls have committed. Read-only; knows nothing of pulls.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::{
    InfoRequest, ListContentRequest, ListStatusesRequest, ReadContentRequest,
};
use serde::Deserialize;
use tonic::transport::Channel;

/// The CRI plugin's namespace.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Manifests larger than this are not read (real ones are a few KiB).
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// One download in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingest {
    /// The blob's digest (`sha256:…`), from the ingest's expected digest or its ref.
    pub digest: String,
    pub offset: u64,
    /// 0 when unknown.
    pub total: u64,
}

/// A committed image manifest and the blobs it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: String,
    pub created_at: SystemTime,
    /// Config and layers: (digest, size).
    pub blobs: Vec<(String, u64)>,
}

/// Why the content store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("containerd content store")]
    Call(#[from] tonic::Status),
    #[error("manifest {digest} is not valid JSON")]
    Manifest {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("blob {digest} is larger than {limit} bytes")]
    TooLarge { digest: String, limit: usize },
}

/// Reads containerd's content store over a backend's channel.
#[derive(Clone)]
pub struct ContentStore {
    client: ContentClient<Channel>,
}

pub(super) fn namespaced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(5));
    request.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(CRI_NAMESPACE),
    );
    request
}

impl ContentStore {
    pub fn new(channel: Channel) -> Self {
        ContentStore {
            client: ContentClient::new(channel),
        }
    }

    /// Every active ingest.
    pub async fn ingests(&self) -> Result<Vec<Ingest>, ContentError> {
        let request = namespaced(ListStatusesRequest { filters: vec![] });
        let statuses = self.client.clone().list_statuses(request).await?;
        Ok(statuses
            .into_inner()
            .statuses
            .into_iter()
            .filter_map(|status| {
                let digest = match status.expected.is_empty() {
                    false => status.expected,
                    true => digest_in_ref(&status.r#ref)?,
                };
                Some(Ingest {
                    digest,
                    offset: u64::try_from(status.offset).unwrap_or(0),
                    total: u64::try_from(status.total).unwrap_or(0),
                })
            })
            .collect())
    }

    /// The image manifests committed for `repository` of `domain` (by the
    /// `containerd.io/distribution.source.<host>` label pulls put on what they fetch).
    pub async fn manifests(
        &self,
        domain: &str,
        repository: &str,
    ) -> Result<Vec<Manifest>, ContentError> {
        let filter = manifest_filter(domain, repository);
        let request = namespaced(ListContentRequest {
            filters: vec![filter],
        });
        let mut stream = self.client.clone().list(request).await?.into_inner();
        let mut found = Vec::new();
        while let Some(page) = stream.message().await? {
            for info in page.info {
                let created_at = info
                    .created_at
                    .map(|t| {
                        UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
                    })
                    .unwrap_or(UNIX_EPOCH);
                found.push((info.digest, created_at));
            }
        }
        let mut manifests = Vec::new();
        for (digest, created_at) in found {
            let blobs = self.manifest_blobs(&digest).await?;
            manifests.push(Manifest {
                digest,
                created_at,
                blobs,
            });
        }
        Ok(manifests)
    }

    /// True when `digest` is committed in the store.
    pub async fn committed(&self, digest: &str) -> Result<bool, ContentError> {
        let request = namespaced(InfoRequest {
            digest: digest.to_string(),
        });
        match self.client.clone().info(request).await {
            Ok(_) => Ok(true),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => Err(status.into()),
        }
    }

    async fn manifest_blobs(&self, digest: &str) -> Result<Vec<(String, u64)>, ContentError> {
        parse_manifest(digest, &self.read_blob(digest, MANIFEST_LIMIT).await?)
    }

    /// A whole blob, refused past `limit` bytes.
    pub async fn read_blob(&self, digest: &str, limit: usize) -> Result<Vec<u8>, ContentError> {
        let request = namespaced(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let mut stream = self.client.clone().read(request).await?.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            bytes.extend_from_slice(&chunk.data);
            if bytes.len() > limit {
                return Err(ContentError::TooLarge {
                    digest: digest.to_string(),
                    limit,
                });
            }
        }
        Ok(bytes)
    }
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
struct ManifestJson {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The config and layer descriptors of an image manifest.
fn parse_manifest(digest: &str, bytes: &[u8]) -> Result<Vec<(String, u64)>, ContentError> {
    let manifest: ManifestJson =
        serde_json::from_slice(bytes).map_err(|source| ContentError::Manifest {
            digest: digest.to_string(),
            source,
        })?;
    Ok(manifest
        .config
        .into_iter()
        .chain(manifest.layers)
        .map(|d| (d.digest, d.size))
        .collect())
}

/// The content filter for image manifests (blobs with a config child) whose
/// distribution source names `repository` on `domain`'s host.
fn manifest_filter(domain: &str, repository: &str) -> String {
    // containerd keys the label by host without port.
    let host = match domain.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => domain,
    };
    // Repository names are [a-z0-9._/-]; only `.` needs escaping, as a class.
    let pattern = repository.replace('.', "[.]");
    format!(
        "labels.\"containerd.io/distribution.source.{host}\"~=\"(^|,){pattern}(,|$)\",labels.\"containerd.io/gc.ref.content.config\""
    )
}

/// `…-sha256:<hex>` at the end of an ingest ref.
fn digest_in_ref(reference: &str) -> Option<String> {
    let at = reference.rfind("sha256:")?;
    let digest = &reference[at..];
    (digest.len() == 7 + 64).then(|| digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_names_the_host_without_port_and_escapes_dots() {
        assert_eq!(
            manifest_filter("127.0.0.1:5000", "team/app.v2"),
            "labels.\"containerd.io/distribution.source.127.0.0.1\"~=\"(^|,)team/app[.]v2(,|$)\",labels.\"containerd.io/gc.ref.content.config\""
        );
        assert!(manifest_filter("docker.io", "library/busybox")
            .starts_with("labels.\"containerd.io/distribution.source.docker.io\""));
    }

    #[test]
    fn ingest_refs_give_their_digest() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in_ref(&format!("layer-sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in_ref("layer-sha256:abc"), None);
        assert_eq!(digest_in_ref("something-else"), None);
    }

    #[test]
    fn manifests_give_config_and_layers() {
        let json = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":5},"layers":[{"digest":"sha256:l","size":7}]}"#;
        assert_eq!(
            parse_manifest("sha256:m", json).unwrap(),
            vec![("sha256:c".into(), 5), ("sha256:l".into(), 7)]
        );
        assert!(parse_manifest("sha256:m", b"{not json").is_err());
    }
}
