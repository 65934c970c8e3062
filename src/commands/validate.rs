//! `plaid-vcr validate [CASSETTE…]`: every recorded request, answer and webhook held against
//! Plaid's OpenAPI spec ([`Contract`]). Read-only; files are read and checked on every core.
//!
//! Exit 0 when nothing breaks the spec (warnings, the known quirks and drift, do not count),
//! 1 on a finding, 2 when a cassette or the spec cannot be read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Output;
use crate::contract::{Contract, Part, Severity, Violation};
use crate::error::Error;
use crate::store::cassette::CassetteError;
use crate::store::parallel::parallel_map;

/// One violation, where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The file, under its cassette directory.
    pub file: PathBuf,
    /// The endpoint (`webhook` for a webhook file).
    pub endpoint: String,
    #[serde(flatten)]
    pub violation: Violation,
}

/// What `validate` found.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// The spec's `info.version`.
    pub spec: String,
    pub files_checked: usize,
    /// Requests, answers and webhooks checked.
    pub bodies_checked: usize,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

/// Checks every interaction and webhook file under each of `dirs`.
pub fn validate_dirs(dirs: &[PathBuf], contract: &Contract) -> Result<ValidateReport, Error> {
    let mut files = Vec::new();
    for dir in dirs {
        let listed = super::cassette_files(dir)?;
        files.extend(listed.into_iter().map(|relative| (dir.clone(), relative)));
    }
    let checked = parallel_map(&files, |(dir, relative)| {
        let path = dir.join(relative);
        let bytes = super::read_file(&path)?;
        let file: Value = serde_json::from_slice(&bytes).map_err(|source| CassetteError::Parse {
            path: path.clone(),
            source,
        })?;
        check_file(contract, &path, &file)
    });
    let mut report = ValidateReport {
        spec: contract.version().to_owned(),
        files_checked: files.len(),
        bodies_checked: 0,
        errors: 0,
        warnings: 0,
        findings: Vec::new(),
    };
    for result in checked {
        let (bodies, findings) = result?;
        report.bodies_checked += bodies;
        report.findings.extend(findings);
    }
    report.errors = report
        .findings
        .iter()
        .filter(|f| f.violation.severity == Severity::Error)
        .count();
    report.warnings = report.findings.len() - report.errors;
    Ok(report)
}

/// The bodies of one cassette file checked, and what they break.
fn check_file(contract: &Contract, path: &Path, file: &Value) -> Result<(usize, Vec<Finding>), Error> {
    let mut bodies = 0;
    let mut findings = Vec::new();
    let mut add = |endpoint: &str, violations: Vec<Violation>| {
        bodies += 1;
        findings.extend(violations.into_iter().map(|violation| Finding {
            file: path.to_owned(),
            endpoint: endpoint.to_owned(),
            violation,
        }));
    };
    if let Some(body) = file.pointer("/webhook/body") {
        add("webhook", contract.check("webhook", Part::Webhook, 0, body)?);
        return Ok((bodies, findings));
    }
    /// What an interaction file must name (a webhook file names none).
    #[derive(serde::Deserialize)]
    struct Named {
        endpoint: String,
    }
    let named = Named::deserialize(file).map_err(|source| CassetteError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let endpoint = named.endpoint.as_str();
    if let Some(request) = file.pointer("/request/body").filter(|b| b.is_object()) {
        add(endpoint, contract.check(endpoint, Part::Request, 0, request)?);
    }
    // A binary answer (body_file) has no JSON to check.
    if let Some(answer) = file.pointer("/response/body").filter(|b| !b.is_null()) {
        let status = file.pointer("/response/status").and_then(Value::as_u64).unwrap_or(200);
        let status = u16::try_from(status).unwrap_or(u16::MAX);
        add(endpoint, contract.check(endpoint, Part::Response, status, answer)?);
    }
    Ok((bodies, findings))
}

/// One line per finding, then a summary line.
pub fn render_text(report: &ValidateReport) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let v = &f.violation;
        let at = if v.path.is_empty() { "(body)" } else { v.path.as_str() };
        out.push_str(&format!(
            "{}: {} {}: {at}: {}: expected {}, found {}",
            f.file.display(),
            f.endpoint,
            v.part.as_str(),
            v.rule,
            v.expected,
            v.found
        ));
        if let Some(reason) = &v.reason {
            out.push_str(&format!(" (warning: {reason})"));
        }
        out.push('\n');
    }
    let summary = format!(
        "{} files, {} bodies against Plaid's spec {}",
        report.files_checked, report.bodies_checked, report.spec
    );
    if report.errors == 0 {
        out.push_str(&format!("valid: {summary}; {} warnings\n", report.warnings));
    } else {
        out.push_str(&format!(
            "{} findings ({} warnings) in {summary}; fix the app's requests, re-record the answers, or list a known quirk of Plaid's spec\n",
            report.errors, report.warnings
        ));
    }
    out
}

/// `plaid-vcr validate`, against `spec` (a plaid-openapi file) or the spec the binary ships.
pub fn run(dirs: &[PathBuf], spec: Option<&Path>, json: bool) -> Result<Output, Error> {
    let contract = match spec {
        Some(path) => Contract::from_file(path)?,
        None => Contract::builtin(),
    };
    let report = validate_dirs(dirs, &contract)?;
    let text = if json {
        super::json(&report, "validate")
    } else {
        render_text(&report)
    };
    Ok(Output {
        text,
        clean: report.errors == 0,
    })
}
