//! The commands that read or rewrite a cassette without serving it: `ls` and `check`
//! ([`inspect`]), `scan` ([`scan`]), `redact` ([`redact`]), `diff` ([`diff`]: has Plaid's
//! schema drifted between two recordings), `validate` ([`validate`]: does it fit Plaid's spec) and `sandbox-token` ([`sandbox`]).
//!
//! The top of the house: may use every folder. Each command returns an [`Output`], the text
//! and the verdict; printing it and the exit code are `main`'s.

pub mod diff;
pub mod inspect;
pub mod redact;
pub mod sandbox;
pub mod scan;
pub mod validate;
pub mod webhook;

use crate::store::cassette::{Cassette, CassetteError};

/// What a command answers: the text for stdout, and whether its answer is "yes" (exit 0)
/// or "no" (exit 1: leaks found, problems found, breaking drift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Everything the command prints, newline-terminated.
    pub text: String,
    /// False when the command's answer is "no".
    pub clean: bool,
}

impl Output {
    /// A command whose answer is always "yes" (`ls`, `redact`).
    fn done(text: String) -> Output {
        Output { text, clean: true }
    }
}

/// Every interaction and webhook file of the cassette at `dir`, relative to it: what `scan`
/// and `validate` read. The directory must exist.
fn cassette_files(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, CassetteError> {
    let cassette = Cassette::new(dir);
    cassette.require_exists()?;
    let mut files = cassette.list()?;
    files.extend(crate::webhooks::webhook::list(dir)?);
    Ok(files)
}

/// The bytes of one cassette file.
fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CassetteError> {
    std::fs::read(path).map_err(|source| CassetteError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A report as pretty JSON; `what` names it in the invariant.
fn json(report: &impl serde::Serialize, what: &str) -> String {
    match serde_json::to_string_pretty(report) {
        Ok(text) => text + "\n",
        // Reports are strings, numbers and lists of them, which always serialize.
        Err(e) => unreachable!("a {what} report always serializes: {e}"),
    }
}

/// POSTs the JSON `body` to `url` on plaid-vcr (plain HTTP) and returns the
/// answer's status and JSON body; `Err` says why no JSON answer came (`sandbox-token`,
/// `webhook fire`).
async fn post_json(url: &str, body: &serde_json::Value) -> Result<(http::StatusCode, serde_json::Value), String> {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let answer = client.request(request).await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value = serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))?;
    Ok((status, value))
}
