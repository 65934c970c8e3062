//! The per-request pipeline, the same for every Plaid endpoint, dispatched on the mode
//! ([`crate::serve::mode`]) in one place.
//!
//! request → route → [`crate::serve::request`] (limit, parse, credentials, redact, key) → dispatch on
//! the mode → store or upstream → the check against Plaid's spec ([`contract`]) → redact →
//! [`crate::store::writer`] → response. A stage never reaches back into an earlier one, and only
//! the output of [`crate::privacy::redact::Redactor`] is keyed or written. Logs carry mode, endpoint, outcome, status, latency and key prefix; never bodies,
//! credentials or tokens. Building a proxy is [`crate::serve::startup`]'s job.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Request, Response, StatusCode};
use tokio::sync::watch;

use crate::body::Body;
use crate::config::Config;
use crate::error::Error;
use crate::plaid_error::RequestError;
use crate::privacy::redact::Redactor;
use crate::serve::cache::{Cache, Hit};
use crate::serve::mode::Serving;
use crate::serve::request::{self, Limits, PlaidRequest, Route};

mod contract;
mod faults;
mod record;
mod replay;
mod sessions;

pub use contract::Checking;
use faults::Injected;

use crate::faults::rules::Rules;
use crate::serve::session::{Session, Sessions};
use crate::serve::summary::{Steps, Summary, Tally};
use crate::serve::violations::Found;
use crate::store::cassette::Cassette;
use crate::store::db::{Store, WithRequest};
use crate::store::key;
use crate::webhooks::delivery::{Batch, Deliveries};
use crate::webhooks::receiver::Receiver;

use crate::serve::outcome::{Handled, Reply, RECORDED_AT_HEADER};

/// A recording of a miss in progress, which identical misses wait on instead of calling
/// upstream again: `None` until the one upstream exchange is answered.
type Flight = watch::Receiver<Option<Arc<Handled>>>;

/// The webhook side of a proxy (see [`crate::serve::startup`]): the receiver while recording with
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
    /// The named sessions seen in this run; the default session's state is `steps` and `tally`.
    sessions: Sessions,
    /// The default session's fault rules (the config's, and those set for it).
    faults: Rules,
    /// The day `--shift-dates` moves answers' dates to (`--today`, else today when it started).
    today: time::Date,
    /// The live check against Plaid's spec; `None` with `--no-validate` (or replaying without
    /// `--validate`).
    checking: Option<Checking>,
}

/// Counts what happened to a request in `tally` (the run's, or a session's too); `first_use`
/// says whether a cached hit's recording is still to be noted as used in it.
fn count(tally: &Tally, handled: &Handled, first_use: impl Fn(&Hit) -> bool) {
    if let Handled::Truncated(inner) = handled {
        return count(tally, inner, first_use);
    }
    match handled {
        // Not a request the cassette answers: a health check, plaid-vcr's own signing key
        // (neither recorded nor missed), its own API, a webhook from upstream.
        Handled::Health(_) | Handled::OwnKey { .. } | Handled::Control(_) => return,
        Handled::Webhook { file, .. } => return tally.webhook_received(file.is_some()),
        _ => {}
    }
    tally.request();
    match handled {
        Handled::Health(_) | Handled::OwnKey { .. } | Handled::Control(_) | Handled::Webhook { .. } => {}
        Handled::Cached(hit) if first_use(hit) => tally.hit(&hit.used),
        Handled::Cached(_) => tally.hit_again(),
        Handled::Hit { used, .. } => tally.hit(used),
        Handled::Recorded { endpoint, used, .. } => tally.recorded(endpoint, used),
        Handled::Miss { endpoint, key, error } => {
            let explanation = match error {
                RequestError::NoRecording(miss) => Some(miss.message.as_str()),
                _ => None,
            };
            tally.miss(endpoint, key, explanation)
        }
        Handled::Forwarded { .. } => tally.forwarded(),
        // Counted as a request; which fault fired is noted where it fires.
        Handled::Fault { .. } | Handled::Truncated(_) => {}
        Handled::Failed { .. } => tally.error(),
    }
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
    /// A proxy from its parts (see [`crate::serve::startup::open`]).
    pub fn new(serving: Serving, cassette: Cassette, store: Arc<Store>, redactor: Redactor, config: Config) -> Proxy {
        let cache = (!matches!(serving, Serving::Record(_)) && !config.sequences).then(Cache::default);
        let (sessions, faults) = (Sessions::new(config.faults.clone()), Rules::new(&config.faults));
        let today = config.shift_day();
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
            sessions,
            faults,
            today,
            checking: None,
        }
    }

    /// The proxy checking traffic against Plaid's spec as `checking` says.
    pub fn with_checking(mut self, checking: Option<Checking>) -> Proxy {
        self.checking = checking;
        self
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
        // One pass over the index: the sessions' reports take their own recordings from it.
        let mut by_session = BTreeMap::new();
        let recordings = self
            .store
            .recorded_iter()
            .map_while(|r| r.map_err(|e| failed = Some(e)).ok())
            .inspect(|r| sessions::add_if_named(&mut by_session, r));
        let mut summary = self
            .tally
            .summary(&self.serving.mode().to_string(), recordings, self.config.max_age);
        if let Some(e) = failed {
            return Err(e.into());
        }
        if let Some(deliveries) = &self.webhooks.deliveries {
            summary.webhooks.add_deliveries(deliveries.counts());
        }
        summary.sessions = self.session_reports(by_session);
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
        let (handled, batch, session) = self.route(request).await;
        count(&self.tally, &handled, Cache::first_use);
        if let Some(session) = &session {
            // A session counts a cached hit's recording as used every time (under its own
            // lock): the hit's first-use flag is the run's, and an ended session starts over.
            count(&session.tally, &handled, |_| true);
        }
        self.log(&handled, started.elapsed());
        let mut response = handled.into_response();
        if let (Some(batch), Some(deliveries)) = (batch, &self.webhooks.deliveries) {
            let sent = response.body_mut().on_sent();
            deliveries.enqueue(batch, sent);
        }
        response
    }

    fn log(&self, handled: &Handled, latency: Duration) {
        if let Handled::Truncated(inner) = handled {
            return self.log(inner, latency);
        }
        let status = match handled {
            // Health checks poll; a line each would drown the request log.
            Handled::Health(_) => return,
            Handled::Control(reply) => reply.status,
            Handled::Hit { reply, .. }
            | Handled::Recorded { reply, .. }
            | Handled::Forwarded { reply, .. }
            | Handled::OwnKey { reply, .. }
            | Handled::Webhook { reply, .. }
            | Handled::Fault { reply, .. } => reply.status,
            Handled::Cached(hit) => hit.status,
            Handled::Truncated(_) => unreachable!("logged as what it wraps, above"),
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

    /// What happened to `request`, the webhooks to deliver once its answer is sent, and the
    /// named session it belongs to.
    async fn route<B>(self: &Arc<Self>, request: Request<B>) -> (Handled, Option<Batch>, Option<Arc<Session>>)
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (endpoint, path_session) = match request::route(request.method(), request.uri().path()) {
            Ok(Route::Health) => {
                let ok = Bytes::from_static(b"{\"status\":\"ok\"}\n");
                return (
                    Handled::Health(Reply::new(StatusCode::OK, "application/json; charset=utf-8", ok)),
                    None,
                    None,
                );
            }
            Ok(Route::Plaid { endpoint, session }) => (endpoint, session),
            // Boxed, like the full path below: the hot path's future stays small (hyper moves
            // it into place for every request, and its size is that of its largest branch).
            Ok(Route::Webhook(token)) => return (Box::pin(self.receive_webhook(&token, request)).await, None, None),
            Ok(Route::Sessions(asked)) => return (Box::pin(self.sessions_api(asked, request)).await, None, None),
            Ok(Route::FireWebhook) => return (Box::pin(self.fire_webhook(request)).await, None, None),
            Err(error) => {
                let failed = Handled::Failed {
                    endpoint: request::endpoint_of(request.uri().path()),
                    key: None,
                    error,
                };
                return (failed, None, None);
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
            Err(error) => return (failed(endpoint, error), None, None),
        };
        let (name, session) = match request::session(path_session, &parts.headers) {
            Ok(Some(name)) => {
                let session = self.sessions.get_or_start(&name);
                (Some(name), Some(session))
            }
            Ok(None) => (None, None),
            Err(error) => return (failed(endpoint, error), None, None),
        };
        // A fault asked for, or rules that may fire: the full path, where faults are decided.
        let asked = match faults::asked(&parts.headers, &endpoint) {
            Some(Ok(fault)) => Some(fault),
            Some(Err(error)) => return (failed(endpoint, error), None, session),
            None => None,
        };
        let may_fault = asked.is_some() || self.fault_rules(session.as_deref()).active();
        let today = match request::today(&parts.headers) {
            Ok(today) => today,
            Err(error) => return (failed(endpoint, error), None, session),
        };
        if !may_fault {
            let scope = (name.as_deref(), today);
            if let Some(hit) = self.cached(scope, &endpoint, &parts.headers, &raw_body, limits) {
                let named = name.as_deref().zip(session.as_deref());
                let batch = self.answered(named, &hit.used, &raw_body);
                if let Some(session) = &session {
                    let recorded_at = hit.recorded_at.as_ref().and_then(|v| v.to_str().ok());
                    session.note_replayed(recorded_at, self.shift_day(today));
                }
                let mut handled = Handled::Cached(hit);
                self.check_contract(&raw_body, &mut handled, session.as_deref());
                return (handled, batch, session);
            }
        }
        if let Some(own) = self.own_key(&endpoint, &raw_body) {
            return (own, None, session);
        }
        let handled = match request::parse(endpoint.clone(), parts, raw_body.clone(), limits, &self.redactor) {
            Ok(mut parsed) => {
                parsed.session = name.clone();
                parsed.today = today;
                let injected = match may_fault {
                    true => Box::pin(self.inject(&parsed, asked, session.as_deref())).await,
                    false => Injected::Continue { truncate: false },
                };
                match injected {
                    Injected::Answer(handled) => return (*handled, None, session),
                    Injected::Continue { truncate } => {
                        let mut handled = Box::pin(self.dispatch(parsed, session.as_deref())).await;
                        self.check_contract(&raw_body, &mut handled, session.as_deref());
                        if endpoint == "item/public_token/exchange" {
                            if let Handled::Hit { reply, .. } | Handled::Recorded { reply, .. } = &handled {
                                self.learn_item(session.as_deref(), &reply.body);
                            }
                        }
                        if truncate {
                            return (Handled::Truncated(Box::new(handled)), None, session);
                        }
                        handled
                    }
                }
            }
            Err(error) => failed(endpoint, error),
        };
        if let (Some(session), Handled::Hit { reply, .. }) = (&session, &handled) {
            let recorded_at = reply.headers.get(RECORDED_AT_HEADER).and_then(|v| v.to_str().ok());
            session.note_replayed(recorded_at, self.shift_day(today));
        }
        let batch = match &handled {
            Handled::Hit { used, .. } | Handled::Recorded { used, .. } => {
                let named = name.as_deref().zip(session.as_deref());
                self.answered(named, used, &raw_body)
            }
            _ => None,
        };
        (handled, batch, session)
    }

    /// The day a replayed answer's dates move to: the request's `Plaid-VCR-Today`, else the
    /// run's `--today` with `--shift-dates`; `None`: dates stay as recorded.
    fn shift_day(&self, asked: Option<time::Date>) -> Option<time::Date> {
        asked.or(self.config.shift_dates.then_some(self.today))
    }

    fn limits(&self) -> Limits<'_> {
        Limits {
            max_body_bytes: self.config.max_body_bytes,
            client_timeout: self.config.client_timeout,
            client_id: self.config.client_id.as_ref(),
            secret: self.config.secret.as_ref(),
        }
    }

    /// Registers the webhook URL a request of `session` answered as `used` carried, and
    /// returns the recorded webhooks that follow that answer. Nothing at all when the cassette
    /// has no webhooks.
    fn answered(&self, session: Option<(&str, &Session)>, used: &str, raw_body: &[u8]) -> Option<Batch> {
        let deliveries = self.webhooks.deliveries.as_ref().filter(|d| d.any())?;
        let (name, counts) = match session {
            Some((name, session)) => (Some(name), Some(session.deliveries.clone())),
            None => (None, None),
        };
        deliveries.answered(name, counts, used, raw_body)
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
        self.check_webhook(&body);
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
    fn cached(
        &self,
        scope: (Option<&str>, Option<time::Date>),
        endpoint: &str,
        headers: &HeaderMap,
        raw_body: &Bytes,
        limits: Limits<'_>,
    ) -> Option<Arc<Hit>> {
        let cache = self.cache.as_ref()?;
        if !request::is_json(headers) {
            return None;
        }
        let version = request::plaid_version_str(headers).ok()?;
        let hit = cache.get(scope, endpoint, version, raw_body)?;
        request::credentials_present(headers, limits, hit.body_credentials).then_some(hit)
    }

    /// Remembers a hit of the full path, answered with `reply`, in the exact cache, for the
    /// request's session only: a session's own answer must never be served to another.
    fn remember(&self, request: &PlaidRequest, reply: &Reply, used: &str, checked: Option<Arc<Found>>) {
        let Some(cache) = &self.cache else { return };
        let hit = Hit::new(
            (request.session.as_deref(), request.today),
            &request.endpoint,
            request.plaid_version.as_deref(),
            request.raw_body.clone(),
            request.body_credentials,
            &request.key,
            used.to_owned(),
            reply.status,
            reply.headers.get(http::header::CONTENT_TYPE).cloned(),
            reply.headers.get(crate::serve::outcome::RECORDED_AT_HEADER).cloned(),
            reply.body.clone(),
        );
        if let Some(hit) = hit {
            cache.insert(hit.with_checked(checked));
        }
    }

    /// The one place the mode decides what happens.
    async fn dispatch(self: &Arc<Self>, request: PlaidRequest, session: Option<&Session>) -> Handled {
        // Without --sequences every occurrence of a request is step 1: one answer per key.
        // Each session counts its own steps.
        let step = match (self.config.sequences, session) {
            (false, _) => 1,
            (true, Some(session)) => session.steps.next(&request.key),
            (true, None) => self.steps.next(&request.key),
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
}
