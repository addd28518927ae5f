//! Ring 2: imageshim in-process in front of fake CRI backends that record every call,
//! for the behaviours whose bytes and timing must be exact.

use std::time::Duration;

use crate::support::fake::{handler, reply, reply_bytes, reply_status, reply_stream, FakeBackend};
use crate::support::raw::raw_call;
use crate::support::{backend_toml, Shim};
use bytes::Bytes;
use http::HeaderMap;
use imageshim::cri::{self, paths, wire};
use prost::Message;
use tonic::Code;

const EVENTS: &str = "/runtime.v1.RuntimeService/GetContainerEvents";

fn image_list(ids: &[String]) -> cri::ListImagesResponse {
    cri::ListImagesResponse {
        images: ids
            .iter()
            .map(|id| cri::Image {
                id: id.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

/// A fake that answers ListImages with `ids`, pulls with "sha256:pulled", the rest OK.
pub(crate) async fn simple_fake(ids: &[&str]) -> FakeBackend {
    let ids: std::sync::Arc<Vec<String>> =
        std::sync::Arc::new(ids.iter().map(|s| s.to_string()).collect());
    FakeBackend::start(handler(move |call| {
        let ids = ids.clone();
        async move {
            match call.path.as_str() {
                paths::LIST_IMAGES => reply(&image_list(&ids)),
                paths::PULL_IMAGE => reply(&cri::PullImageResponse {
                    image_ref: "sha256:pulled".into(),
                }),
                paths::IMAGE_STATUS => reply(&cri::ImageStatusResponse {
                    image: Some(cri::Image {
                        id: "sha256:one".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                _ => reply(&cri::VersionResponse::default()),
            }
        }
    }))
    .await
}

pub(crate) async fn shim_in_front_of(fake: &FakeBackend) -> Shim {
    Shim::start(&backend_toml(
        "fake",
        "containerd",
        &fake.socket,
        true,
        &[],
        "",
    ))
    .await
}

pub(crate) fn pull_request(image: &str, handler: &str) -> cri::PullImageRequest {
    cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            runtime_handler: handler.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn unknown_paths_forward_bytes_metadata_and_trailers_verbatim() {
    let fake = FakeBackend::start(handler(|_| async {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().unwrap());
        trailers.insert("grpc-message", "RegistryUnavailable: nope".parse().unwrap());
        trailers.insert("grpc-status-details-bin", "AAECAw".parse().unwrap());
        trailers.insert("x-trailer", "t1".parse().unwrap());
        let mut response = reply_bytes(wire::frame(b"\x0a\x03abc"), trailers);
        response
            .headers_mut()
            .insert("x-answer", "a1".parse().unwrap());
        response
    }))
    .await;
    let shim = shim_in_front_of(&fake).await;
    let body = wire::frame(b"\x08\x96\x01\xfa\x06\x02zz");
    let path = "/runtime.v2.FutureService/BrandNewCall";
    let answer = raw_call(
        &shim.socket,
        path,
        &[("x-custom", "c1"), ("grpc-timeout", "5S")],
        body.clone(),
    )
    .await;
    let recorded = &fake.calls_to(path)[0];
    assert_eq!(recorded.body, body, "request bytes unchanged");
    assert_eq!(recorded.headers["x-custom"], "c1");
    assert_eq!(recorded.headers["grpc-timeout"], "5S");
    assert_eq!(answer.headers["x-answer"], "a1");
    assert_eq!(answer.body, wire::frame(b"\x0a\x03abc"));
    assert_eq!(
        answer.status(),
        ("5".into(), "RegistryUnavailable: nope".into())
    );
    assert_eq!(answer.trailers["grpc-status-details-bin"], "AAECAw");
    assert_eq!(answer.trailers["x-trailer"], "t1");
}

#[tokio::test]
async fn intercepted_requests_reach_the_backend_byte_for_byte() {
    let fake = simple_fake(&[]).await;
    let shim = shim_in_front_of(&fake).await;
    let mut message = pull_request("registry.example.com/app:v1", "").encode_to_vec();
    // A field from a newer CRI release: 1000, string "future".
    prost::encoding::encode_key(
        1000,
        prost::encoding::WireType::LengthDelimited,
        &mut message,
    );
    prost::encoding::encode_varint(6, &mut message);
    message.extend_from_slice(b"future");
    let framed = wire::frame(&message);
    let answer = raw_call(&shim.socket, paths::PULL_IMAGE, &[], framed.clone()).await;
    assert_eq!(answer.status().0, "0");
    assert_eq!(fake.calls_to(paths::PULL_IMAGE)[0].body, framed);
}

#[tokio::test]
async fn invalid_references_and_handlers_never_reach_the_backend() {
    let fake = simple_fake(&[]).await;
    let shim = shim_in_front_of(&fake).await;
    let cases = [
        (
            pull_request("example.com/Upper:v1", ""),
            "invalid image reference \"example.com/Upper:v1\": repository name (Upper) must be lowercase",
        ),
        (
            pull_request("", ""),
            "invalid image reference \"\": empty image reference",
        ),
        (
            pull_request("busybox", "Not_A_Label"),
            "runtime handler \"Not_A_Label\" must be a DNS-1123 label",
        ),
    ];
    for (request, expected) in cases {
        let err = shim
            .client
            .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, request)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(expected), "{}", err.message());
    }
    assert!(
        fake.paths().is_empty(),
        "no backend call: {:?}",
        fake.paths()
    );
}

#[tokio::test]
async fn server_streaming_messages_arrive_as_they_are_sent_and_cancel_upstream() {
    let (hand_over, mut senders) =
        tokio::sync::mpsc::channel::<tokio::sync::mpsc::Sender<Bytes>>(1);
    let fake = FakeBackend::start(handler(move |_| {
        let hand_over = hand_over.clone();
        async move {
            let (sender, response) = reply_stream();
            hand_over.send(sender).await.unwrap();
            response
        }
    }))
    .await;
    let shim = shim_in_front_of(&fake).await;
    let mut stream = shim
        .client
        .stream::<_, cri::ContainerEventResponse>(
            EVENTS,
            tonic::Request::new(cri::GetEventsRequest {}),
        )
        .await
        .unwrap()
        .into_inner();
    let sender = senders.recv().await.unwrap();
    for id in ["c1", "c2", "c3"] {
        let event = cri::ContainerEventResponse {
            container_id: id.into(),
            ..Default::default()
        };
        sender
            .send(Bytes::from(event.encode_to_vec()))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            got.container_id, id,
            "each message arrives before the next is sent"
        );
    }
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), sender.closed())
        .await
        .expect("the caller going away cancels the backend stream");
}

#[tokio::test]
async fn messages_up_to_16_mib_pass_both_ways() {
    let big_id = "x".repeat(1 << 20);
    let fake = simple_fake(&[big_id.as_str(); 10]).await;
    let shim = shim_in_front_of(&fake).await;
    let mut request = pull_request("busybox", "");
    let mut config = cri::PodSandboxConfig::default();
    config
        .annotations
        .insert("big".into(), "y".repeat(12 << 20));
    request.sandbox_config = Some(config);
    let _: cri::PullImageResponse = shim.client.call(paths::PULL_IMAGE, request).await.unwrap();
    assert!(fake.calls_to(paths::PULL_IMAGE)[0].body.len() > 12 << 20);
    let listed: cri::ListImagesResponse = shim
        .client
        .call(paths::LIST_IMAGES, cri::ListImagesRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.images.len(), 10);
    let mut too_big = pull_request("busybox", "");
    let mut config = cri::PodSandboxConfig::default();
    config
        .annotations
        .insert("big".into(), "z".repeat(17 << 20));
    too_big.sandbox_config = Some(config);
    let err = shim
        .client
        .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, too_big)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert_eq!(
        fake.calls_to(paths::PULL_IMAGE).len(),
        1,
        "the oversized call never reached the backend"
    );
}

#[tokio::test]
async fn handlers_route_to_their_backend_and_list_images_merges_all() {
    let containerd = simple_fake(&["sha256:from-containerd"]).await;
    let crio = simple_fake(&["sha256:from-crio"]).await;
    let config = format!(
        "{}{}",
        backend_toml(
            "containerd",
            "containerd",
            &containerd.socket,
            true,
            &[],
            ""
        ),
        backend_toml("crio", "cri-o", &crio.socket, false, &["kata"], "")
    );
    let shim = Shim::start(&config).await;
    let c = &shim.client;
    let _: cri::PullImageResponse = c
        .call(paths::PULL_IMAGE, pull_request("busybox", "kata"))
        .await
        .unwrap();
    let _: cri::PullImageResponse = c
        .call(paths::PULL_IMAGE, pull_request("busybox", ""))
        .await
        .unwrap();
    assert_eq!(crio.calls_to(paths::PULL_IMAGE).len(), 1);
    assert_eq!(containerd.calls_to(paths::PULL_IMAGE).len(), 1);

    let all: cri::ListImagesResponse = c
        .call(paths::LIST_IMAGES, cri::ListImagesRequest::default())
        .await
        .unwrap();
    let ids: Vec<_> = all.images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["sha256:from-containerd", "sha256:from-crio"]);
    kata_answers_are_marked(c).await;
}

/// ListImages and ImageStatus naming `kata` reach only its backend and come back marked.
async fn kata_answers_are_marked(c: &crate::support::CriClient) {
    let kata = cri::ListImagesRequest {
        filter: Some(cri::ImageFilter {
            image: Some(cri::ImageSpec {
                runtime_handler: "kata".into(),
                ..Default::default()
            }),
        }),
    };
    let only: cri::ListImagesResponse = c.call(paths::LIST_IMAGES, kata).await.unwrap();
    assert_eq!(only.images.len(), 1);
    assert_eq!(only.images[0].id, "sha256:from-crio");
    assert_eq!(
        only.images[0].spec.as_ref().unwrap().runtime_handler,
        "kata"
    );
    let status = cri::ImageStatusRequest {
        image: pull_request("busybox", "kata").image,
        verbose: false,
    };
    let answer: cri::ImageStatusResponse = c.call(paths::IMAGE_STATUS, status).await.unwrap();
    assert_eq!(answer.image.unwrap().spec.unwrap().runtime_handler, "kata");
}

#[tokio::test]
async fn a_backend_that_is_down_gives_unavailable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::with_backend_gone(dir.path()).await;
    for path in [paths::IMAGE_FS_INFO, "/runtime.v1.RuntimeService/Version"] {
        let started = std::time::Instant::now();
        let err = shim
            .client
            .call::<_, cri::VersionResponse>(path, cri::VersionRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{path}");
        assert!(
            err.message().starts_with("backend gone (unix://"),
            "{}",
            err.message()
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "answers at once"
        );
    }
}

#[tokio::test]
async fn backend_errors_reach_the_caller_verbatim() {
    let fake = FakeBackend::start(handler(|_| async {
        reply_status(
            Code::Unknown,
            "SignatureValidationFailed: image signature invalid",
        )
    }))
    .await;
    let shim = shim_in_front_of(&fake).await;
    let err = shim
        .client
        .call::<_, cri::PullImageResponse>(paths::PULL_IMAGE, pull_request("busybox", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(
        err.message(),
        "SignatureValidationFailed: image signature invalid"
    );
}
