//! The per-request pipeline, the same for every Plaid endpoint, and the [`Mode`]s.
//!
//! request → route → limit and parse → check credentials → redact → key → store or upstream →
//! redact → store → response. A stage never reaches back into an earlier one, and only the
//! output of [`Redactor`] is keyed or written. Logs carry mode, endpoint, outcome, status,
//! latency and key prefix; never bodies, credentials or tokens.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::cassette::Cassette;
use crate::config::Config;
use crate::config::SequenceEnd;
use crate::diff;
use crate::error::{ApiError, Error, API_ERROR, INVALID_REQUEST};
use crate::interaction::{index_key, is_endpoint, Answer, Interaction};
use crate::key;
use crate::redact::Redactor;
use crate::session::{Summary, Tally};
use crate::store::Store;
use crate::upstream::{Upstream, UpstreamError};
use crate::writer::Writer;

/// Path prefix under which Plaid endpoints are served.
pub const PREFIX: &str = "/plaid-compatible";

/// Response header naming what plaid-vcr did with a request (hit, miss, recorded, ...).
pub const OUTCOME_HEADER: &str = "plaid-vcr-outcome";
/// Response header carrying the full matching key of a request.
pub const KEY_HEADER: &str = "plaid-vcr-key";

/// What plaid-vcr does with each request. Dispatched on in one place, [`Proxy::dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads nothing from the cassette to answer; forwards every request upstream and writes
    /// each 2xx/4xx answer to the store and the cassette, overwriting the same key.
    Record,
    /// Reads the cassette only; never opens a connection; writes nothing; misses are errors.
    Replay,
    /// Answers hits from the cassette; forwards misses upstream and records them.
    ReplayRecordMissing,
}

impl Mode {
    /// Whether this mode talks to upstream at all.
    pub fn uses_upstream(self) -> bool {
        !matches!(self, Mode::Replay)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Record => "record",
            Mode::Replay => "replay",
            Mode::ReplayRecordMissing => "replay --record-missing",
        })
    }
}

/// What happened to one request; logged and sent back in [`OUTCOME_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the cassette.
    Hit,
    /// Not in the cassette, answered with an error.
    Miss,
    /// Forwarded upstream and recorded.
    Recorded,
    /// Forwarded upstream, passed through, not recorded (5xx, 429, not JSON).
    Forwarded,
    /// Rejected before matching (bad input, unknown path) or failed (upstream down, store).
    Error,
    /// A health check; not logged.
    Health,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Recorded => "recorded",
            Outcome::Forwarded => "forwarded",
            Outcome::Error => "error",
            Outcome::Health => "health",
        }
    }
}

/// A parsed, checked Plaid request on its way through the pipeline.
struct PlaidRequest {
    endpoint: String,
    plaid_version: Option<String>,
    headers: HeaderMap,
    raw_body: Bytes,
    /// The body as it is keyed and stored (after [`Redactor::request`]).
    stored_body: Map<String, Value>,
    key: String,
}

/// The answer to one request plus what to log about it. Cloneable, so that concurrent
/// identical misses in `replay --record-missing` can share one upstream answer.
#[derive(Debug, Clone)]
struct Handled {
    outcome: Outcome,
    endpoint: Option<String>,
    key: Option<String>,
    /// The recording answered from or written (its index key), for the session tally.
    used: Option<String>,
    response: Reply,
}

/// An HTTP answer before it becomes a hyper response: status, headers, body bytes.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// A recording of a miss in progress, which identical misses wait on instead of calling
/// upstream again: `None` until the one upstream exchange is answered.
type Flight = watch::Receiver<Option<Arc<Handled>>>;

/// The proxy: mode, cassette, store, upstream and redactor shared by all connections.
pub struct Proxy {
    mode: Mode,
    cassette: Cassette,
    store: Arc<Store>,
    upstream: Option<Upstream>,
    /// The one durable writer, in the modes that record.
    writer: Option<Writer>,
    /// The OS lock on the cassette directory, held while recording (see [`Cassette::lock`]).
    _cassette_lock: Option<std::fs::File>,
    /// Misses being recorded in `replay --record-missing`, by index key (single-flight).
    flights: Mutex<HashMap<String, Flight>>,
    redactor: Redactor,
    tally: Mutex<Tally>,
    /// The settings the pipeline reads per request (body limit, sequences, credentials, …).
    config: Config,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("mode", &self.mode)
            .field("cassette", &self.cassette)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Opens the store, syncs the cassette into it and, if the mode needs it, builds the
    /// upstream client. Replay requires the cassette directory to exist; recording creates it.
    pub fn open(config: &Config, mode: Mode) -> Result<Proxy, Error> {
        let cassette = Cassette::new(&config.cassette);
        let cassette_lock = if mode.uses_upstream() {
            std::fs::create_dir_all(cassette.root()).map_err(|source| crate::cassette::CassetteError::Write {
                path: cassette.root().to_owned(),
                source,
            })?;
            let lock = cassette.lock()?;
            let leftovers = cassette.remove_leftovers()?;
            if leftovers > 0 {
                tracing::info!(
                    leftovers,
                    "removed temp files an interrupted recording left in the cassette"
                );
            }
            Some(lock)
        } else {
            cassette.require_exists()?;
            None
        };
        let upstream = if mode.uses_upstream() {
            Some(Upstream::new(
                &config.upstream,
                config.upstream_ca.as_deref(),
                config.connect_timeout,
                config.response_timeout,
            )?)
        } else {
            None
        };
        let store = Arc::new(Store::open(&config.store, cassette.root())?);
        let redactor = if config.no_redact {
            tracing::warn!(
                "--no-redact: tokens and personal data will be written to {} as received; do not commit these files \
                 (plaid-vcr scan reports them, plaid-vcr redact fixes them)",
                cassette.root().display()
            );
            Redactor::raw()
        } else {
            let rules = crate::rules::compile(&config.redact.rules)?;
            Redactor::new(
                rules,
                config.redact.request_pii,
                &crate::redact::load_key(&config.store)?,
            )
        };
        let report = store.sync_cassette(&cassette)?;
        tracing::info!(
            cassette = %cassette.root().display(),
            interactions = store.len(),
            files = report.files,
            parsed = report.loaded,
            removed = report.removed,
            "cassette loaded"
        );
        let writer = if mode.uses_upstream() {
            Some(Writer::start(cassette.clone(), store.clone())?)
        } else {
            None
        };
        if let Some(max_age) = config.max_age {
            let recordings = store.recorded()?;
            let stale = crate::session::stale(&recordings, Some(max_age), SystemTime::now());
            if let Some(oldest) = stale.iter().map(|r| r.recorded_at.as_str()).min() {
                tracing::warn!(
                    stale = stale.len(),
                    oldest,
                    max_age = %humantime::format_duration(max_age),
                    "recordings are older than max_age; re-record them (replay --strict fails on this)"
                );
            }
        }
        Ok(Proxy {
            mode,
            cassette,
            store,
            upstream,
            writer,
            _cassette_lock: cassette_lock,
            flights: Mutex::new(HashMap::new()),
            redactor,
            tally: Mutex::new(Tally::default()),
            config: config.clone(),
        })
    }

    /// The working store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops recording: the writer finishes what is queued, then the store is flushed.
    /// Blocking (it waits for fsyncs): call it from a blocking context.
    pub fn close(&self) -> Result<(), Error> {
        if let Some(writer) = &self.writer {
            writer.close()?;
        }
        self.store.flush()?;
        Ok(())
    }

    /// Answers one HTTP request. Never panics on input and always answers: every failure
    /// becomes a Plaid-shaped error.
    pub async fn handle<B>(self: Arc<Self>, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let handled = self.route(request).await;
        let status = handled.response.status.as_u16();
        let latency = started.elapsed();
        let endpoint = handled.endpoint.as_deref().unwrap_or("-");
        let key = handled.key.as_deref().map(key::prefix).unwrap_or("-");
        let outcome = handled.outcome.as_str();
        if handled.outcome != Outcome::Health {
            let mut tally = self.tally();
            tally.request();
            match (handled.outcome, &handled.used) {
                (Outcome::Hit, Some(used)) => tally.hit(used),
                (Outcome::Recorded, Some(used)) => tally.recorded(endpoint, used),
                (Outcome::Miss, _) => tally.miss(endpoint, handled.key.as_deref().unwrap_or("")),
                (Outcome::Forwarded, _) => tally.forwarded(),
                _ => tally.error(),
            }
        }
        if handled.outcome == Outcome::Health {
            // Health checks poll; a line each would drown the request log.
        } else if handled.outcome == Outcome::Forwarded || status >= 500 {
            tracing::warn!(mode = %self.mode, endpoint, outcome, status, ?latency, key, "request");
        } else {
            tracing::info!(mode = %self.mode, endpoint, outcome, status, ?latency, key, "request");
        }
        let mut response = handled.response.into_response();
        response
            .headers_mut()
            .insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
        if let Some(key) = handled.key.and_then(|k| HeaderValue::from_str(&k).ok()) {
            response.headers_mut().insert(KEY_HEADER, key);
        }
        response
    }

    async fn route<B>(self: &Arc<Self>, request: Request<B>) -> Handled
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = request.uri().path();
        if path == "/healthz" {
            let response = match *request.method() {
                Method::GET | Method::HEAD => {
                    json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}\n"))
                }
                _ => method_not_allowed("GET"),
            };
            return Handled {
                used: None,
                outcome: Outcome::Health,
                endpoint: None,
                key: None,
                response,
            };
        }
        let Some(endpoint) = endpoint_of(path) else {
            let err = ApiError::new(StatusCode::NOT_FOUND, INVALID_REQUEST, "NOT_FOUND", "not found").with_hint(
                format!("plaid-vcr serves Plaid endpoints under {PREFIX}/, e.g. POST {PREFIX}/identity/get"),
            );
            return error(err, None, None);
        };
        if request.method() != Method::POST {
            return Handled {
                used: None,
                outcome: Outcome::Error,
                endpoint: Some(endpoint),
                key: None,
                response: method_not_allowed("POST"),
            };
        }
        let http1 = request.version() < http::Version::HTTP_2;
        match self.parse(endpoint.clone(), request).await {
            Ok(parsed) => self.dispatch(parsed).await,
            Err(err) => {
                let timed_out = err.error_code == CLIENT_TIMEOUT;
                let mut handled = error(err, Some(endpoint), None);
                if timed_out && http1 {
                    // The rest of the body may still trickle in; the connection is not reusable.
                    handled
                        .response
                        .headers
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                handled
            }
        }
    }

    /// Limits, parses and checks the request, then redacts it and computes its key.
    async fn parse<B>(&self, endpoint: String, request: Request<B>) -> Result<PlaidRequest, ApiError>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID_REQUEST,
                "PLAID_VCR_BODY_TOO_LARGE",
                format!("request body is larger than {} bytes", self.config.max_body_bytes),
            )
            .with_hint("raise max_body_bytes in the config or --max-body-bytes")
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.config.max_body_bytes as u64) {
            return Err(too_large());
        }
        // A client that sent its head but stalls on the body must not hold the request open.
        let collected = tokio::time::timeout(
            self.config.client_timeout,
            Limited::new(body, self.config.max_body_bytes).collect(),
        )
        .await;
        let raw_body = match collected {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
            Ok(Err(_)) => return Err(invalid_body("the request body could not be read")),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    INVALID_REQUEST,
                    CLIENT_TIMEOUT,
                    format!(
                        "the request body did not arrive within {}",
                        humantime::format_duration(self.config.client_timeout)
                    ),
                )
                .with_hint("send the whole body promptly, or raise client_timeout / --client-timeout"))
            }
        };

        match parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().map(is_json_content_type))
        {
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    INVALID_REQUEST,
                    "INVALID_HEADERS",
                    "the Content-Type header is missing; send Content-Type: application/json",
                ))
            }
            Some(Ok(true)) => {}
            Some(_) => {
                return Err(invalid_body(
                    "body could not be parsed as JSON (Content-Type is not application/json)",
                ))
            }
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&raw_body) else {
            return Err(invalid_body("body could not be parsed as JSON"));
        };
        // Plaid's bodies are a few levels deep. A deeper one would make answers that embed it
        // (a miss shows the looked-up request) too deep for JSON parsers to read back.
        if depth(&body) > MAX_BODY_DEPTH {
            return Err(invalid_body(&format!(
                "body is nested deeper than {MAX_BODY_DEPTH} levels"
            )));
        }

        let mut headers = parts.headers;
        let mut missing = Vec::new();
        for (field, header, configured) in [
            ("client_id", "plaid-client-id", &self.config.client_id),
            ("secret", "plaid-secret", &self.config.secret),
        ] {
            if has_text(body.get(field)) || header_has_text(&headers, header) {
                continue;
            }
            // A configured credential stands in for a missing one, as a header: never added to
            // the body (Plaid rejects unknown fields) and never stored or logged.
            match configured.as_ref().and_then(|c| HeaderValue::from_str(c.expose()).ok()) {
                Some(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(header, value);
                }
                None => missing.push(field),
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "MISSING_FIELDS",
                format!("the following required fields are missing: {}", missing.join(", ")),
            )
            .with_hint(
                "send PLAID-CLIENT-ID and PLAID-SECRET headers (or client_id and secret in the body), \
                 or give plaid-vcr PLAID_CLIENT_ID and PLAID_SECRET",
            ));
        }

        let plaid_version = match headers.get("plaid-version").map(|v| v.to_str()) {
            None => None,
            Some(Ok(v)) if v.trim().is_empty() => None,
            Some(Ok(v)) => Some(v.trim().to_owned()),
            Some(Err(_)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    INVALID_REQUEST,
                    "INVALID_HEADERS",
                    "the Plaid-Version header is not valid text",
                ))
            }
        };

        let stored_body = self.redactor.request(&endpoint, body);
        let key = key::compute(&endpoint, plaid_version.as_deref(), &stored_body);
        Ok(PlaidRequest {
            endpoint,
            plaid_version,
            headers,
            raw_body,
            stored_body,
            key,
        })
    }

    /// The one place the mode decides what happens.
    async fn dispatch(self: &Arc<Self>, request: PlaidRequest) -> Handled {
        // Without --sequences every occurrence of a request is step 1: one answer per key.
        let step = if self.config.sequences {
            self.tally().next_step(&request.key)
        } else {
            1
        };
        if self.mode == Mode::Record {
            return self.record(request, step).await;
        }
        let found = match self.store.get(&index_key(&request.key, step)) {
            Ok(Some(answer)) => Some((answer, step)),
            Ok(None) => match self.store.last_step(&request.key) {
                // Past the last recorded step of a sequence.
                Ok(Some(last)) if step > last && self.mode == Mode::Replay => {
                    if self.config.sequence_exhausted == SequenceEnd::Error {
                        let err = ApiError::new(
                            StatusCode::NOT_FOUND,
                            INVALID_REQUEST,
                            "PLAID_VCR_SEQUENCE_EXHAUSTED",
                            format!(
                                "this {} request was recorded {last} times; this is call {step}",
                                request.endpoint
                            ),
                        )
                        .with_key(request.key.clone())
                        .with_hint("record more steps with --sequences, or set sequence_exhausted = \"repeat-last\"");
                        return Handled {
                            outcome: Outcome::Miss,
                            response: api_error_response(&err),
                            endpoint: Some(request.endpoint),
                            key: Some(request.key),
                            used: None,
                        };
                    }
                    match self.store.get(&index_key(&request.key, last)) {
                        Ok(answer) => answer.map(|a| (a, last)),
                        Err(e) => return error(store_error(&e), Some(request.endpoint), Some(request.key)),
                    }
                }
                Ok(_) => None,
                Err(e) => return error(store_error(&e), Some(request.endpoint), Some(request.key)),
            },
            Err(e) => return error(store_error(&e), Some(request.endpoint), Some(request.key)),
        };
        match found {
            Some((answer, step)) => Handled {
                outcome: Outcome::Hit,
                used: Some(index_key(&request.key, step)),
                endpoint: Some(request.endpoint),
                key: Some(request.key),
                response: answer_response(&answer),
            },
            None if self.mode == Mode::ReplayRecordMissing => self.record_once(request, step).await,
            None => self.miss(request),
        }
    }

    /// The error for a request with no recording: what was looked up, the closest recording
    /// of the same endpoint and how it differs, and the command that records it.
    fn miss(&self, request: PlaidRequest) -> Handled {
        let canonical = key::canonical(
            &request.endpoint,
            request.plaid_version.as_deref(),
            &request.stored_body,
        );
        // A store that cannot be read must not read as "nothing recorded".
        let recordings = match self.store.recorded() {
            Ok(recordings) => recordings,
            Err(e) => return error(store_error(&e), Some(request.endpoint), Some(request.key)),
        };
        let closest = diff::closest(
            &recordings,
            &request.endpoint,
            request.plaid_version.as_deref(),
            &request.stored_body,
        );
        let hint = format!(
            "record it with: plaid-vcr replay --record-missing --upstream {} --cassette {}",
            self.config.upstream,
            self.cassette.root().display()
        );
        let (message, closest_json) = match &closest {
            Some((recorded, differences)) => {
                let lines: Vec<String> = differences.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    endpoint = %request.endpoint,
                    key = key::prefix(&request.key),
                    closest = key::prefix(&recorded.index_key),
                    // Field names only: values stay out of the logs.
                    differing = %differences.iter().map(|d| d.field.as_str()).collect::<Vec<_>>().join(", "),
                    "no recording; closest recording differs"
                );
                (
                    format!(
                        "no recording for this {} request in cassette {}; the closest ({}) differs in {}",
                        request.endpoint,
                        self.cassette.root().display(),
                        recorded.file,
                        lines.join("; ")
                    ),
                    serde_json::json!({
                        "key": recorded.index_key,
                        "file": recorded.file,
                        "recorded_at": recorded.recorded_at,
                        "differences": differences,
                        "summary": lines,
                    }),
                )
            }
            None => {
                tracing::warn!(endpoint = %request.endpoint, key = key::prefix(&request.key), "no recording; nothing recorded for this endpoint");
                (
                    format!(
                        "no recording for this {} request in cassette {}, which has nothing recorded for {}",
                        request.endpoint,
                        self.cassette.root().display(),
                        request.endpoint
                    ),
                    Value::Null,
                )
            }
        };
        let err = ApiError::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "PLAID_VCR_NO_RECORDING",
            message,
        )
        .with_key(request.key.clone())
        .with_hint(hint)
        .with_field("endpoint", Value::String(request.endpoint.clone()))
        .with_field("request", canonical)
        .with_field("closest", closest_json);
        Handled {
            outcome: Outcome::Miss,
            response: api_error_response(&err),
            endpoint: Some(request.endpoint),
            key: Some(request.key),
            used: None,
        }
    }

    /// This run's tally; a poisoned lock (a panic elsewhere mid-update) still holds counts.
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session summary so far: counts, misses, new recordings, unused and stale ones.
    /// Fails if the store cannot be read: "unused" must never be computed from nothing.
    pub fn summary(&self) -> Result<Summary, Error> {
        let recordings = self.store.recorded()?;
        Ok(self
            .tally()
            .summary(&self.mode.to_string(), &recordings, self.config.max_age))
    }

    /// Records a miss in `replay --record-missing` with single-flight: identical misses that
    /// arrive while one is being recorded wait for it and share its answer, so upstream is
    /// called once and the recording is written once. The exchange runs on its own task, so
    /// it completes (and is recorded) even if the client that started it goes away.
    async fn record_once(self: &Arc<Self>, request: PlaidRequest, step: u32) -> Handled {
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
                    let proxy = self.clone();
                    tokio::spawn(async move {
                        // Removes the flight however this task ends, so a panic cannot leave
                        // later requests waiting on an answer that never comes.
                        let _landed = Landed {
                            proxy: &proxy,
                            index: &index,
                        };
                        // A recording may have landed between our lookup and this flight.
                        let handled = match proxy.store.get(&index) {
                            Ok(Some(answer)) => Handled {
                                outcome: Outcome::Hit,
                                used: Some(index.clone()),
                                endpoint: Some(request.endpoint),
                                key: Some(request.key),
                                response: answer_response(&answer),
                            },
                            Ok(None) => proxy.record(request, step).await,
                            Err(e) => error(store_error(&e), Some(request.endpoint), Some(request.key)),
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
            Err(_) => {
                let err = ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    API_ERROR,
                    "PLAID_VCR_STORE_ERROR",
                    "recording this request failed unexpectedly (see plaid-vcr's log)",
                );
                error(err, None, None)
            }
        }
    }

    /// Forwards upstream; records 2xx/4xx JSON answers durably before answering the client.
    async fn record(&self, request: PlaidRequest, step: u32) -> Handled {
        let PlaidRequest {
            endpoint,
            plaid_version,
            headers,
            raw_body,
            stored_body,
            key,
        } = request;
        // Only reachable in modes that built an upstream (see `Proxy::open`).
        let Some(upstream) = &self.upstream else {
            let err = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                API_ERROR,
                "PLAID_VCR_NO_UPSTREAM",
                "no upstream configured",
            );
            return error(err, Some(endpoint), Some(key));
        };
        let answer = match upstream.forward(&endpoint, &headers, raw_body).await {
            Ok(answer) => answer,
            Err(e) => return error(upstream_error(&e), Some(endpoint), Some(key)),
        };
        let status = answer.status;
        let content_type = answer.content_type.clone().unwrap_or_else(|| "application/json".into());
        let mut passthrough = Reply {
            status,
            headers: HeaderMap::new(),
            body: answer.body.clone(),
        };
        // Upstream's header value came off the wire as a valid header; one that is not valid
        // text is answered without a Content-Type rather than with an invented one.
        if let Ok(ct) = HeaderValue::from_str(&content_type) {
            passthrough.headers.insert(header::CONTENT_TYPE, ct);
        }

        let recordable = (status.is_success() || status.is_client_error()) && status != StatusCode::TOO_MANY_REQUESTS;
        let parsed = if recordable {
            serde_json::from_slice::<Value>(&answer.body).ok()
        } else {
            None
        };
        let Some(body) = parsed else {
            if recordable {
                tracing::warn!(endpoint = %endpoint, status = status.as_u16(), "upstream answer is not JSON; passed through, not recorded");
            } else {
                tracing::warn!(endpoint = %endpoint, status = status.as_u16(), "upstream answered 5xx/429; passed through, not recorded");
            }
            return Handled {
                used: None,
                outcome: Outcome::Forwarded,
                endpoint: Some(endpoint),
                key: Some(key),
                response: passthrough,
            };
        };

        let mut interaction = Interaction::new(
            &endpoint,
            plaid_version.as_deref(),
            stored_body,
            status.as_u16(),
            &content_type,
            self.redactor.response(&endpoint, body),
            SystemTime::now(),
        );
        interaction.unredacted = self.redactor.is_raw();
        interaction.step = (step > 1).then_some(step);
        let used = interaction.index_key();
        if let Err(e) = self.persist(interaction).await {
            tracing::error!(endpoint = %endpoint, error = %e, "recording failed");
            return error(store_error(&e), Some(endpoint), Some(key));
        }
        Handled {
            used: Some(used),
            outcome: Outcome::Recorded,
            endpoint: Some(endpoint),
            key: Some(key),
            response: passthrough,
        }
    }

    /// Hands the interaction to the writer and waits until the cassette file and the store
    /// are durable (see [`crate::writer`]): only then does the client get its answer.
    async fn persist(&self, interaction: Interaction) -> Result<(), crate::store::StoreError> {
        // Recording modes always start a writer (see `Proxy::open`); without one, nothing
        // could be made durable, and saying so beats pretending.
        let writer = self.writer.as_ref().ok_or(crate::store::StoreError::Closed)?;
        writer.commit(interaction).await.map(drop)
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

/// The deepest nesting of objects and arrays a request body may have.
const MAX_BODY_DEPTH: usize = 64;

/// How deeply `body` nests objects and arrays (1 for a flat object). Iterative, so that no
/// input can exhaust the stack.
fn depth(body: &Map<String, Value>) -> usize {
    let mut deepest = 1;
    let mut stack: Vec<(&Value, usize)> = body.values().map(|v| (v, 2)).collect();
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// The error code of a request whose body did not arrive within `client_timeout`.
const CLIENT_TIMEOUT: &str = "PLAID_VCR_CLIENT_TIMEOUT";

/// The endpoint named by a request path, if it is one: `/plaid-compatible/identity/get` and
/// `/plaid-compatible//identity/get` (clients whose base path ends in `/`) give `identity/get`.
pub fn endpoint_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let endpoint = rest.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/");
    is_endpoint(&endpoint).then_some(endpoint)
}

fn is_json_content_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn has_text(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

fn header_has_text(headers: &HeaderMap, name: &str) -> bool {
    headers.get(name).is_some_and(|v| !v.is_empty())
}

fn invalid_body(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, "INVALID_BODY", message)
}

fn store_error(e: &crate::store::StoreError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        API_ERROR,
        "PLAID_VCR_STORE_ERROR",
        e.to_string(),
    )
}

fn upstream_error(e: &UpstreamError) -> ApiError {
    match e {
        UpstreamError::Timeout(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            API_ERROR,
            "PLAID_VCR_UPSTREAM_TIMEOUT",
            e.to_string(),
        )
        .with_hint("raise connect_timeout / response_timeout, or check the network path to Plaid"),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            API_ERROR,
            "PLAID_VCR_UPSTREAM_UNREACHABLE",
            e.to_string(),
        )
        .with_hint("check --upstream and --upstream-ca, and that Plaid is reachable from here"),
    }
}

fn error(err: ApiError, endpoint: Option<String>, key: Option<String>) -> Handled {
    Handled {
        used: None,
        outcome: Outcome::Error,
        endpoint,
        key,
        response: api_error_response(&err),
    }
}

fn api_error_response(err: &ApiError) -> Reply {
    json_response(err.status, err.body())
}

fn answer_response(answer: &Answer) -> Reply {
    // Statuses are validated when a cassette file is loaded (100..=599).
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if let Ok(ct) = HeaderValue::from_str(&answer.content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    Reply {
        status,
        headers,
        body: answer.body.clone(),
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Reply { status, headers, body }
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let err = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        INVALID_REQUEST,
        "PLAID_VCR_METHOD_NOT_ALLOWED",
        format!("this path only accepts {allow}"),
    );
    let mut response = api_error_response(&err);
    response.headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_read_from_the_path_generically() {
        assert_eq!(
            endpoint_of("/plaid-compatible/identity/get").as_deref(),
            Some("identity/get")
        );
        assert_eq!(
            endpoint_of("/plaid-compatible//identity/get").as_deref(),
            Some("identity/get")
        );
        assert_eq!(
            endpoint_of("/plaid-compatible/sandbox/public_token/create").as_deref(),
            Some("sandbox/public_token/create")
        );
        for bad in [
            "/identity/get",
            "/plaid-compatible",
            "/plaid-compatible/",
            "/plaid-compatible/../x",
            "/plaid-compatibleX/a",
        ] {
            assert_eq!(endpoint_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        let body = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(depth(&body(serde_json::json!({"a": 1}))), 1);
        assert_eq!(depth(&body(serde_json::json!({"a": {"b": [1]}}))), 3);
        assert_eq!(depth(&body(serde_json::json!({"a": [], "b": {"c": {}}}))), 3);
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type("text/plain"));
    }
}
