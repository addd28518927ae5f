//! imageshim: a CRI image-service shim. It forwards every CRI call to the container
//! runtime verbatim and intercepts the ImageService calls to key images by
//! (reference, runtime handler) and route them to the right backend.

pub mod app;
pub mod backend;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod cri;
pub mod pull;
pub mod reference;
pub mod server;
pub mod telemetry;
