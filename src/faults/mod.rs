//! Failures on demand: Plaid's documented errors and network faults, injected into answers when
//! a test asks (a `Plaid-VCR-Fault` header, a session's fault rules, the config's `[[faults]]`).
//!
//! Owns the [`catalogue`] of Plaid's errors, what a fault is ([`Fault`]), and the [`rules`] a
//! session keeps with their counts. Uses only `plaid_error` (the request ids, plaid-vcr's own
//! error answers); the proxy in `serve/` decides when to ask. A faulted request is never sent
//! upstream and never recorded.

pub mod catalogue;
pub mod rules;

use std::time::Duration;

use catalogue::PlaidErrorCode;

/// The request header asking for a fault on this one request.
pub const HEADER: &str = "plaid-vcr-fault";

/// The longest `delay=MS` accepted: a test asking for more is asking for a hang.
pub const MAX_DELAY: Duration = Duration::from_secs(120);

/// What a fault does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with one of Plaid's errors (`RATE_LIMIT_EXCEEDED` is the endpoint's own rate limit).
    Error(&'static PlaidErrorCode),
    /// `delay=MS`: answer as usual, that much later.
    Delay(Duration),
    /// `reset`: close the connection without an answer.
    Reset,
    /// `truncate`: send the answer's head and part of its body, then close.
    Truncate,
    /// `timeout`: hold the request until the client gives up (at most the client timeout), then
    /// close without an answer.
    Timeout,
}

/// A fault that is not one: the error an app's request (or a rule) gets for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no fault {asked}: {}", describe_close(close))]
pub struct UnknownFault {
    pub asked: String,
    /// The known codes closest to it.
    pub close: Vec<&'static str>,
}

fn describe_close(close: &[&str]) -> String {
    if close.is_empty() {
        "ask for one of Plaid's error codes (docs/failures.md lists them), or delay=MS, reset, truncate, timeout"
            .to_owned()
    } else {
        format!("did you mean {}?", close.join(", "))
    }
}

impl Fault {
    /// The fault `spec` names for a request to `endpoint`: a Plaid error code, or `delay=MS`,
    /// `reset`, `truncate`, `timeout`.
    pub fn parse(spec: &str, endpoint: &str) -> Result<Fault, UnknownFault> {
        let spec = spec.trim();
        let unknown = || UnknownFault {
            asked: spec.to_owned(),
            close: catalogue::close_matches(spec),
        };
        match spec {
            "reset" => return Ok(Fault::Reset),
            "truncate" => return Ok(Fault::Truncate),
            "timeout" => return Ok(Fault::Timeout),
            "RATE_LIMIT_EXCEEDED" => return Ok(Fault::Error(catalogue::rate_limit_for(endpoint))),
            _ => {}
        }
        if let Some(ms) = spec.strip_prefix("delay=") {
            let ms: u64 = ms.parse().map_err(|_| unknown())?;
            return Ok(Fault::Delay(Duration::from_millis(ms).min(MAX_DELAY)));
        }
        catalogue::get(spec).map(Fault::Error).ok_or_else(unknown)
    }

    /// Checks that `spec` names a fault (for a rule, before any request asks).
    pub fn check(spec: &str) -> Result<(), UnknownFault> {
        Fault::parse(spec, "").map(|_| ())
    }

    /// How the summary and reports name it.
    pub fn label(&self) -> String {
        match self {
            Fault::Error(e) => e.error_code.to_owned(),
            Fault::Delay(d) => format!("delay={}", d.as_millis()),
            Fault::Reset => "reset".into(),
            Fault::Truncate => "truncate".into(),
            Fault::Timeout => "timeout".into(),
        }
    }

    /// Whether this fault sticks to the item it hit (`ITEM_LOGIN_REQUIRED`: every later
    /// request with the item's access token fails the same way until the rule goes).
    pub fn sticks(&self) -> bool {
        matches!(self, Fault::Error(e) if e.error_code == "ITEM_LOGIN_REQUIRED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_plaid_codes_or_network_faults_and_unknown_ones_name_the_close_matches() {
        assert_eq!(Fault::parse("reset", "x/get"), Ok(Fault::Reset));
        assert_eq!(
            Fault::parse("delay=250", "x/get"),
            Ok(Fault::Delay(Duration::from_millis(250)))
        );
        assert_eq!(Fault::parse("delay=999999999", "x/get"), Ok(Fault::Delay(MAX_DELAY)));
        let Ok(Fault::Error(e)) = Fault::parse("RATE_LIMIT_EXCEEDED", "accounts/get") else {
            panic!()
        };
        assert_eq!(e.error_code, "ACCOUNTS_LIMIT");
        assert!(Fault::parse("ITEM_LOGIN_REQUIRED", "accounts/get").unwrap().sticks());
        let unknown = Fault::parse("ITEM_LOGIN_REQIRED", "accounts/get").unwrap_err();
        assert!(
            unknown.to_string().contains("did you mean ITEM_LOGIN_REQUIRED"),
            "{unknown}"
        );
        assert!(Fault::parse("delay=soon", "x").is_err());
    }
}
