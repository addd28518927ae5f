//! Generates the CRI view messages from `proto/` with protox (pure Rust, no protoc).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/cri_view.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new()
        .skip_debug(["imageshim.cri.AuthConfig"])
        .compile_fds(descriptors)?;
    Ok(())
}
