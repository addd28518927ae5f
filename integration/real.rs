//! Ring 3: imageshim in front of Debian's real containerd, with images built and pushed
//! to a real docker-registry by the project's own code. Run by hack/test.sh.

use std::time::Duration;

use crate::support::{backend_toml, oci, CriClient, RealEnv, Runtime, Shim};
use imageshim::cri::{self, paths};
use tonic::Code;

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const STATUS: &str = "/runtime.v1.RuntimeService/Status";
const LIST_SANDBOXES: &str = "/runtime.v1.RuntimeService/ListPodSandbox";
const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";
const CONTAINER_EVENTS: &str = "/runtime.v1.RuntimeService/GetContainerEvents";
const STREAM_IMAGES: &str = "/runtime.v1.ImageService/StreamImages";

async fn shim_for(env: &RealEnv, runtime_config: &str) -> Shim {
    Shim::start(&env.runtime_backend(runtime_config)).await
}

/// The handlers each runtime under test serves (hack/containerd.sh, hack/crio.sh), as
/// an unknown handler's refusal lists them.
fn known_handlers(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Containerd16 => "runc",
        Runtime::Containerd2 => "runc, runc-native",
        // CRI-O's built-in crun, and the two handlers of its config.
        Runtime::CriO => "crun, runc, runc-b",
    }
}

fn spec(image: &str, handler: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.into(),
        runtime_handler: handler.into(),
        ..Default::default()
    })
}

async fn status(client: &CriClient, image: &str, handler: &str) -> Option<cri::Image> {
    let request = cri::ImageStatusRequest {
        image: spec(image, handler),
        verbose: false,
    };
    client
        .call::<_, cri::ImageStatusResponse>(paths::IMAGE_STATUS, request)
        .await
        .unwrap()
        .image
}

#[tokio::test]
async fn runtime_service_calls_match_direct_containerd() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let shim = shim_for(&env, "").await;
    let direct = env.direct();
    let via: cri::VersionResponse = shim
        .client
        .call(VERSION, cri::VersionRequest::default())
        .await
        .unwrap();
    let want: cri::VersionResponse = direct
        .call(VERSION, cri::VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(via, want);
    assert_eq!(via.runtime_name, env.runtime.runtime_name());
    let via: cri::StatusResponse = shim
        .client
        .call(STATUS, cri::StatusRequest { verbose: true })
        .await
        .unwrap();
    assert!(
        via.info.contains_key("config"),
        "verbose Status info forwarded: {:?}",
        via.info.keys()
    );
    let conditions = via.status.unwrap().conditions;
    assert!(conditions
        .iter()
        .any(|c| c.r#type == "RuntimeReady" && c.status));
    let sandboxes: cri::ListPodSandboxResponse = shim
        .client
        .call(LIST_SANDBOXES, cri::ListPodSandboxRequest::default())
        .await
        .unwrap();
    let direct_sandboxes: cri::ListPodSandboxResponse = direct
        .call(LIST_SANDBOXES, cri::ListPodSandboxRequest::default())
        .await
        .unwrap();
    assert_eq!(sandboxes, direct_sandboxes);
    let containers: cri::ListContainersResponse = shim
        .client
        .call(LIST_CONTAINERS, cri::ListContainersRequest::default())
        .await
        .unwrap();
    assert_eq!(containers.containers.len(), 0);
}

#[tokio::test]
async fn pull_status_list_remove_by_tag_default_tag_and_digest() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let repo = "it/lifecycle";
    let digest = oci::build_and_push(&env.registry, repo, &["v1", "latest"], Some("1234"), None);
    let shim = shim_for(&env, "").await;
    let c = &shim.client;
    let by_tag = format!("{}/{repo}:v1", env.registry);
    let untagged = format!("{}/{repo}", env.registry);
    let by_digest = format!("{}/{repo}@{digest}", env.registry);

    let image_id = c.pull(&by_tag).await.unwrap();
    assert!(crate::support::is_image_id(&image_id), "{image_id}");
    assert_eq!(c.pull(&untagged).await.unwrap(), image_id);
    assert_eq!(c.pull(&by_digest).await.unwrap(), image_id);

    status_by_tag_id_and_digest(c, &by_tag, &image_id, &untagged, &by_digest).await;
    let all: cri::ListImagesResponse = c
        .call(paths::LIST_IMAGES, cri::ListImagesRequest::default())
        .await
        .unwrap();
    assert!(all.images.iter().any(|i| i.id == image_id));
    let filter = || cri::ListImagesRequest {
        filter: Some(cri::ImageFilter {
            image: spec(&by_tag, ""),
        }),
    };
    // containerd 1.6 answers with its whole (unordered) list whatever the filter; other
    // tests pull concurrently, so compare membership rather than whole lists.
    let filtered: cri::ListImagesResponse = c.call(paths::LIST_IMAGES, filter()).await.unwrap();
    assert!(filtered.images.iter().any(|i| i.id == image_id));

    remove_everywhere(&env, c, &image_id, &by_tag).await;
}

/// ImageStatus finds one image by tag (with its config's user, tags and digests), by ID
/// and by digest.
async fn status_by_tag_id_and_digest(
    c: &CriClient,
    by_tag: &str,
    image_id: &str,
    untagged: &str,
    by_digest: &str,
) {
    let (by_tag, untagged, by_digest) = (by_tag.to_string(), untagged, by_digest.to_string());
    let image = status(c, &by_tag, "").await.expect("present by tag");
    assert_eq!(image.id, image_id);
    assert_eq!(
        image.uid.map(|u| u.value),
        Some(1234),
        "User from the image config"
    );
    assert!(image.repo_tags.contains(&format!("{untagged}:latest")));
    assert!(
        image.repo_digests.contains(&by_digest),
        "{:?}",
        image.repo_digests
    );
    assert_eq!(status(c, image_id, "").await.unwrap().id, image_id, "by ID");
    assert_eq!(
        status(c, &by_digest, "").await.unwrap().id,
        image_id,
        "by digest"
    );
}

/// RemoveImage by ID: gone through imageshim and in containerd.
async fn remove_everywhere(env: &RealEnv, c: &CriClient, image_id: &str, by_tag: &str) {
    let _: cri::RemoveImageResponse = c
        .call(
            paths::REMOVE_IMAGE,
            cri::RemoveImageRequest {
                image: spec(image_id, ""),
            },
        )
        .await
        .unwrap();
    assert!(status(c, by_tag, "").await.is_none(), "removed");
    assert!(
        status(&env.direct(), by_tag, "").await.is_none(),
        "removed in containerd too"
    );
}

#[tokio::test]
async fn handlers_are_discovered_routed_and_reported() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let repo = "it/handlers";
    oci::build_and_push(&env.registry, repo, &["v1"], None, None);
    let shim = shim_for(&env, &env.runtime_config.display().to_string()).await;
    let image = format!("{}/{repo}:v1", env.registry);
    let request = cri::PullImageRequest {
        image: spec(&image, "runc"),
        sandbox_config: Some(cri::PodSandboxConfig::default()),
        ..Default::default()
    };
    let _: cri::PullImageResponse = shim.client.call(paths::PULL_IMAGE, request).await.unwrap();
    let with_handler = status(&shim.client, &image, "runc").await.unwrap();
    assert_eq!(with_handler.spec.unwrap().runtime_handler, "runc");
    let without = status(&shim.client, &image, "").await.unwrap();
    assert_eq!(
        without.spec.map(|s| s.runtime_handler).unwrap_or_default(),
        ""
    );
    listed_with_handler_and_unknown_refused(&shim.client, &image, env.runtime).await;
}

/// ListImages for a handler marks every image with it; an unknown handler is refused
/// listing the known ones.
async fn listed_with_handler_and_unknown_refused(
    client: &CriClient,
    image: &str,
    runtime: Runtime,
) {
    let listed: cri::ListImagesResponse = client
        .call(
            paths::LIST_IMAGES,
            cri::ListImagesRequest {
                filter: Some(cri::ImageFilter {
                    image: spec("", "runc"),
                }),
            },
        )
        .await
        .unwrap();
    assert!(!listed.images.is_empty());
    assert!(listed
        .images
        .iter()
        .all(|i| i.spec.as_ref().unwrap().runtime_handler == "runc"));

    let unknown = cri::PullImageRequest {
        image: spec(image, "wasm"),
        ..Default::default()
    };
    let err = client
        .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, unknown)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        format!(
            "unknown runtime handler \"wasm\"; known handlers: {}",
            known_handlers(runtime)
        )
    );
}

#[tokio::test]
async fn errors_match_direct_containerd_code_for_code() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let shim = shim_for(&env, "").await;
    let direct = env.direct();
    let missing = format!("{}/it/does-not-exist:v9", env.registry);
    let via = shim.client.pull(&missing).await.unwrap_err();
    let want = direct.pull(&missing).await.unwrap_err();
    assert_eq!((via.code(), via.message()), (want.code(), want.message()));
    // containerd: "… not found"; CRI-O: "… manifest unknown".
    assert!(
        via.message().contains("not found") || via.message().contains("manifest unknown"),
        "{}",
        via.message()
    );
    assert!(status(&shim.client, &missing, "").await.is_none());

    let bad = shim.client.pull("Not/Valid:ref").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("Not/Valid:ref") && bad.message().contains("lowercase"),
        "{}",
        bad.message()
    );

    if env.runtime == Runtime::Containerd16 {
        unknown_and_streaming_methods_match(&shim.client, &direct).await;
    }
}

#[tokio::test]
async fn image_fs_info_and_a_short_deadline() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let shim = shim_for(&env, "").await;
    let info: cri::ImageFsInfoResponse = shim
        .client
        .call(paths::IMAGE_FS_INFO, cri::ImageFsInfoRequest {})
        .await
        .unwrap();
    let direct: cri::ImageFsInfoResponse = env
        .direct()
        .call(paths::IMAGE_FS_INFO, cri::ImageFsInfoRequest {})
        .await
        .unwrap();
    let mountpoints = |i: &cri::ImageFsInfoResponse| -> Vec<String> {
        let fs = i.image_filesystems.iter();
        fs.map(|f| f.fs_id.as_ref().unwrap().mountpoint.clone())
            .collect()
    };
    assert!(!mountpoints(&info).is_empty());
    assert_eq!(mountpoints(&info), mountpoints(&direct));
    let repo = "it/deadline";
    oci::build_and_push(&env.registry, repo, &["v1"], None, None);
    let request = cri::PullImageRequest {
        image: spec(&format!("{}/{repo}:v1", env.registry), ""),
        ..Default::default()
    };
    // grpc-go and the kubelet send grpc-timeout; the shim answers DeadlineExceeded itself.
    let status = crate::support::raw::pull_with_timeout(&shim.socket, &request, "1m").await;
    assert_eq!(
        status.0,
        (Code::DeadlineExceeded as i32).to_string(),
        "{status:?}"
    );
}

/// Methods containerd 1.6 does not know, unary and server-streaming, answer through
/// imageshim exactly as directly. Against containerd 2.x and CRI-O the same calls
/// (and StreamImages, which 2.x serves) are compared side by side by ring 4 (grpcio):
/// this tonic client waits there for answer headers that grpc-go sends late.
async fn unknown_and_streaming_methods_match(shim: &CriClient, direct: &CriClient) {
    for path in [STREAM_IMAGES, "/runtime.v1.ImageService/NoSuchMethodYet"] {
        let via = shim
            .call::<_, cri::ListImagesResponse>(path, cri::ListImagesRequest::default())
            .await
            .unwrap_err();
        let want = direct
            .call::<_, cri::ListImagesResponse>(path, cri::ListImagesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(via.code(), Code::Unimplemented, "{path}");
        assert_eq!(
            (via.code(), via.message()),
            (want.code(), want.message()),
            "{path}"
        );
    }
    let via = shim
        .stream::<_, cri::ContainerEventResponse>(
            CONTAINER_EVENTS,
            tonic::Request::new(cri::GetEventsRequest {}),
        )
        .await;
    let want = direct
        .stream::<_, cri::ContainerEventResponse>(
            CONTAINER_EVENTS,
            tonic::Request::new(cri::GetEventsRequest {}),
        )
        .await;
    match (via, want) {
        (Err(via), Err(want)) => {
            assert_eq!((via.code(), via.message()), (want.code(), want.message()))
        }
        (Ok(mut via), Ok(_)) => {
            // A runtime that streams events: the stream stays open with no message yet.
            let next =
                tokio::time::timeout(Duration::from_millis(300), via.get_mut().message()).await;
            assert!(next.is_err(), "stream open and waiting");
        }
        (via, want) => panic!(
            "shim and containerd disagree: {:?} vs {:?}",
            via.err(),
            want.err()
        ),
    }
}

/// `hack/containerd.sh CMD DIR FLAVOR` (the flavor of the run), which must succeed.
fn containerd_script(env: &RealEnv, cmd: &str, dir: &std::path::Path) {
    let out = std::process::Command::new(env.hack_dir.join("containerd.sh"))
        .arg(cmd)
        .arg(dir)
        .arg(env.runtime.containerd_flavor())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd}: {stderr}");
}

#[tokio::test]
async fn backend_stopped_and_restarted_mid_test() {
    let Some((env, _turn)) = RealEnv::acquire_containerd(module_path!()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |cmd: &str| containerd_script(&env, cmd, dir.path());
    run("start");
    let socket = dir.path().join("containerd.sock");
    let shim = Shim::start(&backend_toml("own", "containerd", &socket, true, &[], "")).await;
    let version = || {
        shim.client
            .call::<_, cri::VersionResponse>(VERSION, cri::VersionRequest::default())
    };
    assert!(version().await.is_ok());
    run("stop");
    let down = version().await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(down.message().contains("backend own"), "{}", down.message());
    let fs = shim
        .client
        .call::<_, cri::ImageFsInfoResponse>(paths::IMAGE_FS_INFO, cri::ImageFsInfoRequest {})
        .await;
    assert_eq!(
        fs.unwrap_err().code(),
        Code::Unavailable,
        "ImageFsInfo answers, does not hang"
    );
    run("start");
    let mut recovered = false;
    for _ in 0..50 {
        if version().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "shim reconnects to the restarted containerd");
    run("stop");
}
