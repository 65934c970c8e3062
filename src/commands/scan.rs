//! `plaid-vcr scan DIR`: looks for leaks in a cassette directory, fast enough for a pre-commit
//! hook. Reads every interaction and webhook file in parallel and asks the privacy verdict
//! ([`Scanner`]) of each. Read-only.

use std::path::Path;

use super::Output;
use crate::config::Config;
use crate::error::Error;
use crate::privacy::rules;

use crate::privacy::rules::Rule;
use crate::privacy::scan::{ScanConfig, ScanReport, Scanner};
use crate::store::cassette::CassetteError;
use crate::store::parallel::parallel_map;

/// Scans every interaction file under `dir`.
pub fn scan_dir(dir: &Path, rules: &[Rule], config: &ScanConfig) -> Result<ScanReport, CassetteError> {
    let files = super::cassette_files(dir)?;
    let scanner = Scanner::new(rules, config);
    // Every core reads and scans its share; findings come back in file order.
    let scanned = parallel_map(&files, |relative| {
        let bytes = super::read_file(&dir.join(relative))?;
        Ok::<_, CassetteError>(scanner.file(relative, &bytes))
    });
    let mut report = ScanReport {
        files_scanned: files.len(),
        findings: Vec::new(),
    };
    for findings in scanned {
        report.findings.extend(findings?);
    }
    Ok(report)
}

/// Renders a report as text: one line per finding, then a summary line.
pub fn render_text(dir: &Path, report: &ScanReport) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(&format!(
            "{}: {}: {}: {}\n",
            dir.join(&f.file).display(),
            f.path,
            f.detector,
            f.value
        ));
    }
    let files: std::collections::BTreeSet<&Path> = report.findings.iter().map(|f| f.file.as_path()).collect();
    if report.findings.is_empty() {
        out.push_str(&format!(
            "clean: {} files scanned, nothing found\n",
            report.files_scanned
        ));
    } else {
        out.push_str(&format!(
            "{} findings in {} of {} files; run plaid-vcr redact {} (or allow them in [scan] of the config)\n",
            report.findings.len(),
            files.len(),
            report.files_scanned,
            dir.display()
        ));
    }
    out
}

/// `plaid-vcr scan DIR`, with the config's rules and `[scan]` allow-list.
pub fn run(dir: &Path, config: &Config, json: bool) -> Result<Output, Error> {
    let rules = rules::compile(&config.redact.rules)?;
    let report = scan_dir(dir, &rules, &config.scan)?;
    let text = if json {
        super::json(&report, "scan")
    } else {
        render_text(dir, &report)
    };
    Ok(Output {
        text,
        clean: report.findings.is_empty(),
    })
}
