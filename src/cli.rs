//! Command-line arguments and subcommands. Parsing only: the work is in `app`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const DEFAULT_CONFIG: &str = "/etc/imageshim/config.toml";

#[derive(Debug, Parser)]
#[command(
    name = "imageshim",
    version,
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
}
