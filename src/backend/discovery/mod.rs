//! Reads a runtime's own config as the runtime reads it, to learn its runtime handlers
//! and where each handler's images land: containerd's `config.toml` (versions 1–4, its
//! `imports`, the built-in `runc`, each runtime's `snapshotter`, the images plugin's
//! default snapshotter, the transfer service's `unpack_config`) and CRI-O's `crio.conf`
//! plus `crio.conf.d/` (CRI-O's built-in default runtime). Reads files only; decides
//! nothing about requests (that is `landing`).

mod containerd;
mod crio;

use std::collections::BTreeMap;
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
    #[error("runtime config {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// What a runtime's config says about its handlers and image stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCatalog {
    /// Every handler, with the snapshotter its images unpack into when the runtime
    /// has one of its own (containerd); `None` = the default.
    pub handlers: BTreeMap<String, Option<String>>,
    /// The handler an empty `runtime_handler` means.
    pub default_handler: String,
    /// containerd: the images plugin's snapshotter (CRI-O: `None`).
    pub default_snapshotter: Option<String>,
    /// containerd 2.x: the snapshotters its transfer service unpacks into
    /// (`unpack_config`); `None` when pulls do not go through it (CRI-O,
    /// `use_local_image_pull`).
    pub unpack_snapshotters: Option<Vec<String>>,
    /// The files read, in the order they were applied.
    pub files: Vec<PathBuf>,
}

impl RuntimeCatalog {
    /// The snapshotter `handler`'s images unpack into (`""` = the default handler);
    /// `None` for a runtime without snapshotters (CRI-O).
    pub fn snapshotter_for(&self, handler: &str) -> Option<&str> {
        let handler = if handler.is_empty() {
            self.default_handler.as_str()
        } else {
            handler
        };
        match self.handlers.get(handler) {
            Some(Some(own)) => Some(own),
            _ => self.default_snapshotter.as_deref(),
        }
    }

    /// Handlers whose snapshotter the transfer service does not unpack into: their
    /// pulls fail on containerd 2.x ("no unpack platforms defined").
    pub fn handlers_missing_unpack(&self) -> Vec<(String, String)> {
        let Some(unpack) = &self.unpack_snapshotters else {
            return vec![];
        };
        self.handlers
            .keys()
            .filter_map(|h| {
                let snapshotter = self.snapshotter_for(h)?;
                (!unpack.iter().any(|u| u == snapshotter))
                    .then(|| (h.clone(), snapshotter.to_string()))
            })
            .collect()
    }
}

/// Reads the runtime config at `path` (CRI-O: a file or its drop-in directory).
pub fn discover(kind: BackendKind, path: &Path) -> Result<RuntimeCatalog, DiscoveryError> {
    match kind {
        BackendKind::Containerd => containerd::catalog(path),
        BackendKind::CriO => crio::catalog(path),
    }
}

fn read_toml(path: &Path) -> Result<toml::Table, DiscoveryError> {
    let text = crate::config::read_config_file(path).map_err(|source| DiscoveryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|source| DiscoveryError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

/// The table at `path` below `root`, if every step is a table.
fn table_at<'a>(root: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Table> {
    let mut node = root;
    for key in path {
        node = node.get(*key)?.as_table()?;
    }
    Some(node)
}

/// A string value at `path` below `root`.
fn string_at(root: &toml::Table, path: &[&str], key: &str) -> Option<String> {
    table_at(root, path)?.get(key)?.as_str().map(str::to_string)
}

/// Merges `from` into `to` as containerd (mergo, with override) and CRI-O do: tables
/// merge key by key, any other value (arrays included) is replaced.
fn deep_merge(to: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (to.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                deep_merge(existing, incoming)
            }
            (_, value) => {
                to.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
