//! The live contract check: each request and answer held against Plaid's spec as it passes
//! ([`crate::contract::Contract`]). On by default while recording (the exchanges that go to
//! Plaid and come back), on for replayed answers with `--validate` (a hand-edited cassette),
//! off with `--no-validate`. What it finds is logged (endpoint, part, path and rule; never a
//! value), counted for the summary and the session's report, and sent to the client in the
//! `Plaid-VCR-Violations` header. It never changes an answer's status or body.

use std::sync::Arc;

use http::HeaderName;
use serde_json::Value;

use crate::contract::{Contract, Part, Severity, Violation};
use crate::serve::outcome::{Handled, Reply};
use crate::serve::session::Session;
use crate::serve::violations::{self, VIOLATIONS_HEADER};

use super::Proxy;

const HEADER: HeaderName = HeaderName::from_static(VIOLATIONS_HEADER);

/// What the proxy checks: the spec, and whether replayed answers are checked too.
#[derive(Debug)]
pub struct Checking {
    pub contract: Arc<Contract>,
    /// `--validate` in a replay mode: hits are checked too (and skip the exact cache, which
    /// would answer them without the check).
    pub hits: bool,
}

impl Proxy {
    /// Checks the exchange `handled` answered `raw_request` with, if checking is on for it, and
    /// puts what it found in the answer's header, the log and the tallies.
    pub(super) fn check_contract(&self, raw_request: &[u8], handled: &mut Handled, session: Option<&Session>) {
        let Some(checking) = &self.checking else { return };
        let (endpoint, reply) = match handled {
            Handled::Recorded { endpoint, reply, .. } | Handled::Forwarded { endpoint, reply, .. } => (endpoint, reply),
            Handled::Hit { endpoint, reply, .. } if checking.hits => (endpoint, reply),
            _ => return,
        };
        let mut found = Vec::new();
        if let Ok(request @ Value::Object(_)) = serde_json::from_slice::<Value>(raw_request) {
            found.extend(self.checked(&checking.contract, endpoint, Part::Request, 0, &request));
        }
        if let Some(answer) = json_answer(reply) {
            let status = reply.status.as_u16();
            found.extend(self.checked(&checking.contract, endpoint, Part::Response, status, &answer));
        }
        if found.is_empty() {
            return;
        }
        for v in &found {
            let (part, path, rule) = (v.part.as_str(), v.path.as_str(), v.rule.as_str());
            match v.severity {
                Severity::Error => {
                    tracing::warn!(endpoint = endpoint.as_str(), part, path, rule, "breaks Plaid's spec")
                }
                Severity::Warning => tracing::info!(
                    endpoint = endpoint.as_str(),
                    part,
                    path,
                    rule,
                    "known quirk or drift of Plaid's spec"
                ),
            }
        }
        self.tally.violations.note(endpoint, &found);
        if let Some(session) = session {
            session.tally.violations.note(endpoint, &found);
        }
        if let Some(value) = violations::header(&found) {
            reply.headers.insert(HEADER, value);
        }
    }

    /// The violations of one body; a schema of the spec that does not compile is logged (it
    /// is the spec's fault, not the exchange's) and checks nothing.
    fn checked(&self, contract: &Contract, endpoint: &str, part: Part, status: u16, body: &Value) -> Vec<Violation> {
        contract.check(endpoint, part, status, body).unwrap_or_else(|e| {
            tracing::error!(endpoint, part = part.as_str(), error = %e, "cannot check against Plaid's spec");
            Vec::new()
        })
    }
}

/// The answer's body as JSON, if it is JSON (a PDF or a zip has nothing to check).
fn json_answer(reply: &Reply) -> Option<Value> {
    let content_type = reply.headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    if !content_type.contains("json") {
        return None;
    }
    serde_json::from_slice(&reply.body).ok()
}
