//! Ring 3 (issue 8): a restart under load with systemd socket activation loses no call.
//! Debian's `systemd-socket-activate` creates and holds the listening socket, as systemd
//! does for `imageshim.socket`; a shell loop under it plays systemd's restart (each
//! generation gets the socket with `LISTEN_PID` set to its own pid). imageshim must
//! serve the inherited socket, leave it in place when it stops, and every call made
//! across the restart must succeed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crate::support::raw::{raw_call, try_raw_call, CallFailure, RawResponse};
use crate::support::RealEnv;
use bytes::Bytes;
use imageshim::cri::{self, wire};
use prost::Message;

const BINARY: &str = env!("CARGO_BIN_EXE_imageshim");
const VERSION: &str = "/runtime.v1.RuntimeService/Version";

fn wait_for_file(path: &Path) -> String {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return text.trim().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_activated_restart_under_load_loses_no_call() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("imageshim.sock");
    let mut holder = hold_socket_for_two_generations(&env, dir.path(), &socket).await;
    let framed = Bytes::from(wire::frame(&cri::VersionRequest::default().encode_to_vec()).to_vec());
    // The first call starts generation 1 (systemd-socket-activate waits for a caller).
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        raw_call(&socket, VERSION, &[], framed.clone()),
    )
    .await
    .expect("imageshim serves the socket systemd passed");
    assert_eq!(first.status().0, "0", "{:?}", first.status());
    let load = Load::start(&socket, framed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first_pid = wait_for_file(&dir.path().join("pid.1"));
    let before = load.ok.load(SeqCst);
    signal("-TERM", &first_pid);
    let second_pid = wait_for_file(&dir.path().join("pid.2"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.stop().await;
    let retried = RETRIED.load(SeqCst);
    println!("calls across the restart: {ok} succeeded, {failed} failed, {retried} retried by the client as never started ({before} before SIGTERM)");
    assert!(socket.exists(), "the inherited socket was never unlinked");
    assert_ne!(first_pid, second_pid);
    assert!(ok > before, "the second generation served calls");
    assert_eq!(failed, 0, "no call failed across the restart");
    signal("-TERM", &second_pid);
    let _ = tokio::task::spawn_blocking(move || holder.wait()).await;
}

static RETRIED: AtomicUsize = AtomicUsize::new(0);

/// One Version call, retried once on a new connection when it never reached the server
/// (refused by a stopping process's GOAWAY, or its connection closed before the
/// handshake), as grpc-go and gRPC C-core retry such calls transparently.
async fn call_as_grpc_does(socket: &Path, framed: Bytes) -> Result<RawResponse, CallFailure> {
    match try_raw_call(socket, VERSION, &[], framed.clone()).await {
        Err(CallFailure::NeverStarted(_)) => {
            RETRIED.fetch_add(1, SeqCst);
            try_raw_call(socket, VERSION, &[], framed).await
        }
        answer => answer,
    }
}

fn signal(name: &str, pid: &str) {
    Command::new("kill").args([name, pid]).status().unwrap();
}

/// Debian's systemd-socket-activate holds `socket`; a shell loop under it plays
/// systemd's restart: two generations of imageshim, each with `LISTEN_PID` its own.
async fn hold_socket_for_two_generations(env: &RealEnv, dir: &Path, socket: &Path) -> Child {
    let config = dir.join("config.toml");
    let text = format!(
        "socket = {:?}\nshutdown_grace = \"5s\"\n{}[admin]\nlisten = \"127.0.0.1:0\"\n",
        socket.display().to_string(),
        env.runtime_backend("")
    );
    std::fs::write(&config, text).unwrap();
    let generation = format!(
        "sh -c \"echo \\$\\$ > {dir}/pid.$g; export LISTEN_PID=\\$\\$; exec {BINARY} serve --config {config}\"",
        dir = dir.display(),
        config = config.display()
    );
    let script = format!("for g in 1 2; do {generation}; done");
    let holder = Command::new("systemd-socket-activate")
        .args(["-l", &socket.display().to_string(), "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (Debian package systemd; hack/test.sh installs it)");
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder
}

/// Four callers making Version calls, each on a connection of its own, counting answers.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    callers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(socket: &Path, framed: Bytes) -> Load {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let callers = (0..4)
            .map(|_| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (socket, framed) = (socket.to_path_buf(), framed.clone());
                tokio::spawn(async move {
                    while !stop.load(SeqCst) {
                        let (socket, framed) = (socket.clone(), framed.clone());
                        let call =
                            tokio::spawn(async move { call_as_grpc_does(&socket, framed).await });
                        match tokio::time::timeout(Duration::from_secs(10), call).await {
                            Ok(Ok(Ok(answer))) if answer.status().0 == "0" => {
                                ok.fetch_add(1, SeqCst)
                            }
                            Ok(Ok(Ok(answer))) => {
                                eprintln!("failed call: answered {:?}", answer.status());
                                failed.fetch_add(1, SeqCst)
                            }
                            Ok(Ok(Err(err))) => {
                                eprintln!("failed call: {err:?}");
                                failed.fetch_add(1, SeqCst)
                            }
                            other => {
                                eprintln!("failed call: {:?}", other.map(|_| ()));
                                failed.fetch_add(1, SeqCst)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            callers,
        }
    }

    /// (succeeded, failed) once every caller has stopped.
    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, SeqCst);
        for caller in self.callers {
            caller.await.unwrap();
        }
        (self.ok.load(SeqCst), self.failed.load(SeqCst))
    }
}
