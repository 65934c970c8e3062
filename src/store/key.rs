//! The matching key: a SHA-256 over the canonical form of a request *as it is stored*.
//!
//! The canonical form is `{"body", "endpoint", "plaid_version", "v"}` with object keys sorted,
//! `client_id`/`secret` removed, `options` absent or null read as `{}`, and
//! `options.account_ids` sorted and de-duplicated, and a webhook URL (`webhook`,
//! `options.webhook`) read as the constant [`WEBHOOK_URL`]. Whitespace, key order, account_ids
//! order and where the app listens for webhooks never change the key; any other difference
//! (another access_token, other options) does.
//!
//! This module only normalizes: it never sees raw credentials or raw tokens, because the proxy
//! hands it the output of [`crate::privacy::redact`], so a real token and its pseudonym give one key.
//!
//! "Key" means four things in plaid-vcr; this module owns the first:
//! - the **matching key** (this module): SHA-256 of the canonical request, in file names,
//!   logs and the `plaid-vcr-key` header;
//! - the **index key** (`store::interaction::index_key`): the matching key, `#n` suffixed for
//!   step n of a sequence, under which the store keeps an answer;
//! - the **redaction secret** ([`crate::privacy::redact::load_secret`]): the HMAC secret personal-data
//!   pseudonyms are keyed with (`PLAID_VCR_REDACT_KEY`, `<store>/redact.key`);
//! - a **JSON key**: a field name in a body.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Version of the canonical form; bump it when normalization changes, so old keys are
/// recognisably old rather than silently different.
pub const KEY_VERSION: u64 = 1;

/// How many hex characters of a key name a cassette file and appear in logs.
pub const PREFIX_LEN: usize = 16;

/// What a webhook URL reads as in the canonical form: the app's own address (a port picked per
/// test run, a tunnel) never changes what Plaid answers, so it must not turn a replay into a miss.
pub const WEBHOOK_URL: &str = "<webhook url>";

/// The canonical JSON value a key is computed over.
///
/// Relies on `serde_json::Map` keeping keys sorted (its default, without `preserve_order`);
/// a unit test guards that assumption.
pub fn canonical(endpoint: &str, plaid_version: Option<&str>, body: &Map<String, Value>) -> Value {
    let mut body = body.clone();
    body.retain(|field, _| !crate::privacy::rules::is_credential(field));
    neutral_webhook(&mut body);
    let options = match body.remove("options") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(mut options)) => {
            if let Some(Value::Array(ids)) = options.get_mut("account_ids") {
                sort_dedup(ids);
            }
            neutral_webhook(&mut options);
            Value::Object(options)
        }
        // Not an object: Plaid will reject it; keep it as sent so it still keys distinctly.
        Some(other) => other,
    };
    body.insert("options".into(), options);

    let mut canonical = Map::new();
    canonical.insert("body".into(), Value::Object(body));
    canonical.insert("endpoint".into(), Value::String(endpoint.to_owned()));
    canonical.insert(
        "plaid_version".into(),
        plaid_version.map_or(Value::Null, |v| Value::String(v.to_owned())),
    );
    canonical.insert("v".into(), Value::from(KEY_VERSION));
    Value::Object(canonical)
}

/// The key: lowercase hex SHA-256 of the compact serialization of [`canonical`].
pub fn compute(endpoint: &str, plaid_version: Option<&str>, body: &Map<String, Value>) -> String {
    let canonical = canonical(endpoint, plaid_version, body);
    // A fallback here would give every request the same key, so no fallback: a `Value`'s map
    // keys are strings and writing to a Vec has no I/O error, so serialization cannot fail.
    let bytes = serde_json::to_vec(&canonical).expect("a serde_json::Value always serializes to a Vec");
    hex(&Sha256::digest(&bytes))
}

/// The first [`PREFIX_LEN`] characters of a key, for file names and log lines.
pub fn prefix(key: &str) -> &str {
    key.get(..PREFIX_LEN).unwrap_or(key)
}

/// The name cassette files of step `step` of `key` share before their extension:
/// `<key prefix>` for the first step, `<key prefix>-<step>` after.
pub fn file_stem(key: &str, step: u32) -> String {
    match step {
        0 | 1 => prefix(key).to_owned(),
        n => format!("{}-{n}", prefix(key)),
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Replaces a webhook URL string in `map` by [`WEBHOOK_URL`].
fn neutral_webhook(map: &mut Map<String, Value>) {
    if let Some(url @ Value::String(_)) = map.get_mut("webhook") {
        *url = Value::String(WEBHOOK_URL.to_owned());
    }
}

/// Sorts by each element's compact JSON text (a total order over mixed types) and removes
/// duplicates, so `["b","a","a"]` and `["a","b"]` key the same.
fn sort_dedup(values: &mut Vec<Value>) {
    let mut keyed: Vec<(String, Value)> = values.drain(..).map(|v| (v.to_string(), v)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    values.extend(keyed.into_iter().map(|(_, v)| v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn serde_json_maps_keep_keys_sorted() {
        // Keys, cassette files and replayed bytes all rely on this; a dependency turning on
        // serde_json's `preserve_order` feature would break it silently.
        let v: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        assert_eq!(v.to_string(), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn credentials_absent_options_and_account_id_order_do_not_change_the_key() {
        let a = obj(json!({"access_token": "t", "options": {"account_ids": ["b", "a", "b"]}}));
        let b =
            obj(json!({"client_id": "c", "secret": "s", "options": {"account_ids": ["a", "b"]}, "access_token": "t"}));
        assert_eq!(compute("identity/get", None, &a), compute("identity/get", None, &b));
        let c = obj(json!({"access_token": "t"}));
        let d = obj(json!({"access_token": "t", "options": {}}));
        let e = obj(json!({"access_token": "t", "options": null}));
        assert_eq!(compute("identity/get", None, &c), compute("identity/get", None, &d));
        assert_eq!(compute("identity/get", None, &c), compute("identity/get", None, &e));
    }

    #[test]
    fn where_the_app_listens_for_webhooks_does_not_change_the_key() {
        let a = obj(json!({"options": {"webhook": "https://example.net/webhook/aaaa"}, "institution_id": "ins_1"}));
        let b = obj(json!({"options": {"webhook": "https://example.net/webhook/bbbb"}, "institution_id": "ins_1"}));
        assert_eq!(
            compute("sandbox/public_token/create", None, &a),
            compute("sandbox/public_token/create", None, &b)
        );
        let c = obj(json!({"access_token": "t", "webhook": "https://example.net/webhook/cccc"}));
        let d = obj(json!({"access_token": "t", "webhook": "https://example.net/webhook/dddd"}));
        assert_eq!(
            compute("item/webhook/update", None, &c),
            compute("item/webhook/update", None, &d)
        );
        // Having a webhook or not still differs, as does everything else in the body.
        let e = obj(json!({"institution_id": "ins_1"}));
        assert_ne!(
            compute("sandbox/public_token/create", None, &a),
            compute("sandbox/public_token/create", None, &e)
        );
    }

    #[test]
    fn endpoint_version_token_and_options_change_the_key() {
        let base = obj(json!({"access_token": "t"}));
        let k = compute("identity/get", None, &base);
        assert_ne!(k, compute("accounts/get", None, &base));
        assert_ne!(k, compute("identity/get", Some("2020-09-14"), &base));
        assert_ne!(k, compute("identity/get", None, &obj(json!({"access_token": "u"}))));
        assert_ne!(
            k,
            compute(
                "identity/get",
                None,
                &obj(json!({"access_token": "t", "options": {"account_ids": ["a"]}}))
            )
        );
        assert_eq!(k.len(), 64);
        assert_eq!(prefix(&k).len(), PREFIX_LEN);
    }
}
