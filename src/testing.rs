//! Test support: the internals plaid-vcr's own integration tests and examples drive directly.
//!
//! Not a stable API. A Rust test of an app needs only the crate root: [`crate::ReplayServer`]
//! or [`crate::Server`] with a [`crate::Config`], and [`crate::Cassette`] to read recordings.
//! What is here, and why a test reaches for it:
//! - the privacy core ([`pseudonym`], [`detect`], [`numbers`], [`verdict`], [`redact`], [`rules`],
//!   [`scan`]), for property tests of pure functions: formats kept, redaction idempotent, no
//!   leak found, one verdict for redaction and scan;
//! - the matching [`key`], to show what does and does not change it;
//! - the [`dates`] shift, to hold it to Plaid's examples;
//! - the [`contract`], to hold Plaid's examples and their redaction to Plaid's spec;
//! - the working [`Store`], opened directly to see what survived a kill, and [`store_doctor`]
//!   to damage or downgrade it as a bad disk or an older plaid-vcr would;
//! - the [`Proxy`] without a socket ([`open_proxy`]), for fuzzing requests by the thousand;
//! - the webhook [`Signer`], which the tests' fake Plaid signs with, as Plaid does.

pub use crate::privacy::{detect, numbers, pseudonym, redact, rules, scan, verdict};
pub use crate::serve::proxy::Proxy;
pub use crate::serve::startup::open as open_proxy;
pub use crate::store::db::doctor as store_doctor;
pub use crate::store::db::{Store, StoreError};
pub use crate::store::key;
pub use crate::webhooks::signer::Signer;

/// The dates shift (`replay --shift-dates`).
pub mod dates {
    pub use crate::dates::{days_since, parse_day, shift_answer, shift_str};
}

/// Plaid's contract (`plaid-vcr validate`).
pub mod contract {
    pub use crate::contract::{Contract, Part, Severity, Violation};
}
