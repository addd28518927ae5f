use super::*;
use crate::config::BackendKind;
use std::path::Path;

fn backend(
    name: &str,
    kind: BackendKind,
    default: bool,
    handlers: &[&str],
    runtime_config: &str,
) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        kind,
        endpoint: format!("unix:///tmp/{name}.sock"),
        default,
        handlers: handlers.iter().map(|h| h.to_string()).collect(),
        runtime_config: (!runtime_config.is_empty()).then(|| runtime_config.into()),
    }
}

fn testdata(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
        .display()
        .to_string()
}

#[tokio::test]
async fn without_discovery_unknown_handlers_go_to_the_default() {
    let set = BackendSet::from_config(&[
        backend("containerd", BackendKind::Containerd, true, &[], ""),
        backend("crio", BackendKind::CriO, false, &["kata"], ""),
    ])
    .unwrap();
    assert_eq!(set.route("").unwrap().name, "containerd");
    assert_eq!(set.route("kata").unwrap().name, "crio");
    assert_eq!(set.route("whatever").unwrap().name, "containerd");
    assert!(matches!(
        set.route("Bad_Handler"),
        Err(RouteError::InvalidHandler(_))
    ));
}

#[tokio::test]
async fn with_discovery_unknown_handlers_are_refused_listing_the_known_ones() {
    let set = BackendSet::from_config(&[
        backend(
            "containerd",
            BackendKind::Containerd,
            true,
            &[],
            &testdata("containerd/config.toml"),
        ),
        backend(
            "crio",
            BackendKind::CriO,
            false,
            &[],
            &testdata("crio/crio.conf"),
        ),
    ])
    .unwrap();
    assert_eq!(set.route("gvisor").unwrap().name, "containerd");
    assert_eq!(set.route("kata").unwrap().name, "crio");
    assert_eq!(set.route("crun").unwrap().name, "crio");
    let err = set.route("wasm").unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown runtime handler \"wasm\"; known handlers: crun, gvisor, kata, runc"
    );
}

#[test]
fn an_unparsable_runtime_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "this is = = not toml").unwrap();
    let err = discovery::discover(BackendKind::Containerd, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.toml"), "{err}");
}
