//! The commands that read or rewrite a cassette without serving it: `ls` and `check`
//! ([`inspect`]), `scan` ([`scan`]), `redact` ([`redact`]), `diff` ([`diff`]: has Plaid's
//! schema drifted between two recordings) and `sandbox-token` ([`sandbox`]).
//!
//! The top of the house: may use every folder. Each command returns an [`Output`], the text
//! and the verdict; printing it and the exit code are `main`'s.

pub mod diff;
pub mod inspect;
pub mod redact;
pub mod sandbox;
pub mod scan;
pub mod webhook;

/// What a command answers: the text for stdout, and whether its answer is "yes" (exit 0)
/// or "no" (exit 1: leaks found, problems found, breaking drift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Everything the command prints, newline-terminated.
    pub text: String,
    /// False when the command's answer is "no".
    pub clean: bool,
}

impl Output {
    /// A command whose answer is always "yes" (`ls`, `redact`).
    fn done(text: String) -> Output {
        Output { text, clean: true }
    }
}

/// A report as pretty JSON; `what` names it in the invariant.
fn json(report: &impl serde::Serialize, what: &str) -> String {
    match serde_json::to_string_pretty(report) {
        Ok(text) => text + "\n",
        // Reports are strings, numbers and lists of them, which always serialize.
        Err(e) => unreachable!("a {what} report always serializes: {e}"),
    }
}
