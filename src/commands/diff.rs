//! `plaid-vcr diff OLD NEW`: did Plaid change in a way that breaks us? Two cassettes recorded
//! by the same flow at different times are compared by response *schema*, never by value.
//!
//! Interactions are grouped by endpoint and request shape (the request body's keys and JSON
//! types, not its values), and webhooks by type and code. Each group's answers are folded into
//! one schema per side: every JSON path (`accounts[].balances.available`) with the JSON types
//! seen there, the statuses and error codes, and the values of enum-like fields (`type`,
//! `subtype`, `*_code`, `products[]`, …). Then:
//!
//! - **breaking**: a path removed, its type changed (number → string, object → null, a value that
//!   is now sometimes null), a status, error code or content type changed;
//! - **informational**: a path added, a new value in an enum-like field, a null that now has a
//!   value, a group recorded on one side only.
//!
//! Ids, tokens, names, amounts, dates and `request_id`s differ between any two recordings and
//! are never drift. Beneath an array that is empty on one side (or a path whose type changed),
//! nothing can be compared, and nothing is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::store::cassette::{Cassette, CassetteError};
use crate::webhooks::webhook;

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Present in OLD, absent from NEW (breaking).
    Removed,
    /// Another JSON type (breaking).
    TypeChanged,
    /// Another HTTP status (breaking).
    StatusChanged,
    /// Another Plaid `error_code` (breaking).
    ErrorCodeChanged,
    /// Another Content-Type, e.g. a PDF that is now JSON (breaking).
    ContentTypeChanged,
    /// Absent from OLD, present in NEW (informational).
    Added,
    /// An enum-like field has a value OLD never had (informational).
    NewValue,
    /// Only null in OLD, a value in NEW (informational).
    NowSet,
    /// The endpoint (with this request shape) or webhook was recorded on one side only
    /// (informational: the flows differ, nothing to compare).
    OnlyInOld,
    /// See [`Kind::OnlyInOld`].
    OnlyInNew,
}

impl Kind {
    /// Whether a change of this kind breaks clients.
    pub fn breaking(self) -> bool {
        matches!(
            self,
            Kind::Removed | Kind::TypeChanged | Kind::StatusChanged | Kind::ErrorCodeChanged | Kind::ContentTypeChanged
        )
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    /// `identity/get`, or `webhook TRANSACTIONS SYNC_UPDATES_AVAILABLE`.
    pub endpoint: String,
    /// The request shape, when an endpoint was recorded with more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_shape: Option<String>,
    /// The JSON path in the answer (`-` for the status).
    pub path: String,
    pub kind: Kind,
    pub breaking: bool,
    /// OLD's types or values (`number`, `string|null`, `200`, `"checking"`).
    pub old: String,
    /// NEW's.
    pub new: String,
}

/// What `diff` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Groups compared (endpoint and request shape, or webhook type and code) on both sides.
    pub compared: usize,
    pub breaking: usize,
    pub informational: usize,
    /// Grouped by endpoint (and request shape), groups with breaking changes first; within a
    /// group breaking changes first, then by path.
    pub changes: Vec<Change>,
}

/// One side's answers for a group, folded into a schema.
#[derive(Debug, Default)]
struct Schema {
    samples: usize,
    statuses: BTreeSet<u16>,
    /// Media types (`application/pdf`), parameters left out.
    content_types: BTreeSet<String>,
    error_codes: BTreeSet<String>,
    /// Path → JSON types seen there.
    types: BTreeMap<String, BTreeSet<&'static str>>,
    /// Path of an enum-like field → values seen.
    values: BTreeMap<String, BTreeSet<String>>,
}

impl Schema {
    fn add(&mut self, answer: Option<(u16, &str)>, body: &Value) {
        self.samples += 1;
        if let Some((status, content_type)) = answer {
            self.statuses.insert(status);
            self.content_types
                .insert(crate::store::interaction::media_type(content_type));
        }
        if let Some(code) = body.get("error_code").and_then(Value::as_str) {
            self.error_codes.insert(code.to_owned());
        }
        self.walk(body, String::new());
    }

    fn walk(&mut self, value: &Value, path: String) {
        if !path.is_empty() {
            self.types.entry(path.clone()).or_default().insert(type_of(value));
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    self.walk(child, child_path);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, format!("{path}[]"));
                }
            }
            Value::String(s) if is_enum_like(&path, s) => {
                self.values.entry(path).or_default().insert(s.clone());
            }
            _ => {}
        }
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Fields whose values are a closed set Plaid extends over time.
const ENUM_FIELDS: [&str; 12] = [
    "type",
    "subtype",
    "status",
    "verification_status",
    "update_type",
    "products",
    "available_products",
    "billed_products",
    "consented_products",
    "webhook_type",
    "webhook_code",
    "iso_currency_code",
];

/// Whether the string at `path` is a value of an enum-like field: a known field name or one
/// ending in `_type`, `_code` or `_status`, holding a short identifier (never prose, an id or
/// a name).
fn is_enum_like(path: &str, value: &str) -> bool {
    let field = path.rsplit('.').next().unwrap_or(path).trim_end_matches("[]");
    // A postal code is an address, however its name ends.
    let known = ENUM_FIELDS.contains(&field)
        || field.ends_with("_type")
        || (field.ends_with("_code") && !matches!(field, "postal_code" | "zip_code"))
        || field.ends_with("_status");
    known
        && !value.is_empty()
        && value.len() <= 40
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The shape of a request body: its keys and JSON types, recursively, values left out.
fn shape(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| match v {
                    Value::Object(_) | Value::Array(_) => format!("{k}{}", shape(v)),
                    _ => k.clone(),
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => match items.first() {
            Some(first @ Value::Object(_)) => format!("[{}]", shape(first)),
            _ => "[]".into(),
        },
        _ => String::new(),
    }
}

type Groups = BTreeMap<(String, String), Schema>;

/// Reads a cassette into groups: (endpoint, request shape) and (webhook label, "").
fn groups(dir: &Path) -> Result<Groups, CassetteError> {
    let cassette = Cassette::new(dir);
    cassette.require_exists()?;
    let mut groups = Groups::new();
    for relative in cassette.list()? {
        let interaction = cassette.read(&relative)?;
        let request = shape(&Value::Object(interaction.request.body.clone()));
        groups.entry((interaction.endpoint.clone(), request)).or_default().add(
            Some((interaction.response.status, &interaction.response.content_type)),
            &interaction.response.body,
        );
    }
    for (_, w) in webhook::load(dir)? {
        let label = format!("webhook {}", w.label());
        groups
            .entry((label, String::new()))
            .or_default()
            .add(None, &w.webhook.body);
    }
    Ok(groups)
}

/// Compares the cassettes in `old` and `new`.
pub fn diff(old: &Path, new: &Path) -> Result<Report, CassetteError> {
    let (old, new) = (groups(old)?, groups(new)?);
    // Endpoints recorded with more than one request shape name the shape in their changes.
    let mut shapes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (endpoint, shape) in old.keys().chain(new.keys()) {
        shapes.entry(endpoint).or_default().insert(shape);
    }
    let mut changes = Vec::new();
    let mut compared = 0;
    let keys: BTreeSet<&(String, String)> = old.keys().chain(new.keys()).collect();
    for key in keys {
        let (endpoint, shape) = key;
        let named_shape = (shapes[endpoint.as_str()].len() > 1).then(|| shape.clone());
        let change = |path: &str, kind: Kind, old: String, new: String| Change {
            endpoint: endpoint.clone(),
            request_shape: named_shape.clone(),
            path: path.to_owned(),
            kind,
            breaking: kind.breaking(),
            old,
            new,
        };
        match (old.get(key), new.get(key)) {
            (Some(a), Some(b)) => {
                compared += 1;
                compare(a, b, &mut |path, kind, o, n| changes.push(change(path, kind, o, n)));
            }
            (Some(a), None) => changes.push(change(
                "-",
                Kind::OnlyInOld,
                format!("{} recorded", a.samples),
                "none".into(),
            )),
            (None, Some(b)) => changes.push(change(
                "-",
                Kind::OnlyInNew,
                "none".into(),
                format!("{} recorded", b.samples),
            )),
            (None, None) => unreachable!("every key comes from one of the two maps"),
        }
    }
    // Endpoints with breaking changes first; within each, breaking first, then by path.
    let broken: BTreeSet<(String, Option<String>)> = changes
        .iter()
        .filter(|c| c.breaking)
        .map(|c| (c.endpoint.clone(), c.request_shape.clone()))
        .collect();
    changes.sort_by_cached_key(|c| {
        let group = (c.endpoint.clone(), c.request_shape.clone());
        (!broken.contains(&group), group, !c.breaking, c.path.clone(), c.kind)
    });
    let breaking = changes.iter().filter(|c| c.breaking).count();
    Ok(Report {
        compared,
        breaking,
        informational: changes.len() - breaking,
        changes,
    })
}

fn list<T: std::fmt::Display>(set: &BTreeSet<T>) -> String {
    if set.is_empty() {
        return "none".into();
    }
    set.iter().map(ToString::to_string).collect::<Vec<_>>().join("|")
}

/// Compares two schemas of one group, calling `report` for each change.
fn compare(old: &Schema, new: &Schema, report: &mut dyn FnMut(&str, Kind, String, String)) {
    // Statuses and error codes only where both sides have them (webhooks have no status).
    if !old.statuses.is_empty() && !new.statuses.is_empty() && old.statuses != new.statuses {
        report("-", Kind::StatusChanged, list(&old.statuses), list(&new.statuses));
    }
    if !old.content_types.is_empty() && !new.content_types.is_empty() && old.content_types != new.content_types {
        report(
            "-",
            Kind::ContentTypeChanged,
            list(&old.content_types),
            list(&new.content_types),
        );
    }
    if old.error_codes != new.error_codes {
        report(
            "error_code",
            Kind::ErrorCodeChanged,
            list(&old.error_codes),
            list(&new.error_codes),
        );
    }
    // An error answer has another schema altogether: that is the status change, not dozens of
    // removed and added paths.
    if old.statuses != new.statuses && !old.statuses.is_empty() && !new.statuses.is_empty() {
        return;
    }
    for (path, old_types) in &old.types {
        match new.types.get(path) {
            None => {
                if comparable(path, old, new) {
                    report(path, Kind::Removed, list(old_types), "none".into());
                }
            }
            Some(new_types) if new_types != old_types => {
                if !comparable(path, old, new) {
                    continue;
                }
                let was_null = old_types.len() == 1 && old_types.contains("null");
                let kind = if was_null { Kind::NowSet } else { Kind::TypeChanged };
                report(path, kind, list(old_types), list(new_types));
            }
            Some(_) => {}
        }
    }
    for (path, new_types) in &new.types {
        if !old.types.contains_key(path) && comparable(path, new, old) {
            report(path, Kind::Added, "none".into(), list(new_types));
        }
    }
    for (path, new_values) in &new.values {
        let Some(old_values) = old.values.get(path) else {
            continue;
        };
        for value in new_values.difference(old_values) {
            report(path, Kind::NewValue, list(old_values), format!("{value:?}"));
        }
    }
}

/// Whether `path`, seen on side `a`, can be judged on side `b`: every enclosing object and
/// array of it has the same type on `b` (an array `b` saw elements of; an object `b` did not
/// see as null only). Otherwise the change is reported once, at the enclosing path, or not at
/// all (an empty list says nothing about its elements' fields).
fn comparable(path: &str, a: &Schema, b: &Schema) -> bool {
    let mut end = 0;
    while let Some(pos) = path[end..].find(['.', '[']) {
        let at = end + pos;
        let parent = &path[..at];
        if !parent.is_empty() {
            match (a.types.get(parent), b.types.get(parent)) {
                (Some(x), Some(y)) if x == y => {}
                _ => return false,
            }
            if path[at..].starts_with("[]") {
                let elements = format!("{parent}[]");
                if !b.types.contains_key(&elements) {
                    return false;
                }
            }
        }
        end = at + 1;
    }
    true
}

/// The report for people: one block per endpoint, breaking first; a last line with the counts.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let mut current: Option<(&str, Option<&str>)> = None;
    for c in &report.changes {
        let group = (c.endpoint.as_str(), c.request_shape.as_deref());
        if current != Some(group) {
            current = Some(group);
            match group.1 {
                Some(shape) => {
                    let _ = writeln!(out, "{} (request {shape})", group.0);
                }
                None => {
                    let _ = writeln!(out, "{}", group.0);
                }
            }
        }
        let label = if c.breaking { "BREAKING" } else { "info    " };
        let what = match c.kind {
            Kind::Removed => format!("removed (was {})", c.old),
            Kind::TypeChanged => format!("type changed: {} -> {}", c.old, c.new),
            Kind::StatusChanged => format!("status changed: {} -> {}", c.old, c.new),
            Kind::ErrorCodeChanged => format!("error_code changed: {} -> {}", c.old, c.new),
            Kind::ContentTypeChanged => format!("content type changed: {} -> {}", c.old, c.new),
            Kind::Added => format!("added ({})", c.new),
            Kind::NewValue => format!("new value {} (was {})", c.new, c.old),
            Kind::NowSet => format!("now set: {} -> {}", c.old, c.new),
            Kind::OnlyInOld => format!("only in OLD ({}); not compared", c.old),
            Kind::OnlyInNew => format!("only in NEW ({}); not compared", c.new),
        };
        let _ = writeln!(out, "  {label}  {}: {what}", c.path);
    }
    let _ = writeln!(
        out,
        "{} breaking, {} informational changes; {} endpoints and webhooks compared",
        report.breaking, report.informational, report.compared
    );
    out
}

/// `plaid-vcr diff OLD NEW`: "no" when a change is breaking.
pub fn run(old: &Path, new: &Path, json: bool) -> Result<super::Output, crate::error::Error> {
    let report = diff(old, new)?;
    let text = if json {
        super::json(&report, "drift")
    } else {
        render_text(&report)
    };
    Ok(super::Output {
        text,
        clean: report.breaking == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(old: Value, new: Value) -> Vec<(String, Kind)> {
        let (mut a, mut b) = (Schema::default(), Schema::default());
        a.add(Some((200, "application/json")), &old);
        b.add(Some((200, "application/json; charset=utf-8")), &new);
        let mut out = Vec::new();
        compare(&a, &b, &mut |path, kind, _, _| out.push((path.to_owned(), kind)));
        out
    }

    #[test]
    fn values_are_never_drift_but_schema_changes_are() {
        let old = json!({"accounts": [{"account_id": "a1", "balances": {"available": 100, "current": 110},
                         "mask": "0000", "name": "Plaid Checking", "subtype": "checking", "type": "depository"}],
                         "request_id": "r1", "item": {"error": null}});
        let same_schema = json!({"accounts": [{"account_id": "zz", "balances": {"available": 7.5, "current": 1},
                                 "mask": "9999", "name": "Other", "subtype": "checking", "type": "depository"},
                                {"account_id": "yy", "balances": {"available": 1, "current": 2},
                                 "mask": "1111", "name": "Second", "subtype": "checking", "type": "depository"}],
                                 "request_id": "r2", "item": {"error": null}});
        assert_eq!(changes(old.clone(), same_schema), []);

        let drifted = json!({"accounts": [{"account_id": "a1", "balances": {"current": 110},
                             "mask": 0, "name": "Plaid Checking", "subtype": "cd", "type": "depository",
                             "verification_status": "automatically_verified"}],
                             "request_id": "r1", "item": {"error": {"error_code": "X"}}});
        let mut got = changes(old, drifted);
        got.sort();
        assert_eq!(
            got,
            [
                ("accounts[].balances.available".to_owned(), Kind::Removed),
                ("accounts[].mask".to_owned(), Kind::TypeChanged),
                ("accounts[].subtype".to_owned(), Kind::NewValue),
                ("accounts[].verification_status".to_owned(), Kind::Added),
                ("item.error".to_owned(), Kind::NowSet),
            ]
        );
    }

    #[test]
    fn nothing_is_judged_beneath_an_empty_list_or_a_path_whose_type_changed() {
        let full = json!({"transactions": [{"amount": 1, "name": "x"}], "item": {"webhook": "u", "error": null}});
        let empty = json!({"transactions": [], "item": null});
        let got = changes(full, empty);
        assert_eq!(
            got,
            [("item".to_owned(), Kind::TypeChanged)],
            "one change at the object, none beneath"
        );
    }

    #[test]
    fn webhooks_are_compared_by_type_and_code() {
        let write = |dir: &Path, new_transactions: Value| {
            let w = webhook::Webhook {
                format: webhook::FORMAT,
                after: None,
                after_endpoint: None,
                registered_by: None,
                seq: 1,
                recorded_at: "2026-01-01T00:00:00Z".into(),
                webhook_type: Some("TRANSACTIONS".into()),
                webhook_code: Some("DEFAULT_UPDATE".into()),
                app_status: Some(200),
                unredacted: false,
                webhook: webhook::Payload {
                    body: json!({"webhook_type": "TRANSACTIONS", "webhook_code": "DEFAULT_UPDATE",
                                 "item_id": "i", "new_transactions": new_transactions}),
                },
            };
            webhook::write(dir, &w).unwrap();
        };
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(old.path(), json!(3));
        write(new.path(), json!("3"));
        let report = diff(old.path(), new.path()).unwrap();
        assert_eq!(report.breaking, 1, "{report:?}");
        let c = &report.changes[0];
        assert_eq!(
            (
                c.endpoint.as_str(),
                c.path.as_str(),
                c.kind,
                c.old.as_str(),
                c.new.as_str()
            ),
            (
                "webhook TRANSACTIONS DEFAULT_UPDATE",
                "new_transactions",
                Kind::TypeChanged,
                "number",
                "string"
            )
        );
    }

    #[test]
    fn a_pdf_that_became_json_is_breaking() {
        let (mut a, mut b) = (Schema::default(), Schema::default());
        a.add(Some((200, "application/pdf")), &Value::Null);
        b.add(Some((200, "application/json")), &json!({"report": {}}));
        let mut got = Vec::new();
        compare(&a, &b, &mut |path, kind, o, n| got.push((path.to_owned(), kind, o, n)));
        assert!(got.contains(&(
            "-".to_owned(),
            Kind::ContentTypeChanged,
            "application/pdf".to_owned(),
            "application/json".to_owned()
        )));
        assert!(Kind::ContentTypeChanged.breaking());
    }

    #[test]
    fn request_shapes_ignore_values() {
        assert_eq!(
            shape(&json!({"access_token": "a", "options": {"account_ids": ["x"]}})),
            shape(&json!({"access_token": "b", "options": {"account_ids": ["y", "z"]}}))
        );
        assert_ne!(
            shape(&json!({"access_token": "a"})),
            shape(&json!({"access_token": "a", "options": {}}))
        );
    }
}
