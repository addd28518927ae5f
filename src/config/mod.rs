//! The configuration file: serde structs (unknown keys refused), defaults, and
//! `validate()`, which reports every problem at once naming the key. Must not touch the
//! network; it may look at files the config names.

use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::endpoint::unix_socket_path;
use crate::backend::handler::validate_handler;
use crate::credentials::{CredentialSources, Resolver};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Group (name or numeric gid) that owns the socket; empty keeps the process's group.
    #[serde(default)]
    pub socket_group: String,
    #[serde(default = "default_grace", deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    #[serde(default = "default_log_level")]
    pub log_level: String,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    #[serde(default)]
    pub pull: PullConfig,
    #[serde(default)]
    pub credentials: CredentialsConfig,
}

/// `[credentials]`: where registry credentials for pulls without their own come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// config.json / .dockercfg files, re-read when they change.
    pub docker_config: Vec<PathBuf>,
    /// The kubelet's CredentialProviderConfig file (YAML or JSON); empty = none.
    pub provider_config: String,
    /// Where the provider config's plugin binaries live.
    pub provider_bin_dir: String,
    #[serde(deserialize_with = "duration")]
    pub exec_timeout: Duration,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            docker_config: Vec::new(),
            provider_config: String::new(),
            provider_bin_dir: String::new(),
            exec_timeout: Duration::from_secs(60),
        }
    }
}

impl CredentialsConfig {
    pub fn sources(&self) -> CredentialSources {
        CredentialSources {
            docker_config: self.docker_config.clone(),
            provider_config: (!self.provider_config.is_empty())
                .then(|| PathBuf::from(&self.provider_config)),
            provider_bin_dir: PathBuf::from(&self.provider_bin_dir),
            exec_timeout: self.exec_timeout,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BackendKind {
    #[serde(rename = "containerd")]
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
}

/// One `[[backend]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub kind: BackendKind,
    pub endpoint: String,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub handlers: Vec<String>,
    #[serde(default)]
    pub runtime_config: String,
}

/// `[pull]`: the kubelet's pull cap and imageshim's merge options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullConfig {
    pub serialize_image_pulls: bool,
    pub max_parallel_image_pulls: u32,
    pub cancel_abandoned: bool,
    pub failure_backoff: bool,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            serialize_image_pulls: true,
            max_parallel_image_pulls: 0,
            cancel_abandoned: true,
            failure_backoff: false,
        }
    }
}

impl PullConfig {
    /// Pull permits: 1 when serialized, the maximum when set, else unlimited (`None`).
    pub fn permits(&self) -> Option<usize> {
        if self.serialize_image_pulls {
            Some(1)
        } else if self.max_parallel_image_pulls > 0 {
            Some(self.max_parallel_image_pulls as usize)
        } else {
            None
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/imageshim/imageshim.sock")
}
fn default_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_log_level() -> String {
    "info".into()
}

/// Deserializes a duration written as "30s", "1m", "1h30m".
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

/// Everything wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse config {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid config:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without validating it.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reports every problem at once, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !self.socket.is_absolute() {
            problems.push(format!(
                "socket: {:?} must be an absolute path",
                self.socket
            ));
        }
        if !matches!(
            self.log_level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            problems.push(format!(
                "log_level: {:?} must be one of trace, debug, info, warn, error",
                self.log_level
            ));
        }
        validate_backends(&self.backends, &mut problems);
        validate_pull(&self.pull, &mut problems);
        validate_credentials(&self.credentials, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

fn validate_backends(backends: &[BackendConfig], problems: &mut Vec<String>) {
    if backends.is_empty() {
        problems.push("backend: at least one [[backend]] is required".into());
    }
    let defaults = backends.iter().filter(|b| b.default).count();
    if !backends.is_empty() && defaults != 1 {
        problems.push(format!(
            "backend.default: exactly one backend must be the default, found {defaults}"
        ));
    }
    let mut seen_names = std::collections::HashSet::new();
    let mut seen_handlers = std::collections::HashMap::new();
    for (i, b) in backends.iter().enumerate() {
        let at = format!("backend[{i}]");
        if b.name.is_empty() {
            problems.push(format!("{at}.name: must not be empty"));
        } else if !seen_names.insert(b.name.as_str()) {
            problems.push(format!("{at}.name: {:?} is used by two backends", b.name));
        }
        if let Err(e) = unix_socket_path(&b.endpoint) {
            problems.push(format!("{at}.endpoint: {e}"));
        }
        for h in &b.handlers {
            if let Err(e) = validate_handler(h) {
                problems.push(format!("{at}.handlers: {e}"));
            } else if let Some(other) = seen_handlers.insert(h.as_str(), b.name.as_str()) {
                problems.push(format!(
                    "{at}.handlers: {h:?} is also served by backend {other:?}"
                ));
            }
        }
        if !b.runtime_config.is_empty() && !Path::new(&b.runtime_config).exists() {
            problems.push(format!(
                "{at}.runtime_config: {:?} does not exist",
                b.runtime_config
            ));
        }
    }
}

fn validate_pull(pull: &PullConfig, problems: &mut Vec<String>) {
    if pull.serialize_image_pulls && pull.max_parallel_image_pulls >= 2 {
        problems.push(format!(
            "pull.max_parallel_image_pulls: invalid configuration: max_parallel_image_pulls ({}) must be 1 or unset when serialize_image_pulls is true",
            pull.max_parallel_image_pulls
        ));
    }
}

fn validate_credentials(credentials: &CredentialsConfig, problems: &mut Vec<String>) {
    if !credentials.provider_config.is_empty() && credentials.provider_bin_dir.is_empty() {
        problems.push("credentials.provider_bin_dir: required when provider_config is set".into());
    }
    if credentials.exec_timeout.is_zero() {
        problems.push("credentials.exec_timeout: must be more than 0".into());
    }
    for problem in Resolver::check(&credentials.sources()) {
        problems.push(format!("credentials: {problem}"));
    }
}

#[cfg(test)]
mod tests;
