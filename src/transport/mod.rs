//! The HTTP/2 plumbing, in one place, behind a narrow face:
//!
//! - the caller side: [`authority`], a read-side filter in front of `h2`'s server that
//!   lets every `:authority` the runtimes accept through (and bounds what a header
//!   block may cost);
//! - the backend side: [`h2c`], imageshim's own HTTP/2 client to the runtime (frames,
//!   HPACK, Huffman, flow control), bounded against a hostile backend;
//! - the body type both sides use: [`body`];
//! - the unix stream under both: [`quiet_io`].
//!
//! Owns bytes on the wire and nothing of CRI: `server`, `pull`, `credentials` and
//! `backend` use it and never reach inside. Its parsers of outside bytes have fuzz
//! targets in `fuzz/` (run by `hack/fuzz`).

pub mod authority;
pub mod body;
pub mod h2c;
pub mod quiet_io;
