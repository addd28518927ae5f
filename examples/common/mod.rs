//! The integration tests' support code the examples reuse: a CRI client, test images,
//! and /proc readings. Included by path, so each example compiles only this.
#![allow(dead_code)]

#[path = "../../integration/support/client.rs"]
pub mod client;
#[path = "../../integration/support/oci.rs"]
pub mod oci;
#[path = "../../integration/support/procstat.rs"]
pub mod procstat;
