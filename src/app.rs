//! Wiring: builds everything from a validated config, serves, shuts down. Holds no policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backend::BackendSet;
use crate::config::{Config, CredentialsConfig, PullConfig};
use crate::credentials::Resolver;
use crate::pull::{Coordinator, PullOptions, PullStatsSnapshot};
use crate::server::{self, socket, ServerState};

/// A running imageshim: its socket and the means to stop it.
pub struct RunningShim {
    socket: PathBuf,
    state: Arc<ServerState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningShim {
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The pull coordinator's live statistics.
    pub fn pull_stats(&self) -> PullStatsSnapshot {
        self.state.pulls.stats()
    }

    /// Replaces the credential sources (docker config files, provider config) without
    /// touching the socket; on error the previous sources stay in force.
    pub fn reload_credentials(&self, credentials: &CredentialsConfig) -> anyhow::Result<()> {
        let resolver = Resolver::new(&credentials.sources()).context("credentials")?;
        self.state.replace_credentials(resolver);
        Ok(())
    }

    /// Stops accepting, drains in-flight calls (up to the grace), removes the socket.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Binds the socket and starts serving; returns once the socket accepts calls.
pub async fn start(config: Config) -> anyhow::Result<RunningShim> {
    let backends = BackendSet::from_config(&config.backends).context("backends")?;
    let socket = socket::open(&config.socket, config.socket_group.as_deref()).await?;
    let (listener, owned) = (socket.listener, socket.owned);
    let pulls = Coordinator::new(pull_options(&config.pull));
    let credentials = Resolver::new(&config.credentials.sources()).context("credentials")?;
    let state = Arc::new(ServerState::new(backends, pulls, credentials));
    let (stop, stopped) = oneshot::channel::<()>();
    let path = config.socket.clone();
    let grace = config.shutdown_grace;
    let serving = state.clone();
    let task = tokio::spawn(async move {
        server::serve(listener, serving, async move { drop(stopped.await) }, grace).await;
        if owned {
            socket::remove(&path);
        }
    });
    match owned {
        true => tracing::info!(socket = %config.socket.display(), "imageshim serving"),
        false => tracing::info!("imageshim serving the socket systemd passed (LISTEN_FDS)"),
    }
    Ok(RunningShim {
        socket: config.socket,
        state,
        stop: Some(stop),
        task,
    })
}

fn pull_options(pull: &PullConfig) -> PullOptions {
    PullOptions {
        permits: pull.permits(),
        cancel_abandoned: pull.cancel_abandoned,
        failure_backoff: pull.failure_backoff,
        progress_timeout: pull.progress_timeout,
    }
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully. SIGHUP re-reads the
/// config file's `[credentials]` and reloads credentials and plugin config.
pub async fn run(config: Config, config_path: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let shim = start(config).await?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&shim, config_path),
        }
    }
    tracing::info!("shutting down");
    shim.shutdown().await;
    Ok(())
}

fn reload(shim: &RunningShim, config_path: &Path) {
    let result = Config::load(config_path)
        .map_err(anyhow::Error::from)
        .and_then(|config| shim.reload_credentials(&config.credentials));
    match result {
        Ok(()) => tracing::info!(config = %config_path.display(), "credentials reloaded"),
        Err(err) => tracing::warn!(
            error = format!("{err:#}"),
            "reload refused; previous credentials stay in force"
        ),
    }
}
