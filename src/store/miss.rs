//! Why a request missed: the recording closest to it, the fields that differ, and the
//! [`Miss`] explanation a client gets in its error body and the log gets in field names.
//!
//! Both sides are compared in the canonical form the key is computed over
//! ([`crate::store::key::canonical`]), so only differences that change the key are reported. Values are
//! the stored, redacted ones: a diff never shows a raw token or personal data.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::db::{Recorded, WithRequest};
use crate::store::interaction::split_index_key;
use crate::store::key;

/// One field whose value differs between a recording and a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// `Plaid-Version`, or a dotted body path such as `options.account_ids`.
    pub field: String,
    /// The recorded value (`null` when the recording lacks the field).
    pub recorded: Value,
    /// The request's value (`null` when the request lacks the field).
    pub got: Value,
}

impl std::fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Value| match v {
            Value::Null => "none".to_owned(),
            // Plaid-Version reads best bare; body values are shown as JSON.
            Value::String(s) if self.field == "Plaid-Version" => s.clone(),
            other => other.to_string(),
        };
        write!(
            f,
            "{}: recorded {}, got {}",
            self.field,
            show(&self.recorded),
            show(&self.got)
        )
    }
}

/// Everything a miss answer says: what was looked up and how it differs from the closest
/// recording. Values are the stored, pseudonymized ones (the body labels them so).
#[derive(Debug, Clone, PartialEq)]
pub struct Miss {
    /// One line: no recording, and the closest's differences if there is one.
    pub message: String,
    /// The matching key looked up.
    pub key: String,
    /// The command that records it.
    pub hint: String,
    pub endpoint: String,
    /// The request in canonical, pseudonymized form (what the key is computed over).
    pub request: Value,
    /// The closest recording of the endpoint with its differences, or `null`.
    pub closest: Value,
}

/// Explains why a request (endpoint, version, stored body, key) of `session` (`None`: the
/// default session) missed in `cassette`, given the endpoint's recordings with their
/// requests; `record_hint` is the command that would record it. A named session looked in its
/// own recordings and the default session's, so the closest is taken from both and the
/// message names both places.
#[allow(clippy::too_many_arguments)] // the request's parts, where it looked, and what to do
pub fn explain(
    endpoint: &str,
    plaid_version: Option<&str>,
    body: &Map<String, Value>,
    key: &str,
    recordings: &[WithRequest],
    cassette: &std::path::Path,
    session: Option<&str>,
    record_hint: String,
) -> Miss {
    let canonical = key::canonical(endpoint, plaid_version, body);
    let looked: Vec<WithRequest> = recordings
        .iter()
        .filter(|(r, _)| {
            let of = split_index_key(&r.index_key).0;
            of.is_none() || of == session
        })
        .cloned()
        .collect();
    let place = match session {
        Some(name) => format!(
            "session {name} (sessions/{name}/ of cassette {}) or in the cassette's default recordings",
            cassette.display()
        ),
        None => format!("cassette {}", cassette.display()),
    };
    let (message, closest) = match closest(&looked, endpoint, plaid_version, body) {
        Some((recorded, differences)) => {
            let lines: Vec<String> = differences.iter().map(ToString::to_string).collect();
            tracing::warn!(
                endpoint,
                key = key::prefix(key),
                closest = key::prefix(&recorded.index_key),
                // Field names only: values stay out of the logs.
                differing = %differences.iter().map(|d| d.field.as_str()).collect::<Vec<_>>().join(", "),
                "no recording; closest recording differs"
            );
            (
                format!(
                    "no recording for this {endpoint} request in {place}; the closest ({}) differs in {}",
                    recorded.file,
                    lines.join("; ")
                ),
                serde_json::json!({
                    "key": recorded.index_key,
                    "file": recorded.file,
                    "recorded_at": recorded.recorded_at,
                    "differences": differences,
                    "summary": lines,
                }),
            )
        }
        None => {
            tracing::warn!(
                endpoint,
                key = key::prefix(key),
                "no recording; nothing recorded for this endpoint"
            );
            (
                format!(
                    "no recording for this {endpoint} request in {place}, which has nothing recorded for {endpoint}"
                ),
                Value::Null,
            )
        }
    };
    Miss {
        message,
        key: key.to_owned(),
        hint: record_hint,
        endpoint: endpoint.to_owned(),
        request: canonical,
        closest,
    }
}

/// The differences between two requests to the same endpoint.
pub fn diff(
    recorded_version: Option<&str>,
    recorded: &Map<String, Value>,
    version: Option<&str>,
    request: &Map<String, Value>,
) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    if recorded_version != version {
        out.push(FieldDiff {
            field: "Plaid-Version".into(),
            recorded: recorded_version.map_or(Value::Null, Value::from),
            got: version.map_or(Value::Null, Value::from),
        });
    }
    let a = flatten(&key::canonical("", None, recorded)["body"]);
    let b = flatten(&key::canonical("", None, request)["body"]);
    let mut fields: Vec<&String> = a.keys().chain(b.keys()).collect();
    fields.sort();
    fields.dedup();
    for field in fields {
        let (x, y) = (a.get(field), b.get(field));
        if x != y {
            out.push(FieldDiff {
                field: field.clone(),
                recorded: x.cloned().unwrap_or(Value::Null),
                got: y.cloned().unwrap_or(Value::Null),
            });
        }
    }
    out
}

/// The recording of `endpoint` closest to the request (fewest differing fields; the newest
/// wins a tie), with its differences. `None` when nothing is recorded for the endpoint.
pub fn closest<'a>(
    recordings: &'a [WithRequest],
    endpoint: &str,
    version: Option<&str>,
    request: &Map<String, Value>,
) -> Option<(&'a Recorded, Vec<FieldDiff>)> {
    recordings
        .iter()
        .filter(|(r, _)| r.endpoint == endpoint)
        .map(|(r, recorded)| (r, diff(r.plaid_version.as_deref(), recorded, version, request)))
        .min_by(|(r1, d1), (r2, d2)| {
            d1.len()
                .cmp(&d2.len())
                .then_with(|| r2.recorded_at.cmp(&r1.recorded_at))
        })
}

/// Objects flattened to dotted paths; arrays and scalars are leaves, empty objects vanish.
fn flatten(value: &Value) -> Map<String, Value> {
    fn walk(value: &Value, prefix: &str, out: &mut Map<String, Value>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &path, out);
                }
            }
            // An empty object adds no field: `options: {}` and no options read the same.
            other if !prefix.is_empty() => {
                out.insert(prefix.to_owned(), other.clone());
            }
            _ => {}
        }
    }
    let mut out = Map::new();
    walk(value, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn differences_name_the_field_and_both_values() {
        let recorded = obj(json!({"access_token": "t", "options": {"account_ids": ["acc_2", "acc_1"]}}));
        let got = obj(json!({"access_token": "t", "options": {"account_ids": ["acc_1", "acc_3"]}}));
        let d = diff(Some("2020-09-14"), &recorded, None, &got);
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "Plaid-Version: recorded 2020-09-14, got none",
                r#"options.account_ids: recorded ["acc_1","acc_2"], got ["acc_1","acc_3"]"#,
            ]
        );
        assert!(diff(
            None,
            &recorded,
            None,
            &obj(json!({"options": {"account_ids": ["acc_1", "acc_2"]}, "access_token": "t"}))
        )
        .is_empty());
    }

    #[test]
    fn the_closest_recording_has_the_fewest_differences() {
        let rec = |key: &str, body: Value| {
            let recorded = Recorded {
                index_key: key.into(),
                endpoint: "identity/get".into(),
                plaid_version: None,
                recorded_at: "2026-01-01T00:00:00Z".into(),
                status: 200,
                file: format!("{key}.json"),
            };
            (recorded, obj(body))
        };
        let all = [
            rec("far", json!({"access_token": "u", "options": {"account_ids": ["x"]}})),
            rec("near", json!({"access_token": "t", "options": {"account_ids": ["x"]}})),
        ];
        let (best, d) = closest(&all, "identity/get", None, &obj(json!({"access_token": "t"}))).unwrap();
        assert_eq!(best.index_key, "near");
        assert_eq!(d.len(), 1);
        assert!(closest(&all, "accounts/get", None, &Map::new()).is_none());
    }
}
