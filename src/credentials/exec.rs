//! Runs one credential-provider exec plugin: the request on stdin, a strictly checked
//! CredentialProviderResponse on stdout (capped), stderr kept for the error. The plugin
//! runs in its own process group: when it exits, or when the timeout passes, the whole
//! group is killed (a forked helper cannot outlive it or hold its pipes open) and the
//! plugin is reaped. Errors never carry stdout content. The protocol is the kubelet's
//! `pkg/credentialprovider/plugin/plugin.go` (`execPlugin`, strict response decoding).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::duration::parse_go_duration;
use super::keyring::Keyring;
use super::provider_config::PluginSpec;
use super::RegistryCredential;

pub const STDOUT_LIMIT: u64 = 1024 * 1024;
const STDERR_KEPT: usize = 512;

/// How a plugin's answer is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKeyType {
    Image,
    Registry,
    Global,
}

/// A decoded plugin answer.
#[derive(Debug, Clone)]
pub struct PluginResponse {
    pub cache_key_type: CacheKeyType,
    pub cache_duration: Option<Duration>,
    pub keyring: Keyring,
}

/// Why a plugin gave no credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("cannot start plugin: {0}")]
    Spawn(String),
    #[error("plugin timed out after {0:?} and was killed")]
    Timeout(Duration),
    #[error("plugin exited with {status}; stderr: {stderr:?}")]
    Exit { status: String, stderr: String },
    #[error("plugin wrote more than {STDOUT_LIMIT} bytes to stdout")]
    StdoutTooLarge,
    #[error("plugin response is not valid: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    api_version: String,
    cache_key_type: Option<String>,
    cache_duration: Option<String>,
    #[serde(default)]
    auth: BTreeMap<String, RawAuth>,
}

#[derive(Deserialize)]
struct RawAuth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// Decodes stdout against the provider's apiVersion.
pub fn decode_response(stdout: &[u8], api_version: &str) -> Result<PluginResponse, PluginError> {
    let raw: RawResponse = serde_json::from_slice(stdout).map_err(|e| {
        // serde's message could quote a value; say only where and what kind of error.
        PluginError::Invalid(format!(
            "{:?} JSON error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if raw.kind != "CredentialProviderResponse" {
        return Err(PluginError::Invalid(format!(
            "kind {:?} is not CredentialProviderResponse",
            raw.kind
        )));
    }
    if raw.api_version != api_version {
        return Err(PluginError::Invalid(format!(
            "apiVersion {:?} does not match the provider's {api_version:?}",
            raw.api_version
        )));
    }
    let cache_key_type = match raw.cache_key_type.as_deref() {
        Some("Image") => CacheKeyType::Image,
        Some("Registry") => CacheKeyType::Registry,
        Some("Global") => CacheKeyType::Global,
        Some(other) => {
            return Err(PluginError::Invalid(format!(
                "cacheKeyType {other:?} is not Image, Registry or Global"
            )))
        }
        None => return Err(PluginError::Invalid("cacheKeyType is required".into())),
    };
    let cache_duration = match raw.cache_duration.as_deref() {
        Some(text) => Some(
            parse_go_duration(text)
                .map_err(|e| PluginError::Invalid(format!("cacheDuration: {e}")))?,
        ),
        None => None,
    };
    let mut keyring = Keyring::default();
    for (pattern, auth) in raw.auth {
        let credential = RegistryCredential {
            username: auth.username,
            password: auth.password,
            identity_token: String::new(),
        };
        keyring.add(&pattern, credential);
    }
    Ok(PluginResponse {
        cache_key_type,
        cache_duration,
        keyring,
    })
}

/// Runs the plugin for `image` and decodes its answer.
pub async fn run_plugin(
    spec: &PluginSpec,
    image: &str,
    timeout: Duration,
) -> Result<PluginResponse, PluginError> {
    let mut child = Command::new(&spec.binary)
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PluginError::Spawn(e.to_string()))?;
    let group = ProcessGroup(child.id());
    let request = serde_json::json!({
        "apiVersion": spec.api_version,
        "kind": "CredentialProviderRequest",
        "image": image,
    });
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let talk = async {
        // A plugin may exit without reading stdin; that is not an error in itself.
        let _ = stdin.write_all(request.to_string().as_bytes()).await;
        drop(stdin);
        let reading = async {
            tokio::join!(
                read_capped(stdout, STDOUT_LIMIT + 1),
                read_capped(stderr, 64 * 1024)
            )
        };
        let waiting = async {
            let status = child.wait().await;
            // The plugin is done: whatever it left running (and holding its pipes open)
            // goes with it.
            group.kill();
            status
        };
        let ((out, err), status) = tokio::join!(reading, waiting);
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(timeout, talk).await {
        Ok(done) => done,
        Err(_) => {
            group.kill();
            let _ = child.kill().await;
            return Err(PluginError::Timeout(timeout));
        }
    };
    let status = status.map_err(|e| PluginError::Spawn(e.to_string()))?;
    if !status.success() {
        return Err(PluginError::Exit {
            status: status.to_string(),
            stderr: truncate(&String::from_utf8_lossy(&err)),
        });
    }
    if out.len() as u64 > STDOUT_LIMIT {
        return Err(PluginError::StdoutTooLarge);
    }
    decode_response(&out, &spec.api_version)
}

/// The plugin's process group (it leads it: `process_group(0)`), so a timeout or the
/// plugin's exit also ends every process it started.
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn kill(&self) {
        if let Some(pgid) = self.0.and_then(|id| libc::pid_t::try_from(id).ok()) {
            // SAFETY: kill(2) with a negative pid signals that process group only; no
            // memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

async fn read_capped(reader: impl AsyncRead + Unpin, limit: u64) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut limited = reader.take(limit);
    let _ = limited.read_to_end(&mut buffer).await;
    // Keep draining so the plugin never blocks on a full pipe.
    let mut rest = limited.into_inner();
    let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
    buffer
}

fn truncate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(STDERR_KEPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
