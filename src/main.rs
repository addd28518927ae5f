//! The `imageshim` binary: parses the command line and hands over to the library
//! (`serve`, `check-config`, `status`, `adopt`); logic lives in `imageshim::app` and below.

use std::process::ExitCode;

use clap::Parser;
use imageshim::cli::{AdoptArgs, Cli, Command};
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
        Command::Adopt(args) => match adopt(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("imageshim adopt: {err:#}");
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
    let providers = loaded.check_credential_files()?;
    let (handlers, warnings) = imageshim::backend::describe_configs(&loaded.backends)?;
    for line in handlers {
        println!("{line}");
    }
    for line in providers {
        println!("{line}");
    }
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}: ok", path.display());
    Ok(())
}

/// Prints what adopt read, the config it generated (or its diff against the existing
/// one), the kubelet change and the next steps; writes the config with --write.
fn adopt(args: &AdoptArgs) -> anyhow::Result<()> {
    let options = args.options();
    let report = match args.reverse {
        true => imageshim::adopt::reverse(&options)?,
        false => imageshim::adopt::adopt(&options)?,
    };
    for note in &report.notes {
        println!("# {note}");
    }
    if let Some((path, text)) = &report.config {
        match &report.config_diff {
            Some(diff) if !diff.is_empty() => println!("\n## {} (changes)\n{diff}", path.display()),
            Some(_) => println!("\n## {}: unchanged", path.display()),
            None => println!("\n## {} (new)\n{text}", path.display()),
        }
    }
    let direction = if args.reverse {
        "back to the runtime"
    } else {
        "to imageshim"
    };
    println!(
        "\n## kubelet change ({direction}; apply it yourself)\n{}",
        report.kubelet_diff
    );
    match (args.write, &report.config) {
        (true, Some(_)) => {
            for done in report.write(&options.root)? {
                println!("# {done}");
            }
        }
        (false, Some((path, _))) => println!(
            "# dry run: nothing written; --write writes {}",
            path.display()
        ),
        _ => {}
    }
    println!("\n## next steps");
    for (index, step) in report.next_steps.iter().enumerate() {
        println!("{}. {step}", index + 1);
    }
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
