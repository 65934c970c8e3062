//! What the live contract check found in a run: the violations of Plaid's spec seen in requests
//! and answers as they passed ([`crate::contract`]), counted by where they are, for the
//! summary, each session's report and `--strict`; and the `Plaid-VCR-Violations` header a
//! client gets them in. Never a value: endpoint, part, path, rule and what was expected.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use http::HeaderValue;
use serde::Serialize;

use crate::contract::{Part, Severity, Violation};

/// Response header listing the violations of one exchange, as JSON (like Prism's
/// `sl-violations`): `[{"part","path","rule","expected","severity"}]`, at most [`HEADER_MAX`].
pub const VIOLATIONS_HEADER: &str = "plaid-vcr-violations";
/// The most violations one header lists; the rest are in the summary.
pub const HEADER_MAX: usize = 20;

/// What the check found in one exchange: kept with a replayed answer in the exact cache, so a
/// repeat is answered with its header and counted without being checked again.
#[derive(Debug)]
pub struct Found {
    pub endpoint: String,
    pub list: Vec<Violation>,
    pub header: HeaderValue,
}

/// One kind of violation and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    pub endpoint: String,
    pub part: Part,
    pub path: String,
    pub rule: String,
    pub expected: String,
    pub severity: Severity,
    pub count: u64,
}

/// Where a kind of violation is: endpoint, part, path and rule.
type Place = (String, &'static str, String, String);

/// The violations seen so far, by where they are.
#[derive(Debug, Default)]
pub struct Violations {
    seen: Mutex<BTreeMap<Place, Seen>>,
}

impl Violations {
    /// Counts the violations one body of an exchange with `endpoint` had.
    pub fn note(&self, endpoint: &str, found: &[Violation]) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for v in found {
            let key = (endpoint.to_owned(), v.part.as_str(), v.path.clone(), v.rule.clone());
            seen.entry(key)
                .or_insert_with(|| Seen {
                    endpoint: endpoint.to_owned(),
                    part: v.part,
                    path: v.path.clone(),
                    rule: v.rule.clone(),
                    expected: v.expected.clone(),
                    severity: v.severity,
                    count: 0,
                })
                .count += 1;
        }
    }

    /// Every kind seen, in order of endpoint, part, path and rule.
    pub fn list(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// How many requests the app sent broke the spec (errors, not warnings): what `--strict` fails.
pub fn request_errors(seen: &[Seen]) -> u64 {
    seen.iter()
        .filter(|s| s.part == Part::Request && s.severity == Severity::Error)
        .map(|s| s.count)
        .sum()
}

/// The header value for `found`: JSON, non-ASCII escaped (a header is visible ASCII).
pub fn header(found: &[Violation]) -> Option<HeaderValue> {
    if found.is_empty() {
        return None;
    }
    let listed: Vec<serde_json::Value> = found
        .iter()
        .take(HEADER_MAX)
        .map(|v| {
            serde_json::json!({
                "part": v.part, "path": v.path, "rule": v.rule, "expected": v.expected, "severity": v.severity,
            })
        })
        .collect();
    let text = serde_json::Value::Array(listed).to_string();
    let mut ascii = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' '..='~' => ascii.push(c),
            other => {
                let mut units = [0u16; 2];
                for unit in other.encode_utf16(&mut units) {
                    ascii.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    HeaderValue::from_str(&ascii).ok()
}

/// One line per kind for the summary on stderr.
pub fn lines(seen: &[Seen]) -> String {
    let mut out = String::new();
    for s in seen.iter().take(20) {
        let path = if s.path.is_empty() { "(body)" } else { s.path.as_str() };
        let severity = match s.severity {
            Severity::Error => "violation",
            Severity::Warning => "warning",
        };
        out.push_str(&format!(
            "  {severity} {} {} {path}: {} (expected {}) ×{}\n",
            s.endpoint,
            s.part.as_str(),
            s.rule,
            s.expected,
            s.count
        ));
    }
    if seen.len() > 20 {
        out.push_str(&format!(
            "  … and {} more kinds of violation (see --report FILE)\n",
            seen.len() - 20
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(part: Part, severity: Severity, expected: &str) -> Violation {
        Violation {
            part,
            path: "a[0].b".into(),
            rule: "enum".into(),
            expected: expected.into(),
            found: "\"x\"".into(),
            severity,
            reason: None,
        }
    }

    #[test]
    fn kinds_are_counted_and_only_request_errors_fail_strict() {
        let tally = Violations::default();
        tally.note("x/get", &[violation(Part::Request, Severity::Error, "one of \"é\"")]);
        tally.note("x/get", &[violation(Part::Request, Severity::Error, "one of \"é\"")]);
        tally.note("x/get", &[violation(Part::Response, Severity::Warning, "y")]);
        let seen = tally.list();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].count, 2);
        assert_eq!(request_errors(&seen), 2);
    }

    #[test]
    fn the_header_is_ascii_json_without_the_value() {
        let v = violation(Part::Request, Severity::Error, "one of \"é\"");
        let value = header(&[v]).unwrap();
        let text = value.to_str().unwrap();
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed[0]["expected"], "one of \"é\"");
        assert_eq!(parsed[0]["path"], "a[0].b");
        assert!(parsed[0].get("found").is_none());
        assert!(header(&[]).is_none());
    }
}
