//! Generates the CRI view messages from `proto/` with protox (pure Rust, no protoc), and
//! the `--version` line: version, commit (`git`, or `IMAGESHIM_COMMIT` when building
//! outside a checkout), build profile.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/cri_view.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    prost_build::Config::new()
        .skip_debug(["imageshim.cri.AuthConfig"])
        .compile_fds(descriptors)?;
    println!("cargo:rustc-env=IMAGESHIM_VERSION_LINE={}", version_line());
    Ok(())
}

fn version_line() -> String {
    println!("cargo:rerun-if-env-changed=IMAGESHIM_COMMIT");
    for watched in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(watched).exists() {
            println!("cargo:rerun-if-changed={watched}");
        }
    }
    let commit = std::env::var("IMAGESHIM_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_string());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    format!("{version} (commit {commit}, {profile} build)")
}

/// The checkout's commit, `-dirty` when tracked files differ from it.
fn git_commit() -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
    };
    let head = run(&["rev-parse", "--short=12", "HEAD"])?;
    let commit = String::from_utf8(head.stdout).ok()?.trim().to_string();
    let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
        .map(|out| !out.stdout.is_empty())
        .unwrap_or(false);
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
