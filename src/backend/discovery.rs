//! Discovers the runtime handlers a runtime already serves from its own config:
//! containerd's `config.toml` and CRI-O's `crio.conf` plus `crio.conf.d/`. Reads files
//! only. Table names from containerd 1.x/2.x (`plugins."io.containerd.grpc.v1.cri"`,
//! `plugins."io.containerd.cri.v1.runtime"`) and CRI-O's `crio.runtime.runtimes`.

use std::path::{Path, PathBuf};

use crate::config::BackendKind;

/// Why a runtime config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read runtime config {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse runtime config {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
}

/// containerd 1.x (`io.containerd.grpc.v1.cri`) and 2.x (`io.containerd.cri.v1.runtime`).
const CONTAINERD_CRI_PLUGINS: [&str; 2] =
    ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"];

/// The handler names a runtime's config declares.
pub fn discover(kind: BackendKind, path: &Path) -> Result<Vec<String>, DiscoveryError> {
    match kind {
        BackendKind::Containerd => containerd_handlers(&read_toml(path)?),
        BackendKind::CriO => crio_handlers(path),
    }
}

fn read_toml(path: &Path) -> Result<toml::Table, DiscoveryError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoveryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|source| DiscoveryError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

fn table_keys(root: &toml::Table, path: &[&str]) -> Vec<String> {
    let mut node = root;
    for key in path {
        match node.get(*key).and_then(toml::Value::as_table) {
            Some(next) => node = next,
            None => return vec![],
        }
    }
    node.keys().cloned().collect()
}

fn containerd_handlers(config: &toml::Table) -> Result<Vec<String>, DiscoveryError> {
    let mut handlers = Vec::new();
    for plugin in CONTAINERD_CRI_PLUGINS {
        handlers.extend(table_keys(
            config,
            &["plugins", plugin, "containerd", "runtimes"],
        ));
    }
    Ok(handlers)
}

/// `crio.conf` then `crio.conf.d/*.conf` beside it (or every `*.conf` of a directory).
fn crio_handlers(path: &Path) -> Result<Vec<String>, DiscoveryError> {
    let mut files = Vec::new();
    let dropin_dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        files.push(path.to_path_buf());
        path.with_file_name("crio.conf.d")
    };
    if let Ok(entries) = std::fs::read_dir(&dropin_dir) {
        let mut dropins: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        dropins.sort();
        files.extend(dropins);
    }
    let mut handlers = Vec::new();
    for file in files {
        handlers.extend(table_keys(
            &read_toml(&file)?,
            &["crio", "runtime", "runtimes"],
        ));
    }
    Ok(handlers)
}
