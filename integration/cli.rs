//! The binary itself: check-config reports every problem and its exit code; serve
//! drains and removes its socket on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_imageshim");

#[test]
fn check_config_accepts_the_documented_file_and_reports_every_problem() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = Command::new(BINARY)
        .args(["check-config", "--config", root])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "socket = \"rel.sock\"\n[[backend]]\nname = \"c\"\nkind = \"containerd\"\nendpoint = \"tcp://x\"\n[pull]\nmax_parallel_image_pulls = 4\n",
    )
    .unwrap();
    let out = Command::new(BINARY)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "socket:",
        "backend.default",
        "backend[0].endpoint",
        "pull.max_parallel_image_pulls",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
    }
}

#[test]
fn check_config_prints_where_each_handlers_images_land_and_warns_on_unpack_config() {
    let dir = tempfile::tempdir().unwrap();
    let containerd = dir.path().join("containerd.toml");
    std::fs::write(&containerd, "version = 3\nimports = [\"conf.d/*.toml\"]\n").unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(
        dir.path().join("conf.d/kata.toml"),
        "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata]\n  snapshotter = \"devmapper\"\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"/run/imageshim/imageshim.sock\"\n[[backend]]\nname = \"c\"\nkind = \"containerd\"\nendpoint = \"unix:///run/containerd/containerd.sock\"\ndefault = true\nruntime_config = {:?}\n",
            containerd.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(BINARY)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    for expected in [
        "conf.d/kata.toml",
        "handler kata: images land in snapshotter devmapper",
        "handler runc (default): images land in snapshotter overlayfs",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in {stdout}"
        );
    }
    assert!(
        stderr.contains(
            "warning: backend c: handler \"kata\" unpacks into snapshotter \"devmapper\""
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("handler \"runc\""), "{stderr}");
}

#[test]
fn serve_reloads_on_sighup_and_removes_its_socket_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/imageshim.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "socket = {:?}\nshutdown_grace = \"2s\"\n[[backend]]\nname = \"c\"\nkind = \"containerd\"\nendpoint = \"unix:///nonexistent.sock\"\ndefault = true\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            socket.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "a second instance refuses a live socket"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("already serving"));
    let (logged, reader) = stderr_lines(&mut child);
    let pid = child.id().to_string();
    signal("-HUP", &pid);
    // Wait for the reload itself, as logged.
    let reloaded = std::iter::from_fn(|| logged.recv_timeout(Duration::from_secs(10)).ok())
        .any(|line| line.contains("config reloaded"));
    assert!(reloaded, "SIGHUP reloaded the config");
    assert!(socket.exists(), "the socket is not rebound on SIGHUP");
    signal("-TERM", &pid);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "socket removed on SIGTERM");
}

fn signal(name: &str, pid: &str) {
    let sent = Command::new("kill").args([name, pid]).status().unwrap();
    assert!(sent.success());
}

/// The child's stderr, line by line, as it is written.
fn stderr_lines(
    child: &mut std::process::Child,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let (lines, logged) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    (logged, reader)
}

#[test]
fn version_names_the_version_the_commit_and_the_build_profile() {
    let out = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let expected_start = format!("imageshim {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&expected_start), "{line}");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    assert!(
        line.trim_end().ends_with(&format!(", {profile} build)")),
        "{line}"
    );
    let commit = line[expected_start.len()..].split(',').next().unwrap();
    assert!(
        commit == "unknown" || commit.trim_end_matches("-dirty").len() == 12,
        "{line}"
    );
}

#[test]
fn adopt_prints_the_config_and_the_kubelet_diff_and_refuses_precisely() {
    let node = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/adopt/kubeadm");
    let out = Command::new(BINARY)
        .args(["adopt", "--root", node, "--mode", "drop-in"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "## /etc/imageshim/config.toml (new)",
        "endpoint = \"unix:///var/run/containerd/containerd.sock\"",
        "+containerRuntimeEndpoint: unix:///run/imageshim/imageshim.sock",
        "# dry run: nothing written",
        "stays with the kubelet",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in {stdout}"
        );
    }
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BINARY)
        .args(["adopt", "--root"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("imageshim adopt: no kubelet settings found under"),
        "{stderr}"
    );
    assert!(
        !empty.path().join("etc").exists(),
        "a refusal writes nothing"
    );
}
