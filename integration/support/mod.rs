//! Shared test support: a CRI client, test images, the shim started in-process, and the
//! real services started by hack/test.sh.
#![allow(dead_code)]

pub mod client;
pub mod fake;
pub mod frames;
pub mod oci;
pub mod procstat;
pub mod pullfake;
pub mod raw;
pub mod shim_image;
pub mod stallproxy;

use std::path::{Path, PathBuf};

use imageshim::app::{self, RunningShim};
use imageshim::config::Config;

pub use client::CriClient;

/// A shim running in-process on a socket in its own temp dir.
pub struct Shim {
    pub running: Option<RunningShim>,
    pub client: CriClient,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Shim {
    /// Starts imageshim with `body` (TOML without `socket`) as its config.
    pub async fn start(body: &str) -> Shim {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("imageshim.sock");
        // Every in-process shim serves its admin endpoint on a port of its own.
        let admin = match body.contains("[admin]") {
            true => "",
            false => "\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        };
        let text = format!(
            "socket = {:?}\nshutdown_grace = \"2s\"\n{body}{admin}",
            socket.display().to_string()
        );
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let running = app::start(config).await.expect("shim starts");
        Shim {
            client: CriClient::new(&socket),
            running: Some(running),
            socket,
            _dir: dir,
        }
    }

    /// imageshim whose one backend ("gone") has no socket in `dir`.
    pub async fn with_backend_gone(dir: &Path) -> Shim {
        let socket = dir.join("nothing.sock");
        Shim::start(&backend_toml("gone", "containerd", &socket, true, &[], "")).await
    }

    /// `GET path` from this shim's admin endpoint: status code and body text.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let addr = self
            .running
            .as_ref()
            .unwrap()
            .admin_addr()
            .expect("admin endpoint on");
        let (status, body) = imageshim::telemetry::admin::get(&addr.to_string(), path)
            .await
            .unwrap();
        (status.as_u16(), String::from_utf8(body.to_vec()).unwrap())
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// A `[[backend]]` table.
pub fn backend_toml(
    name: &str,
    kind: &str,
    socket: &Path,
    default: bool,
    handlers: &[&str],
    runtime_config: &str,
) -> String {
    let handlers: Vec<String> = handlers.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "[[backend]]\nname = {name:?}\nkind = {kind:?}\nendpoint = \"unix://{}\"\ndefault = {default}\nhandlers = [{}]\nruntime_config = {runtime_config:?}\n",
        socket.display(),
        handlers.join(", ")
    )
}

/// The runtime a real-component run is against (`IMAGESHIM_TEST_RUNTIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Debian's containerd 1.6 (snapshotter native, handler `runc`).
    Containerd16,
    /// containerd 2.x: handlers `runc` (overlayfs, default) and `runc-native` (native).
    Containerd2,
    /// CRI-O 1.36: handlers `runc` (default) and `runc-b`, one image store.
    CriO,
}

impl Runtime {
    fn from_env() -> Runtime {
        match std::env::var("IMAGESHIM_TEST_RUNTIME").as_deref() {
            Ok("containerd-2") => Runtime::Containerd2,
            Ok("cri-o") => Runtime::CriO,
            Ok("containerd-1.6") | Err(_) => Runtime::Containerd16,
            Ok(other) => {
                panic!("IMAGESHIM_TEST_RUNTIME={other:?}: containerd-1.6, containerd-2 or cri-o")
            }
        }
    }

    /// The `kind` of its `[[backend]]`.
    pub fn kind(self) -> &'static str {
        match self {
            Runtime::CriO => "cri-o",
            _ => "containerd",
        }
    }

    /// `runtime_name` in its Version answer.
    pub fn runtime_name(self) -> &'static str {
        match self {
            Runtime::CriO => "cri-o",
            _ => "containerd",
        }
    }

    pub fn is_containerd(self) -> bool {
        self != Runtime::CriO
    }

    /// The flavor argument of hack/containerd.sh for a private containerd like it.
    pub fn containerd_flavor(self) -> &'static str {
        match self {
            Runtime::Containerd2 => "2",
            _ => "1.6",
        }
    }
}

/// Notes which runtime a real-component test ran against (or that it does not apply
/// to it), in the file hack/test.sh summarises as the runtime × ring matrix.
fn record_in_matrix(runtime: Runtime, test: &str, what: &str) {
    eprintln!("{test}: {what} against {runtime:?}");
    if let Some(path) = std::env::var_os("IMAGESHIM_TEST_MATRIX_LOG") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        // One write of the whole line: O_APPEND keeps concurrent tests' lines whole.
        file.write_all(format!("{runtime:?}\t{test}\t{what}\n").as_bytes())
            .unwrap();
    }
}

/// True for an image ID as a runtime answers PullImage: `sha256:<64 hex>` (containerd)
/// or the bare 64 hex (CRI-O).
pub fn is_image_id(id: &str) -> bool {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True when a runtime's pull error says the registry refused the credentials
/// (containerd 1.6: "401 Unauthorized"; 2.x: "no basic auth credentials" or
/// "401 Unauthorized"; CRI-O: "authentication required").
pub fn is_auth_refusal(message: &str) -> bool {
    let message = message.to_lowercase();
    [
        "401 unauthorized",
        "no basic auth credentials",
        "authentication required",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The real services hack/test.sh started for this run.
pub struct RealEnv {
    pub runtime: Runtime,
    pub runtime_dir: PathBuf,
    pub runtime_socket: PathBuf,
    /// The runtime's own config file (containerd `config.toml`, CRI-O `crio.conf`).
    pub runtime_config: PathBuf,
    pub registry: String,
    pub registry_log: PathBuf,
    pub auth_registry: String,
    pub auth_user: String,
    pub auth_password: String,
    pub hack_dir: PathBuf,
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the real-component tests run under hack/test.sh, which starts the runtime and the registries")
    })
}

/// Real-component tests run one at a time: they share one runtime and compare its
/// image list, which a concurrent pull would change.
static REAL_SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds the real-component tests' turn.
pub struct RealTurn(#[allow(dead_code)] tokio::sync::MutexGuard<'static, ()>);

impl RealEnv {
    /// The real services and this test's turn at them; `None` (the test is skipped with
    /// a message) when hack/test.sh did not start them — unless
    /// `IMAGESHIM_REQUIRE_REAL_TESTS` is set, as hack/test.sh and CI set it.
    pub async fn acquire(test: &str) -> Option<(RealEnv, RealTurn)> {
        Self::acquire_for(
            test,
            &[Runtime::Containerd16, Runtime::Containerd2, Runtime::CriO],
        )
        .await
    }

    /// As [`acquire`], for a test that only applies to containerd (it reads
    /// containerd's content store or runs a private containerd).
    pub async fn acquire_containerd(test: &str) -> Option<(RealEnv, RealTurn)> {
        Self::acquire_for(test, &[Runtime::Containerd16, Runtime::Containerd2]).await
    }

    /// The real services when the runtime under test is one of `runtimes`.
    pub async fn acquire_for(test: &str, runtimes: &[Runtime]) -> Option<(RealEnv, RealTurn)> {
        if std::env::var_os("IMAGESHIM_TEST_RUNTIME_DIR").is_none()
            && std::env::var_os("IMAGESHIM_REQUIRE_REAL_TESTS").is_none()
        {
            eprintln!("skipped {test}: needs a runtime and registries; run hack/test.sh");
            return None;
        }
        let runtime = Runtime::from_env();
        if !runtimes.contains(&runtime) {
            record_in_matrix(runtime, test, "not applicable");
            return None;
        }
        let turn = RealTurn(REAL_SERIAL.lock().await);
        record_in_matrix(runtime, test, "ran");
        Some((RealEnv::get(runtime), turn))
    }

    fn get(runtime: Runtime) -> RealEnv {
        let runtime_dir = PathBuf::from(required("IMAGESHIM_TEST_RUNTIME_DIR"));
        let registry_dir = PathBuf::from(required("IMAGESHIM_TEST_REGISTRY_DIR"));
        let (socket, config) = match runtime {
            Runtime::CriO => ("crio.sock", "crio.conf"),
            _ => ("containerd.sock", "config.toml"),
        };
        RealEnv {
            runtime,
            runtime_socket: runtime_dir.join(socket),
            runtime_config: runtime_dir.join(config),
            runtime_dir,
            registry: required("IMAGESHIM_TEST_REGISTRY"),
            registry_log: registry_dir.join("registry.log"),
            auth_registry: required("IMAGESHIM_TEST_AUTH_REGISTRY"),
            auth_user: required("IMAGESHIM_TEST_AUTH_USER"),
            auth_password: required("IMAGESHIM_TEST_AUTH_PASSWORD"),
            hack_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("hack"),
        }
    }

    /// Tells the shared runtime that `address` is a plain-HTTP registry: containerd's
    /// hosts.toml (read at each pull), CRI-O's registries.conf (reloaded on change).
    pub fn plain_http_registry(&self, address: &str) {
        if self.runtime == Runtime::CriO {
            let path = self.runtime_dir.join("registries.conf");
            let mut text = std::fs::read_to_string(&path).unwrap_or_default();
            text.push_str(&format!(
                "[[registry]]\nlocation = \"{address}\"\ninsecure = true\n"
            ));
            std::fs::write(&path, text).unwrap();
            self.reload_crio_registries();
            return;
        }
        let dir = self.runtime_dir.join("certs.d").join(address);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = format!(
            "server = \"http://{address}\"\n[host.\"http://{address}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        std::fs::write(dir.join("hosts.toml"), hosts).unwrap();
    }

    /// SIGHUP to the shared CRI-O, and waits until it logs the new registry config.
    fn reload_crio_registries(&self) {
        let log = self.runtime_dir.join("crio.log");
        let applied = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("Applied new registry configuration")
                .count()
        };
        let before = applied();
        let pid = std::fs::read_to_string(self.runtime_dir.join("crio.pid")).unwrap();
        let pid: i32 = pid.trim().parse().unwrap();
        // SAFETY: a plain kill(2) of the CRI-O this run started.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGHUP) },
            0,
            "SIGHUP to crio"
        );
        let started = std::time::Instant::now();
        while applied() == before {
            assert!(
                started.elapsed().as_secs() < 10,
                "CRI-O reloaded its registries"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The `[[backend]]` table for the shared runtime (optionally discovering its
    /// handlers from its own config).
    pub fn runtime_backend(&self, runtime_config: &str) -> String {
        backend_toml(
            "runtime",
            self.runtime.kind(),
            &self.runtime_socket,
            true,
            &[],
            runtime_config,
        )
    }

    pub fn direct(&self) -> CriClient {
        CriClient::new(&self.runtime_socket)
    }
}
