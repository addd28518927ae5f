//! `imageshim adopt`: moves a node's existing kubelet and runtime settings into
//! imageshim's config.toml, and prints the kubelet change that puts imageshim in the
//! call path (image-endpoint or drop-in mode) or, with `--reverse`, takes it out.
//! Reads the node's files (under `--root`, for fixtures and mounted node images);
//! writes only imageshim's config, only with `--write`. Never edits the kubelet's files.

pub mod edit;
pub mod flags;
pub mod kubelet;
pub mod plan;
mod reverse;
mod run;
mod runtime;

use std::path::{Path, PathBuf};

pub use reverse::reverse;
pub use run::{adopt, Report};

use crate::config::BackendKind;

/// Which kubelet endpoint imageshim takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `imageServiceEndpoint` only: runtime calls go straight to the runtime.
    ImageEndpoint,
    /// `containerRuntimeEndpoint` (and any image endpoint): every CRI call.
    DropIn,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ImageEndpoint => "image-endpoint",
            Mode::DropIn => "drop-in",
        }
    }
}

/// What adopt reads and where it writes; paths are as on the node.
#[derive(Debug, Clone)]
pub struct AdoptOptions {
    /// Where the node's `/` is (`/` on the node itself).
    pub root: PathBuf,
    pub mode: Mode,
    /// The KubeletConfiguration file; default `/var/lib/kubelet/config.yaml` when present
    /// (a `--config` flag in the flag files wins).
    pub kubelet_config: Option<PathBuf>,
    /// systemd environment files with kubelet flags; default: those of
    /// `/var/lib/kubelet/kubeadm-flags.env`, `/etc/default/kubelet`,
    /// `/etc/sysconfig/kubelet` that exist.
    pub flag_files: Vec<PathBuf>,
    /// k3s's config.yaml; default `/etc/rancher/k3s/config.yaml` when present.
    pub k3s_config: Option<PathBuf>,
    pub runtime_kind: Option<BackendKind>,
    pub runtime_config: Option<PathBuf>,
    /// imageshim's config.toml, written with `--write`.
    pub config: PathBuf,
    pub socket: PathBuf,
}

/// Why adopt refused; every message names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {problem}", file.display())]
    Parse { file: PathBuf, problem: String },
    #[error("{0}")]
    Refused(String),
    #[error("the config adopt generated does not validate (a bug; nothing was written): {0}")]
    Generated(String),
    #[error("writing {}: {source}", file.display())]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `path` (as on the node) under `root`.
pub fn node_path(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Reads a node file, naming it as on the node when it cannot.
fn read_node_file(root: &Path, file: &Path) -> Result<String, AdoptError> {
    crate::config::read_config_file(&node_path(root, file)).map_err(|source| AdoptError::Read {
        file: file.to_path_buf(),
        source,
    })
}

fn node_file_exists(root: &Path, file: &Path) -> bool {
    node_path(root, file).is_file()
}

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    use super::edit::{self, Change};
    use super::kubelet::{KubeletSettings, DEFAULT_RUNTIME_ENDPOINT};

    /// Reads `text` as each kind of kubelet settings file adopt reads (an env file, a
    /// k3s config, a KubeletConfiguration), applies what parsed, and edits each as
    /// adopt would: errors, never a panic.
    pub fn kubelet_files(text: &str) {
        let file = Path::new("/fuzz");
        let mut settings = KubeletSettings::defaults(DEFAULT_RUNTIME_ENDPOINT);
        let mut flags = super::flags::parse_env_file(text, file);
        if let Ok((k3s, _)) = super::flags::parse_k3s_config(text, file) {
            flags.extend(k3s);
        }
        let _ = settings.apply_text(text, file);
        let _ = settings.apply_flags(&flags);
        let _ = settings.check_pull_limits();
        for current in [&settings.runtime_endpoint, &settings.image_endpoint] {
            let change = Change {
                key: "imageServiceEndpoint",
                flag: "image-service-endpoint",
                current,
                value: "unix:///run/imageshim/imageshim.sock".to_string(),
            };
            let _ = edit::edit_text(text, &change, file);
        }
    }
}

#[cfg(test)]
mod tests;
