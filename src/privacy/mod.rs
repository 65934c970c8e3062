//! Privacy: what may reach a disk, a key or a log, decided for every value of a body.
//!
//! Owns the [`rules`] (which rule governs each JSON path) and their [`builtin`] table (generated
//! from Plaid's spec), the one [`verdict`] on every value (what is a leak), the [`redact`]ion
//! stage that rewrites what it names, the [`scan`] of a written file that reports what it
//! names, the text [`detect`]ors, the format-preserving [`pseudonym`]s and the standards they
//! keep ([`numbers`]: Luhn, IBAN, dates, IPs).
//!
//! The bottom of the house: pure functions over `serde_json` values and strings. Uses no other
//! folder, reads and writes no file but the redaction secret, and never logs a value.

mod builtin;
pub mod detect;
pub mod numbers;
pub mod pseudonym;
pub mod redact;
pub mod rules;
pub mod scan;
pub mod verdict;
