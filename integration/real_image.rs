//! Ring 3, issue 20: imageshim's own container image (built by
//! `support/shim_image.rs`, pushed to the test registry) run for real by containerd
//! 2.x with `ctr run`, the socket directory and the runtime's socket mounted from the
//! host, as the DaemonSet mounts them: it starts, serves CRI on the host's socket path
//! (a pull through it lands in the runtime) and drains and removes its socket on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::client::CriClient;
use crate::support::{oci, shim_image, RealEnv, Runtime};
use imageshim::cri;

const NAMESPACE: &str = "imageshim-image";

fn binary() -> PathBuf {
    std::env::var_os("IMAGESHIM_TEST_RELEASE_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_imageshim")),
        PathBuf::from,
    )
}

fn ctr(env: &RealEnv, args: &[&str]) -> Output {
    let ctr = std::env::var_os("IMAGESHIM_TEST_CTR").expect("IMAGESHIM_TEST_CTR (hack/test.sh)");
    let address = env.runtime_socket.display().to_string();
    Command::new(ctr)
        .args(["--address", &address, "-n", NAMESPACE])
        .args(args)
        .output()
        .unwrap()
}

fn ctr_ok(env: &RealEnv, args: &[&str]) -> String {
    let out = ctr(env, args);
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `done` without blocking the runtime (the client's connection task must run
/// to see the server's GOAWAY and close).
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_container_image_runs_under_containerd_and_serves_the_host_socket() {
    let Some((env, _turn)) = RealEnv::acquire_for(
        "the_container_image_runs_under_containerd",
        &[Runtime::Containerd2],
    )
    .await
    else {
        return;
    };
    let build = tempfile::tempdir().unwrap();
    let reference = format!("{}/imageshim-self:test", env.registry);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let layout =
        shim_image::write_layout(&build.path().join("layout"), &binary(), &config, &reference);
    let (registry, repo, tag) = shim_image::split_reference(&reference);
    oci::push_layout(&layout, registry, repo, &[tag], None);
    ctr_ok(&env, &["images", "pull", "--plain-http", &reference]);

    // The documented default config, inside the image, is valid as shipped.
    let checked = ctr_ok(
        &env,
        &[
            "run",
            "--rm",
            &reference,
            "imageshim-check",
            "/usr/bin/imageshim",
            "check-config",
            "--config",
            "/etc/imageshim/config.toml",
        ],
    );
    assert!(
        checked.contains("/etc/imageshim/config.toml: ok"),
        "{checked}"
    );

    let host = tempfile::tempdir().unwrap();
    let socket = host.path().join("imageshim.sock");
    std::fs::write(host.path().join("config.toml"), "socket = \"/run/imageshim/imageshim.sock\"\n[[backend]]\nname = \"containerd\"\nkind = \"containerd\"\nendpoint = \"unix:///run/containerd/containerd.sock\"\ndefault = true\n[admin]\nlisten = \"\"\n").unwrap();
    let socket_dir = format!(
        "type=bind,src={},dst=/run/imageshim,options=rbind:rw",
        host.path().display()
    );
    let runtime_dir = format!(
        "type=bind,src={},dst=/run/containerd,options=rbind:rw",
        env.runtime_dir.display()
    );
    let _ = ctr(&env, &["containers", "rm", "imageshim-serve"]);
    ctr_ok(
        &env,
        &[
            "run",
            "-d",
            "--mount",
            &socket_dir,
            "--mount",
            &runtime_dir,
            &reference,
            "imageshim-serve",
            "/usr/bin/imageshim",
            "serve",
            "--config",
            "/run/imageshim/config.toml",
        ],
    );
    wait_for(
        "the containerised imageshim creates its socket on the host",
        || socket.exists(),
    )
    .await;

    let through = CriClient::new(&socket);
    let version: cri::VersionResponse = through
        .call(
            "/runtime.v1.RuntimeService/Version",
            cri::VersionRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(version.runtime_name, "containerd");
    let image = format!("{}/imageshim-self-pulled:v1", env.registry);
    oci::build_and_push(&env.registry, "imageshim-self-pulled", &["v1"], None, None);
    let image_ref = through.pull(&image).await.unwrap();
    let direct = env
        .direct()
        .image_status(&image)
        .await
        .expect("pulled into the runtime");
    assert_eq!(direct.id, image_ref);

    let stopping = Instant::now();
    ctr_ok(
        &env,
        &["tasks", "kill", "--signal", "SIGTERM", "imageshim-serve"],
    );
    wait_for("SIGTERM removes the socket", || !socket.exists()).await;
    eprintln!("stopped in {:?}", stopping.elapsed());
    wait_for("the task exits", || {
        ctr_ok(&env, &["tasks", "ls"])
            .lines()
            .all(|l| !l.contains("RUNNING"))
    })
    .await;
    ctr_ok(&env, &["tasks", "rm", "imageshim-serve"]);
    ctr_ok(&env, &["containers", "rm", "imageshim-serve"]);
    ctr_ok(&env, &["images", "rm", &reference]);
    env.direct().remove_image(&image).await.unwrap();
}
