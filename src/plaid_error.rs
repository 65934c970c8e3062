//! What plaid-vcr answers an HTTP client with instead of a recording or upstream's own answer:
//! [`RequestError`], with its status, Plaid's error type and code, message, hint, and one
//! Plaid-shaped body (every field of Plaid's `PlaidError`, a fresh `request_id`).
//!
//! Nothing here ever formats a request value (token, credential, body) into a message: callers
//! pass field names and keys, never data. The one exception is deliberate and labelled: a miss
//! shows the request *as stored*, pseudonymized.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::body::Body;
use crate::store::db::StoreError;
use crate::store::miss::Miss;
use crate::upstream::UpstreamError;

/// The `error_type` values plaid-vcr itself answers with; all are members of Plaid's
/// `PlaidErrorType`, so typed clients map them.
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
/// See [`INVALID_REQUEST`].
pub const API_ERROR: &str = "API_ERROR";

/// Everything plaid-vcr answers an HTTP client with instead of a recording or upstream's own
/// answer. Each variant fixes its status, Plaid `error_type` and `error_code`; the table in
/// `docs/errors.md` lists them all (a test holds the two together).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("not found")]
    NotFound,
    #[error("this path only accepts {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("the Content-Type header is missing; send Content-Type: application/json")]
    MissingContentType,
    #[error("the Plaid-Version header is not valid text")]
    InvalidPlaidVersion,
    #[error("body could not be parsed as JSON (Content-Type is not application/json)")]
    NotJsonContentType,
    #[error("body could not be parsed as JSON")]
    NotJson,
    #[error("the request body could not be read")]
    UnreadableBody,
    #[error("body is nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive within {}", humantime::format_duration(*after))]
    BodyTimeout { after: Duration },
    #[error("the following required fields are missing: {}", fields.join(", "))]
    MissingCredentials { fields: Vec<&'static str> },
    #[error("{}", .0.message)]
    NoRecording(Box<Miss>),
    #[error("this {endpoint} request was recorded {recorded} times; this is call {call}")]
    SequenceExhausted {
        endpoint: String,
        key: String,
        recorded: u32,
        call: u32,
    },
    #[error("{0}")]
    UpstreamUnreachable(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    #[error("{0}")]
    Store(String),
    #[error("no webhook URL was registered under this receiver path in this plaid-vcr session")]
    UnknownWebhookReceiver,
    #[error("the app's webhook URL did not answer: {0}")]
    WebhookAppUnreachable(String),
    #[error("invalid session name: {rule}")]
    InvalidSession { rule: String },
    #[error("no session {name} in this run of plaid-vcr")]
    UnknownSession { name: String },
    #[error("no fault {asked:?}{}", if close.is_empty() { String::new() } else { format!("; did you mean {}?", close.join(", ")) })]
    UnknownFault { asked: String, close: Vec<&'static str> },
    #[error("invalid fault rule: {0}")]
    InvalidFaultRule(String),
    #[error("cannot fire this webhook: {0}")]
    InvalidWebhook(String),
    #[error("invalid Plaid-VCR-Today header {0:?}: not a day YYYY-MM-DD")]
    InvalidToday(String),
}

impl RequestError {
    /// The HTTP status Plaid (or a proxy) would use.
    pub fn status(&self) -> StatusCode {
        use RequestError::*;
        match self {
            NotFound | NoRecording(_) | SequenceExhausted { .. } | UnknownWebhookReceiver | UnknownSession { .. } => {
                StatusCode::NOT_FOUND
            }
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            MissingContentType
            | InvalidPlaidVersion
            | NotJsonContentType
            | NotJson
            | UnreadableBody
            | TooDeep { .. }
            | MissingCredentials { .. }
            | InvalidSession { .. }
            | UnknownFault { .. }
            | InvalidFaultRule(_)
            | InvalidWebhook(_)
            | InvalidToday(_) => StatusCode::BAD_REQUEST,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            UpstreamUnreachable(_) | WebhookAppUnreachable(_) => StatusCode::BAD_GATEWAY,
            UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Plaid's `error_type`.
    pub fn error_type(&self) -> &'static str {
        use RequestError::*;
        match self {
            UpstreamUnreachable(_) | UpstreamTimeout(_) | Store(_) | WebhookAppUnreachable(_) => API_ERROR,
            _ => INVALID_REQUEST,
        }
    }

    /// Plaid's `error_code` (Plaid's own where one fits, `PLAID_VCR_*` for plaid-vcr's own).
    pub fn error_code(&self) -> &'static str {
        use RequestError::*;
        match self {
            NotFound => "NOT_FOUND",
            MethodNotAllowed { .. } => "PLAID_VCR_METHOD_NOT_ALLOWED",
            MissingContentType | InvalidPlaidVersion => "INVALID_HEADERS",
            NotJsonContentType | NotJson | UnreadableBody | TooDeep { .. } => "INVALID_BODY",
            TooLarge { .. } => "PLAID_VCR_BODY_TOO_LARGE",
            BodyTimeout { .. } => "PLAID_VCR_CLIENT_TIMEOUT",
            MissingCredentials { .. } => "MISSING_FIELDS",
            NoRecording(_) => "PLAID_VCR_NO_RECORDING",
            SequenceExhausted { .. } => "PLAID_VCR_SEQUENCE_EXHAUSTED",
            UpstreamUnreachable(_) => "PLAID_VCR_UPSTREAM_UNREACHABLE",
            UpstreamTimeout(_) => "PLAID_VCR_UPSTREAM_TIMEOUT",
            Store(_) => "PLAID_VCR_STORE_ERROR",
            UnknownWebhookReceiver => "PLAID_VCR_UNKNOWN_WEBHOOK_RECEIVER",
            WebhookAppUnreachable(_) => "PLAID_VCR_WEBHOOK_APP_UNREACHABLE",
            InvalidSession { .. } => "PLAID_VCR_INVALID_SESSION",
            UnknownSession { .. } => "PLAID_VCR_UNKNOWN_SESSION",
            UnknownFault { .. } => "PLAID_VCR_UNKNOWN_FAULT",
            InvalidFaultRule(_) => "PLAID_VCR_INVALID_FAULT_RULE",
            InvalidWebhook(_) => "PLAID_VCR_INVALID_WEBHOOK",
            InvalidToday(_) => "PLAID_VCR_INVALID_TODAY",
        }
    }

    /// What to do about it, in one line, where there is something to do.
    pub fn hint(&self) -> Option<String> {
        use RequestError::*;
        let hint = match self {
            NotFound => {
                "plaid-vcr serves Plaid endpoints under /plaid-compatible/, e.g. POST /plaid-compatible/identity/get"
            }
            TooLarge { .. } => "raise max_body_bytes in the config or --max-body-bytes",
            BodyTimeout { .. } => "send the whole body promptly, or raise client_timeout / --client-timeout",
            MissingCredentials { .. } => {
                "send PLAID-CLIENT-ID and PLAID-SECRET headers (or client_id and secret in the body), \
                 or give plaid-vcr PLAID_CLIENT_ID and PLAID_SECRET"
            }
            NoRecording(miss) => return Some(miss.hint.clone()),
            SequenceExhausted { .. } => {
                "record more steps with --sequences, or set sequence_exhausted = \"repeat-last\""
            }
            UpstreamUnreachable(_) => "check --upstream and --upstream-ca, and that Plaid is reachable from here",
            UpstreamTimeout(_) => "raise connect_timeout / response_timeout, or check the network path to Plaid",
            UnknownWebhookReceiver => {
                "plaid-vcr receives webhooks while recording with --webhook-public-url, at the receiver URLs \
                 it put into this session's requests"
            }
            WebhookAppUnreachable(_) => "start the app's webhook endpoint; Plaid retries a failed delivery",
            InvalidSession { .. } => {
                "name a session with 1-200 characters of A-Z a-z 0-9 . _ - and /, e.g. tests/test_link/test_update \
                 (escape anything else as _, see docs/sessions.md)"
            }
            UnknownSession { .. } => "GET /plaid-vcr/sessions lists the sessions of this run",
            InvalidToday(_) => "send Plaid-VCR-Today: YYYY-MM-DD, e.g. 2026-03-01 (see docs/dates.md)",
            InvalidWebhook(_) => {
                "POST {\"webhook_type\": TYPE, \"webhook_code\": CODE, \"item_id\", \"session\", \"fields\": {..}, \
                 \"url\"} to /plaid-vcr/webhooks/fire, in replay (see docs/failures.md)"
            }
            UnknownFault { .. } | InvalidFaultRule(_) => {
                "ask for one of Plaid's error codes (docs/failures.md), or delay=MS, reset, truncate, timeout; a rule is \
                 {\"error_code\": CODE, \"endpoint\": \"/transactions/sync\", \"after\": 0, \"times\": 1}"
            }
            _ => return None,
        };
        Some(hint.to_owned())
    }

    /// The Plaid-shaped JSON body: the seven keys live Plaid errors carry, then plaid-vcr's
    /// own (`key`, `hint`, and a miss's `endpoint`, `pseudonymized_request`, `closest`).
    /// Pretty-printed with sorted keys, like Plaid's own responses.
    pub fn body(&self) -> Bytes {
        let mut body = json!({
            "display_message": Value::Null,
            "documentation_url": documentation_url(self.error_type(), self.error_code()),
            "error_code": self.error_code(),
            "error_message": self.to_string(),
            "error_type": self.error_type(),
            "request_id": request_id(),
            "suggested_action": Value::Null,
        });
        let map = body
            .as_object_mut()
            .expect("the body was built as an object two lines up");
        if let Some(hint) = self.hint() {
            map.insert("hint".into(), Value::String(hint));
        }
        match self {
            RequestError::NoRecording(miss) => {
                map.insert("key".into(), Value::String(miss.key.clone()));
                map.insert("endpoint".into(), Value::String(miss.endpoint.clone()));
                map.insert("pseudonymized_request".into(), miss.request.clone());
                map.insert("closest".into(), miss.closest.clone());
            }
            RequestError::SequenceExhausted { key, .. } => {
                map.insert("key".into(), Value::String(key.clone()));
            }
            _ => {}
        }
        let mut bytes = serde_json::to_vec_pretty(&body).expect("a serde_json::Value always serializes to a Vec");
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    /// The whole HTTP answer: status, JSON body, and the headers the error calls for (`Allow`
    /// on a 405; `Connection: close` on a 408, as the rest of the body may still trickle in).
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::new(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        match self {
            RequestError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            RequestError::BodyTimeout { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<&StoreError> for RequestError {
    fn from(e: &StoreError) -> Self {
        RequestError::Store(e.to_string())
    }
}

impl From<&UpstreamError> for RequestError {
    fn from(e: &UpstreamError) -> Self {
        match e {
            UpstreamError::Timeout(_) => RequestError::UpstreamTimeout(e.to_string()),
            _ => RequestError::UpstreamUnreachable(e.to_string()),
        }
    }
}

/// Plaid's documentation link for its own codes; plaid-vcr's own codes have none (they are
/// explained by `hint` and in `docs/errors.md`).
fn documentation_url(error_type: &str, error_code: &str) -> Value {
    if error_code.starts_with("PLAID_VCR_") {
        return Value::Null;
    }
    let anchor = match error_type {
        INVALID_REQUEST => "invalid-request-errors",
        API_ERROR => "api-errors",
        _ => return Value::Null,
    };
    Value::String(format!("https://plaid.com/docs/?ref=error#{anchor}"))
}

/// A fresh 15-character alphanumeric id, the length Plaid's own `request_id`s have.
pub fn request_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 15];
    // An id only has to be unlikely to repeat; if the OS generator fails we still answer, with
    // the time as entropy, rather than fail a request over its id.
    if getrandom::getrandom(&mut raw).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
    raw.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every variant. The match below has no wildcard: a new variant does not compile
    /// until it is listed here, and so checked against `docs/errors.md`.
    fn every_variant() -> Vec<RequestError> {
        use RequestError::*;
        let all = vec![
            NotFound,
            MethodNotAllowed { allow: "POST" },
            MissingContentType,
            InvalidPlaidVersion,
            NotJsonContentType,
            NotJson,
            UnreadableBody,
            TooDeep { max: 64 },
            TooLarge { limit: 10 },
            BodyTimeout {
                after: Duration::from_secs(30),
            },
            MissingCredentials {
                fields: vec!["client_id"],
            },
            NoRecording(Box::new(Miss {
                message: "no recording".into(),
                key: "abc".into(),
                hint: "record it".into(),
                endpoint: "identity/get".into(),
                request: json!({}),
                closest: Value::Null,
            })),
            SequenceExhausted {
                endpoint: "x/get".into(),
                key: "k".into(),
                recorded: 2,
                call: 3,
            },
            UpstreamUnreachable("refused".into()),
            UpstreamTimeout("slow".into()),
            Store("disk".into()),
            UnknownWebhookReceiver,
            WebhookAppUnreachable("refused".into()),
            InvalidSession { rule: "rule".into() },
            UnknownSession { name: "t".into() },
            UnknownFault {
                asked: "X".into(),
                close: vec!["Y"],
            },
            InvalidFaultRule("r".into()),
            InvalidWebhook("w".into()),
            InvalidToday("tuesday".into()),
        ];
        for e in &all {
            match e {
                NotFound
                | MethodNotAllowed { .. }
                | MissingContentType
                | InvalidPlaidVersion
                | NotJsonContentType
                | NotJson
                | UnreadableBody
                | TooDeep { .. }
                | TooLarge { .. }
                | BodyTimeout { .. }
                | MissingCredentials { .. }
                | NoRecording(_)
                | SequenceExhausted { .. }
                | UpstreamUnreachable(_)
                | UpstreamTimeout(_)
                | Store(_)
                | UnknownWebhookReceiver
                | WebhookAppUnreachable(_)
                | InvalidSession { .. }
                | UnknownSession { .. }
                | UnknownFault { .. }
                | InvalidFaultRule(_)
                | InvalidWebhook(_)
                | InvalidToday(_) => {}
            }
        }
        all
    }

    /// (status, error_type, error_code) of each row of the table in `docs/errors.md`.
    fn documented_errors() -> std::collections::BTreeSet<(u16, String, String)> {
        include_str!("../docs/errors.md")
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| situation"))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let status = cells.get(2)?.parse().ok()?;
                Some((status, cells[3].to_owned(), cells[4].trim_matches('`').to_owned()))
            })
            .collect()
    }

    #[test]
    fn every_error_is_in_the_errors_page_and_every_row_is_an_error() {
        let table = documented_errors();
        let ours: std::collections::BTreeSet<_> = every_variant()
            .iter()
            .map(|e| {
                (
                    e.status().as_u16(),
                    e.error_type().to_owned(),
                    e.error_code().to_owned(),
                )
            })
            .collect();
        for row in &ours {
            assert!(
                table.contains(row),
                "{row:?} is missing from the table in docs/errors.md"
            );
        }
        for row in &table {
            assert!(ours.contains(row), "docs/errors.md row {row:?} matches no RequestError");
        }
    }

    #[test]
    fn bodies_have_plaids_fields_and_ours() {
        for e in every_variant() {
            let v: Value = serde_json::from_slice(&e.body()).unwrap();
            for field in [
                "error_type",
                "error_code",
                "error_message",
                "display_message",
                "request_id",
            ] {
                assert!(v.get(field).is_some(), "missing {field} in {v}");
            }
            assert_eq!(v["error_code"], e.error_code());
            assert_eq!(v["request_id"].as_str().unwrap().len(), 15);
            let response = e.clone().into_response();
            assert_eq!(response.status(), e.status());
        }
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(request_id(), request_id());
    }
}
