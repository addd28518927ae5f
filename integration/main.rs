//! All integration tests in one binary, so `support/` compiles once. The hermetic
//! rings (fake backends, the real binary, generated input) always run; the real-component
//! rings need the containerd and registries hack/test.sh starts and skip with a message
//! without them, unless `IMAGESHIM_REQUIRE_REAL_TESTS` is set (hack/test.sh and CI set
//! it, so a missing service fails there instead of passing silently).
#![allow(clippy::unwrap_used, unreachable_pub)] // test and example code: failures panic loudly; pub is for sharing support code

mod support;

mod abuse;
mod cli;
mod frames;
mod hermetic;
mod lifecycle;
mod properties;
mod pulls;
mod real;
mod real_clients;
mod real_credential_faults;
mod real_credentials;
mod real_faults;
mod real_handlers;
mod real_image;
mod real_operate;
mod real_pulls;
mod real_restart;
