//! What imageshim is doing, for operators: the progress monitor that measures running
//! pulls on containerd backends (`monitor`, `attribution`), the admin view of queued
//! and running pulls, the cap and backend readiness (`view`), and its text rendering
//! for `imageshim status` (`render`). Reads the coordinator; never changes a pull.

pub mod attribution;
pub mod command;
pub mod monitor;
pub mod render;
pub mod view;
