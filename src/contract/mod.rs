//! Plaid's contract: does a request, an answer or a webhook fit Plaid's OpenAPI spec?
//!
//! Owns the [`spec`] (the pinned one shipped in the binary, or any plaid-openapi file, turned
//! into JSON Schema), the [`Contract`] that validates bodies against it and names each
//! [`Violation`] (path, rule, expected, found: never a personal value), and the [`quirks`]
//! allow-list of what Plaid's spec is known to get wrong. Used by `plaid-vcr validate`
//! ([`crate::commands::validate`]) and live by the proxy (record, `replay --validate`).
//!
//! Below the store and the server: pure functions over `serde_json` values, no I/O but reading
//! a `--spec` file.

mod check;
pub mod quirks;
pub mod spec;

use serde::{Deserialize, Serialize};

pub use check::{Contract, ContractError};

/// Which body of an interaction a violation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The body the app sent.
    Request,
    /// Plaid's answer: the operation's 200 schema for a 2xx, `PlaidError` otherwise.
    Response,
    /// A webhook body, by its `webhook_type` and `webhook_code`.
    Webhook,
}

impl Part {
    /// `request`, `response` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Request => "request",
            Part::Response => "response",
            Part::Webhook => "webhook",
        }
    }
}

/// Whether a violation fails `validate` (and `--strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The body does not fit the spec.
    Error,
    /// A known quirk of Plaid's spec (with its reason), or drift: Plaid sent an enum value or
    /// an operation or webhook the spec does not know yet.
    Warning,
}

/// One place where a body does not fit the spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Which body.
    pub part: Part,
    /// The JSON path in it (`accounts[0].balances.limit`; empty for the body itself).
    pub path: String,
    /// The rule broken: a JSON Schema keyword (`type`, `required`, `enum`, `format`, …), or
    /// `operation` / `webhook` when the spec has no schema for the body.
    pub rule: String,
    /// What the spec expects there.
    pub expected: String,
    /// What was there: a type, a length, field names or an enum value; a string's text only
    /// masked (its first two characters and its length).
    pub found: String,
    pub severity: Severity,
    /// Why a warning is one: the quirk's reason, or the drift.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
