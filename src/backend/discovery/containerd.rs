//! containerd's config as containerd 2.x loads it: the file, then its `imports` (paths
//! and globs, relative to the importing file, breadth first, each file once), each one
//! migrated to version 3 table names and merged over what came before; defaults under
//! it (the built-in `runc`, snapshotter `overlayfs`, unpack into `overlayfs`).

use std::path::{Path, PathBuf};

use super::{deep_merge, read_toml, string_at, table_at, DiscoveryError, RuntimeCatalog};

/// containerd 1.x's CRI plugin (config versions 1 and 2).
const CRI_V1: &str = "io.containerd.grpc.v1.cri";
/// containerd 2.x's runtime and images plugins (versions 3 and 4).
const RUNTIME_PLUGIN: &str = "io.containerd.cri.v1.runtime";
const IMAGES_PLUGIN: &str = "io.containerd.cri.v1.images";
const TRANSFER_PLUGIN: &str = "io.containerd.transfer.v1.local";
/// containerd's defaults on Linux.
const DEFAULT_RUNTIME: &str = "runc";
const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// Reads `path` and everything it imports into one catalog.
pub(super) fn catalog(path: &Path) -> Result<RuntimeCatalog, DiscoveryError> {
    let mut merged = toml::Table::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while !pending.is_empty() {
        let file = pending.remove(0);
        if files.contains(&file) {
            continue;
        }
        let mut table = read_toml(&file)?;
        let imports = imports_of(&file, &table)?;
        migrate_to_v3(&mut table);
        deep_merge(&mut merged, table);
        files.push(file);
        pending.extend(imports);
    }
    Ok(extract(&merged, files))
}

/// The files `table` (read from `file`) imports, in order; globs expanded (sorted).
fn imports_of(file: &Path, table: &toml::Table) -> Result<Vec<PathBuf>, DiscoveryError> {
    let invalid = |problem: String| DiscoveryError::Invalid {
        path: file.to_path_buf(),
        problem,
    };
    let Some(imports) = table.get("imports") else {
        return Ok(vec![]);
    };
    let imports = imports
        .as_array()
        .ok_or_else(|| invalid("imports: must be an array of paths".into()))?;
    let base = file.parent().unwrap_or(Path::new("/"));
    let mut out = Vec::new();
    for import in imports {
        let import = import
            .as_str()
            .ok_or_else(|| invalid("imports: must be an array of paths".into()))?;
        let resolved = base.join(import);
        if !import.contains('*') {
            out.push(resolved);
            continue;
        }
        let pattern = resolved.to_string_lossy().into_owned();
        let matches = glob::glob(&pattern)
            .map_err(|e| invalid(format!("imports: bad pattern {import:?}: {e}")))?;
        out.extend(matches.filter_map(Result::ok));
    }
    Ok(out)
}

/// Moves a version 1 or 2 file's CRI settings to where version 3 keeps them, as
/// containerd's migration does; later versions are left as they are.
fn migrate_to_v3(table: &mut toml::Table) {
    let version = table
        .get("version")
        .and_then(toml::Value::as_integer)
        .unwrap_or(1);
    if version >= 3 {
        return;
    }
    let Some(toml::Value::Table(plugins)) = table.get_mut("plugins") else {
        return;
    };
    let old_name = if version <= 1 { "cri" } else { CRI_V1 };
    let Some(toml::Value::Table(cri)) = plugins.remove(old_name) else {
        return;
    };
    let Some(toml::Value::Table(mut containerd)) = cri.get("containerd").cloned() else {
        return;
    };
    let mut images = toml::Table::new();
    if let Some(snapshotter) = containerd.remove("snapshotter") {
        images.insert("snapshotter".into(), snapshotter);
    }
    let runtime = toml::Table::from_iter([("containerd".to_string(), containerd.into())]);
    let mut migrated = toml::Table::new();
    migrated.insert(RUNTIME_PLUGIN.into(), runtime.into());
    migrated.insert(IMAGES_PLUGIN.into(), images.into());
    deep_merge(plugins, migrated);
}

/// The catalog from a merged, version 3 config.
fn extract(merged: &toml::Table, files: Vec<PathBuf>) -> RuntimeCatalog {
    let runtimes_path = ["plugins", RUNTIME_PLUGIN, "containerd", "runtimes"];
    let mut handlers = std::collections::BTreeMap::new();
    handlers.insert(DEFAULT_RUNTIME.to_string(), None);
    if let Some(runtimes) = table_at(merged, &runtimes_path) {
        for (name, runtime) in runtimes {
            let own = runtime
                .get("snapshotter")
                .and_then(toml::Value::as_str)
                .filter(|s| !s.is_empty());
            handlers.insert(name.clone(), own.map(str::to_string));
        }
    }
    // The images plugin's runtime_platform wins over a runtime's own snapshotter.
    let platforms_path = ["plugins", IMAGES_PLUGIN, "runtime_platform"];
    let default_snapshotter = string_at(merged, &["plugins", IMAGES_PLUGIN], "snapshotter")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SNAPSHOTTER.into());
    if let Some(platforms) = table_at(merged, &platforms_path) {
        for (name, platform) in platforms {
            if let Some(entry) = handlers.get_mut(name) {
                let own = platform.get("snapshotter").and_then(toml::Value::as_str);
                *entry = Some(
                    own.filter(|s| !s.is_empty())
                        .unwrap_or(&default_snapshotter)
                        .to_string(),
                );
            }
        }
    }
    let default_handler = string_at(merged, &runtimes_path[..3], "default_runtime_name")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_RUNTIME.into());
    RuntimeCatalog {
        handlers,
        default_handler,
        default_snapshotter: Some(default_snapshotter),
        unpack_snapshotters: unpack_snapshotters(merged),
        files,
    }
}

/// The transfer service's unpack snapshotters (default: overlayfs); `None` when the
/// CRI plugin pulls without it.
fn unpack_snapshotters(merged: &toml::Table) -> Option<Vec<String>> {
    let local_pull = table_at(merged, &["plugins", IMAGES_PLUGIN])
        .and_then(|t| t.get("use_local_image_pull"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    if local_pull {
        return None;
    }
    let configured = table_at(merged, &["plugins", TRANSFER_PLUGIN])
        .and_then(|t| t.get("unpack_config"))
        .and_then(toml::Value::as_array);
    Some(match configured {
        None => vec![DEFAULT_SNAPSHOTTER.to_string()],
        Some(entries) => entries
            .iter()
            .filter_map(|e| e.get("snapshotter").and_then(toml::Value::as_str))
            .map(str::to_string)
            .collect(),
    })
}
