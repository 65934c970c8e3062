//! Failures on demand in the pipeline: the fault a request gets (its `Plaid-VCR-Fault` header,
//! else its session's rules), answered instead of the recording or upstream, or applied to the
//! answer (`delay`, `truncate`). A faulted request never reaches upstream or the cassette.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::Proxy;
use crate::faults::catalogue::PlaidErrorCode;
use crate::faults::rules::Rules;
use crate::faults::{self, Fault};
use crate::plaid_error::RequestError;
use crate::serve::outcome::{Handled, Reply};
use crate::serve::proxy::sessions::{control, control_error};
use crate::serve::request::PlaidRequest;
use crate::serve::session::Session;
use crate::webhooks::known;

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
    /// Plaid's `ITEM` `ERROR` webhook for an item that just went into `error`, to the URL the
    /// request's session registered (if it did), signed; sent beside the answer, never before
    /// it is decided.
    fn send_item_error(&self, request: &PlaidRequest, error: &PlaidErrorCode, item: Option<String>) {
        let Some(deliveries) = self.webhooks.deliveries.clone() else {
            return;
        };
        let fields: serde_json::Map<String, Value> = [(
            "error".to_owned(),
            serde_json::json!({
                "display_message": error.display_message,
                "error_code": error.error_code,
                "error_message": error.error_message,
                "error_type": error.error_type,
                "status": error.status,
            }),
        )]
        .into_iter()
        .collect();
        let Ok(body) = known::body("ITEM", "ERROR", item.as_deref(), &fields) else {
            return;
        };
        let bytes = Bytes::from(serde_json::to_vec(&body).expect("a serde_json::Value always serializes to a Vec"));
        let session = request.session.clone();
        tokio::spawn(async move {
            match deliveries.fire(session.as_deref(), None, bytes).await {
                Ok((_, status)) => tracing::info!(status, "ITEM ERROR webhook sent for an ITEM_LOGIN_REQUIRED fault"),
                Err(e) => tracing::debug!(error = %e, "no ITEM ERROR webhook for an ITEM_LOGIN_REQUIRED fault"),
            }
        });
    }

    /// Notes which item an access token belongs to, from an `/item/public_token/exchange`
    /// answer (for the `ITEM` `ERROR` webhook of a later `ITEM_LOGIN_REQUIRED`).
    pub(super) fn learn_item(&self, session: Option<&Session>, answer: &[u8]) {
        let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
            return;
        };
        if let (Some(token), Some(item)) = (answer["access_token"].as_str(), answer["item_id"].as_str()) {
            self.fault_rules(session).learn_item(token, item);
        }
    }
}

/// `POST /plaid-vcr/webhooks/fire`'s body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fire {
    webhook_type: String,
    webhook_code: String,
    #[serde(default)]
    item_id: Option<String>,
    /// Whose registered URL it goes to (the default session's if absent).
    #[serde(default)]
    session: Option<String>,
    /// Top-level fields over the spec's example.
    #[serde(default)]
    fields: serde_json::Map<String, Value>,
    /// Where it goes, instead of the URL the session registered.
    #[serde(default)]
    url: Option<String>,
}

impl Proxy {
    /// `POST /plaid-vcr/webhooks/fire`: a webhook of Plaid's spec, signed with plaid-vcr's key
    /// (so the app's verification through `/webhook_verification_key/get` passes), sent now.
    pub(super) async fn fire_webhook<B>(&self, request: http::Request<B>) -> Handled
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let invalid = |why: String| control_error(RequestError::InvalidWebhook(why));
        let Some(deliveries) = &self.webhooks.deliveries else {
            return invalid("plaid-vcr is recording, and signs webhooks only while replaying".into());
        };
        let body = match crate::serve::request::collect(request, self.limits()).await {
            Ok((_, body)) => body,
            Err(error) => return control_error(error),
        };
        let fire: Fire = match serde_json::from_slice(&body) {
            Ok(fire) => fire,
            Err(e) => return invalid(e.to_string()),
        };
        if let Some(name) = &fire.session {
            if let Err(rule) = crate::serve::session::check_name(name) {
                return control_error(RequestError::InvalidSession { rule });
            }
        }
        let webhook = match known::body(
            &fire.webhook_type,
            &fire.webhook_code,
            fire.item_id.as_deref(),
            &fire.fields,
        ) {
            Ok(webhook) => webhook,
            Err(e) => return invalid(e.to_string()),
        };
        let bytes = Bytes::from(serde_json::to_vec(&webhook).expect("a serde_json::Value always serializes to a Vec"));
        match deliveries.fire(fire.session.as_deref(), fire.url, bytes).await {
            Ok((target, status)) => {
                tracing::info!(webhook = %format!("{} {}", fire.webhook_type, fire.webhook_code), status, "webhook fired");
                let schema = known::all()
                    .get(&format!("{} {}", fire.webhook_type, fire.webhook_code))
                    .map(|k| k.schema.as_str());
                control(
                    serde_json::json!({"delivered_to": target, "status": status, "schema": schema, "webhook": webhook}),
                )
            }
            Err(e) => control_error(RequestError::WebhookAppUnreachable(e)),
        }
    }

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
        let (fault, new_login) = match asked {
            Some(fault) => {
                // Asked for in a named session, it sticks until the session ends; the default
                // session has no end, so there a header's fault is for its request alone.
                let new = match (fault.sticks(), token, session) {
                    (true, Some(token), Some(_)) => rules.stick(token),
                    (sticks, _, _) => sticks,
                };
                (fault, new)
            }
            None => match rules.check_new(&request.endpoint, token) {
                Some(found) => found,
                None => return Injected::Continue { truncate: false },
            },
        };
        if let (true, Fault::Error(error)) = (new_login, &fault) {
            self.send_item_error(request, error, token.and_then(|t| rules.item_of(t)));
        }
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
