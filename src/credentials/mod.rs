//! Registry credentials for pulls that arrive without their own: docker config.json
//! keyrings and the kubelet's credential-provider exec plugins, matched with the
//! kubelet's rules. Owns credential formats; must never log, print or put a secret into
//! an error.

pub mod duration;
pub mod exec;
mod glob;
pub mod keyring;
pub mod matching;
pub mod metrics;
pub mod provider;
pub mod provider_config;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::cri::AuthConfig;
use keyring::FileKeyring;
use provider::Provider;
use provider_config::ProviderSet;

/// One username/password (or identity token) for a registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryCredential {
    pub username: String,
    pub password: String,
    pub identity_token: String,
}

impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegistryCredential(<redacted>)")
    }
}

impl RegistryCredential {
    /// The CRI AuthConfig to inject: no `server_address` (containerd scopes by it).
    pub fn to_auth_config(&self) -> AuthConfig {
        AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            identity_token: self.identity_token.clone(),
            ..Default::default()
        }
    }
}

/// Problems with credential sources. Messages name files and keys, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("docker config {path}: {reason}")]
    DockerConfig { path: PathBuf, reason: String },
    #[error("credential provider config {path}:\n  - {}", problems.join("\n  - "))]
    ProviderConfig {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Where credentials come from, from `[credentials]`.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    pub docker_config: Vec<PathBuf>,
    pub provider_config: Option<PathBuf>,
    pub provider_bin_dir: PathBuf,
    pub exec_timeout: Duration,
}

/// The candidates for one image, and what failed while finding them.
#[derive(Debug, Default)]
pub struct Resolution {
    pub candidates: Vec<RegistryCredential>,
    /// The plugins that failed, each with its error (no secrets).
    pub failures: Vec<ProviderFailure>,
}

/// A credential provider that gave no credentials, and why.
#[derive(Debug, thiserror::Error)]
#[error("credential provider {provider:?}")]
pub struct ProviderFailure {
    pub provider: String,
    #[source]
    pub error: exec::PluginError,
}

impl Resolution {
    /// Tries the candidates in the kubelet's order until an attempt succeeds: one
    /// anonymous attempt (`None`) when there is no candidate; when all fail, the last
    /// attempt's outcome.
    pub async fn try_in_turn<O, Fut>(
        &self,
        mut attempt: impl FnMut(Option<RegistryCredential>) -> Fut,
        succeeded: impl Fn(&O) -> bool,
    ) -> O
    where
        Fut: std::future::Future<Output = O>,
    {
        let Some((last, earlier)) = self.candidates.split_last() else {
            return attempt(None).await;
        };
        for (index, credential) in earlier.iter().enumerate() {
            let outcome = attempt(Some(credential.clone())).await;
            if succeeded(&outcome) {
                return outcome;
            }
            tracing::debug!(
                attempt = index,
                "pull with a resolved credential failed; trying the next"
            );
        }
        attempt(Some(last.clone())).await
    }
}

pub use metrics::CredentialMetrics;
use metrics::{Found, Source};

/// Finds candidate credentials in the kubelet's order.
pub struct Resolver {
    docker: FileKeyring,
    providers: Vec<Provider>,
    metrics: CredentialMetrics,
}

impl Resolver {
    /// Loads the provider config (refusing what the kubelet would refuse).
    pub fn new(sources: &CredentialSources) -> Result<Resolver, CredentialsError> {
        let set = match &sources.provider_config {
            Some(path) => provider_config::load(path, &sources.provider_bin_dir)?,
            None => ProviderSet::default(),
        };
        for name in &set.left_to_kubelet {
            tracing::info!(provider = %name, "service-account token credential provider left to the kubelet (it sends its credentials with each pull)");
        }
        let providers = set
            .plugins
            .into_iter()
            .map(|spec| Provider::new(spec, sources.exec_timeout))
            .collect();
        Ok(Resolver {
            docker: FileKeyring::new(sources.docker_config.clone()),
            providers,
            metrics: CredentialMetrics::default(),
        })
    }

    /// Counts lookups and plugin runs in `metrics` (shared across reloads).
    pub fn with_metrics(mut self, metrics: CredentialMetrics) -> Self {
        for provider in &mut self.providers {
            provider.metrics = metrics.clone();
        }
        self.metrics = metrics;
        self
    }

    /// A pull brought its own credentials (they are used alone, as given).
    pub fn note_request_credentials(&self) {
        self.metrics.lookup(Source::request, Found::hit);
    }

    /// For check-config: every problem with the sources, and when there is none, a
    /// line per credential provider saying who runs it.
    pub fn check(sources: &CredentialSources) -> Result<Vec<String>, Vec<String>> {
        let mut problems: Vec<String> = FileKeyring::check(&sources.docker_config)
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        let mut notes = Vec::new();
        if let Some(path) = &sources.provider_config {
            match provider_config::load(path, &sources.provider_bin_dir) {
                Ok(set) => notes = set.describe(),
                Err(e) => problems.push(e.to_string()),
            }
        }
        match problems.is_empty() {
            true => Ok(notes),
            false => Err(problems),
        }
    }

    /// Candidates for `image` (`host[:port]/path`): config.json matches first, then
    /// plugin results; each distinct credential once.
    pub async fn resolve(&self, image: &str) -> Resolution {
        let mut resolution = Resolution::default();
        let mut found = self.docker.lookup(image);
        let docker_found = if found.is_empty() {
            Found::miss
        } else {
            Found::hit
        };
        self.metrics.lookup(Source::docker_config, docker_found);
        for provider in &self.providers {
            if !provider.matches(image) {
                continue;
            }
            match provider.provide(image).await {
                Ok(credentials) => {
                    let result = if credentials.is_empty() {
                        Found::miss
                    } else {
                        Found::hit
                    };
                    self.metrics.lookup(Source::plugin, result);
                    found.extend(credentials)
                }
                Err(err) => {
                    self.metrics.lookup(Source::plugin, Found::error);
                    tracing::warn!(provider = %provider.spec.name, error = %err, "credential provider failed");
                    resolution.failures.push(ProviderFailure {
                        provider: provider.spec.name.clone(),
                        error: err,
                    });
                }
            }
        }
        for credential in found {
            if !resolution.candidates.contains(&credential) {
                resolution.candidates.push(credential);
            }
        }
        resolution
    }
}

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// The kubelet's glob match of a credential key label against an image's.
    pub fn glob_match(pattern: &str, name: &str) -> bool {
        super::glob::go_match(pattern, name)
    }

    /// A CredentialProviderConfig file's text, parsed and validated as `load` does it
    /// (with a bin dir that holds no plugin); the providers' descriptions on success.
    pub fn provider_config(text: &str) -> Result<Vec<String>, Vec<String>> {
        let bin_dir = std::path::Path::new("/nonexistent-imageshim-fuzz-bin");
        super::provider_config::parse_and_validate(text, bin_dir).map(|set| set.describe())
    }
}

#[cfg(test)]
mod tests;
