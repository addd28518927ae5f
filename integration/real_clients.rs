//! Ring 4 (DESIGN §4): a gRPC implementation this project did not write — Python
//! `grpcio`, i.e. gRPC C-core, pinned in `integration/clients/requirements.txt` — makes
//! the same CRI calls through imageshim and directly against the real containerd, and
//! compares code, message, answer bytes and metadata (`integration/clients/`). Runs under
//! hack/test.sh, which starts containerd (with the sandbox image pushed here) and the
//! registries, and installs grpcio.

use std::path::Path;

use crate::support::{oci, RealEnv, Runtime, Shim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_gets_from_imageshim_what_containerd_answers() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let sandbox_image = std::env::var("IMAGESHIM_TEST_SANDBOX_IMAGE")
        .expect("IMAGESHIM_TEST_SANDBOX_IMAGE (set by hack/test.sh)");
    push_test_images(&env, &sandbox_image);
    let runtime_config = env.runtime_config.display().to_string();
    let pinned = format!("{}/ring/pinned:1", env.registry);
    let mut shim = Shim::start(&format!(
        "{}[[pinned]]\nimage = {pinned:?}\n",
        env.runtime_backend(&runtime_config)
    ))
    .await;
    // imageshim pulls pinned images at start; the comparison starts once it has.
    env.direct()
        .until_present(&pinned, "pinned image pulled at start")
        .await;

    let silent = silent_registry().await;
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/clients");
    let output = tokio::process::Command::new("python3")
        .arg(clients.join("cri_compare.py"))
        .arg("--shim")
        .arg(&shim.socket)
        .arg("--direct")
        .arg(&env.runtime_socket)
        .args(["--registry", &env.registry])
        .args(["--auth-registry", &env.auth_registry])
        .args(["--auth-user", &env.auth_user])
        .args(["--silent-registry", &silent])
        .args(["--unpacked-elsewhere", unpacked_elsewhere(env.runtime)])
        .args(["--no-pods", no_pods(env.runtime)])
        .env("RING_AUTH_PASSWORD", &env.auth_password)
        .output()
        .await
        .expect("python3 runs (hack/test.sh installs grpcio)");
    shim.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "grpcio saw imageshim answer differently from {:?}:\n{stdout}",
        env.runtime
    );
    assert!(stdout.contains("all calls answered as the runtime answers them"));
}

/// Why the pod lifecycle is not compared against `runtime` here (empty: it is).
/// CRI-O 1.36 sets the pod's infra process to oom_score_adj -998, which a sandboxed
/// machine without CAP_SYS_RESOURCE refuses, and has no setting like containerd's
/// `restrict_oom_score_adj`: RunPodSandbox fails alike directly and through imageshim.
fn no_pods(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::CriO => "CRI-O cannot lower oom_score_adj on this machine",
        _ => "",
    }
}

/// A handler whose images unpack somewhere the default handler's do not.
fn unpacked_elsewhere(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Containerd2 => "runc-native",
        _ => "",
    }
}

/// The sandbox ("pause") image containerd was configured with, a busybox image the
/// pods run, and a private image on the htpasswd registry.
fn push_test_images(env: &RealEnv, sandbox_image: &str) {
    let (registry, rest) = sandbox_image.split_once('/').expect("registry/repo:tag");
    let (repo, tag) = rest.rsplit_once(':').expect("repo:tag");
    oci::push_busybox_image(
        registry,
        repo,
        tag,
        &["/bin/busybox", "sleep", "2147483647"],
    );
    // The pinned image is an image of its own (another command), not another tag of one.
    oci::push_busybox_image(
        &env.registry,
        "ring/pinned",
        "1",
        &["/bin/busybox", "sleep", "3599"],
    );
    for repo in ["ring/busybox", "ring/removable"] {
        oci::push_busybox_image(&env.registry, repo, "1", &["/bin/busybox", "sleep", "3600"]);
    }
    let credentials = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    oci::build_and_push(
        &env.auth_registry,
        "ring/private",
        &["1"],
        None,
        credentials,
    );
}

/// A registry address that accepts connections and never answers: a pull from it
/// waits until its deadline, whichever way it is called.
async fn silent_registry() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    address
}
