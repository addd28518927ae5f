//! The kubelet change adopt prints: each setting set where the kubelet reads it (the
//! flag that sets it, else the KubeletConfiguration key, else k3s's `kubelet-arg`), as
//! a unified diff of the files involved. Edits are line-based so comments and layout
//! stay as the operator wrote them. Produces text only: never writes a kubelet file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::flags::FlagFileKind;
use super::kubelet::{Origin, Setting};
use super::AdoptError;

/// Where a setting that is at its default gets written.
#[derive(Debug, Clone)]
pub enum Home {
    /// The kubelet's KubeletConfiguration file.
    ConfigFile(PathBuf),
    /// k3s's config.yaml, as a `kubelet-arg` entry.
    K3s(PathBuf),
}

/// One change: the kubelet setting (its config key and flag names) and the new value.
pub struct Change<'a> {
    pub key: &'static str,
    pub flag: &'static str,
    pub current: &'a Setting<String>,
    pub value: String,
}

/// Applies `changes` to the files they live in (read under `root`) and returns the
/// unified diff, one section per file, paths as on the node.
pub fn diff(root: &Path, changes: &[Change], home: Option<&Home>) -> Result<String, AdoptError> {
    let mut files: BTreeMap<PathBuf, (String, String)> = BTreeMap::new();
    for change in changes {
        let file = target_file(change, home)?;
        if !files.contains_key(&file) {
            let text = read_or_empty(root, &file)?;
            files.insert(file.clone(), (text.clone(), text));
        }
        let (_, edited) = files.get_mut(&file).expect("inserted above");
        *edited = apply(edited, change, home, &file)?;
    }
    let mut out = String::new();
    for (file, (before, after)) in files {
        let shown = file.display().to_string();
        let diff = similar::TextDiff::from_lines(&before, &after);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&shown, &shown)
            .to_string();
        out.push_str(&text);
    }
    Ok(out)
}

fn target_file(change: &Change, home: Option<&Home>) -> Result<PathBuf, AdoptError> {
    match (&change.current.origin, home) {
        (Origin::Flag(flag), _) => Ok(flag.file.clone()),
        (Origin::ConfigKey { file, .. }, _) => Ok(file.clone()),
        (Origin::Default, Some(Home::ConfigFile(file) | Home::K3s(file))) => Ok(file.clone()),
        (Origin::Default, None) => Err(AdoptError::Refused(format!(
            "the kubelet's {} is at its default and it has no config file to set it in: pass --kubelet-config with the file its --config names",
            change.key
        ))),
    }
}

fn read_or_empty(root: &Path, file: &Path) -> Result<String, AdoptError> {
    match crate::config::read_config_file(&super::node_path(root, file)) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(AdoptError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}

fn apply(
    text: &str,
    change: &Change,
    home: Option<&Home>,
    file: &Path,
) -> Result<String, AdoptError> {
    match (&change.current.origin, home) {
        (Origin::Flag(flag), _) => {
            let replacement = match flag.kind {
                FlagFileKind::EnvFile => format!("--{}={}", change.flag, change.value),
                FlagFileKind::K3s => format!("{}={}", change.flag, change.value),
            };
            let at = text.rfind(&flag.written).ok_or_else(|| {
                AdoptError::Refused(format!("{}: changed while adopt read it", file.display()))
            })?;
            let mut edited = text.to_string();
            edited.replace_range(at..at + flag.written.len(), &replacement);
            Ok(edited)
        }
        (Origin::ConfigKey { .. }, _) | (Origin::Default, Some(Home::ConfigFile(_))) => {
            set_yaml_key(text, change.key, &change.value, file)
        }
        (Origin::Default, Some(Home::K3s(_))) => add_k3s_kubelet_arg(text, change, file),
        (Origin::Default, None) => unreachable!("target_file refused it"),
    }
}

/// Sets a top-level key of a YAML KubeletConfiguration, replacing its line or adding
/// one at the end.
/// One change applied to `text` as the file it would live in (a config file when the
/// setting is at its default, k3s's config for k3s-style flags): for the fuzz target.
pub fn edit_text(text: &str, change: &Change, file: &Path) -> Result<String, AdoptError> {
    let home = Home::ConfigFile(file.to_path_buf());
    let edited = apply(text, change, Some(&home), file)?;
    let k3s = Home::K3s(file.to_path_buf());
    match change.current.origin {
        Origin::Default => add_k3s_kubelet_arg(&edited, change, file),
        _ => apply(&edited, change, Some(&k3s), file),
    }
}

fn set_yaml_key(text: &str, key: &str, value: &str, file: &Path) -> Result<String, AdoptError> {
    if text.trim_start().starts_with('{') {
        return Err(AdoptError::Refused(format!(
            "{} is JSON: set {key} to {value:?} in it by hand",
            file.display()
        )));
    }
    let line = format!("{key}: {value}");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let prefix = format!("{key}:");
    match lines.iter().position(|l| l.starts_with(&prefix)) {
        Some(index) => lines[index] = line,
        None => lines.push(line),
    }
    Ok(lines.join("\n") + "\n")
}

/// Adds `flag=value` to k3s's block-style `kubelet-arg:` list (creating it).
fn add_k3s_kubelet_arg(text: &str, change: &Change, file: &Path) -> Result<String, AdoptError> {
    let entry = format!("{}={}", change.flag, change.value);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let Some(start) = lines.iter().position(|l| l.starts_with("kubelet-arg:")) else {
        lines.push("kubelet-arg:".to_string());
        lines.push(format!("  - \"{entry}\""));
        return Ok(lines.join("\n") + "\n");
    };
    if !lines[start]["kubelet-arg:".len()..].trim().is_empty() {
        return Err(AdoptError::Refused(format!(
            "{}: kubelet-arg is not a block list; add \"{entry}\" to it by hand",
            file.display()
        )));
    }
    let items = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim_start().starts_with("- "))
        .count();
    let indent = lines
        .get(start + 1)
        .filter(|l| l.trim_start().starts_with("- "))
        .map_or("  ".to_string(), |l| {
            l[..l.len() - l.trim_start().len()].to_string()
        });
    lines.insert(start + 1 + items, format!("{indent}- \"{entry}\""));
    Ok(lines.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_are_replaced_in_place_or_added() {
        let text = "kind: KubeletConfiguration\n# comment\nimageServiceEndpoint: \"\"\n";
        let edited =
            set_yaml_key(text, "imageServiceEndpoint", "unix:///s", Path::new("f")).unwrap();
        assert_eq!(
            edited,
            "kind: KubeletConfiguration\n# comment\nimageServiceEndpoint: unix:///s\n"
        );
        let added = set_yaml_key("a: 1", "b", "2", Path::new("f")).unwrap();
        assert_eq!(added, "a: 1\nb: 2\n");
        assert!(set_yaml_key("{\"a\":1}", "b", "2", Path::new("f")).is_err());
    }
}
