//! The `imageshim` binary: parses the command line and hands over to the library
//! (`serve`, `check-config`, `status`); logic lives in `imageshim::app` and below.

use std::process::ExitCode;

use clap::Parser;
use imageshim::cli::{Cli, Command};
use imageshim::config::Config;

/// mimalloc: per-call allocations (h2 frames, header maps, bodies) cost less than with
/// glibc's malloc, measured by hack/bench. Built without transparent huge pages, which
/// would give each of its first segments a whole 2 MiB page.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match check_config(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Status {
            admin,
            config,
            json,
            watch,
        } => match status(admin, &config, json, watch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("imageshim status: {err:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => match serve(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("imageshim: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Validates the config, reads each backend's runtime config, and prints each
/// backend's handlers with where their images land, warnings on stderr.
fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let loaded = Config::load(path)?;
    loaded.check_credential_files()?;
    let (handlers, warnings) = imageshim::backend::describe_configs(&loaded.backends)?;
    for line in handlers {
        println!("{line}");
    }
    for line in imageshim::credentials::Resolver::describe(&loaded.credentials.sources()) {
        println!("{line}");
    }
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}: ok", path.display());
    Ok(())
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    imageshim::telemetry::init_logging(config.log_level, config.log_format);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(imageshim::app::run(config, path))
}

fn status(
    admin: Option<String>,
    config: &std::path::Path,
    json: bool,
    watch: bool,
) -> anyhow::Result<()> {
    let addr = imageshim::status::command::admin_address(admin, config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(imageshim::status::command::run(&addr, json, watch))
}
