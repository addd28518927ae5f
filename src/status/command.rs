//! `imageshim status`: reads `/debug/pulls` from the admin endpoint and prints it as a
//! table (or JSON), once or redrawn every second (`--watch`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::render::render;
use super::view::StatusView;
use crate::config::{Config, DEFAULT_ADMIN_LISTEN};
use crate::telemetry::admin;

/// The admin address to read: the flag, else the config file's, else the default.
pub fn admin_address(flag: Option<String>, config: &Path) -> anyhow::Result<String> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    if !config.exists() {
        return Ok(DEFAULT_ADMIN_LISTEN.to_string());
    }
    let config = Config::load(config)?;
    config.admin.listen.context(
        "the admin endpoint is turned off in the config ([admin] listen = \"\"); pass --admin",
    )
}

/// Fetches the view once.
pub async fn fetch(addr: &str) -> anyhow::Result<StatusView> {
    let (status, body) = admin::get(addr, "/debug/pulls").await?;
    anyhow::ensure!(
        status.is_success(),
        "admin endpoint {addr} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body)
        .with_context(|| format!("admin endpoint {addr}: not a status view"))
}

/// Prints the status once, or every second until Ctrl-C with `watch`.
pub async fn run(addr: &str, json: bool, watch: bool) -> anyhow::Result<()> {
    loop {
        let view = fetch(addr).await?;
        let text = match json {
            true => serde_json::to_string_pretty(&view)? + "\n",
            false => render(&view),
        };
        if !watch {
            print!("{text}");
            return Ok(());
        }
        // Home the cursor and clear the screen, then draw.
        print!("\x1b[H\x1b[2J{text}");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
