//! Shows imageshim working: pushes a small image to a registry with the project's own
//! OCI code, then pulls, inspects and lists it through imageshim's socket.
//!   cargo run --example demo -- SOCKET REGISTRY
#![allow(clippy::unwrap_used, unreachable_pub)] // test and example code: failures panic loudly; pub is for sharing support code

mod common;

use common::{client, oci};

use imageshim::cri::{self, paths};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().ok_or("usage: demo SOCKET REGISTRY")?;
    let registry = args.next().ok_or("usage: demo SOCKET REGISTRY")?;
    let image = push_demo_image(&registry).await?;
    let client = client::CriClient::new(socket.as_ref());
    let version: cri::VersionResponse = client
        .call(
            "/runtime.v1.RuntimeService/Version",
            cri::VersionRequest::default(),
        )
        .await?;
    println!(
        "Version via imageshim: {} {}",
        version.runtime_name, version.runtime_version
    );
    let spec = Some(cri::ImageSpec {
        image: image.clone(),
        ..Default::default()
    });
    let pulled: cri::PullImageResponse = client
        .call(
            paths::PULL_IMAGE,
            cri::PullImageRequest {
                image: spec.clone(),
                ..Default::default()
            },
        )
        .await?;
    println!("PullImage {image} -> {}", pulled.image_ref);
    let status: cri::ImageStatusResponse = client
        .call(
            paths::IMAGE_STATUS,
            cri::ImageStatusRequest {
                image: spec,
                verbose: false,
            },
        )
        .await?;
    let found = status.image.ok_or("image not found after pull")?;
    println!(
        "ImageStatus: tags {:?}, size {} bytes, uid {:?}",
        found.repo_tags,
        found.size,
        found.uid.map(|u| u.value)
    );
    list_and_refuse(&client).await
}

/// Builds and pushes the demo image; its reference.
async fn push_demo_image(registry: &str) -> Result<String, Box<dyn std::error::Error>> {
    let digest = tokio::task::spawn_blocking({
        let registry = registry.to_string();
        move || oci::build_and_push(&registry, "demo/hello", &["v1"], Some("1000"), None)
    })
    .await?;
    let image = format!("{registry}/demo/hello:v1");
    println!("pushed {image} ({digest})");
    Ok(image)
}

/// ListImages, then a PullImage of an invalid reference (refused by imageshim).
async fn list_and_refuse(client: &client::CriClient) -> Result<(), Box<dyn std::error::Error>> {
    let listed: cri::ListImagesResponse = client
        .call(paths::LIST_IMAGES, cri::ListImagesRequest::default())
        .await?;
    println!("ListImages: {} image(s)", listed.images.len());
    let invalid = client
        .call::<_, cri::PullImageResponse>(
            paths::PULL_IMAGE,
            cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: "Bad:Ref!".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect_err("an invalid reference is refused");
    println!(
        "PullImage \"Bad:Ref!\" -> {:?}: {}",
        invalid.code(),
        invalid.message()
    );
    Ok(())
}
