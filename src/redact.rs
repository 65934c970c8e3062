//! The redaction stage: the single place data passes through before it is keyed or stored.
//!
//! The proxy calls [`Redactor::request`] before computing the key and [`Redactor::response`]
//! before writing anything, so whatever reaches the sled store, a cassette file or a key has
//! been through here. Credentials are dropped; tokens, identifiers and personal data are
//! replaced by pseudonyms ([`crate::pseudonym`]) according to [`Rule`]s; strings no rule covers
//! go through the generic detectors ([`crate::detect`]). It never adds a field, changes a JSON
//! type, an array length or a null, and never touches numbers or booleans.
//!
//! Requests are redacted without the redaction key by default (personal data becomes a fixed
//! placeholder), so the key of a request is the same on every machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::detect::{self, Detector};
use crate::interaction::Interaction;
use crate::key::CREDENTIAL_FIELDS;
use crate::pseudonym::{self, Kind, Pseudonymizer};

/// Environment variable holding the redaction key (any string; share it to get the same
/// pseudonyms of personal data on every machine).
pub const KEY_ENV: &str = "PLAID_VCR_REDACT_KEY";
/// File in the store directory the redaction key is generated into when the variable is unset.
pub const KEY_FILE: &str = "redact.key";

/// A problem getting the redaction key or reading rules.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("cannot read or create the redaction key {path}: {source}; set {KEY_ENV} or pass --store DIR")]
    Key { path: PathBuf, source: std::io::Error },
    #[error("redaction rule {index} ({path:?}) is invalid: {message}")]
    Rule {
        index: usize,
        path: String,
        message: String,
    },
}

/// What a rule does to the values its path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace each string with its pseudonym of this kind.
    Pseudonymize(Kind),
    /// Replace digits with `0` and letters with `x`, keeping length and punctuation.
    Mask,
    /// Remove the field (or array element's field) entirely.
    Drop,
    /// Leave as is, exempt from the generic detectors too.
    Keep,
}

/// Which half of an interaction a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Request,
    Response,
    #[default]
    Both,
}

/// How personal data in *requests* (e.g. `/identity/match`'s user) is stored and keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RequestPii {
    /// A fixed placeholder per kind: any value matches the recording; works on every machine.
    #[default]
    Placeholder,
    /// A keyed pseudonym: different people key differently, but replaying needs the same
    /// redaction key as recording (set `PLAID_VCR_REDACT_KEY` in CI).
    Keyed,
}

/// One rule as written in the config file's `[[redact.rules]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Endpoint it applies to (`identity/get`); every endpoint if absent.
    pub endpoint: Option<String>,
    /// `request`, `response` or `both` (default).
    #[serde(default)]
    pub side: Side,
    /// JSON path: keys separated by `.`, `[]` for every array element, `**` for any depth.
    pub path: String,
    /// `pseudonymize`, `mask`, `drop` or `keep`.
    pub action: String,
    /// For `pseudonymize`: token, id, name, email, phone, street, city, url or text.
    pub kind: Option<Kind>,
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

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    endpoint: Option<String>,
    side: Side,
    path: Vec<Pat>,
    /// What the rule does to matching values.
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
enum Pat {
    Key(String),
    Each,
    AnyDepth,
}

/// One step of the path to a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Rule {
    fn new(endpoint: Option<&str>, side: Side, path: &str, action: Action) -> Rule {
        Rule {
            endpoint: endpoint.map(str::to_owned),
            side,
            path: parse_path(path),
            action,
        }
    }

    /// A rule used only to match paths (allowlists).
    pub fn matcher(path: &str) -> Rule {
        Rule::new(None, Side::Both, path, Action::Keep)
    }

    /// Whether the rule covers this endpoint and side.
    pub fn applies(&self, endpoint: &str, side: Side) -> bool {
        self.endpoint.as_deref().is_none_or(|e| e == endpoint) && (self.side == Side::Both || self.side == side)
    }

    /// Whether the rule's path matches `path` exactly (with `[]` and `**`).
    pub fn matches(&self, path: &[Seg]) -> bool {
        match_path(&self.path, path)
    }
}

fn parse_path(text: &str) -> Vec<Pat> {
    let mut out = Vec::new();
    for part in text.split('.').filter(|p| !p.is_empty()) {
        if part == "**" {
            out.push(Pat::AnyDepth);
            continue;
        }
        let name = part.trim_end_matches("[]");
        if !name.is_empty() {
            out.push(Pat::Key(name.to_owned()));
        }
        for _ in 0..(part.len() - name.len()) / 2 {
            out.push(Pat::Each);
        }
    }
    out
}

fn match_path(pat: &[Pat], path: &[Seg]) -> bool {
    match (pat.first(), path.first()) {
        (None, None) => true,
        (Some(Pat::AnyDepth), _) => match_path(&pat[1..], path) || (!path.is_empty() && match_path(pat, &path[1..])),
        (Some(Pat::Key(k)), Some(Seg::Key(s))) if k == s => match_path(&pat[1..], &path[1..]),
        (Some(Pat::Each), Some(Seg::Index(_))) => match_path(&pat[1..], &path[1..]),
        _ => false,
    }
}

/// The innermost key of a path (`data` for `emails[0].data`, `names` for `names[0]`).
pub fn last_key(path: &[Seg]) -> &str {
    path.iter()
        .rev()
        .find_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .unwrap_or("")
}

/// Renders a path as `accounts[0].owners[0].names[0]`.
pub fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Fields that hold Plaid tokens, on any endpoint, at any depth.
const TOKEN_FIELDS: [&str; 8] = [
    "access_token",
    "public_token",
    "link_token",
    "processor_token",
    "user_token",
    "payment_token",
    "bank_transfer_token",
    "stripe_bank_account_token",
];
/// Fields that hold identifiers linking records, on any endpoint, at any depth.
const ID_FIELDS: [&str; 5] = [
    "account_id",
    "item_id",
    "persistent_account_id",
    "paired_account_id",
    "paired_item_id",
];

/// The built-in rules, after any from the config. Identity owners' fields are covered wherever
/// an `accounts[].owners[]` appears (identity/get and the endpoints sharing its shape).
pub fn default_rules() -> Vec<Rule> {
    use Action::*;
    let mut rules = Vec::new();
    for field in TOKEN_FIELDS {
        rules.push(Rule::new(
            None,
            Side::Both,
            &format!("**.{field}"),
            Pseudonymize(Kind::Token),
        ));
    }
    for field in ID_FIELDS {
        rules.push(Rule::new(
            None,
            Side::Both,
            &format!("**.{field}"),
            Pseudonymize(Kind::Id),
        ));
    }
    rules.push(Rule::new(None, Side::Both, "**.account_ids[]", Pseudonymize(Kind::Id)));
    rules.push(Rule::new(None, Side::Both, "**.webhook", Pseudonymize(Kind::Url)));
    // Sandbox test credentials are public defaults (user_good/pass_good) and choose the answer.
    rules.push(Rule::new(None, Side::Request, "options.override_username", Keep));
    rules.push(Rule::new(None, Side::Request, "options.override_password", Keep));

    let owner = "accounts[].owners[]";
    for (path, action) in [
        ("names[]", Pseudonymize(Kind::Name)),
        ("emails[].data", Pseudonymize(Kind::Email)),
        ("emails[].type", Keep),
        ("phone_numbers[].data", Pseudonymize(Kind::Phone)),
        ("phone_numbers[].type", Keep),
        ("addresses[].data.street", Pseudonymize(Kind::Street)),
        ("addresses[].data.city", Pseudonymize(Kind::City)),
        ("addresses[].data.postal_code", Mask),
        ("addresses[].data.region", Keep),
        ("addresses[].data.country", Keep),
        // Anything else an owner carries (fields added by newer API revisions) is personal.
        ("**", Pseudonymize(Kind::Text)),
    ] {
        rules.push(Rule::new(None, Side::Response, &format!("{owner}.{path}"), action));
    }
    rules.push(Rule::new(None, Side::Response, "accounts[].mask", Mask));
    rules.push(Rule::new(
        None,
        Side::Response,
        "accounts[].verification_name",
        Pseudonymize(Kind::Name),
    ));
    // No rule for `accounts[].name`: account names are usually product names ("Plaid Checking")
    // that tests assert on, so they are kept, but the generic detectors still run on them and
    // catch a phone or email typed into a user-assigned name. To pseudonymize them as names,
    // add a rule `accounts[].name` → pseudonymize/name.

    // The user /identity/match and similar endpoints send about the person.
    for (path, kind) in [
        ("user.legal_name", Some(Kind::Name)),
        ("user.name.**", Some(Kind::Name)),
        ("user.phone_number", Some(Kind::Phone)),
        ("user.email_address", Some(Kind::Email)),
        ("user.address.street", Some(Kind::Street)),
        ("user.address.city", Some(Kind::City)),
        ("user.address.postal_code", None),
        ("user.date_of_birth", None),
        ("user.id_number.value", None),
    ] {
        let action = kind.map_or(Mask, Pseudonymize);
        rules.push(Rule::new(None, Side::Request, path, action));
    }
    rules
}

/// Compiles the config's rules (checked first) followed by the defaults.
pub fn rules(config: &RedactConfig) -> Result<Vec<Rule>, RedactError> {
    let mut out = Vec::new();
    for (index, rule) in config.rules.iter().enumerate() {
        let err = |message: &str| RedactError::Rule {
            index,
            path: rule.path.clone(),
            message: message.to_owned(),
        };
        let action = match (rule.action.as_str(), rule.kind) {
            ("pseudonymize", Some(kind)) => Action::Pseudonymize(kind),
            ("pseudonymize", None) => {
                return Err(err(
                    "pseudonymize needs a kind (token, id, name, email, phone, street, city, url, text)",
                ))
            }
            ("mask", _) => Action::Mask,
            ("drop", _) => Action::Drop,
            ("keep", _) => Action::Keep,
            (other, _) => {
                return Err(err(&format!(
                    "unknown action {other:?}; use pseudonymize, mask, drop or keep"
                )))
            }
        };
        if parse_path(&rule.path).is_empty() {
            return Err(err("the path is empty"));
        }
        out.push(Rule::new(rule.endpoint.as_deref(), rule.side, &rule.path, action));
    }
    out.extend(default_rules());
    Ok(out)
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
    /// A redactor with `rules` whose personal-data pseudonyms are keyed with `key`.
    pub fn new(rules: Vec<Rule>, request_pii: RequestPii, key: &[u8]) -> Self {
        Redactor {
            rules,
            pseudonymizer: Pseudonymizer::new(key),
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
        for field in CREDENTIAL_FIELDS {
            body.remove(field);
        }
        let mut value = Value::Object(body);
        self.redact(endpoint, Side::Request, &mut value);
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The response body as it is stored.
    pub fn response(&self, endpoint: &str, mut body: Value) -> Value {
        self.redact(endpoint, Side::Response, &mut body);
        body
    }

    /// Redacts a stored interaction in place (for `plaid-vcr redact`): request (credentials
    /// included) and response; clears the `--no-redact` marker. Returns how many values changed.
    /// The caller recomputes the key.
    pub fn redact_interaction(&self, interaction: &mut Interaction) -> usize {
        let endpoint = interaction.endpoint.clone();
        let mut changed = 0;
        for field in CREDENTIAL_FIELDS {
            changed += usize::from(interaction.request.body.remove(field).is_some());
        }
        let mut request = Value::Object(std::mem::take(&mut interaction.request.body));
        changed += self.redact(&endpoint, Side::Request, &mut request);
        if let Value::Object(map) = request {
            interaction.request.body = map;
        }
        changed += self.redact(&endpoint, Side::Response, &mut interaction.response.body);
        if !self.raw && interaction.unredacted {
            interaction.unredacted = false;
            changed += 1;
        }
        changed
    }

    /// Redacts `value` in place; returns how many values changed.
    pub fn redact(&self, endpoint: &str, side: Side, value: &mut Value) -> usize {
        if self.raw {
            return 0;
        }
        let rules: Vec<&Rule> = self.rules.iter().filter(|r| r.applies(endpoint, side)).collect();
        self.walk(&rules, side, value, &mut Vec::new(), None)
    }

    /// Applies `here` (the action decided for this node, if any) to `value` and its children.
    fn walk(&self, rules: &[&Rule], side: Side, value: &mut Value, path: &mut Vec<Seg>, here: Option<Action>) -> usize {
        let mut changed = 0;
        match value {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    path.push(Seg::Key(key.clone()));
                    if let Some(child) = map.get_mut(&key) {
                        match here.or_else(|| first_match(rules, path, child)) {
                            Some(Action::Drop) => {
                                map.remove(&key);
                                changed += 1;
                            }
                            action => changed += self.walk(rules, side, child, path, action),
                        }
                    }
                    path.pop();
                }
            }
            Value::Array(items) => {
                let mut index = 0;
                items.retain_mut(|item| {
                    path.push(Seg::Index(index));
                    index += 1;
                    let keep = match here.or_else(|| first_match(rules, path, item)) {
                        Some(Action::Drop) => {
                            changed += 1;
                            false
                        }
                        action => {
                            changed += self.walk(rules, side, item, path, action);
                            true
                        }
                    };
                    path.pop();
                    keep
                });
            }
            Value::String(s) => {
                let new = match here {
                    Some(Action::Keep | Action::Drop) => None,
                    Some(Action::Mask) => Some(pseudonym::mask(s)),
                    Some(Action::Pseudonymize(kind)) => Some(self.pseudonym(side, kind, s)),
                    // A random-looking value under a secret-like key (`api_key`): hide it as an id.
                    None if detect::is_secret_like(&last_key(path).to_ascii_lowercase())
                        && detect::is_high_entropy(s) =>
                    {
                        Some(self.pseudonym(side, Kind::Id, s))
                    }
                    None => self.detect(side, s),
                };
                if let Some(new) = new.filter(|new| new != s) {
                    *s = new;
                    changed += 1;
                }
            }
            // Numbers, booleans and nulls are never changed: types and nullability survive.
            _ => {}
        }
        changed
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

    /// Replaces what the generic detectors find in a string no rule covers.
    fn detect(&self, side: Side, text: &str) -> Option<String> {
        let found = detect::find(text);
        if found.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (detector, range) in found {
            let piece = &text[range.clone()];
            let replacement = match detector {
                Detector::Email => self.pseudonym(side, Kind::Email, piece),
                Detector::Phone => self.pseudonym(side, Kind::Phone, piece),
                Detector::Street => self.pseudonym(side, Kind::Street, piece),
                Detector::Token => self.pseudonym(side, Kind::Token, piece),
                Detector::Ssn => pseudonym::mask(piece),
            };
            out.push_str(&text[last..range.start]);
            out.push_str(&replacement);
            last = range.end;
        }
        out.push_str(&text[last..]);
        Some(out)
    }
}

/// The action of the first rule matching `path`. A rule ending in `**` is a catch-all for
/// leaves: it never claims a whole object or array, so the specific rules below it still apply.
fn first_match(rules: &[&Rule], path: &[Seg], value: &Value) -> Option<Action> {
    let container = matches!(value, Value::Object(_) | Value::Array(_));
    rules
        .iter()
        .filter(|r| !(container && r.path.last() == Some(&Pat::AnyDepth)))
        .find(|r| r.matches(path))
        .map(|r| r.action)
}

/// The redaction key: `PLAID_VCR_REDACT_KEY` if set, else `<store>/redact.key`, generated once
/// (32 random bytes, hex) with permissions 0600. Never written anywhere else.
pub fn load_key(store: &Path) -> Result<Vec<u8>, RedactError> {
    if let Ok(key) = std::env::var(KEY_ENV) {
        if !key.trim().is_empty() {
            return Ok(key.trim().as_bytes().to_vec());
        }
    }
    let path = store.join(KEY_FILE);
    let err = |source| RedactError::Key {
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
    let key = crate::key::hex(&raw);
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
        Redactor::new(default_rules(), RequestPii::Placeholder, b"k")
    }

    #[test]
    fn paths_match_with_each_and_any_depth() {
        let p = |t: &str| parse_path(t);
        let path = vec![
            Seg::Key("accounts".into()),
            Seg::Index(0),
            Seg::Key("owners".into()),
            Seg::Index(1),
            Seg::Key("names".into()),
            Seg::Index(0),
        ];
        assert!(match_path(&p("accounts[].owners[].names[]"), &path));
        assert!(match_path(&p("**.names[]"), &path));
        assert!(match_path(&p("accounts[].owners[].**"), &path));
        assert!(!match_path(&p("accounts[].owners[].names"), &path));
        assert!(!match_path(&p("owners[].names[]"), &path));
        assert_eq!(path_text(&path), "accounts[0].owners[1].names[0]");
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
        let keyed = Redactor::new(default_rules(), RequestPii::Keyed, b"k");
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
    fn config_rules_come_first_and_bad_ones_are_named() {
        let config = RedactConfig {
            request_pii: RequestPii::Placeholder,
            rules: vec![RuleConfig {
                endpoint: Some("identity/get".into()),
                side: Side::Response,
                path: "accounts[].name".into(),
                action: "pseudonymize".into(),
                kind: Some(Kind::Name),
            }],
        };
        let r = Redactor::new(rules(&config).unwrap(), RequestPii::Placeholder, b"k");
        let out = r.response("identity/get", json!({"accounts": [{"name": "Jane's vacation fund"}]}));
        assert_ne!(out["accounts"][0]["name"], "Jane's vacation fund");
        let out = r.response("accounts/get", json!({"accounts": [{"name": "Jane's vacation fund"}]}));
        assert_eq!(
            out["accounts"][0]["name"], "Jane's vacation fund",
            "the rule is scoped to identity/get"
        );
        let bad = RedactConfig {
            rules: vec![RuleConfig {
                endpoint: None,
                side: Side::Both,
                path: "x".into(),
                action: "shred".into(),
                kind: None,
            }],
            ..Default::default()
        };
        assert!(rules(&bad).unwrap_err().to_string().contains("shred"));
    }
}
