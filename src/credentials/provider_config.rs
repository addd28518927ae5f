//! The kubelet's CredentialProviderConfig file (`--image-credential-provider-config`,
//! YAML or JSON; kubelet.config.k8s.io v1, v1beta1, v1alpha1) and its validation,
//! including the binaries in the bin dir. Rules ported from the kubelet's
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

/// Reads and validates the provider config, reporting every problem at once.
pub fn load(path: &Path, bin_dir: &Path) -> Result<Vec<PluginSpec>, CredentialsError> {
    let fail = |problems: Vec<String>| CredentialsError::ProviderConfig {
        path: path.to_path_buf(),
        problems,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(vec![e.to_string()]))?;
    let file: ConfigFile = serde_yaml::from_str(&text).map_err(|e| fail(vec![e.to_string()]))?;
    let mut problems = Vec::new();
    if !CONFIG_VERSIONS.contains(&file.api_version.as_str()) {
        problems.push(format!(
            "apiVersion: {:?} must be one of {}",
            file.api_version,
            CONFIG_VERSIONS.join(", ")
        ));
    }
    if file.kind != "CredentialProviderConfig" {
        problems.push(format!(
            "kind: {:?} must be CredentialProviderConfig",
            file.kind
        ));
    }
    let mut plugins = Vec::new();
    for (index, entry) in file.providers.into_iter().enumerate() {
        let at = format!("providers[{index}] ({:?})", entry.name);
        if plugins.iter().any(|p: &PluginSpec| p.name == entry.name) {
            problems.push(format!("{at}.name: duplicate provider name"));
        }
        if let Some(plugin) = validate_entry(entry, bin_dir, &at, &mut problems) {
            plugins.push(plugin);
        }
    }
    if problems.is_empty() {
        Ok(plugins)
    } else {
        Err(fail(problems))
    }
}

fn validate_entry(
    entry: ProviderEntry,
    bin_dir: &Path,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<PluginSpec> {
    let before = problems.len();
    if entry.token_attributes.is_some() {
        problems.push(format!(
            "{at}.tokenAttributes: service-account token providers (KEP-4412) need the Kubernetes API server to mint pod tokens, which imageshim does not have; leave this provider to the kubelet"
        ));
    }
    if entry.name.is_empty() || entry.name.contains('/') || entry.name == "." || entry.name == ".."
    {
        problems.push(format!(
            "{at}.name: must be a plain file name in the bin dir"
        ));
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
    (problems.len() == before).then(|| PluginSpec {
        name: entry.name,
        binary,
        match_images: entry.match_images,
        default_cache_duration,
        api_version: entry.api_version,
        args: entry.args,
        env: entry.env.into_iter().map(|e| (e.name, e.value)).collect(),
    })
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
