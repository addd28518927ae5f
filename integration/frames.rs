//! Frame shapes and `:authority` at the HTTP/2 frame level (issue 7): every error answer
//! imageshim emits — its own, and backend answers it read whole (merged pulls,
//! credential retries, handler-marked ImageStatus, merged ListImages) — is exactly one
//! HEADERS frame with END_STREAM; every answer with a message is HEADERS, DATA, HEADERS
//! with END_STREAM; and the `:authority` values gRPC C-core and grpc-java send on unix
//! sockets are served, with nothing else loosened.

use std::path::Path;
use std::time::Duration;

use crate::hermetic::shim_in_front_of;
use crate::support::fake::{handler, reply, reply_status, FakeBackend, Recorded};
use crate::support::frames::{Exchange, FrameClient};
use crate::support::{backend_toml, pullfake, Shim};
use imageshim::cri::{self, paths, wire};
use prost::Message;
use tonic::Code;

/// A PullImage (image, handler, extra headers) and the code imageshim answers it with.
type ErrorCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], Code, &'a str);

const TRAILERS_ONLY: &[&str] = &["HEADERS+END_STREAM"];
const DATA_ANSWER: &[&str] = &["HEADERS", "DATA", "HEADERS+END_STREAM"];

fn pull(image: &str, handler: &str) -> Vec<u8> {
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            runtime_handler: handler.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    wire::frame(&request.encode_to_vec()).to_vec()
}

fn image_status(handler: &str) -> Vec<u8> {
    let request = cri::ImageStatusRequest {
        image: Some(cri::ImageSpec {
            image: "busybox".into(),
            runtime_handler: handler.into(),
            ..Default::default()
        }),
        verbose: false,
    };
    wire::frame(&request.encode_to_vec()).to_vec()
}

fn list_images() -> Vec<u8> {
    wire::frame(&cri::ListImagesRequest::default().encode_to_vec()).to_vec()
}

fn assert_shape(exchange: &Exchange, shape: &[&str], code: Code, what: &str) {
    assert_eq!(exchange.shape(), shape, "{what}: {exchange:?}");
    assert_eq!(
        exchange.header("grpc-status"),
        Some((code as i32).to_string().as_str()),
        "{what}"
    );
    for added in ["date", "content-length"] {
        assert_eq!(exchange.header(added), None, "{what}: no {added} header");
    }
}

/// A fake whose pulls succeed or fail by image name, and whose image calls fail when
/// `failing` is set.
async fn fake(failing: bool) -> FakeBackend {
    FakeBackend::start(handler(move |call: Recorded| async move {
        let failed = || reply_status(Code::NotFound, "no such image: busybox");
        match call.path.as_str() {
            paths::PULL_IMAGE => {
                let request: cri::PullImageRequest = call.decode();
                match request.image_name() {
                    "registry.example/missing:1" => failed(),
                    name => reply(&cri::PullImageResponse {
                        image_ref: format!("sha256:{name}"),
                    }),
                }
            }
            _ if failing => failed(),
            paths::LIST_IMAGES => reply(&cri::ListImagesResponse {
                images: vec![cri::Image {
                    id: "sha256:one".into(),
                    ..Default::default()
                }],
            }),
            _ => reply(&cri::ImageStatusResponse {
                image: Some(cri::Image {
                    id: "sha256:one".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }))
    .await
}

fn two_backends(first: &Path, second: &Path, extra: &str) -> String {
    let discovery = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/containerd/config.toml");
    format!(
        "{}{}{extra}",
        backend_toml(
            "one",
            "containerd",
            first,
            true,
            &[],
            &discovery.display().to_string()
        ),
        backend_toml("two", "cri-o", second, false, &["kata"], "")
    )
}

#[tokio::test]
async fn imageshims_own_errors_are_one_headers_frame_with_end_stream() {
    let (held, _gate) = pullfake::start().await;
    let healthy = fake(false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = two_backends(&held.socket, &healthy.socket, "");
    let shim = Shim::start(&config).await;
    let mut client = FrameClient::connect(&shim.socket).await;
    let timeout = [("grpc-timeout", "50m")];
    let cases: [ErrorCase; 3] = [
        (
            "Up/Per",
            "",
            &[],
            Code::InvalidArgument,
            "invalid reference",
        ),
        (
            "busybox",
            "nope",
            &[],
            Code::InvalidArgument,
            "unknown handler",
        ),
        ("busybox", "", &timeout, Code::DeadlineExceeded, "deadline"),
    ];
    for (image, handler, extra, code, what) in cases {
        let answer = client
            .call(
                paths::PULL_IMAGE,
                Some("localhost"),
                extra,
                &pull(image, handler),
            )
            .await;
        assert_shape(&answer, TRAILERS_ONLY, code, what);
    }

    let gone = Shim::with_backend_gone(dir.path()).await;
    let mut client = FrameClient::connect(&gone.socket).await;
    for path in [
        paths::PULL_IMAGE,
        paths::IMAGE_STATUS,
        "/runtime.v1.RuntimeService/Version",
    ] {
        let down = client
            .call(path, Some("localhost"), &[], &pull("busybox", ""))
            .await;
        assert_shape(&down, TRAILERS_ONLY, Code::Unavailable, path);
    }
}

#[tokio::test]
async fn backend_errors_imageshim_hands_on_keep_the_trailers_only_shape() {
    let failing = fake(true).await;
    let healthy = fake(false).await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = two_wrong_credentials(dir.path());
    let shim = Shim::start(&two_backends(
        &healthy.socket,
        &failing.socket,
        &credentials,
    ))
    .await;
    let sock = shim.socket.clone();
    merged_retried_pulls_are_trailers_only(&sock, &healthy).await;
    let mut client = FrameClient::connect(&sock).await;
    let marked = client
        .call(paths::IMAGE_STATUS, None, &[], &image_status("kata"))
        .await;
    assert_shape(
        &marked,
        TRAILERS_ONLY,
        Code::NotFound,
        "handler-marked ImageStatus",
    );
    let merged = client
        .call(paths::LIST_IMAGES, None, &[], &list_images())
        .await;
    assert_shape(&merged, TRAILERS_ONLY, Code::NotFound, "merged ListImages");
}

/// A `[credentials]` table whose config.json has two wrong credentials that both
/// match `registry.example/missing`.
fn two_wrong_credentials(dir: &Path) -> String {
    let docker_config = dir.join("config.json");
    let auths = serde_json::json!({ "auths": {
        "registry.example": { "username": "a", "password": "wrong-a" },
        "registry.example/missing": { "username": "b", "password": "wrong-b" },
    }});
    std::fs::write(&docker_config, auths.to_string()).unwrap();
    format!("[credentials]\ndocker_config = [{docker_config:?}]\n")
}

/// Merged waiters, each on its own connection, all tried with both credentials: each
/// gets the backend's last error as one HEADERS frame.
async fn merged_retried_pulls_are_trailers_only(sock: &Path, healthy: &FakeBackend) {
    let missing = pull("registry.example/missing:1", "");
    let calls = (0..3).map(|_| {
        let (sock, missing) = (sock.to_path_buf(), missing.clone());
        tokio::spawn(async move {
            let mut client = FrameClient::connect(&sock).await;
            client
                .call(paths::PULL_IMAGE, Some("localhost"), &[], &missing)
                .await
        })
    });
    for answer in futures_util::future::join_all(calls).await {
        let answer = answer.unwrap();
        assert_shape(
            &answer,
            TRAILERS_ONLY,
            Code::NotFound,
            "merged pull, retried",
        );
        assert_eq!(
            answer.header("grpc-message"),
            Some("no%20such%20image:%20busybox")
        );
    }
    let tried = healthy.calls_to(paths::PULL_IMAGE);
    assert!(
        !tried.is_empty() && tried.len() % 2 == 0,
        "both credentials tried per pull"
    );
}

#[tokio::test]
async fn answers_with_a_message_are_headers_data_trailers() {
    let one = fake(false).await;
    let two = fake(false).await;
    let shim = Shim::start(&two_backends(&one.socket, &two.socket, "")).await;
    let mut client = FrameClient::connect(&shim.socket).await;
    let pulled = client
        .call(paths::PULL_IMAGE, None, &[], &pull("busybox", ""))
        .await;
    assert_shape(&pulled, DATA_ANSWER, Code::Ok, "collected pull");
    let marked = client
        .call(paths::IMAGE_STATUS, None, &[], &image_status("kata"))
        .await;
    assert_shape(&marked, DATA_ANSWER, Code::Ok, "handler-marked ImageStatus");
    let merged = client
        .call(paths::LIST_IMAGES, None, &[], &list_images())
        .await;
    assert_shape(&merged, DATA_ANSWER, Code::Ok, "merged ListImages");
    let body = &merged.frames[1].payload;
    let list = cri::ListImagesResponse::decode(wire::unframe(body).unwrap()).unwrap();
    assert_eq!(list.images.len(), 2);
}

#[tokio::test]
async fn every_authority_the_runtimes_accept_is_served_and_the_backend_sees_localhost() {
    let backend = fake(false).await;
    let shim = shim_in_front_of(&backend).await;
    let socket_path = shim.socket.display().to_string();
    let encoded = socket_path.replace('/', "%2F");
    let version = "/runtime.v1.RuntimeService/Version";
    for authority in [
        Some("localhost"),
        Some(&socket_path[..]),
        Some(&encoded[..]),
        Some(""),
        None,
    ] {
        // A connection per client, each sending its one authority on every call.
        let mut client = FrameClient::connect(&shim.socket).await;
        for path in [version, paths::IMAGE_STATUS] {
            let answer = client.call(path, authority, &[], &image_status("")).await;
            assert_shape(
                &answer,
                DATA_ANSWER,
                Code::Ok,
                &format!("{authority:?} {path}"),
            );
        }
    }
    let seen: Vec<_> = backend
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.authority.clone())
        .collect();
    assert_eq!(seen.len(), 10);
    assert!(
        seen.iter().all(|a| a.as_deref() == Some("localhost")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn nothing_else_is_loosened() {
    let backend = fake(false).await;
    let shim = shim_in_front_of(&backend).await;
    let mut client = FrameClient::connect(&shim.socket).await;
    let _ = client
        .call(paths::IMAGE_STATUS, Some("/x.sock"), &[], &image_status(""))
        .await;
    // Malformed requests h2 refuses stay refused, on a connection already rewriting.
    let no_path = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "/x.sock"),
    ];
    let refused = client.send(&no_path, &image_status("")).await;
    assert!(
        refused.closed || refused.shape() == ["RST_STREAM"],
        "{refused:?}"
    );
    let mut client = FrameClient::connect(&shim.socket).await;
    let upper = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", paths::IMAGE_STATUS),
        (":authority", "/x.sock"),
        ("Content-Type", "application/grpc"),
    ];
    let refused = client.send(&upper, &image_status("")).await;
    assert!(
        refused.closed || refused.shape() == ["RST_STREAM"],
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        backend.calls.lock().unwrap().len(),
        1,
        "only the well-formed call"
    );
}
