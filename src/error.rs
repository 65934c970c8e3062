//! Errors at the two outer boundaries: the Plaid-shaped JSON body HTTP clients receive
//! ([`ApiError`]), and the top-level [`Error`] the command line maps to an exit code.
//!
//! Each inner boundary (config, store, cassette, upstream) has its own enum in its own module;
//! this file only gathers them. Nothing here ever formats a request value (token, credential,
//! body) into a message: callers pass field names and keys, never data.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use crate::{
    cassette::CassetteError, config::ConfigError, redact::RedactError, store::StoreError, upstream::UpstreamError,
};

/// A failure of a whole command, mapped to an exit code by `main`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Redact(#[from] RedactError),
    #[error(transparent)]
    Rules(#[from] crate::rules::RuleError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("cannot listen on {addr}: {source}; pass --listen 127.0.0.1:0 to pick a free port")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The process exit code for this error: 2 for usage, configuration and I/O problems.
    ///
    /// Exit code 1 is reserved for a command whose answer is "no" (leaks found, strict misses),
    /// which is not an error and never passes through here.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// The `error_type` values plaid-vcr itself answers with; all are members of Plaid's
/// `PlaidErrorType`, so typed clients map them.
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
/// See [`INVALID_REQUEST`].
pub const API_ERROR: &str = "API_ERROR";

/// An error answered to an HTTP client in Plaid's own error shape, plus plaid-vcr's `key` and
/// `hint` where they help the caller act on it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub error_code: &'static str,
    pub error_message: String,
    pub key: Option<String>,
    pub hint: Option<String>,
    /// Further fields of plaid-vcr's own (a miss's `request`, `closest`, …).
    pub fields: Vec<(&'static str, Value)>,
}

impl ApiError {
    /// An error with no key and no hint.
    pub fn new(
        status: StatusCode,
        error_type: &'static str,
        error_code: &'static str,
        error_message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            error_type,
            error_code,
            error_message: error_message.into(),
            key: None,
            hint: None,
            fields: Vec::new(),
        }
    }

    /// Attaches the matching key the request was looked up under.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Attaches a one-line hint on what to do next.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a field of plaid-vcr's own to the body.
    pub fn with_field(mut self, name: &'static str, value: Value) -> Self {
        self.fields.push((name, value));
        self
    }

    /// The JSON body: the seven keys live Plaid errors carry, then `key` and `hint` if set.
    ///
    /// Pretty-printed with sorted keys, like Plaid's own responses.
    pub fn body(&self) -> Bytes {
        let mut body = json!({
            "display_message": Value::Null,
            "documentation_url": documentation_url(self.error_type, self.error_code),
            "error_code": self.error_code,
            "error_message": self.error_message,
            "error_type": self.error_type,
            "request_id": request_id(),
            "suggested_action": Value::Null,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(key) = &self.key {
                map.insert("key".into(), Value::String(key.clone()));
            }
            if let Some(hint) = &self.hint {
                map.insert("hint".into(), Value::String(hint.clone()));
            }
            for (name, value) in &self.fields {
                map.insert((*name).into(), value.clone());
            }
        }
        let mut bytes = serde_json::to_vec_pretty(&body).expect("a serde_json::Value always serializes to a Vec");
        bytes.push(b'\n');
        Bytes::from(bytes)
    }
}

/// Plaid's documentation link for its own codes; plaid-vcr's own codes have none (they are
/// explained by `hint` and in the README's "Errors" section).
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

    #[test]
    fn body_has_plaids_fields_and_ours() {
        let err = ApiError::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "PLAID_VCR_NO_RECORDING",
            "no recording",
        )
        .with_key("abc")
        .with_hint("record it");
        let v: Value = serde_json::from_slice(&err.body()).unwrap();
        for field in [
            "error_type",
            "error_code",
            "error_message",
            "display_message",
            "request_id",
            "key",
            "hint",
        ] {
            assert!(v.get(field).is_some(), "missing {field} in {v}");
        }
        assert_eq!(v["error_code"], "PLAID_VCR_NO_RECORDING");
        assert_eq!(v["request_id"].as_str().unwrap().len(), 15);
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(request_id(), request_id());
    }
}
