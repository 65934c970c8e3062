//! The leak verdict on a written file: what `plaid-vcr scan` and `check` report.
//!
//! [`Scanner::file`] reports, per JSON path of one cassette file: values at known personal-data paths that are not in
//! pseudonym form, emails/phones/SSN-like/street-like text and Plaid tokens anywhere,
//! credential fields, high-entropy strings under secret-like keys, and files recorded with
//! `--no-redact`. Findings show the value masked, never whole. Reads nothing itself: the
//! directory walk is [`crate::commands::scan`]'s.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::privacy::detect;
use crate::privacy::pseudonym::{self, Kind};
use crate::privacy::rules::{self, last_key, path_text, Action, Rule, Seg, Side};

/// The `[scan]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// Values that are never reported (e.g. a public sandbox test email).
    #[serde(default)]
    pub allow: Vec<String>,
    /// JSON paths inside a cassette file that are never reported, e.g.
    /// `response.body.item.institution_name` (`[]` and `**` work as in redaction rules).
    #[serde(default)]
    pub allow_paths: Vec<String>,
}

/// One suspected leak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// File, relative to the scanned directory.
    pub file: PathBuf,
    /// JSON path inside the file.
    pub path: String,
    /// What found it: `pii:<kind>`, a detector's name (`email`, `phone`, `ssn`, `street`,
    /// `iban`, `card-number`, `jwt`, `authorization`, `cloud-api-key`, `private-key`, `plaid-token`),
    /// `credential`, `high-entropy`, `unredacted-file`, `binary-body` or `not-json`.
    pub detector: String,
    /// The value, masked: its first two characters and its length.
    pub value: String,
}

/// The result of a scan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    pub files_scanned: usize,
    pub findings: Vec<Finding>,
}

/// Scans files already read, one at a time (`scan` reads a directory's in parallel).
pub struct Scanner<'a> {
    rules: &'a [Rule],
    config: &'a ScanConfig,
    allow_paths: Vec<Rule>,
}

impl<'a> Scanner<'a> {
    /// A scanner with the redaction rules (for known personal-data paths) and the allowlist.
    pub fn new(rules: &'a [Rule], config: &'a ScanConfig) -> Self {
        let allow_paths = config.allow_paths.iter().map(|p| Rule::matcher(p)).collect();
        Scanner {
            rules,
            config,
            allow_paths,
        }
    }

    /// The findings in one file's bytes; `relative` names the file in them.
    pub fn file(&self, relative: &Path, bytes: &[u8]) -> Vec<Finding> {
        let mut scan = FileScan {
            file: relative,
            rules: self.rules,
            config: self.config,
            allow_paths: &self.allow_paths,
            findings: Vec::new(),
        };
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => scan.scan_file(value),
            Err(_) => {
                let text = String::from_utf8_lossy(bytes);
                scan.report("-", "not-json", &text);
                scan.text(&|| "-".to_owned(), "", &text);
            }
        }
        scan.findings
    }
}

struct FileScan<'a> {
    file: &'a Path,
    rules: &'a [Rule],
    config: &'a ScanConfig,
    allow_paths: &'a [Rule],
    findings: Vec<Finding>,
}

impl FileScan<'_> {
    /// The request and response bodies are walked with the redaction rules for their side,
    /// through the same visitor redaction uses ([`rules::walk`]), so a value is judged by the
    /// action that governed it when it was redacted; the rest of the file (endpoint, key, …)
    /// has no rules and meets the detectors only.
    fn scan_file(&mut self, mut file: Value) {
        if file.get("unredacted").and_then(Value::as_bool) == Some(true) {
            self.report("unredacted", "unredacted-file", "true");
        }
        // A binary answer (a PDF, a zip) cannot be inspected or redacted: listed, so a person
        // decides (and allowlists it, by name or with the path `response.body_file`).
        if let Some(name) = file.pointer("/response/body_file").and_then(Value::as_str) {
            let path = [Seg::Key("response".into()), Seg::Key("body_file".into())];
            if !self.allowed(&path, name) {
                self.report("response.body_file", "binary-body", name);
            }
        }
        let endpoint = file.get("endpoint").and_then(Value::as_str).unwrap_or("").to_owned();
        let rules = self.rules;
        // A webhook file (crate::webhooks::webhook) has one half, redacted as a webhook body.
        for (half, side) in [
            ("request", Side::Request),
            ("response", Side::Response),
            ("webhook", Side::Response),
        ] {
            let Some(body) = file.get_mut(half).and_then(|h| h.get_mut("body")).map(Value::take) else {
                continue;
            };
            let mut body = body;
            let endpoint = if half == "webhook" {
                rules::WEBHOOK_ENDPOINT
            } else {
                endpoint.as_str()
            };
            let applicable = rules::applicable(rules, endpoint, side);
            // Rules match below the prefix; findings name the whole path in the file.
            let mut prefix = vec![Seg::Key(half.to_owned()), Seg::Key("body".to_owned())];
            rules::walk(&applicable, &mut body, &mut prefix, &mut |path, action, s| {
                self.leaf(path, action, s);
                0
            });
        }
        rules::walk(&[], &mut file, &mut Vec::new(), &mut |path, action, s| {
            self.leaf(path, action, s);
            0
        });
    }

    /// Whether the allowlist covers `value` at `path`.
    fn allowed(&self, path: &[Seg], value: &str) -> bool {
        self.config.allow.iter().any(|a| a == value) || self.allow_paths.iter().any(|r| r.matches(path))
    }

    fn leaf(&mut self, path: &[Seg], action: Option<Action>, value: &str) {
        if value.is_empty() || self.allowed(path, value) {
            return;
        }
        // The file's own matching key (a webhook file's interaction keys, a binary body's
        // checksum) is a SHA-256, not a secret.
        if matches!(path, [Seg::Key(k)] if k == "key" || k == "after" || k == "registered_by")
            || matches!(path, [Seg::Key(r), Seg::Key(k)] if r == "response" && k == "body_sha256")
        {
            return;
        }
        // The path as text only when there is something to report.
        let text = || path_text(path);
        let field = last_key(path);
        // A credential is a leak unless redaction hid it (nested ones become id pseudonyms;
        // top-level request ones are dropped, so any left there is raw).
        let top_level_request =
            matches!(path, [Seg::Key(h), Seg::Key(b), Seg::Key(_)] if h == "request" && b == "body");
        if rules::is_credential(field) {
            if top_level_request || !pseudonym::is_pseudonym(Kind::Id, value) {
                self.report(&text(), "credential", value);
            }
            return;
        }
        match action {
            Some(Action::Keep | Action::Drop) => return,
            Some(Action::Pseudonymize(kind)) if !pseudonym::is_pseudonym(kind, value) => {
                self.report(&text(), &format!("pii:{}", kind.as_str()), value);
                return;
            }
            Some(Action::Mask) if pseudonym::mask(value) != value => {
                self.report(&text(), "pii:mask", value);
                return;
            }
            Some(_) => return,
            None => {}
        }
        match detect::by_name(field, value) {
            Some(Kind::Id) if !pseudonym::is_any_pseudonym(value) => self.report(&text(), "high-entropy", value),
            Some(kind) if !pseudonym::is_pseudonym(kind, value) => {
                self.report(&text(), &format!("pii:{}", kind.as_str()), value)
            }
            Some(_) => {}
            None => self.text(&text, field, value),
        }
    }

    /// Runs the pattern detectors over free text.
    fn text(&mut self, path: &dyn Fn() -> String, field: &str, value: &str) {
        let found = detect::find_in(field, value);
        if found.is_empty() {
            return;
        }
        let path = path();
        for (detector, range) in found {
            let piece = &value[range];
            // The same decision redaction made: the detector's kind, or a mask.
            let redacted = match detector.kind() {
                Some(kind) => pseudonym::is_pseudonym(kind, piece),
                None => pseudonym::mask(piece) == piece,
            };
            if !redacted && !self.config.allow.iter().any(|a| a == piece) {
                self.report(&path, detector.as_str(), piece);
            }
        }
    }

    fn report(&mut self, path: &str, detector: &str, value: &str) {
        let duplicate = self.findings.iter().any(|f| f.path == path && f.detector == detector);
        if !duplicate {
            self.findings.push(Finding {
                file: self.file.to_owned(),
                path: path.to_owned(),
                detector: detector.to_owned(),
                value: masked(value),
            });
        }
    }
}

/// Shows a value without revealing it: its first two characters and its length.
pub fn masked(value: &str) -> String {
    let len = value.chars().count();
    if len <= 4 {
        return format!("… ({len} chars)");
    }
    let head: String = value.chars().take(2).collect();
    format!("{head}… ({len} chars)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_values_never_show_the_whole_value() {
        assert_eq!(masked("accountholder0@example.com"), "ac… (26 chars)");
        assert_eq!(masked("abc"), "… (3 chars)");
    }
}
