//! The live contract check: each request and answer held against Plaid's spec as it passes
//! ([`crate::contract::Contract`]). On by default while recording (the exchanges that go to
//! Plaid and come back, and the webhooks it sends), on for replayed answers with `--validate`
//! (a hand-edited cassette), off with `--no-validate`. What it finds is logged (endpoint, part,
//! path and rule; never a value), counted for the summary and the session's report, and sent
//! to the client in the `Plaid-VCR-Violations` header. It never changes an answer's status or
//! body.

use std::sync::Arc;

use http::HeaderName;
use serde_json::Value;

use crate::contract::{Contract, Part, Severity, Violation};
use crate::serve::outcome::{Handled, Reply};
use crate::serve::request::PlaidRequest;
use crate::serve::session::Session;
use crate::serve::violations::{self, Found, VIOLATIONS_HEADER};
use crate::store::interaction::Answer;

use super::Proxy;

const HEADER: HeaderName = HeaderName::from_static(VIOLATIONS_HEADER);

/// What the proxy checks: the spec, and whether replayed answers are checked too.
#[derive(Debug)]
pub struct Checking {
    pub contract: Arc<Contract>,
    /// `--validate` in a replay mode: hits are checked too (once per exact request: the exact
    /// cache keeps what was found with the answer).
    pub hits: bool,
}

impl Proxy {
    /// Checks the exchange `handled` answered `raw_request` with, if checking is on for it, and
    /// puts what it found in the answer's header, the log and the tallies. A recorded answer
    /// was checked where it was parsed (`record`), a replayed one where it was read
    /// ([`Proxy::replayed_checked`]): those are only counted here.
    pub(super) fn check_contract(&self, raw_request: &[u8], handled: &mut Handled, session: Option<&Session>) {
        if self.checking.is_none() {
            return;
        }
        let found = match handled {
            Handled::Forwarded { endpoint, reply, .. } => self.check_reply(endpoint, raw_request, reply),
            Handled::Recorded { checked, .. } | Handled::Hit { checked, .. } => checked.clone(),
            Handled::Cached(hit) => hit.checked.clone(),
            _ => None,
        };
        if let Some(found) = found {
            self.note_found(&found.endpoint, &found.list, session);
        }
    }

    /// Checks a webhook upstream sent while recording: logged and counted (upstream is not
    /// told; it is Plaid).
    pub(super) fn check_webhook(&self, body: &[u8]) {
        let Some(checking) = &self.checking else { return };
        let Ok(body @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let list = self.checked(&checking.contract, "webhook", Part::Webhook, 0, &body);
        self.note_found("webhook", &list, None);
    }

    /// A replayed answer for `request`, checked with it under `--validate`.
    pub(super) fn replayed_checked(&self, request: &PlaidRequest, answer: &Answer) -> (Reply, Option<Arc<Found>>) {
        let mut reply = self.replayed(request, answer);
        let checked = match &self.checking {
            Some(checking) if checking.hits => self.check_reply(&request.endpoint, &request.raw_body, &mut reply),
            _ => None,
        };
        (reply, checked)
    }

    /// Checks a request and its answer, and puts what it found in the answer's header.
    fn check_reply(&self, endpoint: &str, raw_request: &[u8], reply: &mut Reply) -> Option<Arc<Found>> {
        self.checking.as_ref()?;
        let answer = json_answer(reply);
        self.check_exchange(endpoint, raw_request, answer.as_ref(), reply)
    }

    /// Checks a request and its answer (`None`: not JSON), already parsed, and puts what it
    /// found in the answer's header; nothing when checking is off.
    pub(super) fn check_exchange(
        &self,
        endpoint: &str,
        raw_request: &[u8],
        answer: Option<&Value>,
        reply: &mut Reply,
    ) -> Option<Arc<Found>> {
        let checking = self.checking.as_ref()?;
        let mut list = Vec::new();
        if let Ok(request @ Value::Object(_)) = serde_json::from_slice::<Value>(raw_request) {
            list.extend(self.checked(&checking.contract, endpoint, Part::Request, 0, &request));
        }
        if let Some(answer) = answer {
            let status = reply.status.as_u16();
            list.extend(self.checked(&checking.contract, endpoint, Part::Response, status, answer));
        }
        let header = violations::header(&list)?;
        reply.headers.insert(HEADER, header.clone());
        Some(Arc::new(Found {
            endpoint: endpoint.to_owned(),
            list,
            header,
        }))
    }

    /// Logs what was found in one exchange and counts it, for the run and the session.
    fn note_found(&self, endpoint: &str, list: &[Violation], session: Option<&Session>) {
        for v in list {
            let (part, path, rule) = (v.part.as_str(), v.path.as_str(), v.rule.as_str());
            match v.severity {
                Severity::Error => tracing::warn!(endpoint, part, path, rule, "breaks Plaid's spec"),
                Severity::Warning => tracing::info!(endpoint, part, path, rule, "known quirk or drift of Plaid's spec"),
            }
        }
        self.tally.violations.note(endpoint, list);
        if let Some(session) = session {
            session.tally.violations.note(endpoint, list);
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
