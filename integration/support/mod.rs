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

/// The real services hack/test.sh started for this run.
pub struct RealEnv {
    pub containerd_socket: PathBuf,
    pub containerd_config: PathBuf,
    pub registry: String,
    pub registry_log: PathBuf,
    pub auth_registry: String,
    pub auth_user: String,
    pub auth_password: String,
    pub hack_dir: PathBuf,
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the real-component tests run under hack/test.sh, which starts containerd and the registries")
    })
}

/// Real-component tests run one at a time: they share one containerd and compare its
/// image list, which a concurrent pull would change.
static REAL_SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds the real-component tests' turn.
pub struct RealTurn(#[allow(dead_code)] tokio::sync::MutexGuard<'static, ()>);

impl RealEnv {
    /// The real services and this test's turn at them; `None` (the test is skipped with
    /// a message) when hack/test.sh did not start them — unless
    /// `IMAGESHIM_REQUIRE_REAL_TESTS` is set, as hack/test.sh and CI set it.
    pub async fn acquire(test: &str) -> Option<(RealEnv, RealTurn)> {
        if std::env::var_os("IMAGESHIM_TEST_CONTAINERD_DIR").is_none()
            && std::env::var_os("IMAGESHIM_REQUIRE_REAL_TESTS").is_none()
        {
            eprintln!("skipped {test}: needs containerd and registries; run hack/test.sh");
            return None;
        }
        let turn = RealTurn(REAL_SERIAL.lock().await);
        Some((RealEnv::get(), turn))
    }

    fn get() -> RealEnv {
        let containerd_dir = PathBuf::from(required("IMAGESHIM_TEST_CONTAINERD_DIR"));
        let registry_dir = PathBuf::from(required("IMAGESHIM_TEST_REGISTRY_DIR"));
        RealEnv {
            containerd_socket: containerd_dir.join("containerd.sock"),
            containerd_config: containerd_dir.join("config.toml"),
            registry: required("IMAGESHIM_TEST_REGISTRY"),
            registry_log: registry_dir.join("registry.log"),
            auth_registry: required("IMAGESHIM_TEST_AUTH_REGISTRY"),
            auth_user: required("IMAGESHIM_TEST_AUTH_USER"),
            auth_password: required("IMAGESHIM_TEST_AUTH_PASSWORD"),
            hack_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("hack"),
        }
    }

    /// Writes the shared containerd's hosts.toml saying `address` is a plain-HTTP
    /// registry (containerd reads it at each pull).
    pub fn plain_http_registry(&self, address: &str) {
        let dir = self
            .containerd_config
            .parent()
            .unwrap()
            .join("certs.d")
            .join(address);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = format!(
            "server = \"http://{address}\"\n[host.\"http://{address}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        std::fs::write(dir.join("hosts.toml"), hosts).unwrap();
    }

    /// The `[[backend]]` table for the shared containerd (optionally discovering its
    /// handlers from its own config).
    pub fn containerd_backend(&self, runtime_config: &str) -> String {
        backend_toml(
            "containerd",
            "containerd",
            &self.containerd_socket,
            true,
            &[],
            runtime_config,
        )
    }

    pub fn direct(&self) -> CriClient {
        CriClient::new(&self.containerd_socket)
    }
}
