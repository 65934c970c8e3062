//! The leak verdict on a written file: what `plaid-vcr scan` and `check` report.
//!
//! [`Scanner::file`] reports, per JSON path of one cassette file, what the one redaction
//! verdict ([`crate::privacy::verdict`]) names as a leak (values at known personal-data paths
//! that are not in pseudonym form, emails/phones/SSN-like/street-like text and Plaid tokens
//! anywhere, high-entropy strings under secret-like keys, echoes of any of them), credential
//! fields, and files recorded with `--no-redact`. Findings show the value masked, never whole.
//! Reads nothing itself: the directory walk is [`crate::commands::scan`]'s.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::privacy::pseudonym::{self, Kind};
use crate::privacy::rules::{self, last_key, path_text, Rule, Seg, Side};
use crate::privacy::verdict::{self, Piece};

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
                scan.leaks("-", &text, &verdict::judge(&[], None, &text));
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
    /// The request and response bodies are judged with the redaction rules for their side, by
    /// the verdict redaction rewrites by ([`verdict::body`]), echoes included; the rest of the
    /// file (endpoint, key, …) has no rules and meets the detectors only.
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
            verdict::body(
                &applicable,
                &mut body,
                &mut prefix,
                side == Side::Response,
                &mut |path, s, pieces| {
                    self.value(path, s, pieces);
                    0
                },
            );
        }
        verdict::body(&[], &mut file, &mut Vec::new(), false, &mut |path, s, pieces| {
            self.value(path, s, pieces);
            0
        });
    }

    /// Whether the allowlist covers `value` at `path`.
    fn allowed(&self, path: &[Seg], value: &str) -> bool {
        self.config.allow.iter().any(|a| a == value) || self.allow_paths.iter().any(|r| r.matches(path))
    }

    /// Reports one value: a credential unless hidden, else the leaks the verdict names in it.
    fn value(&mut self, path: &[Seg], value: &str, pieces: &[Piece]) {
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
        // A credential is a leak unless redaction hid it (nested ones become id pseudonyms;
        // top-level request ones are dropped, so any left there is raw).
        let top_level_request =
            matches!(path, [Seg::Key(h), Seg::Key(b), Seg::Key(_)] if h == "request" && b == "body");
        if rules::is_credential(last_key(path)) {
            if top_level_request || !pseudonym::is_pseudonym(Kind::Id, value) {
                self.report(&path_text(path), "credential", value);
            }
            return;
        }
        if pieces.iter().any(|p| p.leak) {
            self.leaks(&path_text(path), value, pieces);
        }
    }

    /// Reports the pieces of `value` that are leaks, but those the allowlist names.
    fn leaks(&mut self, path: &str, value: &str, pieces: &[Piece]) {
        for piece in pieces.iter().filter(|p| p.leak) {
            let text = &value[piece.range.clone()];
            if !self.config.allow.iter().any(|a| a == text) {
                self.report(path, piece.label, text);
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
