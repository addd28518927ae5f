//! Ring 3 credential faults (issue 8): plugins that hang, crash, print garbage or
//! 100 MiB, answer a wrong kind, apiVersion or an overflowing duration, or fork; and a
//! config.json that turns half-written under a running imageshim. Each fails clearly,
//! the pull goes on, nothing is left behind, nothing of the plugins' output is logged.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::real_credentials::{
    assert_no_secret_logged, captured_logs, private_setup, shim_with, shim_with_docker_config,
    write_docker_config,
};
use crate::support::RealEnv;

const MARKER: &str = "PLUGIN-OUTPUT-7f3a";
/// What a failing plugin writes to stderr: imageshim's log may have it, callers never.
const STDERR_MARKER: &str = "token=PLUGIN-STDERR-5e1b";

/// Credential plugins that fail in every way the issue lists, by name.
fn faulty_plugins(pidfile: &Path) -> Vec<(&'static str, String)> {
    let answer = |kind: &str, api: &str, duration: &str| {
        format!(
            "cat >/dev/null; echo '{{\"kind\":\"{kind}\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/{api}\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"{duration}\",\"auth\":{{\"x\":{{\"username\":\"u\",\"password\":\"{MARKER}\"}}}}}}'"
        )
    };
    vec![
        ("hangs", "cat >/dev/null; sleep 600".into()),
        ("crashes", "cat >/dev/null; kill -SEGV $$".into()),
        (
            "stderr-token",
            format!("cat >/dev/null; echo '{STDERR_MARKER}' >&2; exit 1"),
        ),
        ("garbage", format!("cat >/dev/null; echo '{MARKER} {{{{{{'")),
        ("huge", "cat >/dev/null; head -c 104857600 /dev/zero".into()),
        (
            "wrong-api",
            answer("CredentialProviderResponse", "v1beta1", "1m"),
        ),
        ("wrong-kind", answer("Nope", "v1", "1m")),
        (
            "overflow",
            answer("CredentialProviderResponse", "v1", "99999999999999999999h"),
        ),
        (
            "forks",
            format!(
                "cat >/dev/null; sleep 600 & echo $! > {}; echo '{MARKER}'",
                pidfile.display()
            ),
        ),
    ]
}

/// A provider config with every faulty plugin and, when `good`, the test plugin last.
fn faulty_credentials(dir: &Path, env: &RealEnv, good: bool) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mut yaml =
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
            .to_string();
    let mut provider = |name: &str| {
        yaml += &format!(
            "  - name: {name}\n    matchImages: [\"{registry}\"]\n    defaultCacheDuration: \"0s\"\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    env:\n      - {{name: PLUGIN_MATCH, value: \"{registry}\"}}\n      - {{name: PLUGIN_USER, value: \"{user}\"}}\n      - {{name: PLUGIN_PASSWORD, value: \"{password}\"}}\n",
            registry = env.auth_registry,
            user = env.auth_user,
            password = env.auth_password,
        );
    };
    for (name, body) in faulty_plugins(&dir.join("grandchild.pid")) {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        provider(name);
    }
    if good {
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plugins/test-credential-plugin");
        std::fs::copy(source, bin.join("good")).unwrap();
        provider("good");
    }
    let config = dir.join(if good {
        "with-good.yaml"
    } else {
        "faulty.yaml"
    });
    std::fs::write(&config, yaml).unwrap();
    format!(
        "[credentials]\nprovider_config = {:?}\nprovider_bin_dir = {:?}\nexec_timeout = \"1s\"\n",
        config.display().to_string(),
        bin.display().to_string()
    )
}

#[tokio::test]
async fn faulty_plugins_fail_clearly_leave_nothing_behind_and_the_pull_goes_on() {
    let Some((env, _turn, image, dir)) =
        private_setup(module_path!(), "private/faulty-plugins").await
    else {
        return;
    };
    let shim = shim_with(&env, &faulty_credentials(dir.path(), &env, true)).await;
    let pulled = shim.client.pull(&image).await;
    assert!(
        pulled.is_ok(),
        "the good plugin after the faulty ones: {pulled:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let shim = shim_with(&env, &faulty_credentials(dir.path(), &env, false)).await;
    let started = Instant::now();
    let err = shim.client.pull(&image).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let message = err.message();
    // The runtime's own pull error (containerd: "failed to pull and unpack image …",
    // CRI-O: "unable to pull image …"), with the faulty plugins named after it.
    assert!(
        message.starts_with("failed to pull and unpack image")
            || message.starts_with("unable to pull image"),
        "{message}"
    );
    every_faulty_plugin_is_named(message);
    nothing_left_behind_or_logged(&env, dir.path());
}

/// The error names each faulty provider with its reason, and quotes no plugin output.
fn every_faulty_plugin_is_named(message: &str) {
    let expected = [
        ("hangs", "timed out after 1s"),
        ("crashes", "signal: 11"),
        ("stderr-token", "exit status: 1"),
        ("garbage", "JSON error"),
        ("huge", "more than 1048576 bytes"),
        ("wrong-api", "does not match the provider's"),
        ("wrong-kind", "kind is not CredentialProviderResponse"),
        ("overflow", "cacheDuration is not a Go duration"),
        ("forks", "JSON error"),
    ];
    for (name, reason) in expected {
        let said = format!("credential provider \"{name}\": ");
        let at = message
            .find(&said)
            .unwrap_or_else(|| panic!("{name} named: {message}"));
        assert!(
            message[at..].contains(reason),
            "{name}: {reason}: {message}"
        );
    }
    assert!(
        !message.contains(MARKER) && !message.contains(STDERR_MARKER),
        "no plugin output in the error: {message}"
    );
}

/// The forked helper is gone and no plugin output reached the logs.
fn nothing_left_behind_or_logged(env: &RealEnv, dir: &Path) {
    let grandchild = std::fs::read_to_string(dir.join("grandchild.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", grandchild.trim()));
    assert!(
        stat.map_or(true, |s| s.contains(") Z")),
        "the forked grandchild did not outlive its plugin"
    );
    let logs = captured_logs();
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(!logs.contains(MARKER), "plugin output reached the logs");
    assert_no_secret_logged(env);
}

#[tokio::test]
async fn a_corrupt_config_json_keeps_the_previous_credentials_with_a_warning() {
    let Some((env, _turn, image, dir)) =
        private_setup(module_path!(), "private/corrupt-config").await
    else {
        return;
    };
    let config_json = dir.path().join("corrupt-test-config.json");
    write_docker_config(
        &config_json,
        &[(
            env.auth_registry.clone(),
            &env.auth_user,
            &env.auth_password,
        )],
    );
    let shim = shim_with_docker_config(&env, &config_json).await;
    assert!(shim.client.pull(&image).await.is_ok());
    // Half-written, as an editor or a config-management run leaves it mid-save.
    let whole = std::fs::read_to_string(&config_json).unwrap();
    std::fs::write(&config_json, &whole[..whole.len() / 2]).unwrap();
    shim.client.remove_image(&image).await.unwrap();
    let pulled = shim.client.pull(&image).await;
    assert!(
        pulled.is_ok(),
        "the previous credentials stay in force: {pulled:?}"
    );
    let logs = captured_logs();
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    let warning = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("corrupt-test-config.json"))
        .unwrap_or_else(|| panic!("a warning names the file"));
    assert!(
        warning.contains("previous credentials stay in force"),
        "{warning}"
    );
    assert_no_secret_logged(&env);
}
