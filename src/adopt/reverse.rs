//! `adopt --reverse` (the kubelet change that takes imageshim out of the call path,
//! read from imageshim's own config) and `Report::write`, the one file adopt writes.

use std::io::Write as _;
use std::path::Path;

use crate::config::Config;

use super::run::{change, read_node, shim_endpoint, strip_root, Report};
use super::{edit, node_path, AdoptError, AdoptOptions};

/// The kubelet change back to the runtime imageshim forwards to.
pub fn reverse(options: &AdoptOptions) -> Result<Report, AdoptError> {
    let node = read_node(options)?;
    let config_file = node_path(&options.root, &options.config);
    let config = Config::load(&config_file).map_err(|e| AdoptError::Parse {
        file: options.config.clone(),
        problem: strip_root(&options.root, &e.to_string()),
    })?;
    let backend = config
        .backends
        .iter()
        .find(|b| b.default)
        .expect("a loaded config has a default backend");
    let shim = shim_endpoint(&config.socket);
    let kubelet = &node.kubelet;
    let mut changes = Vec::new();
    if kubelet.runtime_endpoint.value == shim {
        changes.push(change(
            "containerRuntimeEndpoint",
            &kubelet.runtime_endpoint,
            &backend.endpoint,
        ));
    }
    if kubelet.image_endpoint.value == shim {
        changes.push(change(
            "imageServiceEndpoint",
            &kubelet.image_endpoint,
            &backend.endpoint,
        ));
    }
    if changes.is_empty() {
        return Err(AdoptError::Refused(format!(
            "the kubelet does not point at imageshim ({shim}): containerRuntimeEndpoint is {:?}, imageServiceEndpoint {:?}; nothing to reverse",
            kubelet.runtime_endpoint.value, kubelet.image_endpoint.value
        )));
    }
    let kubelet_diff = edit::diff(&options.root, &changes, node.home.as_ref())?;
    let mut notes = node.notes.clone();
    notes.push(format!(
        "read {}: backend {} at {}",
        options.config.display(),
        backend.name,
        backend.endpoint
    ));
    Ok(Report {
        notes,
        config: None,
        config_diff: None,
        kubelet_diff,
        next_steps: vec![
            "apply the kubelet change above, then: systemctl restart kubelet".to_string(),
            "systemctl disable --now imageshim.socket imageshim.service".to_string(),
            "apt purge imageshim   # or remove the binary, units and /etc/imageshim by hand"
                .to_string(),
        ],
    })
}

impl Report {
    /// Writes the generated config (atomically, mode 0644), keeping a different previous
    /// file as `<name>.before-adopt`. Returns what was done, for the operator.
    pub fn write(&self, root: &Path) -> Result<Vec<String>, AdoptError> {
        let Some((path, text)) = &self.config else {
            return Ok(Vec::new());
        };
        let target = node_path(root, path);
        let fail = |source| AdoptError::Write {
            file: path.clone(),
            source,
        };
        let mut done = Vec::new();
        let before = crate::config::read_config_file(&target).ok();
        // The packaged defaults are not the operator's: the package still has them.
        if let Some(before) = before.filter(|b| *b != crate::config::DOCUMENTED_DEFAULTS) {
            if before == *text {
                return Ok(vec![format!("{} already has this content", path.display())]);
            }
            let backup = target.with_extension("toml.before-adopt");
            std::fs::write(&backup, before).map_err(fail)?;
            done.push(format!(
                "kept the previous config as {}",
                strip_root(root, &backup.to_string_lossy())
            ));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let temporary = target.with_extension("toml.adopt-tmp");
        let mut file = std::fs::File::create(&temporary).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&temporary, &target).map_err(fail)?;
        done.push(format!("wrote {}", path.display()));
        Ok(done)
    }
}
