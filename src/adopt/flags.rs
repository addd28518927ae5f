//! The kubelet's command-line flags as a node's files hold them: systemd environment
//! files (`KUBELET_KUBEADM_ARGS` in kubeadm's `/var/lib/kubelet/kubeadm-flags.env`,
//! `KUBELET_EXTRA_ARGS` in `/etc/default/kubelet` or `/etc/sysconfig/kubelet`) and k3s's
//! `kubelet-arg` list. Reads only the flags adopt needs, remembering where each was
//! written so a change can be shown as an edit of that file. Never writes anything.

use std::path::{Path, PathBuf};

use super::AdoptError;

/// The kubelet flags adopt reads (pflag names, without `--`).
pub const KNOWN_FLAGS: [&str; 8] = [
    "config",
    "config-dir",
    "root-dir",
    "container-runtime-endpoint",
    "image-service-endpoint",
    "image-credential-provider-config",
    "image-credential-provider-bin-dir",
    "serialize-image-pulls",
];

/// How the file holding a flag is laid out, for editing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagFileKind {
    /// A systemd environment file: `VAR="--a=b --c d"`.
    EnvFile,
    /// k3s's config.yaml: `kubelet-arg:` followed by `- "a=b"` items.
    K3s,
}

/// One flag as written: its value, the file, and the exact text that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: String,
    pub file: PathBuf,
    pub kind: FlagFileKind,
    /// The text in the file that carries the value (`--name=value`, `--name value`,
    /// or k3s's `name=value`): an edit replaces exactly this.
    pub written: String,
}

/// The flags of one systemd environment file, in the order systemd expands them
/// (variables in file order, each split on whitespace as `$VAR` in ExecStart is).
pub fn read_env_file(root: &Path, file: &Path) -> Result<Vec<Flag>, AdoptError> {
    let text = super::read_node_file(root, file)?;
    Ok(parse_env_file(&text, file))
}

/// [`read_env_file`] on text already read.
pub fn parse_env_file(text: &str, file: &Path) -> Vec<Flag> {
    let mut flags = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || !line.contains('=') {
            continue;
        }
        let (_, value) = line.split_once('=').unwrap_or_default();
        let value = unquote(value.trim());
        let words: Vec<&str> = value.split_whitespace().collect();
        flags.extend(flags_from_words(&words, file, FlagFileKind::EnvFile));
    }
    flags
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// pflag's forms: `--name=value`, and `--name value` for flags that take a value
/// (every flag adopt reads but `--serialize-image-pulls`, a boolean).
fn flags_from_words(words: &[&str], file: &Path, kind: FlagFileKind) -> Vec<Flag> {
    let mut flags = Vec::new();
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        index += 1;
        let Some(body) = word.strip_prefix("--").or_else(|| word.strip_prefix('-')) else {
            continue;
        };
        let (name, value, written) = match body.split_once('=') {
            Some((name, value)) => (name, value.to_string(), word.to_string()),
            None if body == "serialize-image-pulls" => (body, "true".into(), word.to_string()),
            None if KNOWN_FLAGS.contains(&body) && index < words.len() => {
                index += 1;
                let value = words[index - 1];
                (body, value.to_string(), format!("{word} {value}"))
            }
            None => continue,
        };
        if KNOWN_FLAGS.contains(&name) {
            flags.push(Flag {
                name: name.to_string(),
                value,
                file: file.to_path_buf(),
                kind,
                written,
            });
        }
    }
    flags
}

#[derive(serde::Deserialize)]
struct K3sConfig {
    #[serde(default, rename = "kubelet-arg")]
    kubelet_arg: KubeletArgs,
    #[serde(default, rename = "container-runtime-endpoint")]
    container_runtime_endpoint: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(untagged)]
enum KubeletArgs {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

/// k3s's `/etc/rancher/k3s/config.yaml`: its `kubelet-arg` entries (`name=value`, passed
/// after k3s's own flags, so they win) and its `container-runtime-endpoint` (an
/// external runtime instead of the embedded containerd).
pub fn read_k3s_config(
    root: &Path,
    file: &Path,
) -> Result<(Vec<Flag>, Option<String>), AdoptError> {
    let text = super::read_node_file(root, file)?;
    parse_k3s_config(&text, file)
}

/// [`read_k3s_config`] on text already read.
pub fn parse_k3s_config(
    text: &str,
    file: &Path,
) -> Result<(Vec<Flag>, Option<String>), AdoptError> {
    let parsed: K3sConfig = serde_yaml::from_str(text).map_err(|e| AdoptError::Parse {
        file: file.to_path_buf(),
        problem: e.to_string(),
    })?;
    let args = match parsed.kubelet_arg {
        KubeletArgs::None => Vec::new(),
        KubeletArgs::One(arg) => vec![arg],
        KubeletArgs::Many(args) => args,
    };
    let mut flags = Vec::new();
    for arg in args {
        let Some((name, value)) = arg.trim_start_matches('-').split_once('=') else {
            continue;
        };
        if KNOWN_FLAGS.contains(&name) {
            flags.push(Flag {
                name: name.to_string(),
                value: value.to_string(),
                file: file.to_path_buf(),
                kind: FlagFileKind::K3s,
                written: arg.clone(),
            });
        }
    }
    Ok((flags, parsed.container_runtime_endpoint))
}

/// The value pflag ends with: the last occurrence wins.
pub fn last<'a>(flags: &'a [Flag], name: &str) -> Option<&'a Flag> {
    flags.iter().rev().find(|flag| flag.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_pflag_forms_quotes_and_the_last_occurrence() {
        let words = [
            "--container-runtime-endpoint=unix:///a.sock",
            "--node-ip",
            "10.0.0.1",
            "--image-credential-provider-config",
            "/etc/p.yaml",
            "--serialize-image-pulls",
            "--container-runtime-endpoint=unix:///b.sock",
        ];
        let flags = flags_from_words(&words, Path::new("f"), FlagFileKind::EnvFile);
        let endpoint = last(&flags, "container-runtime-endpoint").unwrap();
        assert_eq!(endpoint.value, "unix:///b.sock");
        let provider = last(&flags, "image-credential-provider-config").unwrap();
        assert_eq!(
            provider.written,
            "--image-credential-provider-config /etc/p.yaml"
        );
        assert_eq!(last(&flags, "serialize-image-pulls").unwrap().value, "true");
        assert_eq!(unquote("\"--a=b\""), "--a=b");
    }
}
