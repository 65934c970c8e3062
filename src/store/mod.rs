//! Storage: recordings on disk and how they are found.
//!
//! Owns the two forms of a recording: the git-friendly [`cassette`] of JSON files (one
//! [`interaction`] per file) and the sled working store ([`db`]) replay answers from; the one
//! durable [`writer`] every recording goes through; the matching [`key`]; and the explanation
//! of a [`miss`] (the closest recording and what differs); [`parallel`] work over many files.
//!
//! Uses only `privacy/`'s rule table (which request fields are credentials, never keyed).
//! Knows nothing of HTTP connections, modes or webhooks' delivery; never stores anything that
//! has not been through redaction (its callers redact first, see [`crate::privacy`]).

pub mod cassette;
pub mod db;
pub mod interaction;
pub mod key;
pub mod miss;
pub mod parallel;
pub mod writer;
