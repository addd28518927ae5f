//! Ring 3 for credentials: an htpasswd-protected docker-registry, Debian's containerd,
//! and imageshim injecting credentials from a credential-provider plugin script and from
//! config.json files into pulls that carry none. Logs are captured at trace level and
//! searched for the registry password.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{oci, RealEnv, Shim};
use base64::Engine;
use imageshim::cri::{self, paths};
use tonic::Code;

/// Everything imageshim logs in this test binary, at trace level.
pub(crate) fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .init();
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `/metrics` and `/debug/pulls` carry no secret, and the lookups were counted.
pub(crate) async fn assert_no_secret_in_admin(shim: &Shim, env: &RealEnv, source: &str) {
    let (_, metrics) = shim.admin_get("/metrics").await;
    let (_, pulls) = shim.admin_get("/debug/pulls").await;
    for text in [&metrics, &pulls] {
        assert!(
            !text.contains(&env.auth_password),
            "the password reached the admin endpoint"
        );
        assert!(!text.contains("wrong-password"));
    }
    let counted =
        format!("imageshim_credential_lookups_total{{source=\"{source}\",result=\"hit\"}}");
    assert!(metrics.contains(&counted), "{counted} in {metrics}");
}

pub(crate) fn assert_no_secret_logged(env: &RealEnv) {
    let logs = captured_logs();
    let logs = logs.lock().unwrap();
    assert!(
        logs.len() > 1000,
        "trace logging was captured ({} bytes)",
        logs.len()
    );
    let text = String::from_utf8_lossy(&logs);
    assert!(
        text.contains("pull started") && text.contains("TRACE"),
        "imageshim's own trace output is in the capture"
    );
    assert!(
        !text.contains(&env.auth_password),
        "the registry password reached the logs"
    );
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", env.auth_user, env.auth_password));
    assert!(
        !text.contains(&basic),
        "the encoded credential reached the logs"
    );
}

/// Installs the test plugin as `name` in a bin dir, writes a provider config for it, and
/// returns the `[credentials]` table naming both (plus `more` keys).
fn plugin_credentials(dir: &Path, env: &RealEnv, name: &str, args: &[&str], more: &str) -> String {
    let password = &env.auth_password;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plugins/test-credential-plugin");
    std::fs::copy(source, bin.join(name)).unwrap();
    let config = dir.join("credential-providers.yaml");
    let yaml = format!(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: {name}\n    matchImages: [\"{registry}\"]\n    defaultCacheDuration: \"10m\"\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    args: {args:?}\n    env:\n      - {{name: PLUGIN_MATCH, value: \"{registry}\"}}\n      - {{name: PLUGIN_USER, value: \"{user}\"}}\n      - {{name: PLUGIN_PASSWORD, value: \"{password}\"}}\n      - {{name: PLUGIN_COUNT_FILE, value: \"{count}\"}}\n",
        registry = env.auth_registry,
        user = env.auth_user,
        count = dir.join("runs").display(),
    );
    std::fs::write(&config, yaml).unwrap();
    format!(
        "[credentials]\nprovider_config = {:?}\nprovider_bin_dir = {:?}\n{more}",
        config.display().to_string(),
        bin.display().to_string()
    )
}

fn plugin_runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

pub(crate) async fn shim_with(env: &RealEnv, extra: &str) -> Shim {
    captured_logs();
    let backend = env.runtime_backend("");
    Shim::start(&format!("log_level = \"trace\"\n{backend}{extra}")).await
}

/// A real-credentials prologue: the services and this test's turn, a private image
/// pushed as `repo`, and a temp dir.
pub(crate) async fn private_setup(
    test: &str,
    repo: &str,
) -> Option<(RealEnv, crate::support::RealTurn, String, tempfile::TempDir)> {
    let (env, turn) = RealEnv::acquire(test).await?;
    let image = push_private(&env, repo);
    Some((env, turn, image, tempfile::tempdir().unwrap()))
}

/// imageshim reading one docker config file.
pub(crate) async fn shim_with_docker_config(env: &RealEnv, config_json: &Path) -> Shim {
    let extra = format!(
        "[credentials]\ndocker_config = [{:?}]\n",
        config_json.display().to_string()
    );
    shim_with(env, &extra).await
}

pub(crate) fn push_private(env: &RealEnv, repo: &str) -> String {
    oci::build_and_push(
        &env.auth_registry,
        repo,
        &["v1"],
        None,
        Some((&env.auth_user, &env.auth_password)),
    );
    format!("{}/{repo}:v1", env.auth_registry)
}

#[tokio::test]
async fn a_plugin_supplies_credentials_that_direct_containerd_lacks() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let image = push_private(&env, "private/plugin");
    let denied = env.direct().pull(&image).await.unwrap_err();
    // containerd 1.6: "401 Unauthorized"; 2.x: "no basic auth credentials"; CRI-O:
    // "authentication required".
    let message = denied.message().to_lowercase();
    assert!(
        [
            "401 unauthorized",
            "no basic auth credentials",
            "authentication required"
        ]
        .iter()
        .any(|m| message.contains(m)),
        "direct without credentials: {}",
        denied.message()
    );

    let dir = tempfile::tempdir().unwrap();
    let extra = plugin_credentials(dir.path(), &env, "test-plugin", &[], "");
    let shim = shim_with(&env, &extra).await;
    assert!(shim
        .client
        .pull(&image)
        .await
        .map(|id| crate::support::is_image_id(&id))
        .unwrap());
    assert_eq!(plugin_runs(dir.path()), 1);
    let request = std::fs::read_to_string(dir.path().join("runs")).unwrap();
    assert!(
        request.contains("\"kind\": \"CredentialProviderRequest\"")
            || request.contains("\"kind\":\"CredentialProviderRequest\""),
        "{request}"
    );
    assert!(
        request.contains(&format!("{}/private/plugin", env.auth_registry)),
        "{request}"
    );
    assert_no_secret_in_admin(&shim, &env, "plugin").await;
    assert!(shim.admin_get("/metrics").await.1.contains(
        "imageshim_credential_plugin_duration_seconds_count{provider=\"test-plugin\"} 1"
    ));
    assert_no_secret_logged(&env);
}

pub(crate) fn write_docker_config(path: &Path, entries: &[(String, &str, &str)]) {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, user, password)| {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (key.clone(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    std::fs::write(path, serde_json::json!({ "auths": auths }).to_string()).unwrap();
}

#[tokio::test]
async fn config_json_credentials_and_a_wrong_one_before_the_right_one() {
    let Some((env, _turn, image, dir)) = private_setup(module_path!(), "private/dockercfg").await
    else {
        return;
    };
    let config_json = dir.path().join("config.json");
    // The path-specific key sorts first and is wrong; the host key is right.
    write_docker_config(
        &config_json,
        &[
            (
                format!("{}/private", env.auth_registry),
                &env.auth_user,
                "wrong-password",
            ),
            (
                format!("https://{}", env.auth_registry),
                &env.auth_user,
                &env.auth_password,
            ),
        ],
    );
    let shim = shim_with_docker_config(&env, &config_json).await;
    assert!(
        shim.client
            .pull(&image)
            .await
            .map(|id| crate::support::is_image_id(&id))
            .unwrap(),
        "second candidate succeeds"
    );

    // Only the wrong one left: the pull fails with the backend's own error.
    write_docker_config(
        &config_json,
        &[(env.auth_registry.clone(), &env.auth_user, "wrong-password")],
    );
    let err = shim.client.pull(&image).await.unwrap_err();
    assert!(
        crate::support::is_auth_refusal(err.message()),
        "{}",
        err.message()
    );
    assert_no_secret_in_admin(&shim, &env, "docker_config").await;
    assert_no_secret_logged(&env);
}

#[tokio::test]
async fn a_hanging_plugin_times_out_clearly_and_the_shim_stays_healthy() {
    let Some((env, _turn, image, dir)) = private_setup(module_path!(), "private/hang").await else {
        return;
    };
    let extra = plugin_credentials(
        dir.path(),
        &env,
        "hanging-plugin",
        &["hang"],
        "exec_timeout = \"2s\"\n",
    );
    let shim = shim_with(&env, &extra).await;
    let started = Instant::now();
    let err = shim.client.pull(&image).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        err.message().contains(
            "credential provider \"hanging-plugin\": plugin timed out after 2s and was killed"
        ),
        "{}",
        err.message()
    );
    let version: Result<cri::VersionResponse, _> = shim
        .client
        .call(
            "/runtime.v1.RuntimeService/Version",
            cri::VersionRequest::default(),
        )
        .await;
    assert!(version.is_ok(), "the shim stays healthy");
    assert_no_secret_logged(&env);
}

#[tokio::test]
async fn the_plugin_runs_once_for_twenty_concurrent_pulls_under_one_registry() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let images: Vec<String> = (0..20)
        .map(|i| push_private(&env, &format!("private/many-{i}")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let credentials = plugin_credentials(dir.path(), &env, "test-plugin", &[], "");
    let extra = format!("[pull]\nserialize_image_pulls = false\n{credentials}");
    let shim = shim_with(&env, &extra).await;
    let tasks: Vec<_> = images
        .into_iter()
        .map(|image| {
            let client = shim.client.clone();
            tokio::spawn(async move { client.pull(&image).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        plugin_runs(dir.path()),
        1,
        "cacheKeyType Registry: one exec for the registry"
    );
    assert_no_secret_logged(&env);
}

#[tokio::test]
async fn a_request_with_its_own_auth_is_used_alone() {
    let Some((env, _turn, image, dir)) = private_setup(module_path!(), "private/own-auth").await
    else {
        return;
    };
    let extra = plugin_credentials(dir.path(), &env, "test-plugin", &[], "");
    let shim = shim_with(&env, &extra).await;
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        auth: Some(cri::AuthConfig {
            username: env.auth_user.clone(),
            password: "not-the-password".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = shim
        .client
        .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, request)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");
    assert!(
        crate::support::is_auth_refusal(err.message()),
        "{}",
        err.message()
    );
    assert_eq!(
        plugin_runs(dir.path()),
        0,
        "no resolution for a request with its own auth"
    );
}
