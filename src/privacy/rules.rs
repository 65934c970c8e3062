//! The rule engine shared by redaction and `scan`: which rule governs each value of a body.
//!
//! It owns the path language (`accounts[].owners[].names[]`, `**.email`), [`Rule`], the
//! [`Action`]s and the one list of credential field names (the built-in table of rules is
//! `privacy::builtin`'s), and walks JSON with [`walk`], the single visitor the one verdict
//! ([`crate::privacy::verdict`]) goes through for [`crate::privacy::redact`] (which rewrites
//! what it names) and [`crate::privacy::scan`] (which reports it) alike. Because both ask
//! [`walk`] which action governs a value, a `keep` on an object keeps, and exempts from
//! scanning, everything under it in both. No I/O and no pseudonyms here: rules decide, others
//! act.

use serde::Deserialize;
use serde_json::Value;

use crate::privacy::pseudonym::Kind;

pub use super::builtin::builtin;

/// The endpoint name rules see for webhook bodies: only rules for every endpoint (ids, tokens,
/// URLs, personal data by name and by detector) apply.
pub const WEBHOOK_ENDPOINT: &str = "webhook";

/// The credentials every Plaid request carries: the body field, and the header that can carry
/// it instead. Never keyed, never stored, reported by `scan` wherever one appears.
pub const CREDENTIALS: [(&str, &str); 2] = [("client_id", "plaid-client-id"), ("secret", "plaid-secret")];

/// Other names a credential goes by (OAuth-style clients, partner objects).
pub(super) const OTHER_CREDENTIAL_NAMES: [&str; 1] = ["client_secret"];

/// Whether `field` names a credential (see [`CREDENTIALS`]), compared without case.
pub fn is_credential(field: &str) -> bool {
    CREDENTIALS
        .iter()
        .flat_map(|(body, header)| [body, header])
        .chain(OTHER_CREDENTIAL_NAMES.iter())
        .any(|c| c.eq_ignore_ascii_case(field))
}

/// A config rule that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("redaction rule {index} ({path:?}) is invalid: {message}")]
pub struct RuleError {
    pub index: usize,
    pub path: String,
    pub message: String,
}

/// An action as the config file names it (`action = "keep"`); [`Action`] adds the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    Pseudonymize,
    Mask,
    Drop,
    Keep,
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
    /// What to do with the values the path matches.
    pub action: ActionName,
    /// For `pseudonymize`: token, id, name, email, phone, street, city, url or text.
    pub kind: Option<Kind>,
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
    pub(super) fn new(endpoint: Option<&str>, side: Side, path: &str, action: Action) -> Rule {
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
        // A pattern's last key or `[]` must meet the path's last segment (nothing after it could
        // take that segment), so most rules are ruled out without walking the pattern: what
        // keeps hundreds of rules cheap on every value of a body.
        let tail_fits = match (self.path.last(), path.last()) {
            (Some(Pat::Key(k)), Some(Seg::Key(s))) => k == s,
            (Some(Pat::Key(_)), _) => false,
            (Some(Pat::Each), Some(Seg::Index(_))) => true,
            (Some(Pat::Each), _) => false,
            _ => true,
        };
        tail_fits && match_path(&self.path, path)
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

/// Compiles the config's rules (checked first) followed by the built-in ones.
pub fn compile(config: &[RuleConfig]) -> Result<Vec<Rule>, RuleError> {
    let mut out = Vec::new();
    for (index, rule) in config.iter().enumerate() {
        let err = |message: &str| RuleError {
            index,
            path: rule.path.clone(),
            message: message.to_owned(),
        };
        let action = match (rule.action, rule.kind) {
            (ActionName::Pseudonymize, Some(kind)) => Action::Pseudonymize(kind),
            (ActionName::Pseudonymize, None) => {
                return Err(err(
                    "pseudonymize needs a kind (token, id, name, email, phone, street, city, url, text)",
                ))
            }
            (ActionName::Mask, _) => Action::Mask,
            (ActionName::Drop, _) => Action::Drop,
            (ActionName::Keep, _) => Action::Keep,
        };
        if parse_path(&rule.path).is_empty() {
            return Err(err("the path is empty"));
        }
        out.push(Rule::new(rule.endpoint.as_deref(), rule.side, &rule.path, action));
    }
    out.extend(builtin());
    Ok(out)
}

/// What [`walk`] calls on each string: its path, the action governing it, the string (to
/// rewrite or read); returns how many values it changed.
pub type Leaf<'a> = dyn FnMut(&[Seg], Option<Action>, &mut String) -> usize + 'a;

/// The rules that apply to one side of one endpoint, in order: what [`walk`] matches against.
pub fn applicable<'r>(rules: &'r [Rule], endpoint: &str, side: Side) -> Vec<&'r Rule> {
    rules.iter().filter(|r| r.applies(endpoint, side)).collect()
}

/// Walks `value` and calls `leaf` on every string with the action that governs it: the first
/// rule matching its path, or inherited from the nearest ancestor a rule matched (a `keep` or
/// `mask` on an object covers everything inside it), or `None` where no rule applies. Fields
/// and elements a `drop` governs are removed. Numbers, booleans and nulls are never visited.
/// Returns the drops plus what `leaf` returned (its count of changed values).
///
/// `path` is where `value` sits (`leaf` sees paths from there); rules are matched against the
/// part below it, relative to the body the rules are for.
pub fn walk(rules: &[&Rule], value: &mut Value, path: &mut Vec<Seg>, leaf: &mut Leaf<'_>) -> usize {
    let base = path.len();
    visit(rules, value, path, base, None, leaf)
}

fn visit(
    rules: &[&Rule],
    value: &mut Value,
    path: &mut Vec<Seg>,
    base: usize,
    here: Option<Action>,
    leaf: &mut Leaf<'_>,
) -> usize {
    let mut changed = 0;
    match value {
        Value::Object(map) => {
            map.retain(|key, child| {
                path.push(Seg::Key(key.clone()));
                let keep = match here.or_else(|| first_match(rules, &path[base..], child)) {
                    Some(Action::Drop) => {
                        changed += 1;
                        false
                    }
                    action => {
                        changed += visit(rules, child, path, base, action, leaf);
                        true
                    }
                };
                path.pop();
                keep
            });
        }
        Value::Array(items) => {
            let mut index = 0;
            items.retain_mut(|item| {
                path.push(Seg::Index(index));
                index += 1;
                let keep = match here.or_else(|| first_match(rules, &path[base..], item)) {
                    Some(Action::Drop) => {
                        changed += 1;
                        false
                    }
                    action => {
                        changed += visit(rules, item, path, base, action, leaf);
                        true
                    }
                };
                path.pop();
                keep
            });
        }
        Value::String(s) => changed += leaf(path, here, s),
        _ => {}
    }
    changed
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::builtin::{from_spec, SPEC_TABLE};
    use serde_json::json;

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
    fn an_action_on_an_object_governs_everything_inside_it_and_drops_remove() {
        let config: Vec<RuleConfig> = vec![
            RuleConfig {
                endpoint: None,
                side: Side::Response,
                path: "accounts[].owners[].addresses".into(),
                action: ActionName::Keep,
                kind: None,
            },
            RuleConfig {
                endpoint: None,
                side: Side::Response,
                path: "accounts[].extra".into(),
                action: ActionName::Drop,
                kind: None,
            },
        ];
        let rules = compile(&config).unwrap();
        let rules = applicable(&rules, "identity/get", Side::Response);
        let mut body = json!({"accounts": [{"extra": {"a": "b"}, "owners": [{
            "addresses": [{"data": {"street": "1 Main St"}}],
            "names": ["Alberta Charleson"]
        }]}]});
        let mut seen = Vec::new();
        let dropped = walk(&rules, &mut body, &mut Vec::new(), &mut |path, action, s| {
            seen.push((path_text(path), action, s.clone()));
            0
        });
        assert_eq!(dropped, 1);
        assert!(body["accounts"][0].get("extra").is_none());
        assert_eq!(
            seen,
            [
                (
                    "accounts[0].owners[0].addresses[0].data.street".to_owned(),
                    Some(Action::Keep),
                    "1 Main St".to_owned()
                ),
                (
                    "accounts[0].owners[0].names[0]".to_owned(),
                    Some(Action::Pseudonymize(Kind::Name)),
                    "Alberta Charleson".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn bad_config_rules_are_named() {
        let rule = RuleConfig {
            endpoint: None,
            side: Side::Both,
            path: "x".into(),
            action: ActionName::Pseudonymize,
            kind: None,
        };
        assert!(compile(&[rule]).unwrap_err().to_string().contains("needs a kind"));
        let parsed: Result<RuleConfig, _> = toml::from_str("path = \"x\"\naction = \"shred\"\n");
        assert!(parsed.unwrap_err().to_string().contains("shred"));
    }

    #[test]
    fn every_row_of_the_spec_table_compiles_to_a_scoped_rule() {
        let rules = from_spec();
        let rows = SPEC_TABLE.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(rules.len(), rows);
        assert!(rows > 800, "{rows}");
        // processor/identity/get answers one `account`; identity/get a list of `accounts`.
        let owner_name = [
            Seg::Key("account".into()),
            Seg::Key("owners".into()),
            Seg::Index(0),
            Seg::Key("names".into()),
            Seg::Index(0),
        ];
        let covering: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.applies("processor/identity/get", Side::Response) && r.matches(&owner_name))
            .collect();
        assert_eq!(covering.len(), 1, "the same Owner, on another endpoint");
        assert_eq!(covering[0].action, Action::Pseudonymize(Kind::Name));
    }

    #[test]
    fn credentials_are_one_list_compared_without_case() {
        assert!(is_credential("client_id") && is_credential("PLAID-SECRET") && is_credential("secret"));
        assert!(!is_credential("access_token"));
    }
}
