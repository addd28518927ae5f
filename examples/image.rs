//! Builds imageshim's container image (no base image: the binary, the libraries it
//! loads and the default config; see integration/support/shim_image.rs) as an OCI
//! layout, and optionally as a tar for `ctr images import` and pushed to a registry.
//!   cargo run --example image -- target/release/imageshim REFERENCE [--layout DIR]
//!       [--tar FILE] [--push] [--config FILE]
//! `--push` speaks the registry HTTP API over plain HTTP (a registry on loopback or
//! the cluster network); for a TLS registry push the layout with
//! `skopeo copy oci:DIR docker://REFERENCE`. hack/image.sh wraps this.
#![allow(clippy::unwrap_used, unreachable_pub, dead_code)]

use std::path::PathBuf;

#[path = "../integration/support/oci.rs"]
mod oci;
#[path = "../integration/support/shim_image.rs"]
mod shim_image;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: image BINARY REFERENCE [--layout DIR] [--tar FILE] [--push] [--config FILE]";
    let binary = PathBuf::from(args.next().expect(usage));
    let reference = args.next().expect(usage);
    let mut layout_dir = None;
    let mut tar = None;
    let mut push = false;
    let mut config = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--layout" => layout_dir = Some(PathBuf::from(args.next().expect(usage))),
            "--tar" => tar = Some(PathBuf::from(args.next().expect(usage))),
            "--config" => config = PathBuf::from(args.next().expect(usage)),
            "--push" => push = true,
            other => panic!("unknown argument {other:?}; {usage}"),
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = layout_dir.unwrap_or_else(|| scratch.path().join("layout"));
    let layout = shim_image::write_layout(&dir, &binary, &config, &reference);
    println!(
        "layout {} manifest {}",
        dir.display(),
        layout.manifest_digest
    );
    if let Some(file) = tar {
        shim_image::write_tar(&dir, &file);
        println!("tar {}", file.display());
    }
    if push {
        let (registry, repo, tag) = shim_image::split_reference(&reference);
        oci::push_layout(&layout, registry, repo, &[tag], None);
        println!("pushed {reference}");
    }
}
