//! SIGHUP: re-reads the config file and applies what can change while serving —
//! `[credentials]`, `[pull]` (for pulls that start afterwards; the cap resizes at once)
//! and `[[pinned]]`. A changed socket, `[admin]`, `[[backend]]`, logging or shutdown
//! grace is reported as needing a restart; the rest still applies. A part that fails
//! (a bad provider config, an unroutable pin) keeps its previous value.

use std::path::Path;

use crate::config::Config;
use crate::credentials::Resolver;
use crate::server::pinned::PinnedSet;

use super::{pull_options, RunningShim};

/// What one reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub applied: Vec<&'static str>,
    /// Keys whose change takes a restart.
    pub needs_restart: Vec<&'static str>,
    /// Parts refused, each with why; their previous values stay in force.
    pub refused: Vec<String>,
}

impl RunningShim {
    /// Applies `new` where it can (see the module doc).
    pub fn reload(&self, new: Config) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut current = self.config.lock();
        report.needs_restart = restart_only_changes(&current, &new);
        match Resolver::new(&new.credentials.sources()) {
            Ok(resolver) => {
                let resolver = resolver.with_metrics(self.credential_metrics.clone());
                self.state.replace_credentials(resolver);
                current.credentials = new.credentials.clone();
                report.applied.push("credentials");
            }
            Err(err) => report
                .refused
                .push(format!("credentials: {}", crate::error_chain(&err))),
        }
        self.state.pulls.reconfigure(pull_options(&new.pull));
        current.pull = new.pull.clone();
        report.applied.push("pull");
        match PinnedSet::resolve(&new.pinned, &self.state.backends) {
            Ok(pins) => {
                self.state.pinned.replace(pins);
                current.pinned = new.pinned.clone();
                report.applied.push("pinned");
            }
            Err(err) => report.refused.push(err),
        }
        report
    }

    /// Reads `path` and reloads, logging the outcome (for SIGHUP).
    pub fn reload_from(&self, path: &Path) {
        let config = match Config::load(path) {
            Ok(config) => config,
            Err(err) => {
                tracing::warn!(config = %path.display(), error = %crate::error_chain(&err), "reload refused; the running config stays in force");
                return;
            }
        };
        let report = self.reload(config);
        for key in &report.needs_restart {
            tracing::warn!(key, "changed in the config file; needs a restart to apply");
        }
        for refused in &report.refused {
            tracing::warn!(error = %refused, "reload: part refused; its previous value stays in force");
        }
        tracing::info!(config = %path.display(), applied = ?report.applied, "config reloaded");
    }
}

fn restart_only_changes(current: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |key, same: bool| {
        if !same {
            changed.push(key);
        }
    };
    check("socket", current.socket == new.socket);
    check("socket_group", current.socket_group == new.socket_group);
    check(
        "shutdown_grace",
        current.shutdown_grace == new.shutdown_grace,
    );
    check("log_level", current.log_level == new.log_level);
    check("log_format", current.log_format == new.log_format);
    check("admin", current.admin == new.admin);
    check("backend", current.backends == new.backends);
    changed
}
