//! The kubelet's CredentialProviderConfig (`--image-credential-provider-config`, a file
//! or a directory of them; YAML or JSON; kubelet.config.k8s.io v1, v1beta1, v1alpha1)
//! and its validation, including the binaries in the bin dir. Reads and validates only:
//! running the plugins is `exec`'s. Rules ported from the kubelet's
//! `pkg/credentialprovider/plugin/config.go` (`validateCredentialProviderConfig`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration::parse_go_duration;
use super::CredentialsError;

const CONFIG_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
/// The exec protocol versions a provider may speak.
pub const PROVIDER_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProviderEntry {
    #[serde(default)]
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    token_attributes: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvVar {
    name: String,
    value: String,
}

/// One validated exec plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub name: String,
    pub binary: PathBuf,
    pub match_images: Vec<String>,
    pub default_cache_duration: Duration,
    pub api_version: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The providers of a config: those imageshim runs, and the service-account token
/// providers (KEP-4412) it leaves to the kubelet.
#[derive(Debug, Clone, Default)]
pub struct ProviderSet {
    pub plugins: Vec<PluginSpec>,
    /// Names of providers with `tokenAttributes`: they need pod service-account tokens
    /// from the API server, which only the kubelet has. The kubelet keeps running them
    /// and sends their credentials in PullImage's `auth`, which imageshim uses alone.
    pub left_to_kubelet: Vec<String>,
}

impl ProviderSet {
    /// One line per provider: who runs it (for check-config and adopt).
    pub fn describe(&self) -> Vec<String> {
        let run = self.plugins.iter().map(|p| {
            format!(
                "credential provider {}: imageshim runs it for pulls that bring no credentials",
                p.name
            )
        });
        let left = self.left_to_kubelet.iter().map(|name| {
            format!("credential provider {name}: needs service-account tokens (KEP-4412), stays with the kubelet, which sends its credentials with each pull")
        });
        run.chain(left).collect()
    }
}

/// Reads and validates the provider config, a file or a directory (as kubelet 1.36
/// reads `--image-credential-provider-config`: every `*.json`, `*.yaml`, `*.yml` in it,
/// in lexical order, each a whole CredentialProviderConfig, provider names unique
/// across them), reporting every problem at once.
pub fn load(path: &Path, bin_dir: &Path) -> Result<ProviderSet, CredentialsError> {
    let fail = |problems: Vec<String>| CredentialsError::ProviderConfig {
        path: path.to_path_buf(),
        problems,
    };
    let files = config_files(path).map_err(|problem| fail(vec![problem]))?;
    let in_dir = files.len() != 1 || files[0] != path;
    let mut problems = Vec::new();
    let mut set = ProviderSet::default();
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    for file in &files {
        let shown = file.file_name().map(Path::new).unwrap_or(file);
        let prefix = if in_dir {
            format!("{}: ", shown.display())
        } else {
            String::new()
        };
        let entries = match parse_file(file) {
            Ok(entries) => entries,
            Err(problem) => {
                problems.push(format!("{prefix}{problem}"));
                continue;
            }
        };
        for (index, entry) in entries.into_iter().enumerate() {
            let at = format!("{prefix}providers[{index}] ({:?})", entry.name);
            if let Some((_, first)) = seen.iter().find(|(name, _)| *name == entry.name) {
                let first = first.file_name().map(Path::new).unwrap_or(first);
                problems.push(format!(
                    "{at}.name: duplicate provider name, first defined in {}",
                    first.display()
                ));
            }
            seen.push((entry.name.clone(), file.clone()));
            validate_entry(entry, bin_dir, &at, &mut problems, &mut set);
        }
    }
    if seen.is_empty() && problems.is_empty() {
        problems.push("providers: at least one provider is required".to_string());
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(fail(problems))
    }
}

/// The files a config path stands for: itself, or a directory's `*.json`, `*.yaml`,
/// `*.yml` entries that are not directories, sorted by name.
fn config_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        let extension = Path::new(&name).extension().and_then(|e| e.to_str());
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir && matches!(extension, Some("json" | "yaml" | "yml")) {
            files.push(entry.path());
        }
    }
    files.sort();
    if files.is_empty() {
        return Err("no *.json, *.yaml or *.yml configuration files in the directory".into());
    }
    Ok(files)
}

/// One file's providers, after its `apiVersion` and `kind` are checked.
fn parse_file(file: &Path) -> Result<Vec<ProviderEntry>, String> {
    let text = crate::config::read_config_file(file).map_err(|e| e.to_string())?;
    parse_text(&text)
}

fn parse_text(text: &str) -> Result<Vec<ProviderEntry>, String> {
    let parsed: ConfigFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if !CONFIG_VERSIONS.contains(&parsed.api_version.as_str()) {
        problems.push(format!(
            "apiVersion: must be one of {}",
            CONFIG_VERSIONS.join(", ")
        ));
    }
    if parsed.kind != "CredentialProviderConfig" {
        problems.push("kind: must be CredentialProviderConfig".to_string());
    }
    match problems.is_empty() {
        true => Ok(parsed.providers),
        false => Err(problems.join("; ")),
    }
}

fn validate_entry(
    entry: ProviderEntry,
    bin_dir: &Path,
    at: &str,
    problems: &mut Vec<String>,
    set: &mut ProviderSet,
) {
    let before = problems.len();
    let bad_name = entry.name.is_empty()
        || entry.name.contains(['/', ' '])
        || entry.name == "."
        || entry.name == "..";
    if bad_name {
        problems.push(format!(
            "{at}.name: must be a plain file name in the bin dir (no '/', no spaces)"
        ));
    }
    if entry.token_attributes.is_some() {
        // Needs pod service-account tokens from the API server: the kubelet runs it.
        if problems.len() == before {
            set.left_to_kubelet.push(entry.name);
        }
        return;
    }
    if entry.match_images.is_empty() {
        problems.push(format!(
            "{at}.matchImages: at least one pattern is required"
        ));
    }
    if !PROVIDER_VERSIONS.contains(&entry.api_version.as_str()) {
        problems.push(format!(
            "{at}.apiVersion: {:?} must be one of {}",
            entry.api_version,
            PROVIDER_VERSIONS.join(", ")
        ));
    }
    let default_cache_duration =
        default_cache_duration(entry.default_cache_duration.as_deref(), at, problems);
    let binary = bin_dir.join(&entry.name);
    if !entry.name.is_empty() {
        check_executable(&binary, at, problems);
    }
    if problems.len() == before {
        set.plugins.push(PluginSpec {
            name: entry.name,
            binary,
            match_images: entry.match_images,
            default_cache_duration,
            api_version: entry.api_version,
            args: entry.args,
            env: entry.env.into_iter().map(|e| (e.name, e.value)).collect(),
        });
    }
}

fn default_cache_duration(text: Option<&str>, at: &str, problems: &mut Vec<String>) -> Duration {
    match text.map(parse_go_duration) {
        Some(Ok(duration)) => duration,
        Some(Err(e)) => {
            problems.push(format!("{at}.defaultCacheDuration: {e}"));
            Duration::ZERO
        }
        None => {
            problems.push(format!("{at}.defaultCacheDuration: is required"));
            Duration::ZERO
        }
    }
}

fn check_executable(binary: &Path, at: &str, problems: &mut Vec<String>) {
    match std::fs::metadata(binary) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => problems.push(format!(
            "{at}: plugin binary {} is not an executable file",
            binary.display()
        )),
        Err(e) => problems.push(format!("{at}: plugin binary {}: {e}", binary.display())),
    }
}

/// One config file's text through parsing and validation (no plugin binary exists
/// under `bin_dir`): the fuzz target's entry; problems or a set, never a panic.
pub(super) fn parse_and_validate(text: &str, bin_dir: &Path) -> Result<ProviderSet, Vec<String>> {
    let entries = parse_text(text).map_err(|problem| vec![problem])?;
    let mut problems = Vec::new();
    let mut set = ProviderSet::default();
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("providers[{index}] ({:?})", entry.name);
        validate_entry(entry, bin_dir, &at, &mut problems, &mut set);
    }
    match problems.is_empty() {
        true => Ok(set),
        false => Err(problems),
    }
}
