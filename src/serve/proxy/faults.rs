//! Failures on demand in the pipeline: the fault a request gets (its `Plaid-VCR-Fault` header,
//! else its session's rules), answered instead of the recording or upstream, or applied to the
//! answer (`delay`, `truncate`). A faulted request never reaches upstream or the cassette.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::Proxy;
use crate::faults::rules::Rules;
use crate::faults::{self, Fault};
use crate::plaid_error::RequestError;
use crate::serve::outcome::{Handled, Reply};
use crate::serve::request::PlaidRequest;
use crate::serve::session::Session;

/// What a fault does to a request on its way through the pipeline.
pub(super) enum Injected {
    /// Answered here: Plaid's error, or no answer at all.
    Answer(Box<Handled>),
    /// Goes on as usual; its answer is cut in half if `truncate`.
    Continue { truncate: bool },
}

/// The fault a request asks for by header, checked; `None` without one.
pub(super) fn asked(headers: &HeaderMap, endpoint: &str) -> Option<Result<Fault, RequestError>> {
    let value = headers.get(faults::HEADER)?;
    let Ok(spec) = value.to_str() else {
        return Some(Err(RequestError::UnknownFault {
            asked: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            close: Vec::new(),
        }));
    };
    Some(Fault::parse(spec, endpoint).map_err(|e| RequestError::UnknownFault {
        asked: e.asked,
        close: e.close,
    }))
}

impl Proxy {
    /// The rules of `session`, or the default session's.
    pub(super) fn fault_rules<'a>(&'a self, session: Option<&'a Session>) -> &'a Rules {
        session.map_or(&self.faults, |s| &s.faults)
    }

    /// Applies the fault `request` gets, if any: `asked` by header, else the rules'. Noted in
    /// the run's tally and the session's.
    pub(super) async fn inject(
        &self,
        request: &PlaidRequest,
        asked: Option<Fault>,
        session: Option<&Session>,
    ) -> Injected {
        let rules = self.fault_rules(session);
        let token = request.stored_body.get("access_token").and_then(Value::as_str);
        let fault = match asked {
            Some(fault) => {
                // Asked for in a named session, it sticks until the session ends; the default
                // session has no end, so there a header's fault is for its request alone.
                if let (true, Some(token), Some(_)) = (fault.sticks(), token, session) {
                    rules.stick(token);
                }
                fault
            }
            None => match rules.check(&request.endpoint, token) {
                Some(fault) => fault,
                None => return Injected::Continue { truncate: false },
            },
        };
        let label = fault.label();
        tracing::info!(endpoint = %request.endpoint, fault = %label, "fault injected");
        for tally in std::iter::once(&self.tally).chain(session.map(|s| &s.tally)) {
            tally.fault(label.clone(), &request.endpoint, &request.key);
        }
        let answer = |status: StatusCode, body: Bytes, reset: bool| {
            Injected::Answer(Box::new(Handled::Fault {
                endpoint: request.endpoint.clone(),
                key: request.key.clone(),
                reply: Reply::new(status, "application/json; charset=utf-8", body),
                reset,
            }))
        };
        match fault {
            Fault::Error(error) => {
                let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
                answer(status, error.body(), false)
            }
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                Injected::Continue { truncate: false }
            }
            Fault::Truncate => Injected::Continue { truncate: true },
            Fault::Reset => answer(StatusCode::BAD_GATEWAY, Bytes::new(), true),
            Fault::Timeout => {
                // Until the client gives up; a client that waits longer is cut off at its
                // timeout, as an unanswered upstream would be.
                tokio::time::sleep(self.config.client_timeout.min(Duration::from_secs(300))).await;
                answer(StatusCode::GATEWAY_TIMEOUT, Bytes::new(), true)
            }
        }
    }
}
