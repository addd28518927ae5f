//! imageshim's own container image, as an OCI image layout: no base image, only the
//! binary, the shared libraries its ELF interpreter loads (as `ldd` resolves them on the
//! build machine) and the documented default config. Entrypoint `/usr/bin/imageshim`,
//! Cmd `serve --config /etc/imageshim/config.toml`. Shared by `examples/image.rs`
//! (hack/image.sh) and the test that runs the image under containerd.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::oci::{self, Layout, TestImage};

/// The files of the image: (path in the image, bytes).
pub fn image_files(binary: &Path, config: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("usr/bin/imageshim".to_string(), read(binary)),
        ("etc/imageshim/config.toml".to_string(), read(config)),
    ];
    for library in shared_libraries(binary) {
        let in_image = library
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        files.push((in_image, read(&library)));
    }
    files
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The libraries `ldd` says the binary loads, and its interpreter, by the paths the
/// loader looks for them at (the files are read through any symlink).
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("ldd");
    assert!(
        out.status.success(),
        "ldd {}: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, resolved)) => resolved.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    assert!(
        !libraries.is_empty(),
        "ldd found no libraries: a static binary needs none, but this one is dynamic"
    );
    libraries
}

/// Writes the image as an OCI layout in `dir`, its index naming it `reference`.
pub fn write_layout(dir: &Path, binary: &Path, config: &Path, reference: &str) -> Layout {
    let files = image_files(binary, config);
    let version = Command::new(binary)
        .arg("--version")
        .output()
        .expect("imageshim --version");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let image = TestImage {
        files: files
            .iter()
            .map(|(path, data)| (path.as_str(), data.clone()))
            .collect(),
        user: None,
        cmd: vec!["serve", "--config", "/etc/imageshim/config.toml"],
        entrypoint: vec!["/usr/bin/imageshim"],
        labels: vec![
            ("org.opencontainers.image.title", "imageshim".to_string()),
            ("org.opencontainers.image.version", version),
        ],
    };
    let layout = oci::write_layout(dir, &image);
    name_in_index(dir, reference);
    layout
}

/// Names the image in index.json, as `ctr images import` and skopeo read it.
fn name_in_index(dir: &Path, reference: &str) {
    let path = dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&read(&path)).unwrap();
    let tag = reference.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    index["manifests"][0]["annotations"] = serde_json::json!({
        "io.containerd.image.name": reference,
        "org.opencontainers.image.ref.name": tag,
    });
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The layout as one tar archive (for `ctr -n k8s.io images import`).
pub fn write_tar(dir: &Path, file: &Path) {
    let mut builder = tar::Builder::new(std::fs::File::create(file).unwrap());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all(".", dir).unwrap();
    builder.finish().unwrap();
}

/// Splits `host[:port]/repo:tag` into registry, repository and tag.
pub fn split_reference(reference: &str) -> (&str, &str, &str) {
    let (registry, rest) = reference.split_once('/').expect("host[:port]/repo:tag");
    let (repo, tag) = rest.rsplit_once(':').expect("a tag");
    (registry, repo, tag)
}
