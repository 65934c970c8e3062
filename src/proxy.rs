//! The per-request pipeline, the same for every Plaid endpoint, dispatched on the mode
//! ([`crate::mode`]) in one place.
//!
//! request → route → [`crate::request`] (limit, parse, credentials, redact, key) → dispatch on
//! the mode → store or upstream → redact → [`crate::writer`] → response. A stage never reaches
//! back into an earlier one, and only the output of [`crate::redact::Redactor`] is keyed or
//! written. Logs carry mode, endpoint, outcome, status, latency and key prefix; never bodies,
//! credentials or tokens. Building a proxy is [`crate::startup`]'s job.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::watch;

use crate::body::Body;
use crate::cache::{Cache, Hit};
use crate::cassette::Cassette;
use crate::config::{Config, SequenceEnd};
use crate::delivery::{self, Deliveries};
use crate::diff;
use crate::error::{Error, RequestError};
use crate::interaction::{self, index_key, Interaction};
use crate::key;
use crate::mode::{Recorder, Serving};
use crate::receiver::Receiver;
use crate::redact::Redactor;
use crate::request::{self, Limits, PlaidRequest, Route};
use crate::session::{Steps, Summary, Tally};
use crate::store::{Store, StoreError, WithRequest};
use crate::webhook;

use crate::outcome::{Handled, Reply};
pub use crate::outcome::{KEY_HEADER, OUTCOME_HEADER};

/// A recording of a miss in progress, which identical misses wait on instead of calling
/// upstream again: `None` until the one upstream exchange is answered.
type Flight = watch::Receiver<Option<Arc<Handled>>>;

/// Webhooks delivered after one answer, each with where it goes.
type Batch = Vec<(Arc<delivery::Recorded>, Option<String>)>;

/// The webhook side of a proxy (see [`crate::startup`]): the receiver while recording with
/// `--webhook-public-url`, the recorded webhooks to deliver while replaying.
#[derive(Debug, Default)]
pub struct Webhooks {
    pub receiver: Option<Receiver>,
    pub deliveries: Option<Arc<Deliveries>>,
}

/// The proxy: mode, cassette, store, redactor and session state shared by all connections.
pub struct Proxy {
    serving: Serving,
    cassette: Cassette,
    store: Arc<Store>,
    redactor: Redactor,
    /// Misses being recorded in `replay --record-missing`, by index key (single-flight).
    flights: Mutex<HashMap<String, Flight>>,
    steps: Steps,
    tally: Tally,
    /// Hits by exact request, in the modes that replay, without `--sequences`.
    cache: Option<Cache>,
    /// The settings the pipeline reads per request (body limit, sequences, credentials, …).
    config: Config,
    webhooks: Webhooks,
    /// Whether the "webhook URLs pass through" notice was logged (once per run).
    told_passthrough: AtomicBool,
    /// Per endpoint, the recordings and requests a miss is compared with, read from the files
    /// at the first miss. Replay never records, so they cannot go stale during the run.
    miss_basis: Mutex<HashMap<String, Arc<Vec<WithRequest>>>>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("mode", &self.serving.mode())
            .field("cassette", &self.cassette)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy from its parts (see [`crate::startup::open`]).
    pub fn new(serving: Serving, cassette: Cassette, store: Arc<Store>, redactor: Redactor, config: Config) -> Proxy {
        let cache = (!matches!(serving, Serving::Record(_)) && !config.sequences).then(Cache::default);
        Proxy {
            serving,
            cassette,
            store,
            redactor,
            flights: Mutex::new(HashMap::new()),
            steps: Steps::default(),
            tally: Tally::default(),
            cache,
            config,
            webhooks: Webhooks::default(),
            told_passthrough: AtomicBool::new(false),
            miss_basis: Mutex::new(HashMap::new()),
        }
    }

    /// The proxy with its webhook receiver and deliveries.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Proxy {
        self.webhooks = webhooks;
        self
    }

    /// The key id replayed webhooks are signed with; `None` in `record`.
    pub fn webhook_key_id(&self) -> Option<&str> {
        self.webhooks.deliveries.as_deref().map(Deliveries::kid)
    }

    /// Waits (up to `timeout`) for queued webhook deliveries; part of a graceful stop.
    pub async fn finish_deliveries(&self, timeout: Duration) {
        if let Some(deliveries) = &self.webhooks.deliveries {
            deliveries.finish(timeout).await;
        }
    }

    /// The working store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops recording: the writer finishes what is queued, then the store is flushed.
    /// Blocking (it waits for fsyncs): call it from a blocking context.
    pub fn close(&self) -> Result<(), Error> {
        if let Serving::Record(recorder) | Serving::RecordMissing(recorder) = &self.serving {
            recorder.writer().close()?;
        }
        self.store.flush()?;
        Ok(())
    }

    /// The session summary so far: counts, misses, new recordings, unused and stale ones.
    /// Fails if the store cannot be read: "unused" must never be computed from nothing.
    pub fn summary(&self) -> Result<Summary, Error> {
        let mut failed = None;
        let recordings = self
            .store
            .recorded_iter()
            .map_while(|r| r.map_err(|e| failed = Some(e)).ok());
        let mut summary = self
            .tally
            .summary(&self.serving.mode().to_string(), recordings, self.config.max_age);
        if let Some(e) = failed {
            return Err(e.into());
        }
        if let Some(deliveries) = &self.webhooks.deliveries {
            summary.webhooks.add_deliveries(deliveries.counts());
        }
        Ok(summary)
    }

    /// Answers one HTTP request. Never panics on input and always answers: every failure
    /// becomes a Plaid-shaped error.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let (handled, batch) = self.route(request).await;
        self.count(&handled);
        self.log(&handled, started.elapsed());
        let mut response = handled.into_response();
        if let (Some(batch), Some(deliveries)) = (batch, &self.webhooks.deliveries) {
            let sent = response.body_mut().on_sent();
            deliveries.enqueue(batch, sent);
        }
        response
    }

    fn count(&self, handled: &Handled) {
        match handled {
            // Not a request the cassette answers: a health check, plaid-vcr's own signing key
            // (neither recorded nor missed), a webhook from upstream.
            Handled::Health(_) | Handled::OwnKey { .. } => return,
            Handled::Webhook { file, .. } => return self.tally.webhook_received(file.is_some()),
            _ => {}
        }
        let tally = &self.tally;
        tally.request();
        match handled {
            Handled::Health(_) => {}
            Handled::Cached(hit) if Cache::first_use(hit) => tally.hit(&hit.used),
            Handled::Cached(_) => tally.hit_again(),
            Handled::Hit { used, .. } => tally.hit(used),
            Handled::Recorded { endpoint, used, .. } => tally.recorded(endpoint, used),
            Handled::Miss { endpoint, key, .. } => tally.miss(endpoint, key),
            Handled::Forwarded { .. } => tally.forwarded(),
            Handled::OwnKey { .. } | Handled::Webhook { .. } => {}
            Handled::Failed { .. } => tally.error(),
        }
    }

    fn log(&self, handled: &Handled, latency: Duration) {
        let status = match handled {
            // Health checks poll; a line each would drown the request log.
            Handled::Health(_) => return,
            Handled::Hit { reply, .. }
            | Handled::Recorded { reply, .. }
            | Handled::Forwarded { reply, .. }
            | Handled::OwnKey { reply, .. }
            | Handled::Webhook { reply, .. } => reply.status,
            Handled::Cached(hit) => hit.status,
            Handled::Miss { error, .. } | Handled::Failed { error, .. } => error.status(),
        };
        let (endpoint, key) = handled.endpoint_and_key();
        let (endpoint, key) = (endpoint.unwrap_or("-"), key.map(key::prefix).unwrap_or("-"));
        let (mode, outcome, status) = (self.serving.mode().as_str(), handled.outcome(), status.as_u16());
        // Plain integers and static strings: the line costs less to format than the answer
        // costs to send (a Duration's Debug form was a float format per request).
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if matches!(handled, Handled::Forwarded { .. }) || status >= 500 {
            tracing::warn!(mode, endpoint, outcome, status, latency_us, key, "request");
        } else {
            tracing::info!(mode, endpoint, outcome, status, latency_us, key, "request");
        }
    }

    /// What happened to `request`, and the webhooks to deliver once its answer is sent.
    async fn route<B>(self: &Arc<Self>, request: Request<B>) -> (Handled, Option<Batch>)
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let endpoint = match request::route(request.method(), request.uri().path()) {
            Ok(Route::Health) => {
                let ok = Bytes::from_static(b"{\"status\":\"ok\"}\n");
                return (
                    Handled::Health(Reply::new(StatusCode::OK, "application/json; charset=utf-8", ok)),
                    None,
                );
            }
            Ok(Route::Plaid(endpoint)) => endpoint,
            // Boxed, like the full path below: the hot path's future stays small (hyper moves
            // it into place for every request, and its size is that of its largest branch).
            Ok(Route::Webhook(token)) => return (Box::pin(self.receive_webhook(&token, request)).await, None),
            Err(error) => {
                let failed = Handled::Failed {
                    endpoint: request::endpoint_of(request.uri().path()),
                    key: None,
                    error,
                };
                return (failed, None);
            }
        };
        let limits = self.limits();
        let failed = |endpoint: String, error| Handled::Failed {
            endpoint: Some(endpoint),
            key: None,
            error,
        };
        let (parts, raw_body) = match request::collect(request, limits).await {
            Ok(collected) => collected,
            Err(error) => return (failed(endpoint, error), None),
        };
        if let Some(hit) = self.cached(&endpoint, &parts.headers, &raw_body, limits) {
            let batch = self.answered(&hit.used, &raw_body);
            return (Handled::Cached(hit), batch);
        }
        if let Some(own) = self.own_key(&endpoint, &raw_body) {
            return (own, None);
        }
        let handled = match request::parse(endpoint.clone(), parts, raw_body.clone(), limits, &self.redactor) {
            Ok(parsed) => Box::pin(self.dispatch(parsed)).await,
            Err(error) => failed(endpoint, error),
        };
        let batch = match &handled {
            Handled::Hit { used, .. } | Handled::Recorded { used, .. } => self.answered(used, &raw_body),
            _ => None,
        };
        (handled, batch)
    }

    fn limits(&self) -> Limits<'_> {
        Limits {
            max_body_bytes: self.config.max_body_bytes,
            client_timeout: self.config.client_timeout,
            client_id: self.config.client_id.as_ref(),
            secret: self.config.secret.as_ref(),
        }
    }

    /// Registers the webhook URL a request answered as `used` carried, and returns the recorded
    /// webhooks that follow that answer. Nothing at all when the cassette has no webhooks.
    fn answered(&self, used: &str, raw_body: &[u8]) -> Option<Batch> {
        let deliveries = self.webhooks.deliveries.as_ref().filter(|d| d.any())?;
        deliveries.answered(used, raw_body)
    }

    /// `/webhook_verification_key/get` for plaid-vcr's own signing key, answered here.
    fn own_key(&self, endpoint: &str, raw_body: &[u8]) -> Option<Handled> {
        if endpoint != "webhook_verification_key/get" {
            return None;
        }
        let answer = self.webhooks.deliveries.as_ref()?.key_answer(raw_body)?;
        Some(Handled::OwnKey {
            endpoint: endpoint.to_owned(),
            reply: Reply::new(StatusCode::OK, "application/json; charset=utf-8", answer),
        })
    }

    /// A webhook upstream POSTed to the receiver (recording with `--webhook-public-url`).
    async fn receive_webhook<B>(&self, token: &str, request: Request<B>) -> Handled
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let failed = |error| Handled::Failed {
            endpoint: None,
            key: None,
            error,
        };
        let Some(receiver) = &self.webhooks.receiver else {
            return failed(RequestError::UnknownWebhookReceiver);
        };
        let (parts, body) = match request::collect(request, self.limits()).await {
            Ok(collected) => collected,
            Err(error) => return failed(error),
        };
        match receiver.receive(token, &parts.headers, body, &self.redactor).await {
            Ok(received) => match received.app_status {
                Ok(status) => Handled::Webhook {
                    reply: Reply::new(status, "application/json; charset=utf-8", Bytes::new()),
                    file: received.file,
                },
                Err(error) => {
                    if received.file.is_some() {
                        self.tally.webhook_received(true);
                    }
                    failed(error)
                }
            },
            Err(error) => failed(error),
        }
    }

    /// The cached hit for exactly this request, if the checks the cache cannot remember pass
    /// (JSON content type, a text Plaid-Version, credentials); otherwise the full path decides.
    fn cached(&self, endpoint: &str, headers: &HeaderMap, raw_body: &Bytes, limits: Limits<'_>) -> Option<Arc<Hit>> {
        let cache = self.cache.as_ref()?;
        if !request::is_json(headers) {
            return None;
        }
        let version = request::plaid_version_str(headers).ok()?;
        let hit = cache.get(endpoint, version, raw_body)?;
        request::credentials_present(headers, limits, hit.body_credentials).then_some(hit)
    }

    /// Remembers a hit of the full path, answered with `reply`, in the exact cache.
    fn remember(&self, request: &PlaidRequest, reply: &Reply, used: &str) {
        let Some(cache) = &self.cache else { return };
        let hit = Hit::new(
            &request.endpoint,
            request.plaid_version.as_deref(),
            request.raw_body.clone(),
            request.body_credentials,
            &request.key,
            used.to_owned(),
            reply.status,
            reply.headers.get(http::header::CONTENT_TYPE).cloned(),
            reply.body.clone(),
        );
        if let Some(hit) = hit {
            cache.insert(hit);
        }
    }

    /// The one place the mode decides what happens.
    async fn dispatch(self: &Arc<Self>, request: PlaidRequest) -> Handled {
        // Without --sequences every occurrence of a request is step 1: one answer per key.
        let step = if self.config.sequences {
            self.steps.next(&request.key)
        } else {
            1
        };
        match &self.serving {
            Serving::Record(recorder) => self.record(recorder, request, step).await,
            Serving::Replay => match self.replay(&request, step, true) {
                Some(handled) => handled,
                None => self.miss(request),
            },
            Serving::RecordMissing(recorder) => match self.replay(&request, step, false) {
                Some(handled) => handled,
                None => self.record_once(recorder, request, step).await,
            },
        }
    }

    /// Answers from the store, or `None` when nothing is recorded for the request. Past the
    /// last recorded step of a sequence, `exhaust` applies `sequence_exhausted` (replay);
    /// otherwise it is `None` too (record-missing records the next step).
    fn replay(&self, request: &PlaidRequest, step: u32, exhaust: bool) -> Option<Handled> {
        let (endpoint, key) = (&request.endpoint, &request.key);
        let hit = |reply: Reply, used: String| Handled::Hit {
            used,
            reply,
            endpoint: endpoint.clone(),
            key: key.clone(),
        };
        let index = index_key(key, step);
        match self.store.get(&index) {
            Ok(Some(answer)) => {
                let reply = Reply::of(&answer);
                self.remember(request, &reply, &index);
                return Some(hit(reply, index));
            }
            Ok(None) => {}
            Err(e) => return Some(Handled::failed(endpoint, key, (&e).into())),
        }
        let last = match self.store.last_step(key) {
            Ok(Some(last)) if exhaust && step > last => last,
            Ok(_) => return None,
            Err(e) => return Some(Handled::failed(endpoint, key, (&e).into())),
        };
        if self.config.sequence_exhausted == SequenceEnd::Error {
            let error = RequestError::SequenceExhausted {
                endpoint: endpoint.clone(),
                key: key.clone(),
                recorded: last,
                call: step,
            };
            return Some(Handled::Miss {
                endpoint: endpoint.clone(),
                key: key.clone(),
                error,
            });
        }
        match self.store.get(&index_key(key, last)) {
            Ok(Some(answer)) => Some(hit(Reply::of(&answer), index_key(key, last))),
            Ok(None) => None,
            Err(e) => Some(Handled::failed(endpoint, key, (&e).into())),
        }
    }

    /// The error for a request with no recording: what was looked up, the closest recording
    /// of the same endpoint and how it differs, and the command that records it.
    fn miss(&self, request: PlaidRequest) -> Handled {
        // A store that cannot be read must not read as "nothing recorded".
        let recordings = match self.miss_basis(&request.endpoint) {
            Ok(recordings) => recordings,
            Err(e) => return Handled::failed(&request.endpoint, &request.key, (&e).into()),
        };
        let hint = format!(
            "record it with: plaid-vcr replay --record-missing --upstream {} --cassette {} (recording needs \
             PLAID_CLIENT_ID and PLAID_SECRET, or credentials in the request)",
            self.config.upstream,
            self.cassette.root().display()
        );
        let miss = diff::explain_miss(
            &request.endpoint,
            request.plaid_version.as_deref(),
            &request.stored_body,
            &request.key,
            &recordings,
            self.cassette.root(),
            hint,
        );
        Handled::Miss {
            endpoint: request.endpoint,
            key: request.key,
            error: RequestError::NoRecording(Box::new(miss)),
        }
    }

    /// The recordings of `endpoint` with their requests, read once per run (misses only happen
    /// in replay, which never records). Two first misses at once may both read; one is kept.
    fn miss_basis(&self, endpoint: &str) -> Result<Arc<Vec<WithRequest>>, StoreError> {
        let cached = self
            .miss_basis
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .cloned();
        if let Some(basis) = cached {
            return Ok(basis);
        }
        let basis = Arc::new(self.store.with_requests(endpoint)?);
        let mut cache = self.miss_basis.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(cache.entry(endpoint.to_owned()).or_insert(basis).clone())
    }

    /// Records a miss in `replay --record-missing` with single-flight: identical misses that
    /// arrive while one is being recorded wait for it and share its answer, so upstream is
    /// called once and the recording is written once. The exchange runs on its own task, so
    /// it completes (and is recorded) even if the client that started it goes away.
    async fn record_once(self: &Arc<Self>, recorder: &Arc<Recorder>, request: PlaidRequest, step: u32) -> Handled {
        let index = index_key(&request.key, step);
        let mut flight = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&index) {
                Some(flight) => {
                    tracing::debug!(endpoint = %request.endpoint, key = key::prefix(&request.key), "joining a recording in flight");
                    flight.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(index.clone(), rx.clone());
                    let (proxy, recorder) = (self.clone(), recorder.clone());
                    tokio::spawn(async move {
                        // Removes the flight however this task ends, so a panic cannot leave
                        // later requests waiting on an answer that never comes.
                        let _landed = Landed {
                            proxy: &proxy,
                            index: &index,
                        };
                        // A recording may have landed between our lookup and this flight.
                        let handled = match proxy.store.get(&index) {
                            Ok(Some(answer)) => Handled::Hit {
                                used: index.clone(),
                                reply: Reply::of(&answer),
                                endpoint: request.endpoint,
                                key: request.key,
                            },
                            Ok(None) => proxy.record(&recorder, request, step).await,
                            Err(e) => Handled::failed(&request.endpoint, &request.key, (&e).into()),
                        };
                        let _ = tx.send(Some(Arc::new(handled)));
                    });
                    rx
                }
            }
        };
        let landed = flight.wait_for(Option::is_some).await.map(|answer| answer.clone());
        match landed {
            Ok(answer) => answer
                .as_deref()
                .cloned()
                .expect("wait_for(Option::is_some) returns only once the value is Some"),
            Err(_) => Handled::Failed {
                endpoint: None,
                key: None,
                error: RequestError::Store("recording this request failed unexpectedly (see plaid-vcr's log)".into()),
            },
        }
    }

    /// Forwards upstream; records 2xx/4xx JSON answers durably before answering the client.
    async fn record(&self, recorder: &Recorder, request: PlaidRequest, step: u32) -> Handled {
        let PlaidRequest {
            endpoint,
            plaid_version,
            headers,
            raw_body,
            stored_body,
            key,
            ..
        } = request;
        let index = index_key(&key, step);
        let upstream_body = match &self.webhooks.receiver {
            Some(receiver) => receiver.register(&raw_body, &index).unwrap_or(raw_body),
            None => {
                if webhook::registered_url_in(&raw_body).is_some()
                    && !self.told_passthrough.swap(true, Ordering::Relaxed)
                {
                    tracing::info!(
                        %endpoint,
                        "a request registers a webhook URL; it passes through unchanged and webhooks are not \
                         recorded (pass --webhook-public-url URL to record them)"
                    );
                }
                raw_body
            }
        };
        // Webhooks that arrive while it is in flight wait for its answer to be noted (or for
        // it to fail), as it may be their cause.
        let exchange = self.webhooks.receiver.as_ref().map(Receiver::exchange);
        let answer = match recorder.upstream().forward(&endpoint, &headers, upstream_body).await {
            Ok(answer) => answer,
            Err(e) => return Handled::failed(&endpoint, &key, (&e).into()),
        };
        let status = answer.status;
        let content_type = answer.content_type.unwrap_or_else(|| "application/json".into());
        let reply = Reply::new(status, &content_type, answer.body.clone());

        let recordable = (status.is_success() || status.is_client_error()) && status != StatusCode::TOO_MANY_REQUESTS;
        if !recordable {
            tracing::warn!(endpoint = %endpoint, status = status.as_u16(), "upstream answered 5xx/429; passed through, not recorded");
            return Handled::Forwarded { endpoint, key, reply };
        }
        // Not JSON (a PDF, a zip): recorded byte for byte, in a file of its own. It cannot be
        // redacted; `scan` lists it.
        let binary = !interaction::is_json_type(&content_type);
        let body = if binary {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&answer.body) {
                Ok(body) => self.redactor.response(&endpoint, body),
                Err(_) => {
                    tracing::warn!(endpoint = %endpoint, status = status.as_u16(), "upstream answer says JSON but is not; passed through, not recorded");
                    return Handled::Forwarded { endpoint, key, reply };
                }
            }
        };
        if let (Some(receiver), Some(exchange)) = (&self.webhooks.receiver, exchange) {
            receiver.answered(exchange, &index, &endpoint, &stored_body, &body);
        }
        let mut interaction = Interaction::new(
            key.clone(),
            &endpoint,
            plaid_version.as_deref(),
            stored_body,
            status.as_u16(),
            &content_type,
            body,
            SystemTime::now(),
        );
        interaction.unredacted = self.redactor.is_raw();
        interaction.step = (step > 1).then_some(step);
        if binary {
            interaction.set_binary_body(answer.body);
        }
        let used = interaction.index_key();
        // The writer answers once the cassette file and the store are durable (see
        // `crate::writer`): only then does the client get its answer.
        if let Err(e) = recorder.writer().commit(interaction).await {
            tracing::error!(endpoint = %endpoint, error = %e, "recording failed");
            return Handled::failed(&endpoint, &key, (&e).into());
        }
        Handled::Recorded {
            endpoint,
            key,
            used,
            reply,
        }
    }
}

/// Removes a finished flight from [`Proxy::flights`] when dropped.
struct Landed<'a> {
    proxy: &'a Proxy,
    index: &'a str,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.proxy
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.index);
    }
}
