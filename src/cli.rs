//! Command-line arguments and subcommands. Parsing only: the work is in `app`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const DEFAULT_CONFIG: &str = "/etc/imageshim/config.toml";

#[derive(Debug, Parser)]
#[command(
    name = "imageshim",
    version = env!("IMAGESHIM_VERSION_LINE"),
    about = "CRI image-service shim in front of containerd or CRI-O"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the CRI socket until SIGTERM/SIGINT.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file and report every problem at once.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show queued and running pulls, the cap and backend readiness, read from a
    /// running imageshim's admin endpoint.
    Status {
        /// The admin endpoint (host:port); default: `[admin] listen` of --config, else
        /// 127.0.0.1:9595.
        #[arg(long)]
        admin: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the JSON view instead of the table.
        #[arg(long)]
        json: bool,
        /// Redraw every second until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
}
