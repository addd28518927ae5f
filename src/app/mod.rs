//! Wiring: builds everything from a validated config, serves, shuts down. Holds no policy.

mod reload;
mod tasks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backend::health::Health;
use crate::backend::BackendSet;
use crate::config::{Config, PullConfig};
use crate::credentials::{CredentialMetrics, Resolver};
use crate::pull::{Coordinator, PullOptions, PullStatsSnapshot};
use crate::server::pinned::{self, PinnedSet};
use crate::server::{self, socket, ServerState};
use crate::status::{monitor, view::Viewer};
use crate::telemetry::admin::{self, AdminState};
use tasks::Tasks;

/// A running imageshim: its socket, admin address and the means to stop it.
pub struct RunningShim {
    socket: PathBuf,
    admin: Option<SocketAddr>,
    state: Arc<ServerState>,
    /// The config in force (reload compares against it).
    config: parking_lot::Mutex<Config>,
    credential_metrics: CredentialMetrics,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _tasks: Tasks,
}

impl RunningShim {
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Where the admin endpoint listens (`None`: turned off).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The pull coordinator's live statistics.
    pub fn pull_stats(&self) -> PullStatsSnapshot {
        self.state.pulls.stats()
    }

    /// Stops accepting, drains in-flight calls (up to the grace), removes the socket.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn pull_options(pull: &PullConfig) -> PullOptions {
    PullOptions {
        permits: pull.permits(),
        cancel_abandoned: pull.cancel_abandoned,
        failure_backoff: pull.failure_backoff,
        progress_timeout: pull.progress_timeout,
    }
}

/// Binds the socket (and the admin endpoint) and starts serving; returns once the
/// socket accepts calls.
pub async fn start(config: Config) -> anyhow::Result<RunningShim> {
    let backends = BackendSet::from_config(&config.backends).context("backends")?;
    let (handlers, warnings) = backends.describe();
    for line in handlers {
        tracing::info!("{line}");
    }
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let pins = PinnedSet::resolve(&config.pinned, &backends).map_err(anyhow::Error::msg)?;
    let admin_listener = match &config.admin.listen {
        Some(addr) => Some(Arc::new(admin::bind(addr).await?)),
        None => None,
    };
    let credential_metrics = CredentialMetrics::default();
    let credentials = Resolver::new(&config.credentials.sources())
        .context("credentials")?
        .with_metrics(credential_metrics.clone());
    let socket = socket::open(&config.socket, config.socket_group.as_deref()).await?;
    let pulls = Coordinator::new(pull_options(&config.pull));
    let state = Arc::new(ServerState::new(backends, pulls, credentials));
    state.pinned.replace(pins);
    let health = Health::new(&state.backends);
    let mut tasks = background_tasks(&state, &health);
    let admin = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = admin_listener {
        let admin_state = Arc::new(AdminState {
            registry: registry(&state, &health, &credential_metrics),
            viewer: Viewer::new(state.pulls.clone(), health.clone(), &state.backends),
            health,
        });
        tasks.spawn("admin", move || {
            admin::serve(listener.clone(), admin_state.clone())
        });
    }
    let (stop, task) = serve(&config, socket, state.clone());
    Ok(RunningShim {
        socket: config.socket.clone(),
        admin,
        state,
        config: parking_lot::Mutex::new(config),
        credential_metrics,
        stop: Some(stop),
        task,
        _tasks: tasks,
    })
}

fn background_tasks(state: &Arc<ServerState>, health: &Arc<Health>) -> Tasks {
    let mut tasks = Tasks::default();
    let probes = health.clone();
    tasks.spawn("backend-health", move || probes.clone().probe_forever());
    let (pulls, backends) = (state.pulls.clone(), state.backends.all().to_vec());
    tasks.spawn("pull-progress", move || {
        monitor::measure_forever(pulls.clone(), backends.clone())
    });
    let keeper = state.clone();
    tasks.spawn("pinned-images", move || pinned::keep_pinned(keeper.clone()));
    tasks
}

/// Every metric, under the `imageshim_` prefix.
fn registry(state: &ServerState, health: &Health, credentials: &CredentialMetrics) -> Registry {
    let mut registry = Registry::with_prefix("imageshim");
    state.grpc_metrics.register(&mut registry);
    state.pulls.metrics().register(&mut registry);
    credentials.register(&mut registry);
    health.register(&mut registry);
    registry
}

fn serve(
    config: &Config,
    socket: socket::CriSocket,
    state: Arc<ServerState>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (listener, owned) = (socket.listener, socket.owned);
    let (stop, stopped) = oneshot::channel::<()>();
    let path = config.socket.clone();
    let grace = config.shutdown_grace;
    let task = tokio::spawn(async move {
        server::serve(listener, state, async move { drop(stopped.await) }, grace).await;
        if owned {
            socket::remove(&path);
        }
    });
    match owned {
        true => tracing::info!(socket = %config.socket.display(), "imageshim serving"),
        false => tracing::info!("imageshim serving the socket systemd passed (LISTEN_FDS)"),
    }
    (stop, task)
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully. SIGHUP re-reads the
/// config file and applies `[credentials]`, `[pull]` and `[[pinned]]` (see `reload`).
pub async fn run(config: Config, config_path: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let shim = start(config).await?;
    if let Some(addr) = shim.admin_addr() {
        tracing::info!(%addr, "admin endpoint: /metrics /healthz /readyz /debug/pulls");
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => shim.reload_from(config_path),
        }
    }
    tracing::info!("shutting down");
    shim.shutdown().await;
    Ok(())
}
