//! Plaid's errors, as Plaid documents them: code, type, HTTP status, messages, documentation
//! link and what each applies to, generated into `plaid_errors.tsv` by `tools/plaid_errors.py`.
//! An injected error is answered with exactly these values, in a body with every field of the
//! pinned spec's `PlaidError` and a fresh `request_id`, so the official clients raise their
//! normal exception with that code.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{json, Value};

/// The table, generated; see the file's header for its source.
const TABLE: &str = include_str!("plaid_errors.tsv");

/// One of Plaid's errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaidErrorCode {
    pub error_code: &'static str,
    pub error_type: &'static str,
    pub status: u16,
    /// `None` where Plaid's `display_message` is `null`.
    pub display_message: Option<&'static str>,
    pub error_message: &'static str,
    pub documentation_url: &'static str,
    /// `*` for every endpoint, else an endpoint (`accounts/get`) or a product's (`transactions/*`).
    pub applies_to: &'static str,
}

impl PlaidErrorCode {
    /// The answer's body: Plaid's seven fields (those live Plaid errors carry, keys sorted as
    /// Plaid sorts them) with a fresh `request_id`.
    pub fn body(&self) -> Bytes {
        let body = json!({
            "display_message": self.display_message,
            "documentation_url": self.documentation_url,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "error_type": self.error_type,
            "request_id": crate::plaid_error::request_id(),
            "suggested_action": Value::Null,
        });
        let mut bytes = serde_json::to_vec_pretty(&body).expect("a serde_json::Value always serializes to a Vec");
        bytes.push(b'\n');
        Bytes::from(bytes)
    }
}

/// Every error of the table, by code.
pub fn all() -> &'static HashMap<&'static str, PlaidErrorCode> {
    static ALL: OnceLock<HashMap<&'static str, PlaidErrorCode>> = OnceLock::new();
    ALL.get_or_init(|| {
        TABLE
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let cells: Vec<&'static str> = line.split('\t').collect();
                // The table is generated, and checked by a test: seven cells, a numeric status.
                let [code, error_type, status, display, message, url, applies] = cells[..] else {
                    panic!("plaid_errors.tsv: a row without seven cells: {line}")
                };
                let status = status.parse().expect("plaid_errors.tsv: statuses are numbers");
                let error = PlaidErrorCode {
                    error_code: code,
                    error_type,
                    status,
                    display_message: (display != "\\N").then_some(display),
                    error_message: message,
                    documentation_url: url,
                    applies_to: applies,
                };
                (code, error)
            })
            .collect()
    })
}

/// The error `code`, if Plaid has it.
pub fn get(code: &str) -> Option<&'static PlaidErrorCode> {
    all().get(code)
}

/// The rate-limit error Plaid answers `endpoint` with: its own (`ACCOUNTS_LIMIT` for
/// `accounts/get`) where it has one, else `RATE_LIMIT`.
pub fn rate_limit_for(endpoint: &str) -> &'static PlaidErrorCode {
    all()
        .values()
        .find(|e| e.error_type == "RATE_LIMIT_EXCEEDED" && e.applies_to == endpoint)
        .or_else(|| get("RATE_LIMIT"))
        .expect("the catalogue has RATE_LIMIT (a test holds it)")
}

/// The known codes closest to `asked`, best first (at most five): for an unknown code's error.
pub fn close_matches(asked: &str) -> Vec<&'static str> {
    let asked = asked.to_ascii_uppercase();
    let mut scored: Vec<(usize, &'static str)> = all()
        .keys()
        .map(|code| {
            let shared = code.contains(asked.as_str()) || asked.contains(code);
            (if shared { 0 } else { distance(&asked, code) }, *code)
        })
        .collect();
    scored.sort();
    let limit = asked.len().max(4) / 2;
    scored
        .into_iter()
        .filter(|(d, _)| *d <= limit)
        .take(5)
        .map(|(_, code)| code)
        .collect()
}

/// Levenshtein distance, over bytes (codes are ASCII).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_has_every_error_an_integration_must_handle() {
        for code in [
            "ITEM_LOGIN_REQUIRED",
            "PRODUCT_NOT_READY",
            "RATE_LIMIT_EXCEEDED",
            "INSTITUTION_DOWN",
            "INTERNAL_SERVER_ERROR",
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
            "INVALID_ACCESS_TOKEN",
            "PLANNED_MAINTENANCE",
        ]
        .into_iter()
        .filter(|c| *c != "RATE_LIMIT_EXCEEDED")
        {
            assert!(get(code).is_some(), "{code} is missing");
        }
        let types: std::collections::BTreeSet<&str> = all().values().map(|e| e.error_type).collect();
        for t in [
            "ITEM_ERROR",
            "INVALID_INPUT",
            "INSTITUTION_ERROR",
            "RATE_LIMIT_EXCEEDED",
            "API_ERROR",
        ] {
            assert!(types.contains(t), "{t}");
        }
        assert!(all().len() > 100, "{}", all().len());
        let login = get("ITEM_LOGIN_REQUIRED").unwrap();
        assert_eq!(
            (login.status, login.error_type, login.display_message),
            (400, "ITEM_ERROR", None)
        );
        assert_eq!(get("INTERNAL_SERVER_ERROR").unwrap().status, 500);
        assert_eq!(get("ACCOUNTS_LIMIT").unwrap().status, 429);
        // The docs show no message for a handful (their description stands in where it can).
        assert!(all().values().filter(|e| e.error_message.is_empty()).count() <= 4);
    }

    #[test]
    fn rate_limits_are_the_endpoints_own_and_unknown_codes_have_close_matches() {
        assert_eq!(rate_limit_for("accounts/get").error_code, "ACCOUNTS_LIMIT");
        assert_eq!(
            rate_limit_for("transactions/sync").error_code,
            "TRANSACTIONS_SYNC_LIMIT"
        );
        assert_eq!(rate_limit_for("link/token/create").error_code, "RATE_LIMIT");
        let close = close_matches("ITEM_LOGIN_REQUIRD");
        assert_eq!(close.first(), Some(&"ITEM_LOGIN_REQUIRED"), "{close:?}");
        assert!(close_matches("zzzzzzzzzzzzzzzzzzzzzzzz").is_empty());
    }

    /// `PlaidErrorType`'s values in the pinned spec (plaid-openapi 2020-09-14.yml, 26f1a05).
    const PLAID_ERROR_TYPES: [&str; 24] = [
        "INVALID_REQUEST",
        "INVALID_RESULT",
        "INVALID_INPUT",
        "INSTITUTION_ERROR",
        "RATE_LIMIT_EXCEEDED",
        "API_ERROR",
        "ITEM_ERROR",
        "ASSET_REPORT_ERROR",
        "BASE_REPORT_ERROR",
        "RECAPTCHA_ERROR",
        "OAUTH_ERROR",
        "PAYMENT_ERROR",
        "BANK_TRANSFER_ERROR",
        "INCOME_VERIFICATION_ERROR",
        "MICRODEPOSITS_ERROR",
        "SANDBOX_ERROR",
        "PARTNER_ERROR",
        "SIGNAL_ERROR",
        "TRANSACTIONS_ERROR",
        "TRANSACTION_ERROR",
        "TRANSFER_ERROR",
        "CHECK_REPORT_ERROR",
        "CONSUMER_REPORT_ERROR",
        "USER_ERROR",
    ];

    /// Every body of the catalogue against the pinned spec's `PlaidError`: its required fields,
    /// the type of every field it has, `error_type` one of `PlaidErrorType`, and nothing else
    /// (`additionalProperties` is allowed by the spec, but Plaid sends these seven).
    #[test]
    fn every_body_of_the_catalogue_validates_against_plaid_error() {
        for error in all().values() {
            let body: Value = serde_json::from_slice(&error.body()).unwrap();
            let map = body.as_object().unwrap();
            for required in ["error_type", "error_code", "error_message", "display_message"] {
                assert!(map.contains_key(required), "{}: {required}", error.error_code);
            }
            let string = |k: &str| map[k].is_string();
            let string_or_null = |k: &str| map[k].is_string() || map[k].is_null();
            assert!(string("error_type") && string("error_code") && string("error_message") && string("request_id"));
            assert!(
                string("documentation_url") && string_or_null("display_message") && string_or_null("suggested_action")
            );
            assert!(
                PLAID_ERROR_TYPES.contains(&error.error_type),
                "{}: {}",
                error.error_code,
                error.error_type
            );
            assert_eq!(map.len(), 7, "{}", error.error_code);
            // Plaid documents one 2xx error (OAUTH_STATE_ID_ALREADY_PROCESSED: 208).
            assert!(
                (200..600).contains(&error.status),
                "{}: {}",
                error.error_code,
                error.status
            );
        }
    }

    #[test]
    fn bodies_have_every_field_plaid_sends_and_a_fresh_request_id() {
        let e = get("INSTITUTION_DOWN").unwrap();
        let (a, b): (Value, Value) = (
            serde_json::from_slice(&e.body()).unwrap(),
            serde_json::from_slice(&e.body()).unwrap(),
        );
        assert_ne!(a["request_id"], b["request_id"]);
        assert_eq!(a["error_code"], "INSTITUTION_DOWN");
        assert!(a["display_message"]
            .as_str()
            .unwrap()
            .contains("not currently responding"));
        assert!(a["documentation_url"]
            .as_str()
            .unwrap()
            .starts_with("https://plaid.com/docs/errors/"));
    }
}
