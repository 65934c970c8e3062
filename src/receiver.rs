//! The webhook receiver of the recording modes (`--webhook-public-url`): the URLs plaid-vcr
//! puts into requests instead of the app's, and what happens when upstream POSTs a webhook to
//! one of them.
//!
//! Forwarding a request that registers a webhook URL (`webhook`, `options.webhook`), the proxy
//! asks [`Receiver::register`] for the body upstream gets: the same JSON with the URL replaced
//! by `<public url>/plaid-vcr/webhooks/<token>`. The key and the stored request are still
//! computed from what the client sent. When upstream sends a webhook there,
//! [`Receiver::receive`] forwards it unchanged (body and `Plaid-Verification`) to the app's URL,
//! records it redacted (see [`crate::webhook`]) after the interaction it followed, and tells the
//! proxy the app's status to answer upstream with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::error::RequestError;
use crate::redact::Redactor;
use crate::upstream::{self, Poster};
use crate::webhook::{self, Payload, Webhook};

/// The receiver: public base URL, the client that reaches the app, and what this session
/// registered and answered.
#[derive(Debug)]
pub struct Receiver {
    public_url: String,
    poster: Poster,
    cassette: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Receiver token → the app URL it stands for.
    registrations: HashMap<String, Registration>,
    /// The last interaction upstream answered, and the last one per item (pseudonymized ids).
    last: Option<Answered>,
    by_item: HashMap<String, Answered>,
    /// Which item an access token (pseudonymized) belongs to, learned from answers that carry
    /// both (`/item/public_token/exchange`), so `/sandbox/item/fire_webhook` is tied to its item.
    item_of_token: HashMap<String, String>,
    /// Webhooks recorded so far after each interaction in this session.
    seq: HashMap<Option<String>, u32>,
}

#[derive(Debug, Clone)]
struct Registration {
    app_url: String,
    registered_by: String,
}

#[derive(Debug, Clone)]
struct Answered {
    index: String,
    endpoint: String,
}

/// What became of a webhook upstream sent.
#[derive(Debug)]
pub struct Received {
    /// The status the app answered, which upstream gets too.
    pub app_status: Result<StatusCode, RequestError>,
    /// The webhook file written, relative to the cassette; `None` if the body was not JSON.
    pub file: Option<PathBuf>,
}

impl Receiver {
    /// A receiver whose URLs start with `public_url`, recording into the cassette at `cassette`.
    pub fn new(public_url: &str, poster: Poster, cassette: PathBuf) -> Receiver {
        Receiver {
            public_url: public_url.trim_end_matches('/').to_owned(),
            poster,
            cassette,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The body to forward upstream for a request with `raw` body that will be recorded as
    /// `registered_by`: its webhook URL rewritten to a receiver URL; `None` if it has none.
    pub fn register(&self, raw: &[u8], registered_by: &str) -> Option<Bytes> {
        let body: Map<String, Value> = serde_json::from_slice(raw).ok()?;
        let (field, app_url) = webhook::registered_url(&body)?;
        let token = webhook::receiver_token(app_url);
        let receiver_url = format!("{}{}{token}", self.public_url, webhook::RECEIVER_PATH);
        let rewritten = webhook::rewrite_url(raw, field, &receiver_url)?;
        self.state().registrations.insert(
            token,
            Registration {
                app_url: app_url.to_owned(),
                registered_by: registered_by.to_owned(),
            },
        );
        Some(rewritten)
    }

    /// Notes that upstream answered the interaction `index` (before it is written): webhooks
    /// that arrive next follow it. `request` and `response` are the redacted bodies.
    pub fn answered(&self, index: &str, endpoint: &str, request: &Map<String, Value>, response: &Value) {
        // An app fetches the key because a webhook arrived: a consequence, never a cause.
        if endpoint == "webhook_verification_key/get" {
            return;
        }
        let mut state = self.state();
        let token = request.get("access_token").and_then(Value::as_str);
        if let (Some(t), Some(item)) = (
            response.get("access_token").and_then(Value::as_str),
            webhook::item_of(response),
        ) {
            state.item_of_token.insert(t.to_owned(), item.to_owned());
        }
        let item = request
            .get("item_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| token.and_then(|t| state.item_of_token.get(t).cloned()))
            .or_else(|| webhook::item_of(response).map(str::to_owned));
        let answered = Answered {
            index: index.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        if let Some(item) = item {
            state.by_item.insert(item, answered.clone());
        }
        state.last = Some(answered);
    }

    /// Which interaction a webhook with (redacted) `body` follows, and its place after it. The
    /// first one after an interaction in this session first removes what an earlier session
    /// recorded after it, under the lock: a later webhook of this session (seq 2, 3, …) is only
    /// placed after that, so its file can never be the one removed. (A few unlinks, once per
    /// interaction per session: cheap enough to do here.)
    fn place(&self, body: &Value) -> Result<(Option<Answered>, u32), RequestError> {
        let mut state = self.state();
        let after = webhook::item_of(body)
            .and_then(|item| state.by_item.get(item))
            .or(state.last.as_ref())
            .cloned();
        let index = after.as_ref().map(|a| a.index.clone());
        let seq = *state.seq.get(&index).unwrap_or(&0) + 1;
        if seq == 1 {
            webhook::remove_after(&self.cassette, index.as_deref()).map_err(|e| RequestError::Store(e.to_string()))?;
        }
        state.seq.insert(index, seq);
        Ok((after, seq))
    }

    /// Handles a webhook upstream POSTed to the receiver path `token`: forwards it to the app,
    /// then records it durably (even if the app was down: it is what Plaid sent).
    pub async fn receive(
        &self,
        token: &str,
        headers: &HeaderMap,
        body: Bytes,
        redactor: &Redactor,
    ) -> Result<Received, RequestError> {
        let registration = self
            .state()
            .registrations
            .get(token)
            .cloned()
            .ok_or(RequestError::UnknownWebhookReceiver)?;
        // What it follows is decided as it arrives: the app may call Plaid while handling it
        // (to fetch the verification key), and those calls are not its cause.
        let parsed = serde_json::from_slice::<Value>(&body)
            .ok()
            .map(|value| redactor.response(webhook::RULES_ENDPOINT, value));
        let placed = match &parsed {
            Some(body) => Some(self.place(body)?),
            None => None,
        };
        let app_status = match self
            .poster
            .post(&registration.app_url, upstream::forwarded_headers(headers), body)
            .await
        {
            Ok(answer) => Ok(answer.status),
            Err(e) => {
                tracing::warn!(error = %e, "the app's webhook URL did not answer; recording the webhook anyway");
                Err(RequestError::WebhookAppUnreachable(e.to_string()))
            }
        };
        let (Some(body), Some((after, seq))) = (parsed, placed) else {
            tracing::warn!("a webhook body is not JSON; forwarded, not recorded");
            return Ok(Received { app_status, file: None });
        };
        let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
        let webhook = Webhook {
            format: webhook::FORMAT,
            after: after.as_ref().map(|a| a.index.clone()),
            after_endpoint: after.map(|a| a.endpoint),
            registered_by: Some(registration.registered_by),
            seq,
            recorded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            webhook_type: text("webhook_type"),
            webhook_code: text("webhook_code"),
            app_status: app_status.as_ref().ok().map(StatusCode::as_u16),
            unredacted: redactor.is_raw(),
            webhook: Payload { body },
        };
        let root = self.cassette.clone();
        // fsyncs: off the runtime's workers.
        let written = tokio::task::spawn_blocking(move || webhook::write(&root, &webhook))
            .await
            .map_err(|e| RequestError::Store(format!("recording a webhook failed: {e}")))?
            .map_err(|e| RequestError::Store(e.to_string()))?;
        Ok(Received {
            app_status,
            file: Some(written),
        })
    }
}
