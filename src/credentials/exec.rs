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
    #[error("cannot run plugin")]
    Spawn(#[source] std::sync::Arc<std::io::Error>),
    #[error("plugin timed out after {0:?} and was killed")]
    Timeout(Duration),
    /// Its stderr went to imageshim's own log, never into the error.
    #[error("plugin exited with {status}")]
    Exit { status: String },
    #[error("plugin wrote more than {STDOUT_LIMIT} bytes to stdout")]
    StdoutTooLarge,
    #[error("plugin response is not valid: {0}")]
    Invalid(String),
    #[error("plugin response is not valid: cacheDuration is not a Go duration")]
    CacheDuration,
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
    // Errors name the field, never its value: plugin output may carry secrets, and
    // the error reaches the caller (the kubelet puts it in pod events).
    if raw.kind != "CredentialProviderResponse" {
        return Err(PluginError::Invalid(
            "kind is not CredentialProviderResponse".into(),
        ));
    }
    if raw.api_version != api_version {
        return Err(PluginError::Invalid(format!(
            "apiVersion does not match the provider's {api_version:?}"
        )));
    }
    let cache_key_type = cache_key_type(raw.cache_key_type.as_deref())?;
    let cache_duration = match raw.cache_duration.as_deref() {
        Some(text) => Some(parse_go_duration(text).map_err(|_| PluginError::CacheDuration)?),
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

fn cache_key_type(text: Option<&str>) -> Result<CacheKeyType, PluginError> {
    match text {
        Some("Image") => Ok(CacheKeyType::Image),
        Some("Registry") => Ok(CacheKeyType::Registry),
        Some("Global") => Ok(CacheKeyType::Global),
        Some(_) => Err(PluginError::Invalid(
            "cacheKeyType is not Image, Registry or Global".into(),
        )),
        None => Err(PluginError::Invalid("cacheKeyType is required".into())),
    }
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
        .map_err(|e| PluginError::Spawn(e.into()))?;
    let group = ProcessGroup(child.id());
    let request = serde_json::json!({
        "apiVersion": spec.api_version,
        "kind": "CredentialProviderRequest",
        "image": image,
    });
    let talk = talk(&mut child, &group, request.to_string());
    let (out, err, status) = match tokio::time::timeout(timeout, talk).await {
        Ok(done) => done,
        Err(_) => {
            group.kill();
            let _ = child.kill().await;
            return Err(PluginError::Timeout(timeout));
        }
    };
    let status = status.map_err(|e| PluginError::Spawn(e.into()))?;
    if !status.success() {
        // stderr is for the node's operator: imageshim's log, bounded, never the caller.
        tracing::warn!(provider = %spec.name, %status, stderr = %truncate(&String::from_utf8_lossy(&err)), "credential plugin failed");
        return Err(PluginError::Exit {
            status: status.to_string(),
        });
    }
    if out.len() as u64 > STDOUT_LIMIT {
        return Err(PluginError::StdoutTooLarge);
    }
    decode_response(&out, &spec.api_version)
}

/// Writes the request, reads stdout and stderr (capped, drained) and waits for the
/// plugin; when it exits, whatever it left running goes with it (and so do the pipes
/// it held open).
async fn talk(
    child: &mut tokio::process::Child,
    group: &ProcessGroup,
    request: String,
) -> (Vec<u8>, Vec<u8>, std::io::Result<std::process::ExitStatus>) {
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let missing = std::io::Error::other("plugin pipes were not set up");
        return (Vec::new(), Vec::new(), Err(missing));
    };
    // A plugin may exit without reading stdin; that is not an error in itself.
    let _ = stdin.write_all(request.as_bytes()).await;
    drop(stdin);
    let reading = async {
        tokio::join!(
            read_capped(stdout, STDOUT_LIMIT + 1),
            read_capped(stderr, 64 * 1024)
        )
    };
    let waiting = async {
        let status = child.wait().await;
        group.kill();
        status
    };
    let ((out, err), status) = tokio::join!(reading, waiting);
    (out, err, status)
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    pub(in crate::credentials) fn script_plugin(dir: &Path, body: &str) -> PluginSpec {
        let binary = dir.join("plugin");
        std::fs::write(&binary, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        PluginSpec {
            name: "plugin".into(),
            binary,
            match_images: vec!["*.registry.io".into()],
            default_cache_duration: Duration::from_secs(60),
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            args: vec![],
            env: vec![],
        }
    }

    async fn run_script(body: &str, timeout: Duration) -> Result<PluginResponse, PluginError> {
        let dir = tempfile::tempdir().unwrap();
        run_plugin(&script_plugin(dir.path(), body), "a.registry.io/x", timeout).await
    }

    const GOOD: &str = r#"cat >/dev/null; echo '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","auth":{"*.registry.io":{"username":"u","password":"p"}}}'"#;

    #[tokio::test]
    async fn plugin_protocol_edge_cases_give_clear_errors_and_never_hang() {
        let second = Duration::from_secs(1);
        assert!(run_script(GOOD, second).await.is_ok());
        let cases: [(&str, &str); 6] = [
            (
                &GOOD.replace("CredentialProviderResponse", "WrongKind"),
                "kind is not CredentialProviderResponse",
            ),
            (
                &GOOD.replace("kubelet.k8s.io/v1\"", "kubelet.k8s.io/v1beta1\""),
                "does not match the provider's",
            ),
            ("echo '{not json'", "JSON error at line 1"),
            (
                &GOOD.replace("\"cacheKeyType\":\"Registry\",", ""),
                "cacheKeyType is required",
            ),
            ("head -c 2000000 /dev/zero", "more than 1048576 bytes"),
            (
                "echo 'token=s3cr3t-from-stderr' >&2; exit 1",
                "plugin exited with exit status: 1",
            ),
        ];
        for (body, expected) in cases {
            let err = run_script(body, second).await.unwrap_err();
            let err = crate::error_chain(&err);
            assert!(err.contains(expected), "{body}: {err}");
        }
        let started = std::time::Instant::now();
        let err = run_script("sleep 30", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, PluginError::Timeout(_)), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "killed, not waited for"
        );
    }

    /// No value a plugin wrote — stderr, kind, apiVersion, cacheKeyType, cacheDuration —
    /// reaches the error (which reaches the caller); the failure is named by kind.
    #[tokio::test]
    async fn plugin_output_never_reaches_the_error() {
        let second = Duration::from_secs(1);
        let leaks = [
            "echo 'token=s3cr3t' >&2; echo 's3cr3t' ; exit 3".to_string(),
            GOOD.replace("CredentialProviderResponse", "s3cr3t"),
            GOOD.replace("kubelet.k8s.io/v1\"", "s3cr3t\""),
            GOOD.replace("\"Registry\"", "\"s3cr3t\""),
            GOOD.replace(
                "\"cacheKeyType\"",
                "\"cacheDuration\":\"s3cr3t\",\"cacheKeyType\"",
            ),
            "echo '{\"kind\": s3cr3t}'".to_string(),
        ];
        for body in leaks {
            let err = run_script(&body, second).await.unwrap_err();
            let chain = crate::error_chain(&err);
            assert!(!chain.contains("s3cr3t"), "{body}: {chain}");
            assert!(chain.starts_with("plugin "), "{chain}");
        }
    }

    /// True while `pid` is a live (not zombie) process.
    fn running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.split(") ").nth(1).unwrap_or("").starts_with('Z'))
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn forked_helpers_never_outlive_their_plugin_nor_hold_it_open() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let second = Duration::from_secs(2);
        // A helper keeps the plugin's stdout open after the plugin answered and exited.
        let lingering = format!("sleep 30 & echo $! >> {}; {GOOD}", pids.display());
        let started = std::time::Instant::now();
        let answer = run_script(&lingering, second).await;
        assert!(answer.is_ok(), "{answer:?}");
        assert!(started.elapsed() < second, "not held open by the helper");
        // A plugin that hangs with a helper: the timeout ends both.
        let hanging = format!("sleep 30 & echo $! >> {}; sleep 30", pids.display());
        let err = run_script(&hanging, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, PluginError::Timeout(_)), "{err}");
        // A plugin that closes stdout and keeps running.
        let closed = "exec >&-; sleep 30";
        let err = run_script(closed, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, PluginError::Timeout(_)), "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pids = std::fs::read_to_string(&pids).unwrap();
        for pid in pids.lines() {
            assert!(!running(pid), "helper {pid} outlived its plugin");
        }
    }
}
