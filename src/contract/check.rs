//! [`Contract`]: validates one body against its schema in the spec and names each violation.
//!
//! A validator is compiled the first time a schema is needed (an operation's request, its 200
//! answer, `PlaidError`, a webhook) from that schema and only the definitions it reaches, then
//! kept: a cassette of 10,000 interactions over a few dozen endpoints compiles a few dozen.
//! Safe to share between the proxy's connections.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::Value;

use crate::contract::quirks::Quirks;
use crate::contract::spec::{kind_of, Spec, SpecError};
use crate::contract::{Part, Severity, Violation};
use crate::privacy::rules::{path_text, Seg};
use crate::privacy::scan::masked;

/// A spec that cannot be read, or a schema in it the validator cannot compile.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("the spec's schema for {what} does not compile: {message}")]
    Schema { what: String, message: String },
}

/// The spec, its quirks and the validators compiled so far.
#[derive(Debug)]
pub struct Contract {
    spec: Spec,
    quirks: Quirks,
    /// By what they validate (`request accounts/get`, `response accounts/get`, `error`,
    /// `webhook TYPE CODE`); `None` where the spec has no schema for it.
    validators: RwLock<HashMap<String, Option<Arc<Validator>>>>,
}

impl Contract {
    /// The contract of the spec shipped in the binary (Plaid's, at the pinned commit).
    pub fn builtin() -> Contract {
        Contract::new(Spec::builtin())
    }

    /// The contract of a plaid-openapi file (YAML or JSON).
    pub fn from_file(path: &Path) -> Result<Contract, ContractError> {
        Ok(Contract::new(Spec::from_file(path)?))
    }

    fn new(spec: Spec) -> Contract {
        let quirks = Quirks::for_version(&spec.version);
        Contract {
            spec,
            quirks,
            validators: RwLock::new(HashMap::new()),
        }
    }

    /// The spec's `info.version`.
    pub fn version(&self) -> &str {
        &self.spec.version
    }

    /// The violations of `body`, the `part` of an interaction with `endpoint` (its answer's
    /// HTTP `status` picks the 200 schema or `PlaidError`; webhooks ignore both).
    pub fn check(
        &self,
        endpoint: &str,
        part: Part,
        status: u16,
        body: &Value,
    ) -> Result<Vec<Violation>, ContractError> {
        let (what, schema) = match self.schema_of(endpoint, part, status, body) {
            Ok(found) => found,
            Err(unknown) => return Ok(vec![*unknown]),
        };
        let Some(validator) = self.validator(&what, schema)? else {
            return Ok(Vec::new());
        };
        let errors: Vec<ValidationError<'_>> = validator.iter_errors(body).collect();
        let mut leaves = Vec::new();
        for error in &errors {
            flatten(error, &mut leaves);
        }
        let mut out: Vec<Violation> = Vec::new();
        for error in leaves {
            let violation = self.violation(endpoint, part, error);
            if !out.contains(&violation) {
                out.push(violation);
            }
        }
        Ok(out)
    }

    /// What to validate `body` with: a cache key and the schema, `None` when the spec has
    /// nothing to say (a binary answer); `Err` is the warning that the spec does not know it.
    fn schema_of(
        &self,
        endpoint: &str,
        part: Part,
        status: u16,
        body: &Value,
    ) -> Result<(String, Option<Value>), Box<Violation>> {
        let drift = |rule: &str, expected: &str, found: String| {
            Box::new(Violation {
                part,
                path: String::new(),
                rule: rule.to_owned(),
                expected: expected.to_owned(),
                found,
                severity: Severity::Warning,
                reason: Some(format!("drift: the spec {} does not describe it", self.spec.version)),
            })
        };
        match part {
            Part::Webhook => {
                let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or("?").to_owned();
                let (kind, code) = (field("webhook_type"), field("webhook_code"));
                match self.spec.webhook(&kind, &code) {
                    Some(schema) => Ok((format!("webhook {kind} {code}"), Some(schema))),
                    None => Err(drift("webhook", "a webhook of the spec", format!("{kind} {code}"))),
                }
            }
            Part::Response if !(200..300).contains(&status) => Ok(("error".into(), self.spec.error())),
            Part::Request | Part::Response => {
                let Some(operation) = self.spec.operation(endpoint) else {
                    return Err(drift(
                        "operation",
                        "an operation of the spec",
                        format!("POST /{endpoint}"),
                    ));
                };
                let schema = match part {
                    Part::Request => operation.request.clone(),
                    _ => operation.response.clone(),
                };
                Ok((format!("{} {endpoint}", part.as_str()), schema))
            }
        }
    }

    /// The validator for `what`, compiled from `schema` the first time.
    fn validator(&self, what: &str, schema: Option<Value>) -> Result<Option<Arc<Validator>>, ContractError> {
        if let Some(found) = self.validators.read().unwrap_or_else(|p| p.into_inner()).get(what) {
            return Ok(found.clone());
        }
        let compiled = match schema {
            None => None,
            Some(root) => {
                let document = self.spec.document(&root);
                let validator = jsonschema::options()
                    .with_draft(Draft::Draft4)
                    .should_validate_formats(true)
                    .with_format("uuid", is_uuid)
                    .build(&document)
                    .map_err(|e| ContractError::Schema {
                        what: what.to_owned(),
                        message: e.to_string(),
                    })?;
                Some(Arc::new(validator))
            }
        };
        let mut validators = self.validators.write().unwrap_or_else(|p| p.into_inner());
        Ok(validators.entry(what.to_owned()).or_insert(compiled).clone())
    }

    fn violation(&self, endpoint: &str, part: Part, error: &ValidationError<'_>) -> Violation {
        let path: Vec<Seg> = error
            .instance_path()
            .iter()
            .map(|s| match s {
                LocationSegment::Property(name) => Seg::Key(name.into_owned()),
                LocationSegment::Index(i) => Seg::Index(i),
            })
            .collect();
        let (expected, found) = describe(error.kind(), error.instance());
        let mut violation = Violation {
            part,
            path: path_text(&path),
            rule: error.kind().keyword().to_owned(),
            expected,
            found,
            severity: Severity::Error,
            reason: None,
        };
        if let Some(reason) = self.quirks.reason(endpoint, &violation, &path) {
            violation.severity = Severity::Warning;
            violation.reason = Some(reason.to_owned());
        } else if violation.rule == "enum" && part != Part::Request {
            // Plaid adds enum values before the spec lists them; an app that sends one the spec
            // does not know is another matter (its generated client would refuse it).
            violation.severity = Severity::Warning;
            violation.reason = Some(format!(
                "drift: Plaid sent {} which the spec {} does not list",
                violation.found, self.spec.version
            ));
        }
        violation
    }
}

/// The errors worth naming: for an `anyOf`/`oneOf` that nothing matched, those of the
/// alternative that came closest (fewest errors, then deepest), so a nullable object's wrong
/// field is named instead of "not any of null or the object".
fn flatten<'a, 'b>(error: &'a ValidationError<'b>, out: &mut Vec<&'a ValidationError<'b>>) {
    let branches = match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => context,
        _ => {
            out.push(error);
            return;
        }
    };
    let depth = |branch: &Vec<ValidationError<'static>>| branch.iter().map(|e| e.instance_path().iter().count()).max();
    let best = branches
        .iter()
        .filter(|b| !b.is_empty())
        .min_by(|a, b| a.len().cmp(&b.len()).then(depth(b).cmp(&depth(a))));
    match best {
        Some(branch) => {
            for e in branch {
                flatten(e, out);
            }
        }
        None => out.push(error),
    }
}

/// What the rule expects and what the value is, in words; never a string's whole text except
/// an enum value.
fn describe(kind: &ValidationErrorKind, instance: &Value) -> (String, String) {
    let found = || match instance {
        Value::String(s) => format!("{} {}", kind_of(instance), masked(s)),
        Value::Number(n) => format!("{} {n}", kind_of(instance)),
        other => kind_of(other).to_owned(),
    };
    let plain = |expected: String| (expected, found());
    match kind {
        ValidationErrorKind::Type { kind } => plain(match kind {
            TypeKind::Single(t) => t.to_string(),
            TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or "),
        }),
        ValidationErrorKind::Required { property } => (
            format!("the field {}", property.as_str().unwrap_or("?")),
            "missing".to_owned(),
        ),
        ValidationErrorKind::Enum { options } => {
            let values = options.as_array().map(Vec::as_slice).unwrap_or_default();
            let list: Vec<String> = values.iter().take(8).map(|v| v.to_string()).collect();
            let more = if values.len() > 8 {
                format!(" and {} more", values.len() - 8)
            } else {
                String::new()
            };
            (format!("one of {}{more}", list.join(", ")), instance.to_string())
        }
        ValidationErrorKind::Format { format } => plain(format!("format {format}")),
        ValidationErrorKind::Pattern { pattern } => plain(format!("a match of /{pattern}/")),
        ValidationErrorKind::MinLength { limit } => plain(format!("at least {limit} characters")),
        ValidationErrorKind::MaxLength { limit } => plain(format!("at most {limit} characters")),
        ValidationErrorKind::MinItems { limit } => (format!("at least {limit} items"), items(instance)),
        ValidationErrorKind::MaxItems { limit } => (format!("at most {limit} items"), items(instance)),
        ValidationErrorKind::Minimum { limit } => plain(format!(">= {limit}")),
        ValidationErrorKind::Maximum { limit } => plain(format!("<= {limit}")),
        ValidationErrorKind::ExclusiveMinimum { limit } => plain(format!("> {limit}")),
        ValidationErrorKind::ExclusiveMaximum { limit } => plain(format!("< {limit}")),
        ValidationErrorKind::AdditionalProperties { unexpected } => (
            "no other fields".to_owned(),
            format!("the fields {}", unexpected.join(", ")),
        ),
        ValidationErrorKind::UniqueItems => ("unique items".to_owned(), "a repeated item".to_owned()),
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            ("exactly one alternative".to_owned(), "more than one matches".to_owned())
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            plain("one of the alternatives".to_owned())
        }
        ValidationErrorKind::Not { .. } => plain("not the excluded schema".to_owned()),
        other => plain(format!("what `{}` says", other.keyword())),
    }
}

fn items(instance: &Value) -> String {
    format!("{} items", instance.as_array().map_or(0, Vec::len))
}

/// `uuid` as RFC 4122 writes it (8-4-4-4-12 hex digits); draft 4 has no such format.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn contract() -> Contract {
        Contract::builtin()
    }

    #[test]
    fn a_valid_request_has_no_violation_and_a_planted_one_is_named() {
        let c = contract();
        let ok = json!({"access_token": "access-sandbox-x", "options": {"account_ids": ["a"]}});
        assert_eq!(c.check("accounts/get", Part::Request, 0, &ok).unwrap(), vec![]);
        let bad = json!({"options": {"account_ids": "a"}});
        let found = c.check("accounts/get", Part::Request, 0, &bad).unwrap();
        let rules: Vec<(&str, &str)> = found.iter().map(|v| (v.path.as_str(), v.rule.as_str())).collect();
        assert!(rules.contains(&("", "required")), "{found:?}");
        assert!(rules.contains(&("options.account_ids", "type")), "{found:?}");
        assert!(found.iter().all(|v| v.severity == Severity::Error));
    }

    #[test]
    fn an_unknown_answer_enum_value_is_drift_that_names_the_value() {
        let c = contract();
        let body = json!({"item": {"item_id": "i", "webhook": null, "error": null, "available_products": ["telepathy"],
            "billed_products": [], "consent_expiration_time": null, "update_type": "background"}, "request_id": "r"});
        let found = c.check("item/get", Part::Response, 200, &body).unwrap();
        let drift = found.iter().find(|v| v.rule == "enum").expect("the enum is named");
        assert_eq!(drift.severity, Severity::Warning);
        assert_eq!(drift.found, "\"telepathy\"");
        assert!(drift.reason.as_deref().unwrap().contains("telepathy"));
    }

    #[test]
    fn an_error_answer_is_checked_against_plaid_error_and_strings_are_masked() {
        let c = contract();
        let found = c
            .check(
                "accounts/get",
                Part::Response,
                400,
                &json!({"error_type": 7, "request_id": "secret-ish"}),
            )
            .unwrap();
        assert!(
            found.iter().any(|v| v.path == "error_type" && v.rule == "type"),
            "{found:?}"
        );
        assert!(found.iter().any(|v| v.rule == "required"), "{found:?}");
        assert!(found.iter().all(|v| !v.found.contains("secret-ish")));
    }

    #[test]
    fn unknown_operations_and_webhooks_are_warnings() {
        let c = contract();
        let op = c.check("teleport/get", Part::Request, 0, &json!({})).unwrap();
        assert_eq!((op[0].rule.as_str(), op[0].severity), ("operation", Severity::Warning));
        let hook = json!({"webhook_type": "NOPE", "webhook_code": "X"});
        let wh = c.check("webhook", Part::Webhook, 0, &hook).unwrap();
        assert_eq!((wh[0].rule.as_str(), wh[0].found.as_str()), ("webhook", "NOPE X"));
    }

    /// Every OpenAPI 3.0 rule a spec can use, each planted once and named.
    #[test]
    fn each_openapi_rule_planted_is_named_at_its_path() {
        let spec = json!({
            "openapi": "3.0.0", "info": {"version": "t"},
            "paths": {"/x/get": {"post": {"responses": {"200": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/X"}}}}}}}},
            "components": {"schemas": {
                "X": {"type": "object", "additionalProperties": false, "required": ["id"], "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "mask": {"type": "string", "pattern": "^[0-9]{4}$", "nullable": true},
                    "name": {"type": "string", "minLength": 2, "maxLength": 4},
                    "email": {"type": "string", "format": "email"},
                    "day": {"type": "string", "format": "date"},
                    "tags": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Tag"}},
                    "owner": {"allOf": [{"$ref": "#/components/schemas/Owner"}], "nullable": true},
                    "amount": {"type": "number", "minimum": 0},
                    "either": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]}
                }},
                "Tag": {"type": "string", "enum": ["a", "b"]},
                "Owner": {"type": "object", "required": ["names"], "properties": {"names": {"type": "array", "items": {"type": "string"}}}}
            }}
        });
        let c = Contract::new(Spec::from_text(Path::new("t.json"), &spec.to_string()).unwrap());
        let good = json!({"id": "123e4567-e89b-12d3-a456-426614174000", "mask": null, "owner": null, "tags": ["a"]});
        assert_eq!(c.check("x/get", Part::Response, 200, &good).unwrap(), vec![]);
        let bad = json!({"id": "nope", "mask": "12a4", "name": "abcdef", "email": "not-an-email", "day": "2020-02-30",
            "tags": [], "owner": {"names": "x"}, "amount": -1, "either": "s", "extra": 1});
        let found: Vec<(String, String)> = c
            .check("x/get", Part::Response, 200, &bad)
            .unwrap()
            .into_iter()
            .map(|v| (v.path, v.rule))
            .collect();
        for (path, rule) in [
            ("id", "format"),
            ("mask", "pattern"),
            ("name", "maxLength"),
            ("email", "format"),
            ("day", "format"),
            ("tags", "minItems"),
            ("owner.names", "type"),
            ("amount", "minimum"),
            ("either", "type"),
            ("", "additionalProperties"),
        ] {
            assert!(
                found.contains(&(path.to_owned(), rule.to_owned())),
                "{path} {rule} not in {found:?}"
            );
        }
    }

    #[test]
    fn uuids_are_checked() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
    }
}
