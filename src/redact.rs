//! The redaction stage: the single place data passes through before it is keyed or stored.
//!
//! The proxy calls [`Redactor::request`] before computing the key and [`Redactor::response`]
//! before writing anything, so whatever reaches the sled store, a cassette file or a key has
//! been through here. Today it drops credentials; it must never add fields or change types.

use serde_json::{Map, Value};

use crate::key::CREDENTIAL_FIELDS;

/// Turns requests and responses into the form that may be keyed and written to disk.
#[derive(Debug, Default, Clone)]
pub struct Redactor {}

impl Redactor {
    /// A redactor with the default rules.
    pub fn new() -> Self {
        Redactor {}
    }

    /// The request body as it is keyed and stored: credentials dropped entirely.
    pub fn request(&self, _endpoint: &str, mut body: Map<String, Value>) -> Map<String, Value> {
        for field in CREDENTIAL_FIELDS {
            body.remove(field);
        }
        body
    }

    /// The response body as it is stored.
    pub fn response(&self, _endpoint: &str, body: Value) -> Value {
        body
    }
}
