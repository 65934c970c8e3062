//! Logging for the binary: the [`line`](mod@line) format used off a terminal and the batching
//! [`buffer`] that writes lines to stderr. Used by `main` only; the library logs through
//! `tracing` and never formats a body, a credential or a token into a line.

pub mod buffer;
pub mod line;
