//! The webhook receiver of the recording modes (`--webhook-public-url`): the URLs plaid-vcr
//! puts into requests instead of the app's, and what happens when upstream POSTs a webhook to
//! one of them.
//!
//! Forwarding a request that registers a webhook URL (`webhook`, `options.webhook`), the proxy
//! asks [`Receiver::register`] for the body upstream gets: the same JSON with the URL replaced
//! by `<public url>/plaid-vcr/webhooks/<token>`. The key and the stored request are still
//! computed from what the client sent. When upstream sends a webhook there,
//! [`Receiver::receive`] forwards it unchanged (body and `Plaid-Verification`) to the app's URL,
//! records it redacted (see [`crate::webhooks::webhook`]) after the interaction it followed, and tells the
//! proxy the app's status to answer upstream with.
//!
//! What a webhook followed is the last interaction answered among those sent upstream before
//! it arrived. Upstream may send a webhook the moment it has answered the request that caused
//! it, and that answer can still be on its way through plaid-vcr (a loaded machine, a large
//! body): so each exchange with upstream is an [`Exchange`] until its answer is noted, and a
//! webhook is placed once the exchanges in flight at its arrival are answered (at most
//! [`PLACING_WAIT`]); calls sent after it arrived (the app fetching the verification key while
//! handling it) are never its cause.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::plaid_error::RequestError;
use crate::privacy::redact::Redactor;
use crate::store::interaction::split_index_key;
use crate::upstream::{self, Poster};
use crate::webhooks::webhook::{self, Payload, Webhook};

/// The receiver: public base URL, the client that reaches the app, and what this session
/// registered and answered.
#[derive(Debug)]
pub struct Receiver {
    public_url: String,
    poster: Poster,
    cassette: PathBuf,
    state: Mutex<State>,
    /// Notified whenever an exchange ends.
    settled: tokio::sync::Notify,
    /// Held while a webhook is placed: webhooks are placed one at a time, in the order they
    /// arrived (the lock is fair), so one that waits for its cause keeps its turn.
    placing: tokio::sync::Mutex<()>,
}

/// The longest a webhook waits for the exchanges in flight at its arrival to be answered
/// before it is placed after what was answered by then. Its forwarding to the app never waits.
pub const PLACING_WAIT: Duration = Duration::from_secs(2);

/// How many answered interactions are remembered, in all and per item, to place webhooks.
const REMEMBERED: usize = 64;
const REMEMBERED_PER_ITEM: usize = 8;

#[derive(Debug, Default)]
struct State {
    /// Receiver token → the app URL it stands for.
    registrations: HashMap<String, Registration>,
    /// The interactions upstream answered last, oldest first, in all and per item
    /// (pseudonymized ids).
    recent: VecDeque<Answered>,
    by_item: HashMap<String, VecDeque<Answered>>,
    /// Exchanges sent upstream and not yet answered, and the id the next one gets.
    in_flight: BTreeSet<u64>,
    next_exchange: u64,
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
    /// The [`Exchange`] it was answered in.
    exchange: u64,
}

/// One request on its way to upstream and back, from just before it is sent until its answer
/// is noted ([`Receiver::answered`]) or it ends without one (dropped).
#[derive(Debug)]
pub struct Exchange<'a> {
    receiver: &'a Receiver,
    id: u64,
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        self.receiver.state().in_flight.remove(&self.id);
        self.receiver.settled.notify_waiters();
    }
}

/// Adds `answered` to `list`, keeping the last `max`.
fn remember(list: &mut VecDeque<Answered>, answered: Answered, max: usize) {
    if list.len() == max {
        list.pop_front();
    }
    list.push_back(answered);
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
            settled: tokio::sync::Notify::new(),
            placing: tokio::sync::Mutex::new(()),
        }
    }

    /// Starts an exchange with upstream: call it just before sending the request.
    pub fn exchange(&self) -> Exchange<'_> {
        let mut state = self.state();
        let id = state.next_exchange;
        state.next_exchange += 1;
        state.in_flight.insert(id);
        Exchange { receiver: self, id }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The body to forward upstream for a request with `raw` body that will be recorded as
    /// `registered_by`: its webhook URL rewritten to a receiver URL; `None` if it has none.
    pub fn register(&self, raw: &[u8], registered_by: &str) -> Option<Bytes> {
        let body: Map<String, Value> = serde_json::from_slice(raw).ok()?;
        let (field, app_url) = webhook::registered_url(&body)?;
        // Per session: tests of a parallel suite often share one webhook URL, and a webhook
        // must be recorded in the session whose request registered its URL.
        let token = webhook::receiver_token(split_index_key(registered_by).0, app_url);
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

    /// Notes that upstream answered `exchange`, the interaction `index` (before it is written):
    /// webhooks that arrive next follow it. `request` and `response` are the redacted bodies.
    pub fn answered(
        &self,
        exchange: Exchange<'_>,
        index: &str,
        endpoint: &str,
        request: &Map<String, Value>,
        response: &Value,
    ) {
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
            exchange: exchange.id,
        };
        if let Some(item) = item {
            remember(
                state.by_item.entry(item).or_default(),
                answered.clone(),
                REMEMBERED_PER_ITEM,
            );
        }
        remember(&mut state.recent, answered, REMEMBERED);
        // The exchange ends here (with the lock released), not when its recording is durable.
        drop(state);
        drop(exchange);
    }

    /// Waits until no exchange that started before `arrived` (an exchange id) is in flight,
    /// at most [`PLACING_WAIT`].
    async fn settle(&self, arrived: u64) {
        let deadline = tokio::time::Instant::now() + PLACING_WAIT;
        loop {
            // Created before the check: an exchange ending in between still wakes it.
            let ended = self.settled.notified();
            let waiting = self.state().in_flight.range(..arrived).count();
            if waiting == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                tracing::warn!(
                    waiting,
                    "a webhook arrived while requests to upstream were unanswered for {PLACING_WAIT:?}; \
                     it is recorded after the last interaction answered before"
                );
                return;
            }
        }
    }

    /// Which interaction a webhook with (redacted) `body` follows, and its place after it;
    /// `arrived` is the id the next exchange had when it arrived. The first one after an
    /// interaction in this session first removes what an earlier session recorded after it,
    /// under the lock: a later webhook of this session (seq 2, 3, …) is only
    /// placed after that, so its file can never be the one removed. (A few unlinks, once per
    /// interaction per session: cheap enough to do here.)
    /// Only interactions of `session` (the one that registered the webhook's URL) can be its
    /// cause: another test's may be about the same item.
    fn place(
        &self,
        body: &Value,
        arrived: u64,
        session: Option<&str>,
    ) -> Result<(Option<Answered>, u32), RequestError> {
        let mut state = self.state();
        let sent_before = |answered: &VecDeque<Answered>| {
            answered
                .iter()
                .rev()
                .find(|a| a.exchange < arrived && split_index_key(&a.index).0 == session)
                .cloned()
        };
        let after = webhook::item_of(body)
            .and_then(|item| state.by_item.get(item))
            .and_then(sent_before)
            .or_else(|| sent_before(&state.recent));
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
        // Only what was sent upstream before it arrived can have caused it: the app may call
        // Plaid while handling it (to fetch the verification key).
        let arrived = self.state().next_exchange;
        let parsed = serde_json::from_slice::<Value>(&body)
            .ok()
            .map(|value| redactor.response(crate::privacy::rules::WEBHOOK_ENDPOINT, value));
        let forwarded = self
            .poster
            .post(&registration.app_url, upstream::forwarded_headers(headers), body);
        // Polled right after the forwarding starts: the turn is taken as the webhook arrives.
        let placing = async {
            let _turn = self.placing.lock().await;
            match &parsed {
                Some(body) => {
                    self.settle(arrived).await;
                    let session = split_index_key(&registration.registered_by).0;
                    Some(self.place(body, arrived, session))
                }
                None => None,
            }
        };
        let (forwarded, placed) = tokio::join!(forwarded, placing);
        // A webhook that cannot be recorded is answered as failed, so Plaid sends it again
        // (the app, which has it already, sees it twice: Plaid's webhooks may come twice anyway).
        let placed = placed.transpose()?;
        let app_status = match forwarded {
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
