//! Ring 3, runtime handlers as containerd 2.x really uses them (issue 18's table): two
//! handlers, `runc` (overlayfs, the default) and `runc-native` (native, defined through
//! `imports`), hack/containerd.sh's containerd 2.x. Where an image landed is read with
//! containerd's own `ctr`, not through imageshim.

use std::path::PathBuf;
use std::process::Command;

use crate::support::stallproxy::StallProxy;
use crate::support::{backend_toml, oci, RealEnv, Runtime, Shim};
use imageshim::cri::{self, paths};
use tonic::Code;

/// containerd's annotation, and the one imageshim used to read by mistake.
const CONTAINERD_ANNOTATION: &str = "io.containerd.cri.runtime-handler";
const READ_BY_NOBODY: &str = "io.kubernetes.cri.runtime-handler";

fn ctr() -> PathBuf {
    std::env::var_os("IMAGESHIM_TEST_CTR")
        .map(PathBuf::from)
        .expect("IMAGESHIM_TEST_CTR names containerd 2.x's ctr (hack/test.sh sets it)")
}

/// A PullImageRequest with a sandbox config (as the kubelet sends) carrying
/// `annotations`, naming `handler` in its ImageSpec.
fn pull_request(image: &str, handler: &str, annotations: &[(&str, &str)]) -> cri::PullImageRequest {
    let mut config = cri::PodSandboxConfig::default();
    for (k, v) in annotations {
        config.annotations.insert(k.to_string(), v.to_string());
    }
    cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            runtime_handler: handler.into(),
            ..Default::default()
        }),
        sandbox_config: Some(config),
        ..Default::default()
    }
}

/// True when `image` (by its ID) is unpacked in `snapshotter`, as `ctr` sees it: the
/// snapshot named by its top layer's chain ID exists (test images have one layer, so
/// the chain ID is the layer's diff ID).
fn unpacked_in(env: &RealEnv, image_id: &str, snapshotter: &str) -> bool {
    let run = |args: &[&str]| {
        Command::new(ctr())
            .args([
                "--address",
                &env.runtime_socket.display().to_string(),
                "-n",
                "k8s.io",
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let config = run(&["content", "get", image_id]);
    assert!(
        config.status.success(),
        "{}",
        String::from_utf8_lossy(&config.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 1, "test images have one layer");
    let chain = diff_ids[0].as_str().unwrap();
    run(&["snapshots", "--snapshotter", snapshotter, "info", chain])
        .status
        .success()
}

/// Sends `requests` together through `shim` while a proxy holds the registry's blobs,
/// so every call is waiting at once; returns how many backend pulls imageshim started
/// for them and the image IDs they got.
async fn held_together(
    env: &RealEnv,
    shim: &Shim,
    repo: &str,
    requests: Vec<cri::PullImageRequest>,
) -> (u64, Vec<String>) {
    let proxy = StallProxy::start_gated(&env.registry, 0, false, false).await;
    env.plain_http_registry(&proxy.address);
    let running = shim.running.as_ref().unwrap();
    let started_before = running.pull_stats().started_total;
    let callers = requests.len() as u64;
    let mut calls = tokio::task::JoinSet::new();
    for mut request in requests {
        let image = request.image.as_mut().unwrap();
        image.image = image
            .image
            .replace("REGISTRY", &proxy.address)
            .replace("REPO", repo);
        let client = shim.client.clone();
        calls.spawn(async move {
            client
                .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, request)
                .await
        });
    }
    let started = std::time::Instant::now();
    while running.pull_stats().waiters < callers {
        assert!(
            started.elapsed().as_secs() < 30,
            "{:?}",
            running.pull_stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let backend_pulls = running.pull_stats().started_total - started_before;
    proxy.open();
    let mut ids = Vec::new();
    while let Some(answer) = calls.join_next().await {
        ids.push(answer.unwrap().expect("every caller succeeds").image_ref);
    }
    (backend_pulls, ids)
}

async fn containerd2(test: &str) -> Option<(RealEnv, crate::support::RealTurn, Shim)> {
    let (env, turn) = RealEnv::acquire_for(test, &[Runtime::Containerd2]).await?;
    // No cap: pulls that do not merge all start, so started pulls count backend pulls.
    let config = format!(
        "{}[pull]\nserialize_image_pulls = false\n",
        env.runtime_backend(&env.runtime_config.display().to_string())
    );
    let shim = Shim::start(&config).await;
    Some((env, turn, shim))
}

/// A repository no earlier run has seen, with an image pushed as `:v1`.
fn pushed_repo(env: &RealEnv, name: &str) -> String {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let repo = format!("it/{name}-{run}");
    oci::build_and_push(&env.registry, &repo, &["v1"], None, None);
    repo
}

/// `requests` held together make two backend pulls, and the image ends up unpacked in
/// both snapshotters.
async fn two_pulls_two_snapshotters(
    env: &RealEnv,
    shim: &Shim,
    repo: &str,
    requests: Vec<cri::PullImageRequest>,
) -> Vec<String> {
    let (backend_pulls, ids) = held_together(env, shim, repo, requests).await;
    assert_eq!(
        backend_pulls, 2,
        "different snapshotters are different pulls"
    );
    assert_eq!(ids[0], ids[1]);
    assert!(unpacked_in(env, &ids[0], "native"), "native has it");
    assert!(unpacked_in(env, &ids[0], "overlayfs"), "overlayfs has it");
    ids
}

#[tokio::test]
async fn the_annotation_and_a_plain_pull_land_in_two_snapshotters() {
    let Some((env, _turn, shim)) = containerd2(module_path!()).await else {
        return;
    };
    let repo = pushed_repo(&env, "annotation");
    let image = "REGISTRY/REPO:v1";
    let requests = vec![
        pull_request(image, "", &[(CONTAINERD_ANNOTATION, "runc-native")]),
        pull_request(image, "", &[]),
    ];
    two_pulls_two_snapshotters(&env, &shim, &repo, requests).await;
}

#[tokio::test]
async fn an_annotation_containerd_does_not_read_changes_nothing() {
    let Some((env, _turn, shim)) = containerd2(module_path!()).await else {
        return;
    };
    let repo = pushed_repo(&env, "unread");
    let image = "REGISTRY/REPO:v1";
    let requests = vec![
        pull_request(image, "", &[(READ_BY_NOBODY, "runc-native")]),
        pull_request(image, "runc-native", &[]),
    ];
    two_pulls_two_snapshotters(&env, &shim, &repo, requests).await;

    // An unknown handler in an annotation nobody reads is not refused.
    let plain = format!("{}/{repo}:v1", env.registry);
    let request = pull_request(&plain, "", &[(READ_BY_NOBODY, "nosuch")]);
    let answer: Result<cri::PullImageResponse, _> =
        shim.client.call(paths::PULL_IMAGE, request.clone()).await;
    let direct: Result<cri::PullImageResponse, _> =
        env.direct().call(paths::PULL_IMAGE, request).await;
    assert_eq!(
        answer.map(|a| a.image_ref).map_err(|e| e.code()),
        direct.map(|a| a.image_ref).map_err(|e| e.code())
    );
}

#[tokio::test]
async fn the_empty_handler_and_the_default_merge_into_one_pull() {
    let Some((env, _turn, shim)) = containerd2(module_path!()).await else {
        return;
    };
    let repo = pushed_repo(&env, "default");
    let image = "REGISTRY/REPO:v1";
    let requests = vec![
        pull_request(image, "", &[]),
        pull_request(image, "runc", &[]),
    ];
    let (backend_pulls, _) = held_together(&env, &shim, &repo, requests).await;
    assert_eq!(backend_pulls, 1, "\"\" and runc land in overlayfs");
}

#[tokio::test]
async fn an_image_is_present_for_a_handler_only_where_it_is_unpacked() {
    let Some((env, _turn, shim)) = containerd2(module_path!()).await else {
        return;
    };
    let repo = pushed_repo(&env, "presence");
    let image = format!("{}/{repo}:v1", env.registry);
    let status = |handler: &'static str| {
        let request = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                runtime_handler: handler.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let client = shim.client.clone();
        async move {
            client
                .call::<_, cri::ImageStatusResponse>(paths::IMAGE_STATUS, request)
                .await
                .unwrap()
                .image
        }
    };
    let _: cri::PullImageResponse = shim
        .client
        .call(paths::PULL_IMAGE, pull_request(&image, "runc", &[]))
        .await
        .unwrap();
    let for_runc = status("runc").await.expect("present for runc");
    assert_eq!(for_runc.spec.unwrap().runtime_handler, "runc");
    assert!(status("").await.is_some(), "present for the default");
    assert!(!unpacked_in(&env, &for_runc.id, "native"));
    assert!(
        status("runc-native").await.is_none(),
        "not unpacked in native: not present"
    );
    let _: cri::PullImageResponse = shim
        .client
        .call(paths::PULL_IMAGE, pull_request(&image, "runc-native", &[]))
        .await
        .unwrap();
    let for_native = status("runc-native")
        .await
        .expect("present once pulled for it");
    assert_eq!(for_native.spec.unwrap().runtime_handler, "runc-native");
}

#[tokio::test]
async fn handlers_from_imports_and_the_built_in_runc_are_served() {
    let Some((env, _turn, shim)) = containerd2(module_path!()).await else {
        return;
    };
    let repo = pushed_repo(&env, "served");
    let image = format!("{}/{repo}:v1", env.registry);
    // runc-native is defined in conf.d/, reached through `imports`.
    let _: cri::PullImageResponse = shim
        .client
        .call(paths::PULL_IMAGE, pull_request(&image, "runc-native", &[]))
        .await
        .unwrap();
    let unknown = shim
        .client
        .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, pull_request(&image, "wasm", &[]))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(
        unknown.message(),
        "unknown runtime handler \"wasm\"; known handlers: runc, runc-native"
    );
    // A config without any runtimes table still has containerd's built-in runc.
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("config.toml");
    std::fs::write(&bare, "version = 3\n").unwrap();
    let bare_shim = Shim::start(&backend_toml(
        "bare",
        "containerd",
        &env.runtime_socket,
        true,
        &[],
        &bare.display().to_string(),
    ))
    .await;
    let _: cri::PullImageResponse = bare_shim
        .client
        .call(paths::PULL_IMAGE, pull_request(&image, "runc", &[]))
        .await
        .unwrap();
}
