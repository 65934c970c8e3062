//! `ls` and `check`: a cassette directory read for people and for CI. Read-only.
//!
//! `check` finds what would make replay fail or surprise: files that do not parse or whose key
//! does not match their request, duplicates, orphans (stray files, misnamed files, sequence
//! steps without their predecessor), and everything `scan` reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::Output;
use crate::config::Config;
use crate::error::Error;
use crate::privacy::rules;
use crate::privacy::rules::Rule;
use crate::privacy::scan::{self, ScanConfig};
use crate::store::cassette::{session_of, Cassette, CassetteError};
use crate::store::interaction::{index_key, Interaction};
use crate::store::key;
use crate::webhooks::webhook::{self, Webhook};

/// One problem `check` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problem {
    /// The file, relative to the cassette directory.
    pub file: PathBuf,
    /// What is wrong, one line.
    pub problem: String,
}

/// The table `ls` prints: one row per interaction, then counts per endpoint; with `only`,
/// the recordings of that session alone (see `serve::session`). A cassette with sessions gets
/// a SESSION column (`-` for the default session).
pub fn ls(dir: &Path, only: Option<&str>) -> Result<String, CassetteError> {
    let cassette = Cassette::new(dir);
    cassette.require_exists()?;
    let mut rows = Vec::new();
    let mut per_endpoint: BTreeMap<String, usize> = BTreeMap::new();
    let files = cassette.list()?;
    let in_scope = |relative: &Path| only.is_none() || session_of(relative).as_deref() == only;
    let with_sessions = only.is_none() && files.iter().any(|f| session_of(f).is_some());
    for relative in files.iter().filter(|f| in_scope(f)) {
        let size = std::fs::metadata(dir.join(relative)).map(|m| m.len()).unwrap_or(0);
        match cassette.read(relative) {
            Ok(i) => {
                // A binary answer: its body file's size too, and its type.
                let body = i.response.body_file.as_ref().map(|name| {
                    let bytes = std::fs::metadata(dir.join(relative.with_file_name(name))).map(|m| m.len());
                    (bytes.unwrap_or(0), i.response.content_type.clone())
                });
                let size = match &body {
                    Some((bytes, content_type)) => format!("{} ({content_type})", human_size(size + bytes)),
                    None => human_size(size),
                };
                *per_endpoint.entry(i.endpoint.clone()).or_default() += 1;
                rows.push([
                    i.session.clone().unwrap_or_else(|| "-".into()),
                    i.endpoint.clone(),
                    key::prefix(&i.key).to_owned(),
                    i.step().to_string(),
                    i.response.status.to_string(),
                    i.recorded_at.clone(),
                    size,
                ]);
            }
            Err(_) => rows.push([
                session_of(relative).unwrap_or_else(|| "-".into()),
                format!("{} (invalid: run plaid-vcr check)", relative.display()),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                human_size(size),
            ]),
        }
    }
    rows.sort();
    let header = ["SESSION", "ENDPOINT", "KEY", "STEP", "STATUS", "RECORDED AT", "SIZE"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // The session column only where there is more than one session to tell apart.
    let first = usize::from(!with_sessions);
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .skip(first)
            .map(|(i, (cell, w))| {
                if (3..=4).contains(&i) || i == 6 {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    for (endpoint, count) in &per_endpoint {
        out.push_str(&format!("{endpoint}: {count}\n"));
    }
    let scope = only.map(|name| format!(" (session {name})")).unwrap_or_default();
    out.push_str(&format!(
        "{} interactions, {} endpoints in {}{scope}\n",
        per_endpoint.values().sum::<usize>(),
        per_endpoint.len(),
        dir.display()
    ));
    let webhooks: Vec<PathBuf> = webhook::list(dir)?.into_iter().filter(|f| in_scope(f)).collect();
    if !webhooks.is_empty() {
        out.push_str("\nWEBHOOK  AFTER  FILE\n");
        for relative in &webhooks {
            let line = match std::fs::read(dir.join(relative)).map(|b| Webhook::from_file_bytes(&b)) {
                Ok(Ok(w)) => format!(
                    "{}  {} {}  {}",
                    w.label(),
                    w.after_endpoint.as_deref().unwrap_or("-"),
                    webhook::stem(w.after.as_deref()),
                    relative.display()
                ),
                _ => format!("{} (invalid: run plaid-vcr check)", relative.display()),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&format!("{} webhooks\n", webhooks.len()));
    }
    Ok(out)
}

/// Everything wrong with a cassette directory; empty when it is fit for CI.
pub fn check(dir: &Path, rules: &[Rule], scan_config: &ScanConfig) -> Result<Vec<Problem>, CassetteError> {
    let cassette = Cassette::new(dir);
    cassette.require_exists()?;
    let mut problems = Vec::new();
    let mut owners: HashMap<String, PathBuf> = HashMap::new();
    let mut interactions: Vec<(PathBuf, Interaction)> = Vec::new();
    let mut webhooks: Vec<(PathBuf, Webhook)> = Vec::new();
    let mut others: Vec<PathBuf> = Vec::new();
    let mut body_files: HashSet<PathBuf> = HashSet::new();
    // Each file is read once and serves both the validation and the leak scan.
    let scanner = scan::Scanner::new(rules, scan_config);
    let mut leaks = Vec::new();
    for relative in cassette.list_all()? {
        let problem = |p: String| Problem {
            file: relative.clone(),
            problem: p,
        };
        let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || !name.ends_with(".json") {
            // A binary answer's body file, unless no interaction names it (judged below).
            others.push(relative);
            continue;
        }
        let path = dir.join(&relative);
        let bytes = std::fs::read(&path).map_err(|source| CassetteError::Read { path, source })?;
        leaks.extend(scanner.file(&relative, &bytes));
        if relative.starts_with(webhook::DIR) {
            match Webhook::from_file_bytes(&bytes) {
                Err(reason) => problems.push(problem(format!("invalid: not a valid recorded webhook: {reason}"))),
                Ok(w) => {
                    if w.relative_path() != relative {
                        problems.push(problem(format!(
                            "orphan: misnamed, it should be {}",
                            w.relative_path().display()
                        )));
                    }
                    webhooks.push((relative, w));
                }
            }
            continue;
        }
        match cassette.parse(&relative, &bytes) {
            Err(e) => problems.push(problem(invalid_reason(&e))),
            Ok(i) => {
                let expected = Cassette::path_of(&i);
                if expected != relative {
                    problems.push(problem(format!(
                        "orphan: misnamed, it should be {}",
                        expected.display()
                    )));
                }
                if let Some(first) = owners.insert(i.index_key(), relative.clone()) {
                    problems.push(problem(format!("duplicate: same key and step as {}", first.display())));
                }
                if let Some(name) = &i.response.body_file {
                    body_files.insert(relative.with_file_name(name));
                    // Its bytes must still be the recorded ones.
                    if let Err(e) = cassette.answer(&relative, &mut i.clone()) {
                        problems.push(problem(format!("invalid: {e}")));
                    }
                }
                interactions.push((relative, i));
            }
        }
    }
    for (relative, i) in &interactions {
        if i.step() > 1 && !owners.contains_key(&index_key(i.session.as_deref(), &i.key, i.step() - 1)) {
            problems.push(Problem {
                file: relative.clone(),
                problem: format!("orphan: sequence step {} without step {}", i.step(), i.step() - 1),
            });
        }
    }
    for relative in others {
        if !body_files.contains(&relative) {
            problems.push(Problem {
                file: relative,
                problem: "orphan: not an interaction file (a leftover or stray file)".into(),
            });
        }
    }
    for (relative, w) in &webhooks {
        let problem = match &w.after {
            None => Some("undeliverable: recorded before any interaction, so replay never delivers it".to_owned()),
            Some(after) if !owners.contains_key(after) => Some(format!(
                "orphan: follows interaction {} ({}), which is not in the cassette, so replay never delivers it",
                webhook::stem(Some(after)),
                w.after_endpoint.as_deref().unwrap_or("-")
            )),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            problems.push(Problem {
                file: relative.clone(),
                problem,
            });
        }
    }
    for finding in leaks {
        let problem = if finding.detector == "binary-body" {
            "unscanned: a binary answer plaid-vcr cannot look inside; accept it with [scan] allow_paths = \
             [\"response.body_file\"] (or its file name in allow)"
                .to_owned()
        } else {
            format!("leak: {}: {}: {}", finding.path, finding.detector, finding.value)
        };
        problems.push(Problem {
            file: finding.file,
            problem,
        });
    }
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(problems)
}

/// The reason a file did not read, without repeating its path (the report line names it).
fn invalid_reason(err: &CassetteError) -> String {
    match err {
        CassetteError::Parse { source, .. } => format!("invalid: not a valid interaction: {source}"),
        CassetteError::Invalid { source, .. } => format!("invalid: {source}"),
        other => format!("invalid: {other}"),
    }
}

fn human_size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Renders `check`'s problems and a summary line.
pub fn render_check(dir: &Path, problems: &[Problem], files: usize) -> String {
    let mut out = String::new();
    for p in problems {
        out.push_str(&format!("{}: {}\n", dir.join(&p.file).display(), p.problem));
    }
    if problems.is_empty() {
        out.push_str(&format!("ok: {files} files in {}, no problems\n", dir.display()));
    } else {
        out.push_str(&format!("{} problems in {}\n", problems.len(), dir.display()));
    }
    out
}
/// `plaid-vcr ls DIR [--session NAME]`.
pub fn run_ls(dir: &Path, session: Option<&str>) -> Result<Output, Error> {
    Ok(Output::done(ls(dir, session)?))
}

/// `plaid-vcr check DIR`, with the config's rules and `[scan]` allow-list.
pub fn run_check(dir: &Path, config: &Config, json: bool) -> Result<Output, Error> {
    let rules = rules::compile(&config.redact.rules)?;
    let problems = check(dir, &rules, &config.scan)?;
    let files = Cassette::new(dir).list_all()?.len();
    let text = if json {
        super::json(&serde_json::json!({ "files": files, "problems": problems }), "check")
    } else {
        render_check(dir, &problems, files)
    };
    Ok(Output {
        text,
        clean: problems.is_empty(),
    })
}
