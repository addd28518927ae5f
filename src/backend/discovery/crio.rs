//! CRI-O's config as CRI-O 1.36 loads it: its built-in default runtime (`crun`), then
//! `crio.conf`, then every file below `crio.conf.d/` beside it (or below the directory
//! given), walked in lexical order, each merged over what came before. CRI-O keeps one
//! image store for every handler, so handlers carry no snapshotter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{deep_merge, read_toml, string_at, table_at, DiscoveryError, RuntimeCatalog};

/// CRI-O's default runtime on Linux, present in its built-in config.
const DEFAULT_RUNTIME: &str = "crun";

pub(super) fn catalog(path: &Path) -> Result<RuntimeCatalog, DiscoveryError> {
    let mut files = Vec::new();
    let dropin_dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        files.push(path.to_path_buf());
        path.with_file_name("crio.conf.d")
    };
    walk_lexically(&dropin_dir, &mut files);
    let mut merged = toml::Table::new();
    for file in &files {
        deep_merge(&mut merged, read_toml(file)?);
    }
    let mut handlers: BTreeMap<String, Option<String>> = BTreeMap::new();
    handlers.insert(DEFAULT_RUNTIME.into(), None);
    if let Some(runtimes) = table_at(&merged, &["crio", "runtime", "runtimes"]) {
        handlers.extend(runtimes.keys().map(|name| (name.clone(), None)));
    }
    let default_handler = string_at(&merged, &["crio", "runtime"], "default_runtime")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_RUNTIME.into());
    if !handlers.contains_key(&default_handler) {
        return Err(DiscoveryError::Invalid {
            path: files.last().cloned().unwrap_or_else(|| path.to_path_buf()),
            problem: format!(
                "default_runtime is {default_handler:?}, but no [crio.runtime.runtimes.{default_handler}] table was found"
            ),
        });
    }
    Ok(RuntimeCatalog {
        handlers,
        default_handler,
        default_snapshotter: None,
        unpack_snapshotters: None,
        files,
    })
}

/// Every file below `dir`, depth first in lexical order (Go's `filepath.Walk`); a
/// missing directory has none.
fn walk_lexically(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk_lexically(&path, out);
        } else {
            out.push(path);
        }
    }
}
