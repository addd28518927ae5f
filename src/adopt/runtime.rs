//! The runtime side of adopt: which runtime serves the kubelet's endpoint, where its
//! config is, and the handlers discovery finds there (refusing a config it cannot read).

use std::path::{Path, PathBuf};

use crate::config::{BackendConfig, BackendKind};

use super::run::strip_root;
use super::{node_file_exists, node_path, AdoptError, AdoptOptions};

const K3S_CONTAINERD_CONFIG: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";

pub(super) fn runtime_kind(
    options: &AdoptOptions,
    endpoint: &str,
) -> Result<(BackendKind, String), AdoptError> {
    if let Some(kind) = options.runtime_kind {
        return Ok((kind, "--runtime-kind".to_string()));
    }
    let socket = endpoint.rsplit('/').next().unwrap_or_default();
    match () {
        _ if endpoint.contains("crio") => Ok((BackendKind::CriO, format!("from the socket name {socket}"))),
        _ if endpoint.contains("containerd") => {
            Ok((BackendKind::Containerd, format!("from the socket name {socket}")))
        }
        _ => Err(AdoptError::Refused(format!(
            "cannot tell which runtime serves {endpoint}: pass --runtime-kind containerd or --runtime-kind cri-o"
        ))),
    }
}

pub(super) fn runtime_config(
    options: &AdoptOptions,
    kind: BackendKind,
    k3s: bool,
) -> Result<Option<PathBuf>, AdoptError> {
    if let Some(path) = &options.runtime_config {
        return match node_file_exists(&options.root, path) {
            true => Ok(Some(path.clone())),
            false => Err(AdoptError::Refused(format!(
                "--runtime-config {}: no such file",
                path.display()
            ))),
        };
    }
    let default = match (kind, k3s) {
        (BackendKind::Containerd, true) => K3S_CONTAINERD_CONFIG,
        (BackendKind::Containerd, false) => "/etc/containerd/config.toml",
        (BackendKind::CriO, _) => "/etc/crio/crio.conf",
    };
    Ok(Some(PathBuf::from(default)).filter(|p| node_file_exists(&options.root, p)))
}

/// The runtime's handlers as `check-config` will print them; a config discovery cannot
/// read is refused here, before anything is written.
pub(super) fn discover_handlers(
    options: &AdoptOptions,
    kind: BackendKind,
    endpoint: &str,
    runtime_config: Option<&Path>,
) -> Result<Vec<String>, AdoptError> {
    let Some(path) = runtime_config else {
        return Ok(Vec::new());
    };
    let backend = BackendConfig {
        name: "runtime".to_string(),
        kind,
        endpoint: endpoint.to_string(),
        default: true,
        handlers: Vec::new(),
        runtime_config: Some(node_path(&options.root, path)),
    };
    let (lines, warnings) = crate::backend::describe_configs(&[backend])
        .map_err(|e| AdoptError::Refused(format!("runtime config {}: {e}", path.display())))?;
    let warnings = warnings.into_iter().map(|w| format!("warning: {w}"));
    let lines = lines.into_iter().chain(warnings);
    Ok(lines
        .map(|l| strip_root(&options.root, &l.replacen("backend runtime: ", "", 1)))
        .collect())
}
