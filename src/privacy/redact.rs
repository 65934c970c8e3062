//! The redaction stage: the single place data passes through before it is keyed or stored.
//!
//! The proxy calls [`Redactor::request`] before computing the key and [`Redactor::response`]
//! before writing anything, so whatever reaches the sled store, a cassette file or a key has
//! been through here. Credentials are dropped; what the one verdict
//! ([`crate::privacy::verdict`]: [`Rule`]s, field names, the detectors) names as personal or
//! secret is replaced by its pseudonym ([`crate::privacy::pseudonym`]) or masked, everywhere it
//! appears in the body. It never adds a field, changes a JSON
//! type, an array length or a null, and never touches numbers or booleans.
//!
//! Requests are redacted without the redaction secret by default (personal data becomes a fixed
//! placeholder), so the key of a request is the same on every machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::privacy::pseudonym::{self, Kind, Pseudonymizer};
use crate::privacy::rules::{self, Rule, RuleConfig, RuleError, Side};
use crate::privacy::verdict::{self, Change, Piece};

/// Environment variable holding the redaction secret (any string; share it to get the same
/// pseudonyms of personal data on every machine). Named `_KEY` for compatibility.
pub const SECRET_ENV: &str = "PLAID_VCR_REDACT_KEY";
/// File in the store directory the redaction secret is generated into when the variable is unset.
pub const SECRET_FILE: &str = "redact.key";

/// A problem getting the redaction secret or reading rules.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("cannot read or create the redaction secret {path}: {source}; set {SECRET_ENV} or pass --store DIR")]
    Secret { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// How personal data in *requests* (e.g. `/identity/match`'s user) is stored and keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RequestPii {
    /// A fixed placeholder per kind: any value matches the recording; works on every machine.
    #[default]
    Placeholder,
    /// A keyed pseudonym: different people key differently, but replaying needs the same
    /// redaction secret as recording (set `PLAID_VCR_REDACT_KEY` in CI).
    Keyed,
}

/// The `[redact]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// How personal data in requests is handled (see [`RequestPii`]).
    #[serde(default)]
    pub request_pii: RequestPii,
    /// Rules checked before the built-in ones (first match wins).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// Turns requests and responses into the form that may be keyed and written to disk.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    pseudonymizer: Pseudonymizer,
    request_pii: RequestPii,
    raw: bool,
}

impl Redactor {
    /// A redactor with `rules` whose personal-data pseudonyms are keyed with `secret`.
    pub fn new(rules: Vec<Rule>, request_pii: RequestPii, secret: &[u8]) -> Self {
        Redactor {
            rules,
            pseudonymizer: Pseudonymizer::new(secret),
            request_pii,
            raw: false,
        }
    }

    /// `--no-redact`: drops credentials only; everything else is stored as received.
    pub fn raw() -> Self {
        Redactor {
            rules: Vec::new(),
            pseudonymizer: Pseudonymizer::new(b""),
            request_pii: RequestPii::Placeholder,
            raw: true,
        }
    }

    /// Whether this is the `--no-redact` redactor.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// The request body as it is keyed and stored: credentials dropped entirely, the rest
    /// redacted.
    pub fn request(&self, endpoint: &str, mut body: Map<String, Value>) -> Map<String, Value> {
        body.retain(|field, _| !rules::is_credential(field));
        self.redact_map(endpoint, Side::Request, &mut body);
        body
    }

    /// Redacts the fields of an object in place; returns how many values changed.
    fn redact_map(&self, endpoint: &str, side: Side, map: &mut Map<String, Value>) -> usize {
        let mut value = Value::Object(std::mem::take(map));
        let changed = self.redact(endpoint, side, &mut value);
        let Value::Object(redacted) = value else {
            // The walk rewrites strings and removes entries inside the root; never the root.
            unreachable!("redaction never changes the type of the value it walks")
        };
        *map = redacted;
        changed
    }

    /// The response body as it is stored.
    pub fn response(&self, endpoint: &str, mut body: Value) -> Value {
        self.redact(endpoint, Side::Response, &mut body);
        body
    }

    /// Redacts a stored exchange in place (for `plaid-vcr redact`): the request body
    /// (credentials included) and the response body, and clears the `--no-redact` marker.
    /// Returns how many values changed; the caller recomputes the key.
    pub fn redact_stored(
        &self,
        endpoint: &str,
        request: &mut Map<String, Value>,
        response: &mut Value,
        unredacted: &mut bool,
    ) -> usize {
        let before = request.len();
        request.retain(|field, _| !rules::is_credential(field));
        let mut changed = before - request.len();
        changed += self.redact_map(endpoint, Side::Request, request);
        changed += self.redact(endpoint, Side::Response, response);
        if !self.raw && *unredacted {
            *unredacted = false;
            changed += 1;
        }
        changed
    }

    /// Redacts `value` in place; returns how many values changed. What changes is what the
    /// one [`verdict`] names (so `scan` finds nothing after), echoes of a leak included.
    pub fn redact(&self, endpoint: &str, side: Side, value: &mut Value) -> usize {
        if self.raw {
            return 0;
        }
        let rules = rules::applicable(&self.rules, endpoint, side);
        verdict::body(
            &rules,
            value,
            &mut Vec::new(),
            side == Side::Response,
            &mut |_, s, pieces| self.rewrite(side, s, pieces),
        )
    }

    /// Rewrites the pieces of one string the verdict covers; 1 if it changed. A piece that is
    /// no leak comes out as it was, but for personal data in a request, which becomes its
    /// placeholder whatever it is, so that its key is the same on every machine.
    fn rewrite(&self, side: Side, s: &mut String, pieces: &[Piece]) -> usize {
        if pieces.is_empty() {
            return 0;
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for piece in pieces {
            let text = &s[piece.range.clone()];
            let new = match piece.change {
                Change::Pseudonym(kind) => self.pseudonym(side, kind, text),
                Change::Mask => pseudonym::mask(text),
            };
            out.push_str(&s[last..piece.range.start]);
            out.push_str(&new);
            last = piece.range.end;
        }
        out.push_str(&s[last..]);
        if out == *s {
            return 0;
        }
        *s = out;
        1
    }

    fn pseudonym(&self, side: Side, kind: Kind, raw: &str) -> String {
        let personal = !matches!(kind, Kind::Token | Kind::Id);
        if side == Side::Request && personal && self.request_pii == RequestPii::Placeholder {
            if raw.is_empty() || pseudonym::is_placeholder(raw) {
                return raw.to_owned();
            }
            return pseudonym::placeholder(kind);
        }
        self.pseudonymizer.pseudonymize(kind, raw)
    }
}

/// The redaction secret personal-data pseudonyms are keyed with: `PLAID_VCR_REDACT_KEY` if
/// set, else `<store>/redact.key`, generated once (32 random bytes, hex) with permissions 0600.
/// Never written anywhere else. (Not the matching key: see [`crate::store::key`].)
pub fn load_secret(store: &Path) -> Result<Vec<u8>, RedactError> {
    if let Ok(key) = std::env::var(SECRET_ENV) {
        if !key.trim().is_empty() {
            return Ok(key.trim().as_bytes().to_vec());
        }
    }
    let path = store.join(SECRET_FILE);
    let err = |source| RedactError::Secret {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(store).map_err(err)?;
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| err(std::io::Error::other(e.to_string())))?;
    // Hex, so the file can be copied into the variable as it is.
    let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(err)?;
    file.write_all(key.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(key.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(rules::builtin(), RequestPii::Placeholder, b"k")
    }

    #[test]
    fn requests_lose_credentials_and_tokens_but_keep_their_shape() {
        let r = redactor();
        let body = json!({"client_id": "c", "secret": "s", "access_token": "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6",
            "options": {"account_ids": ["BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp"]}});
        let out = r.request("identity/get", body.as_object().cloned().unwrap());
        assert!(out.get("client_id").is_none() && out.get("secret").is_none());
        let token = out["access_token"].as_str().unwrap();
        assert!(token.starts_with("access-sandbox-") && !token.contains("de3ce8ef"));
        assert_eq!(r.request("identity/get", out.clone()), out, "idempotent");
    }

    #[test]
    fn request_personal_data_becomes_a_placeholder_unless_keyed() {
        let body = json!({"access_token": "access-sandbox-x1", "user": {"legal_name": "Jane Q Public", "email_address": "jane@mail.com", "address": {"street": "1 Main St", "country": "US"}}});
        let out = redactor().request("identity/match", body.as_object().cloned().unwrap());
        assert_eq!(out["user"]["legal_name"], "[redacted name]");
        assert_eq!(out["user"]["email_address"], "[redacted email]");
        assert_eq!(out["user"]["address"]["street"], "[redacted street]");
        assert_eq!(out["user"]["address"]["country"], "US");
        let keyed = Redactor::new(rules::builtin(), RequestPii::Keyed, b"k");
        let out = keyed.request("identity/match", body.as_object().cloned().unwrap());
        assert!(out["user"]["email_address"].as_str().unwrap().ends_with("@example.net"));
    }

    #[test]
    fn unruled_strings_go_through_the_detectors() {
        let r = redactor();
        let out = r.response(
            "some/new_endpoint",
            json!({"note": "reach jane@mail.com or 1112224444", "count": 3, "ok": true, "id": null}),
        );
        let note = out["note"].as_str().unwrap();
        assert!(
            !note.contains("jane@mail.com") && !note.contains("1112224444"),
            "{note}"
        );
        assert!(note.starts_with("reach ") && note.contains("@example.net or "));
        assert_eq!(out["count"], 3);
        assert_eq!(out["ok"], true);
        assert!(out["id"].is_null());
    }

    #[test]
    fn config_rules_come_first() {
        let config = vec![RuleConfig {
            endpoint: Some("identity/get".into()),
            side: Side::Response,
            path: "accounts[].name".into(),
            action: rules::ActionName::Pseudonymize,
            kind: Some(Kind::Name),
        }];
        let r = Redactor::new(rules::compile(&config).unwrap(), RequestPii::Placeholder, b"k");
        let out = r.response("identity/get", json!({"accounts": [{"name": "Jane's vacation fund"}]}));
        assert_ne!(out["accounts"][0]["name"], "Jane's vacation fund");
        let out = r.response("accounts/get", json!({"accounts": [{"name": "Jane's vacation fund"}]}));
        assert_eq!(
            out["accounts"][0]["name"], "Jane's vacation fund",
            "the rule is scoped to identity/get"
        );
    }

    /// Plaid's own ids of answers are kept as they are, even one a detector would take for a
    /// number to hide (all digits: the test recorded `271925974403891` as zeros before).
    #[test]
    fn an_answers_request_id_is_kept_whatever_it_looks_like() {
        let r = Redactor::new(rules::builtin(), RequestPii::Placeholder, b"k");
        for id in ["271925974403891", "3nARps6TOYtbACO", "709d87607a2f4c0"] {
            let out = r.response("identity/get", serde_json::json!({"request_id": id}));
            assert_eq!(out["request_id"], id);
        }
    }
}
