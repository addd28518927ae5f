//! Builds small test images as an OCI image layout on disk and pushes a layout to a
//! registry over the distribution HTTP API (blob uploads, then the manifest per tag).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// What goes into a test image.
pub struct TestImage<'a> {
    pub files: Vec<(&'a str, Vec<u8>)>,
    pub user: Option<&'a str>,
    /// The image's `Cmd`; `["/hello"]` when empty (and there is no entrypoint).
    pub cmd: Vec<&'a str>,
    /// The image's `Entrypoint`; none when empty.
    pub entrypoint: Vec<&'a str>,
    /// The config's `Labels`.
    pub labels: Vec<(&'a str, String)>,
}

/// A written layout: its directory and the manifest's digest.
pub struct Layout {
    pub dir: PathBuf,
    pub manifest_digest: String,
    /// Bytes a pull downloads: config and layers.
    pub blob_bytes: u64,
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    std::fs::write(path, bytes).unwrap();
    digest
}

fn layer_tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Writes `image` as an OCI image layout under `dir`.
pub fn write_layout(dir: &Path, image: &TestImage) -> Layout {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer = layer_tar(&image.files);
    let cmd = match image.cmd.is_empty() && image.entrypoint.is_empty() {
        true => vec!["/hello"],
        false => image.cmd.clone(),
    };
    let labels: serde_json::Map<String, serde_json::Value> = image
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let layer_digest = write_blob(dir, &layer);
    let config = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "User": image.user.unwrap_or(""),
            "Entrypoint": image.entrypoint,
            "Cmd": cmd,
            "Labels": labels,
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = write_blob(dir, &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": { "mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len() }],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = write_blob(dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": MANIFEST_TYPE, "digest": manifest_digest, "size": manifest.len() }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    Layout {
        dir: dir.to_path_buf(),
        manifest_digest,
        blob_bytes: (config.len() + layer.len()) as u64,
    }
}

fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap()
}

/// Pushes the layout's manifest (and its blobs) to `registry/repo` under every tag.
pub fn push_layout(
    layout: &Layout,
    registry: &str,
    repo: &str,
    tags: &[&str],
    auth: Option<(&str, &str)>,
) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let authorization = auth.map(|(user, password)| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {token}")
    });
    let with_auth = |request: ureq::Request| match &authorization {
        Some(value) => request.set("Authorization", value),
        None => request,
    };
    let manifest = read_blob(&layout.dir, &layout.manifest_digest);
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut blobs = vec![parsed["config"]["digest"].as_str().unwrap().to_string()];
    for layer in parsed["layers"].as_array().unwrap() {
        blobs.push(layer["digest"].as_str().unwrap().to_string());
    }
    for digest in blobs {
        let start = with_auth(agent.post(&format!("http://{registry}/v2/{repo}/blobs/uploads/")))
            .call()
            .unwrap_or_else(|e| panic!("start upload to {registry}/{repo}: {e}"));
        let location = start
            .header("Location")
            .expect("upload location")
            .to_string();
        let url = if location.starts_with('/') {
            format!("http://{registry}{location}")
        } else {
            location
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        with_auth(agent.put(&format!("{url}{separator}digest={digest}")))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(&read_blob(&layout.dir, &digest))
            .unwrap_or_else(|e| panic!("upload {digest}: {e}"));
    }
    for tag in tags {
        with_auth(agent.put(&format!("http://{registry}/v2/{repo}/manifests/{tag}")))
            .set("Content-Type", MANIFEST_TYPE)
            .send_bytes(&manifest)
            .unwrap_or_else(|e| panic!("put manifest {repo}:{tag}: {e}"));
    }
}

/// Builds a small image unique to `repo` and pushes it under `tags`; returns the
/// manifest digest.
pub fn build_and_push(
    registry: &str,
    repo: &str,
    tags: &[&str],
    user: Option<&str>,
    auth: Option<(&str, &str)>,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage {
        files: vec![
            ("hello", format!("#!/bin/sh\necho {repo}\n").into_bytes()),
            ("etc/imageshim-test", repo.as_bytes().to_vec()),
        ],
        user,
        cmd: Vec::new(),
        entrypoint: Vec::new(),
        labels: Vec::new(),
    };
    let layout = write_layout(dir.path(), &image);
    push_layout(&layout, registry, repo, tags, auth);
    layout.manifest_digest
}

/// Builds an image holding a static busybox (from Debian's busybox-static) with `cmd`
/// and pushes it as `registry/repo:tag`; returns the manifest digest. Used as the pod
/// sandbox ("pause") image and as a container image that can exec.
pub fn push_busybox_image(registry: &str, repo: &str, tag: &str, cmd: &[&str]) -> String {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (Debian busybox-static; hack/test.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage {
        files: vec![("bin/busybox", busybox)],
        user: None,
        cmd: cmd.to_vec(),
        entrypoint: Vec::new(),
        labels: Vec::new(),
    };
    let layout = write_layout(dir.path(), &image);
    push_layout(&layout, registry, repo, &[tag], None);
    layout.manifest_digest
}

/// Pushes an image whose one layer holds `size` bytes unique to `repo` (large enough for
/// a download to be caught part-way); returns the manifest digest.
pub fn push_sized_image(registry: &str, repo: &str, tag: &str, size: usize) -> String {
    push_sized_image_with_bytes(registry, repo, tag, size).0
}

/// [`push_sized_image`], also returning the bytes a pull downloads (config and layer).
pub fn push_sized_image_with_bytes(
    registry: &str,
    repo: &str,
    tag: &str,
    size: usize,
) -> (String, u64) {
    let mut data = Vec::with_capacity(size);
    let mut block = Sha256::digest(repo.as_bytes()).to_vec();
    while data.len() < size {
        block = Sha256::digest(&block).to_vec();
        data.extend_from_slice(&block);
    }
    data.truncate(size);
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage {
        files: vec![("data", data)],
        user: None,
        cmd: Vec::new(),
        entrypoint: Vec::new(),
        labels: Vec::new(),
    };
    let layout = write_layout(dir.path(), &image);
    push_layout(&layout, registry, repo, &[tag], None);
    (layout.manifest_digest.clone(), layout.blob_bytes)
}
