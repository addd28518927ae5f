use super::*;

const MINIMAL: &str = r#"
[[backend]]
name = "containerd"
kind = "containerd"
endpoint = "unix:///run/containerd/containerd.sock"
default = true
"#;

#[test]
fn the_documented_root_config_parses_and_validates() {
    let text = include_str!("../../config.toml");
    let config = Config::parse(text).expect("config.toml parses and checks");
    assert_eq!(
        config.socket,
        PathBuf::from("/run/imageshim/imageshim.sock")
    );
    assert!(config.pull.serialize_image_pulls);
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn defaults_apply_when_keys_are_missing() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.pull.permits(), Some(1));
    assert!(config.pull.cancel_abandoned);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = Config::parse(&format!("sockett = \"/x\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sockett"), "{err}");
    let err = Config::parse(&format!("{MINIMAL}handler = []\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("handler"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
socket = "relative.sock"
[[backend]]
name = "a"
kind = "containerd"
endpoint = "tcp://x"
handlers = ["Bad_Name", "kata"]
[[backend]]
name = "a"
kind = "cri-o"
endpoint = "unix:///x.sock"
handlers = ["kata"]
runtime_config = "/does/not/exist.toml"
[pull]
serialize_image_pulls = true
max_parallel_image_pulls = 3
"#;
    let err = Config::parse(text).unwrap_err().to_string();
    for expected in [
        "socket:",
        "backend.default: exactly one",
        "backend[0].endpoint",
        "backend[0].handlers: runtime handler \"Bad_Name\"",
        "backend[1].name: \"a\" is used by two",
        "backend[1].handlers: \"kata\" is also served",
        "backend[1].runtime_config",
        "pull.max_parallel_image_pulls: invalid configuration",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn cap_rules_follow_the_kubelet() {
    let mut pull = PullConfig {
        serialize_image_pulls: false,
        ..Default::default()
    };
    assert_eq!(pull.permits(), None);
    pull.max_parallel_image_pulls = std::num::NonZeroUsize::new(3);
    assert_eq!(pull.permits(), Some(3));
    pull.serialize_image_pulls = true;
    pull.max_parallel_image_pulls = std::num::NonZeroUsize::new(1);
    let mut problems = vec![];
    validate_pull(&pull, &mut problems);
    assert!(problems.is_empty(), "1 with serialization is allowed");
}

#[test]
fn bad_durations_and_kinds_name_the_value() {
    let err = Config::parse(&format!("shutdown_grace = \"soon\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("soon"), "{err}");
    let err = Config::parse(&MINIMAL.replace("kind = \"containerd\"", "kind = \"docker\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("docker"), "{err}");
    let err = Config::parse(&format!("log_level = \"verbose\"\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("verbose") && err.contains("log_level"),
        "{err}"
    );
}

#[test]
fn credential_files_are_checked_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("config.json");
    std::fs::write(&broken, "{\"auths\": {\"r.io\": {\"auth\": \"%%%\"}}}").unwrap();
    let text = format!(
        "{MINIMAL}[credentials]\ndocker_config = [{:?}]\nprovider_config = \"/no/such/providers.yaml\"\nexec_timeout = \"0s\"\n",
        broken.display().to_string()
    );
    let err = Config::parse(&text).unwrap_err().to_string();
    for expected in [
        "credentials.provider_bin_dir: required",
        "credentials.exec_timeout",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The files themselves are read when asked (check-config), not by every parse.
    let fixed = text.replace("exec_timeout = \"0s\"", "provider_bin_dir = \"/bin\"");
    let config = Config::parse(&fixed).expect("the structure is fine");
    let err = config.check_credential_files().unwrap_err().to_string();
    for expected in [
        "auths.\"r.io\": auth is not valid base64",
        "credential provider config /no/such/providers.yaml",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn admin_progress_timeout_and_pinned_parse_with_defaults_and_precise_errors() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.admin.listen.as_deref(), Some(DEFAULT_ADMIN_LISTEN));
    assert_eq!(config.pull.progress_timeout, Some(Duration::from_secs(300)));
    assert!(config.pinned.is_empty());
    let text = format!(
        "{MINIMAL}[pull]\nprogress_timeout = \"1m30s\"\n[admin]\nlisten = \"\"\n[[pinned]]\nimage = \"busybox:1\"\n[[pinned]]\nimage = \"r.example/app@sha256:{}\"\nhandler = \"kata\"\n",
        "a".repeat(64)
    );
    let config = Config::parse(&text).unwrap();
    assert_eq!(config.pull.progress_timeout, Some(Duration::from_secs(90)));
    assert_eq!(config.admin.listen, None);
    assert_eq!(config.pinned.len(), 2);
    assert_eq!(config.pinned[1].handler, "kata");
    let off = format!("{MINIMAL}[pull]\nprogress_timeout = \"0s\"\n");
    assert_eq!(Config::parse(&off).unwrap().pull.progress_timeout, None);

    let bad = format!(
        "{MINIMAL}[admin]\nlisten = \"localhost\"\n[[pinned]]\nimage = \"Bad/Name\"\n[[pinned]]\nimage = \"ok:1\"\nhandler = \"Bad_Handler\"\n"
    );
    let err = Config::parse(&bad).unwrap_err().to_string();
    for key in ["admin.listen", "pinned[0].image", "pinned[1].handler"] {
        assert!(err.contains(key), "{key} in {err}");
    }
    let bad = format!("{MINIMAL}[pull]\nprogress_timeout = \"5 minutes\"\n");
    let err = format!(
        "{:#}",
        anyhow::Error::from(Config::parse(&bad).unwrap_err())
    );
    assert!(
        err.contains("progress_timeout") || err.contains("5 minutes"),
        "{err}"
    );
}

#[test]
fn a_config_file_past_the_limit_is_refused_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(super::CONFIG_FILE_LIMIT + 1).unwrap(); // sparse: costs no disk
    let err = super::read_config_file(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    match Config::load(&path) {
        Err(ConfigError::Read { source, .. }) => {
            assert_eq!(source.to_string(), "larger than 16 MiB")
        }
        other => panic!("{other:?}"),
    }
    file.set_len(super::CONFIG_FILE_LIMIT).unwrap();
    assert!(super::read_config_file(&path).is_ok());
}
