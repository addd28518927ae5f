//! The configuration file. Parse, don't validate: `Config::parse` and `Config::load`
//! return only a checked config (every problem reported at once, each naming its key)
//! whose fields carry their meaning (`Option` for "unset", a level type, a non-zero cap).
//! Credential files are read once, when the resolver is built at start (and by
//! `check-config` through `check_credential_files`). Must not touch the network.

use serde::{Deserialize, Deserializer};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The documented config.toml: every key at its default. The Debian package installs it
/// as `/etc/imageshim/config.toml`; `adopt` replaces it without keeping a backup.
pub const DOCUMENTED_DEFAULTS: &str = include_str!("../../config.toml");

/// The most a local config file imageshim reads may hold (its own config, config.json,
/// provider configs, runtime configs, the kubelet's files): real ones are a few KiB.
pub const CONFIG_FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// `std::fs::read_to_string`, refusing a file past [`CONFIG_FILE_LIMIT`] (what it costs
/// in memory is bounded here, not by whoever wrote the file).
pub fn read_config_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(CONFIG_FILE_LIMIT + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > CONFIG_FILE_LIMIT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", CONFIG_FILE_LIMIT / (1024 * 1024)),
        ));
    }
    Ok(text)
}

use crate::backend::endpoint::unix_socket_path;
use crate::backend::handler::validate_handler;
use crate::credentials::{CredentialSources, Resolver};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Group (name or numeric gid) that owns the socket; unset (`""`) keeps the
    /// process's group.
    #[serde(default, deserialize_with = "empty_is_none")]
    pub socket_group: Option<String>,
    #[serde(default = "default_grace", deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    #[serde(default)]
    pub log_level: LogLevel,
    #[serde(default)]
    pub log_format: LogFormat,
    #[serde(default, rename = "backend")]
    pub backends: Vec<BackendConfig>,
    #[serde(default)]
    pub pull: PullConfig,
    #[serde(default)]
    pub credentials: CredentialsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    /// Images kept on the node: pulled at start and whenever removed.
    #[serde(default, rename = "pinned")]
    pub pinned: Vec<PinnedImage>,
}

/// `[admin]`: the loopback HTTP endpoint for metrics, health and pull status.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `host:port`; `""` turns the endpoint off.
    #[serde(deserialize_with = "empty_is_none")]
    pub listen: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(DEFAULT_ADMIN_LISTEN.to_string()),
        }
    }
}

/// Where the admin endpoint listens unless configured otherwise.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9595";

/// One `[[pinned]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedImage {
    pub image: String,
    #[serde(default)]
    pub handler: String,
}

/// `[credentials]`: where registry credentials for pulls without their own come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsConfig {
    /// config.json / .dockercfg files, re-read when they change.
    pub docker_config: Vec<PathBuf>,
    /// The kubelet's CredentialProviderConfig file (YAML or JSON); `""` = none.
    #[serde(deserialize_with = "empty_path_is_none")]
    pub provider_config: Option<PathBuf>,
    /// Where the provider config's plugin binaries live.
    #[serde(deserialize_with = "empty_path_is_none")]
    pub provider_bin_dir: Option<PathBuf>,
    #[serde(deserialize_with = "duration")]
    pub exec_timeout: Duration,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            docker_config: Vec::new(),
            provider_config: None,
            provider_bin_dir: None,
            exec_timeout: Duration::from_secs(60),
        }
    }
}

impl CredentialsConfig {
    pub fn sources(&self) -> CredentialSources {
        CredentialSources {
            docker_config: self.docker_config.clone(),
            provider_config: self.provider_config.clone(),
            provider_bin_dir: self.provider_bin_dir.clone().unwrap_or_default(),
            exec_timeout: self.exec_timeout,
        }
    }
}

/// `log_level`: how much imageshim logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub kind: BackendKind,
    pub endpoint: String,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub handlers: Vec<String>,
    /// The runtime's own config to discover handlers from; `""` = no discovery.
    #[serde(default, deserialize_with = "empty_path_is_none")]
    pub runtime_config: Option<PathBuf>,
}

/// `[pull]`: the kubelet's pull cap and imageshim's merge options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullConfig {
    pub serialize_image_pulls: bool,
    /// `0` in the file: unlimited (when not serialized).
    #[serde(deserialize_with = "zero_is_none")]
    pub max_parallel_image_pulls: Option<NonZeroUsize>,
    pub cancel_abandoned: bool,
    pub failure_backoff: bool,
    /// A running pull whose bytes have not moved for this long is aborted; `None`
    /// (`"0s"` in the file) turns the check off.
    #[serde(deserialize_with = "go_duration_zero_is_none")]
    pub progress_timeout: Option<Duration>,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            serialize_image_pulls: true,
            max_parallel_image_pulls: None,
            cancel_abandoned: true,
            failure_backoff: false,
            progress_timeout: Some(Duration::from_secs(300)),
        }
    }
}

impl PullConfig {
    /// Pull permits: 1 when serialized, the maximum when set, else unlimited (`None`).
    pub fn permits(&self) -> Option<usize> {
        if self.serialize_image_pulls {
            Some(1)
        } else {
            self.max_parallel_image_pulls.map(NonZeroUsize::get)
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/imageshim/imageshim.sock")
}
fn default_grace() -> Duration {
    Duration::from_secs(30)
}

/// `""` in the file means unset.
fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.is_empty()).then_some(text))
}

fn empty_path_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(empty_is_none(d)?.map(PathBuf::from))
}

/// `0` in the file means unset (the kubelet's "unlimited").
fn zero_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NonZeroUsize>, D::Error> {
    Ok(NonZeroUsize::new(usize::deserialize(d)?))
}

/// A Go duration (`"5m"`, `"1m30s"`); `"0s"` means unset.
fn go_duration_zero_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let duration = crate::credentials::duration::parse_go_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))?;
    Ok((!duration.is_zero()).then_some(duration))
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
        source: Box<ConfigError>,
    },
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("invalid config:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config_file(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Parses and checks TOML text: a `Config` exists only when it is valid.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Reads the credential files the config names (config.json, the provider config
    /// and its binaries), reporting every problem: `check-config` does this up front;
    /// `serve` reads them once, when it builds the resolver. On success, a line per
    /// credential provider saying who runs it.
    pub fn check_credential_files(&self) -> Result<Vec<String>, ConfigError> {
        Resolver::check(&self.credentials.sources()).map_err(|problems| {
            ConfigError::Invalid(
                problems
                    .into_iter()
                    .map(|problem| format!("credentials: {problem}"))
                    .collect(),
            )
        })
    }

    /// Every problem at once, each naming its key.
    fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !self.socket.is_absolute() {
            problems.push(format!(
                "socket: {:?} must be an absolute path",
                self.socket
            ));
        }
        validate_backends(&self.backends, &mut problems);
        validate_pull(&self.pull, &mut problems);
        validate_credentials(&self.credentials, &mut problems);
        validate_admin(&self.admin, &mut problems);
        validate_pinned(&self.pinned, &mut problems);
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
        if let Some(path) = b.runtime_config.as_ref().filter(|p| !p.exists()) {
            problems.push(format!("{at}.runtime_config: {path:?} does not exist"));
        }
    }
}

fn validate_pull(pull: &PullConfig, problems: &mut Vec<String>) {
    let parallel = pull.max_parallel_image_pulls.map_or(0, NonZeroUsize::get);
    if pull.serialize_image_pulls && parallel >= 2 {
        problems.push(format!(
            "pull.max_parallel_image_pulls: invalid configuration: max_parallel_image_pulls ({parallel}) must be 1 or unset when serialize_image_pulls is true"
        ));
    }
}

fn validate_credentials(credentials: &CredentialsConfig, problems: &mut Vec<String>) {
    if credentials.provider_config.is_some() && credentials.provider_bin_dir.is_none() {
        problems.push("credentials.provider_bin_dir: required when provider_config is set".into());
    }
    if credentials.exec_timeout.is_zero() {
        problems.push("credentials.exec_timeout: must be more than 0".into());
    }
}

fn validate_admin(admin: &AdminConfig, problems: &mut Vec<String>) {
    let Some(listen) = &admin.listen else { return };
    if listen.parse::<std::net::SocketAddr>().is_err() {
        problems.push(format!(
            "admin.listen: {listen:?} is not an address:port (e.g. \"{DEFAULT_ADMIN_LISTEN}\"); \"\" turns it off"
        ));
    }
}

fn validate_pinned(pinned: &[PinnedImage], problems: &mut Vec<String>) {
    for (i, pin) in pinned.iter().enumerate() {
        if let Err(e) = crate::reference::Reference::parse(&pin.image) {
            problems.push(format!("pinned[{i}].image: {e}"));
        }
        if !pin.handler.is_empty() {
            if let Err(e) = validate_handler(&pin.handler) {
                problems.push(format!("pinned[{i}].handler: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests;
