use super::exec::decode_response;
use super::exec::tests::script_plugin;
use super::keyring::Keyring;
use super::matching::url_matches;
use super::provider::{cache_key, GLOBAL_CACHE_KEY};
use super::*;
use serde_json::Value;
use std::path::Path;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../testdata/credentials.json")).unwrap()
}

fn credential(user: &str, password: &str) -> RegistryCredential {
    RegistryCredential {
        username: user.into(),
        password: password.into(),
        identity_token: String::new(),
    }
}

#[test]
fn url_match_vectors() {
    for case in vectors()["url_match"].as_array().unwrap() {
        let (glob, target) = (
            case["glob"].as_str().unwrap(),
            case["target"].as_str().unwrap(),
        );
        assert_eq!(
            url_matches(glob, target),
            case["match"].as_bool().unwrap(),
            "{glob} vs {target}"
        );
    }
}

#[test]
fn docker_config_hit_and_miss_vectors() {
    let all = vectors();
    for (section, expect_hit) in [
        ("docker_config_hits", true),
        ("docker_config_misses", false),
    ] {
        for case in all[section].as_array().unwrap() {
            let mut keyring = Keyring::default();
            keyring.add(case["key"].as_str().unwrap(), credential("u", "p"));
            let lookup = case["lookup"].as_str().unwrap();
            assert_eq!(!keyring.lookup(lookup).is_empty(), expect_hit, "{case}");
        }
    }
}

#[test]
fn docker_config_entry_vector_decodes_auth() {
    let case = &vectors()["docker_config_entry"];
    let keyring =
        Keyring::from_docker_config(&case["json"].to_string(), Path::new("config.json")).unwrap();
    let found = keyring.lookup("registry.example.com/some/image");
    assert_eq!(
        found,
        vec![credential(
            case["username"].as_str().unwrap(),
            case["password"].as_str().unwrap()
        )]
    );
}

#[test]
fn docker_hub_vectors() {
    let case = &vectors()["docker_hub"];
    let mut keyring = Keyring::default();
    keyring.add(case["key"].as_str().unwrap(), credential("hub", "p"));
    for hit in case["hits"].as_array().unwrap() {
        assert_eq!(keyring.lookup(hit.as_str().unwrap()).len(), 1, "{hit}");
    }
    for miss in case["misses"].as_array().unwrap() {
        assert!(keyring.lookup(miss.as_str().unwrap()).is_empty(), "{miss}");
    }
}

#[test]
fn ordering_vectors_most_specific_first() {
    let case = &vectors()["ordering"];
    let mut keyring = Keyring::default();
    for (key, user) in case["keys"].as_object().unwrap() {
        keyring.add(key, credential(user.as_str().unwrap(), "p"));
    }
    for lookup in case["lookups"].as_array().unwrap() {
        let users: Vec<String> = keyring
            .lookup(lookup["image"].as_str().unwrap())
            .into_iter()
            .map(|c| c.username)
            .collect();
        let want: Vec<String> = serde_json::from_value(lookup["result"].clone()).unwrap();
        assert_eq!(users, want, "{lookup}");
    }
}

#[test]
fn plugin_cache_key_vectors() {
    for case in vectors()["plugin_cache"].as_array().unwrap() {
        let mut response = serde_json::json!({
            "kind": "CredentialProviderResponse",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "cacheKeyType": case["cacheKeyType"],
            "auth": {},
        });
        if let Some(duration) = case.get("cacheDuration") {
            response["cacheDuration"] = duration.clone();
        }
        let decoded = decode_response(
            response.to_string().as_bytes(),
            "credentialprovider.kubelet.k8s.io/v1",
        )
        .unwrap();
        let key = cache_key(
            &decoded,
            Duration::from_secs(60),
            case["image"].as_str().unwrap(),
        )
        .map(|(k, _)| k);
        let want = case["cache_key"].as_str().map(|k| {
            if k == "<global>" {
                GLOBAL_CACHE_KEY.to_string()
            } else {
                k.to_string()
            }
        });
        assert_eq!(key, want, "{case}");
    }
}

#[test]
fn plugin_response_decode_vectors() {
    for case in vectors()["plugin_response_decode"].as_array().unwrap() {
        let result = decode_response(
            case["stdout"].to_string().as_bytes(),
            "credentialprovider.kubelet.k8s.io/v1",
        );
        assert_eq!(result.is_ok(), case["ok"].as_bool().unwrap(), "{case}");
    }
    let ok = &vectors()["plugin_response_decode"][0]["stdout"];
    let decoded = decode_response(
        ok.to_string().as_bytes(),
        "credentialprovider.kubelet.k8s.io/v1",
    )
    .unwrap();
    assert_eq!(
        decoded.keyring.lookup("a.registry.io/x"),
        vec![credential("user", "password")]
    );
}

#[test]
fn secrets_are_redacted_and_decode_errors_never_quote_values() {
    let secret = credential("u", "hunter2-secret");
    assert!(!format!("{secret:?} {:?}", vec![secret.clone()]).contains("hunter2"));
    let bad = br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","auth":{"x":{"username":"u","password":12345678}}}"#;
    let err = decode_response(bad, "credentialprovider.kubelet.k8s.io/v1")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("12345678"), "{err}");
}

#[tokio::test]
async fn provider_config_is_validated_like_the_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    script_plugin(&bin, "exit 0");
    std::fs::write(bin.join("not-executable"), "x").unwrap();
    let config = dir.path().join("providers.yaml");
    std::fs::write(
        &config,
        r#"apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: plugin
    matchImages: ["*.registry.io"]
    defaultCacheDuration: "10m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    env: [{name: A, value: b}]
  - name: not-executable
    matchImages: ["x.io"]
    defaultCacheDuration: "1m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
  - name: missing
    matchImages: []
    apiVersion: credentialprovider.kubelet.k8s.io/v2
  - name: plugin
    matchImages: ["y.io"]
    defaultCacheDuration: "1m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    tokenAttributes: {serviceAccountTokenAudience: x, requireServiceAccount: true}
"#,
    )
    .unwrap();
    let err = provider_config::load(&config, &bin)
        .unwrap_err()
        .to_string();
    for expected in [
        "providers[1] (\"not-executable\"): plugin binary",
        "providers[2] (\"missing\").matchImages",
        "providers[2] (\"missing\").apiVersion",
        "providers[2] (\"missing\").defaultCacheDuration: is required",
        "providers[3] (\"plugin\").name: duplicate",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }
    std::fs::write(&config, "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: plugin\n    matchImages: [\"*.registry.io\"]\n    defaultCacheDuration: \"10m\"\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n").unwrap();
    let loaded = provider_config::load(&config, &bin).unwrap();
    assert_eq!(
        loaded.plugins[0].default_cache_duration,
        Duration::from_secs(600)
    );
}

#[test]
fn config_json_forms_username_password_identity_token_and_legacy_dockercfg() {
    let modern = r#"{"auths": {"r.example.com": {"username": "u", "password": "p"},
        "t.example.com": {"identitytoken": "tok"}}, "credsStore": "ignored"}"#;
    let keyring = Keyring::from_docker_config(modern, Path::new("config.json")).unwrap();
    assert_eq!(
        keyring.lookup("r.example.com/app"),
        vec![credential("u", "p")]
    );
    assert_eq!(keyring.lookup("t.example.com/app")[0].identity_token, "tok");
    let legacy = r#"{"https://index.docker.io/v1/": {"auth": "Zm9vOmJhcg==", "email": "x@y.z"}}"#;
    let keyring = Keyring::from_docker_config(legacy, Path::new(".dockercfg")).unwrap();
    assert_eq!(
        keyring.lookup("docker.io/library/busybox"),
        vec![credential("foo", "bar")]
    );
    let err = Keyring::from_docker_config(
        r#"{"auths": {"r.io": {"auth": "bm9jb2xvbg=="}}}"#,
        Path::new("c.json"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "docker config c.json: auths.\"r.io\": auth must encode username:password"
    );
}

#[tokio::test]
async fn docker_config_files_are_re_read_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let keyring = keyring::FileKeyring::new(vec![path.clone(), dir.path().join("missing.json")]);
    assert!(
        keyring.lookup("r.example.com/app").is_empty(),
        "missing files contribute nothing"
    );
    std::fs::write(
        &path,
        r#"{"auths": {"r.example.com": {"username": "u", "password": "p"}}}"#,
    )
    .unwrap();
    assert_eq!(
        keyring.lookup("r.example.com/app"),
        vec![credential("u", "p")]
    );
    std::fs::write(
        &path,
        r#"{"auths": {"r.example.com": {"username": "u2", "password": "p2"}}}"#,
    )
    .unwrap();
    assert_eq!(
        keyring.lookup("r.example.com/app"),
        vec![credential("u2", "p2")]
    );
    // Half-written, then corrupt: the last good credentials stay in force.
    for broken in [r#"{"auths": {"r.example.com": {"user"#, "\0\0garbage"] {
        std::fs::write(&path, broken).unwrap();
        assert_eq!(
            keyring.lookup("r.example.com/app"),
            vec![credential("u2", "p2")],
            "{broken}"
        );
    }
    std::fs::remove_file(&path).unwrap();
    assert!(
        keyring.lookup("r.example.com/app").is_empty(),
        "a removed file counts no more"
    );
}

#[test]
fn host_labels_take_go_character_classes() {
    use super::matching::url_matches;
    assert!(url_matches(
        "registry-[a-c].example.com",
        "registry-b.example.com"
    ));
    assert!(!url_matches(
        "registry-[a-c].example.com",
        "registry-d.example.com"
    ));
    assert!(url_matches(
        "registry-[^a-c].example.com",
        "registry-d.example.com"
    ));
    assert!(!url_matches(
        "registry-[a-.example.com",
        "registry-a.example.com"
    ));
}

#[tokio::test]
async fn candidates_are_tried_in_turn_until_one_succeeds() {
    let resolution = |users: &[&str]| super::Resolution {
        candidates: users.iter().map(|u| credential(u, "p")).collect(),
        failures: vec![],
    };
    let tried = std::sync::Mutex::new(Vec::new());
    let attempt = |credential: Option<RegistryCredential>| {
        let user = credential.map_or("anonymous".to_string(), |c| c.username);
        tried.lock().unwrap().push(user.clone());
        async move { user }
    };
    let ok = |user: &String| user == "b";
    assert_eq!(
        resolution(&["a", "b", "c"]).try_in_turn(attempt, ok).await,
        "b"
    );
    assert_eq!(*tried.lock().unwrap(), ["a", "b"]);
    tried.lock().unwrap().clear();
    assert_eq!(
        resolution(&["a", "c"]).try_in_turn(attempt, ok).await,
        "c",
        "the last outcome"
    );
    assert_eq!(resolution(&[]).try_in_turn(attempt, ok).await, "anonymous");
}

#[tokio::test]
async fn a_provider_config_directory_is_merged_in_lexical_order_like_kubelet_1_36() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    script_plugin(&bin, "exit 0");
    let configs = dir.path().join("providers.d");
    std::fs::create_dir_all(configs.join("nested.yaml")).unwrap();
    let entry = |name: &str, extra: &str| {
        format!("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: {name}\n    matchImages: [\"*.registry.io\"]\n    defaultCacheDuration: \"1m\"\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n{extra}")
    };
    let token = "    tokenAttributes: {serviceAccountTokenAudience: x, requireServiceAccount: true, cacheType: ServiceAccount}\n";
    std::fs::write(configs.join("10-plugin.yaml"), entry("plugin", "")).unwrap();
    std::fs::write(configs.join("20-token.yml"), entry("token-plugin", token)).unwrap();
    std::fs::write(configs.join("README.md"), "not a config").unwrap();
    let loaded = provider_config::load(&configs, &bin).unwrap();
    let names: Vec<&str> = loaded.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["plugin"]);
    assert_eq!(loaded.left_to_kubelet, ["token-plugin"]);

    std::fs::write(configs.join("30-again.json"), entry("plugin", "")).unwrap();
    std::fs::write(configs.join("40-bad.yaml"), "kind: Other\napiVersion: v1\n").unwrap();
    let err = provider_config::load(&configs, &bin)
        .unwrap_err()
        .to_string();
    for expected in [
        "30-again.json: providers[0] (\"plugin\").name: duplicate provider name, first defined in 10-plugin.yaml",
        "40-bad.yaml: apiVersion: must be one of",
        "kind: must be CredentialProviderConfig",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in {err}");
    }

    let empty = dir.path().join("empty.d");
    std::fs::create_dir(&empty).unwrap();
    let err = provider_config::load(&empty, &bin).unwrap_err().to_string();
    assert!(
        err.contains("no *.json, *.yaml or *.yml configuration files"),
        "{err}"
    );
}
