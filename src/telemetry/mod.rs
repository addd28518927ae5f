//! What imageshim shows of itself: logging setup (tracing; level from config or
//! IMAGESHIM_LOG; text or json), the Prometheus registry and the per-call gRPC metrics
//! (`grpc`), and the loopback admin HTTP endpoint (`admin`). Must not decide policy
//! and must never put an image name or a secret into a metric label.

pub mod admin;
pub mod grpc;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber. `IMAGESHIM_LOG` wins over the configured level.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("IMAGESHIM_LOG").unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
