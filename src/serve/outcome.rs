//! What happened to one request ([`Handled`]: an outcome with the data it has) and how it
//! becomes the HTTP answer, with the `plaid-vcr-outcome` and `plaid-vcr-key` headers. The proxy
//! decides; this module only describes and renders. Never a body in a log or an error.

use std::sync::Arc;

use crate::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::plaid_error::RequestError;
use crate::serve::cache::Hit;
use crate::serve::violations::{Found, VIOLATIONS_HEADER};
use crate::store::interaction::Answer;

/// Response header naming what plaid-vcr did with a request (hit, miss, recorded, ...).
pub const OUTCOME_HEADER: &str = "plaid-vcr-outcome";
/// Response header carrying the full matching key of a request.
pub const KEY_HEADER: &str = "plaid-vcr-key";
/// Response header of every replayed answer: when it was recorded (RFC 3339).
pub const RECORDED_AT_HEADER: &str = "plaid-vcr-recorded-at";

/// Marks an answer that must not be sent: the connection is closed instead (a `reset` or
/// `timeout` fault). The server turns it into a service error, on which hyper closes.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the connection was reset on purpose (a reset or timeout fault)")]
pub(crate) struct ResetConnection;

const OUTCOME: header::HeaderName = header::HeaderName::from_static(OUTCOME_HEADER);
const KEY: header::HeaderName = header::HeaderName::from_static(KEY_HEADER);
const VIOLATIONS: header::HeaderName = header::HeaderName::from_static(VIOLATIONS_HEADER);

/// An HTTP answer before it becomes a hyper response: status, headers, body bytes. Cloneable,
/// so that identical misses in flight can share one upstream answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, content_type: &str, body: Bytes) -> Reply {
        let mut headers = HeaderMap::new();
        // A content type that is not valid header text (it came from upstream or a cassette
        // file) is left out rather than replaced by an invented one.
        if let Ok(ct) = HeaderValue::from_str(content_type) {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        Reply { status, headers, body }
    }

    /// A replayed answer with `body` (its own, or its dates shifted), saying when it was recorded.
    pub(crate) fn replayed(answer: &Answer, body: Bytes) -> Reply {
        // Statuses are validated (100..=599) when a cassette file is loaded.
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut reply = Reply::new(status, &answer.content_type, body);
        if let Ok(at) = HeaderValue::from_str(&answer.recorded_at) {
            reply.headers.insert(RECORDED_AT_HEADER, at);
        }
        reply
    }
}

/// What happened to one request, with the data each outcome has; logged, counted and sent
/// back in [`OUTCOME_HEADER`].
#[derive(Debug, Clone)]
pub(crate) enum Handled {
    /// A health check; not logged or counted.
    Health(Reply),
    /// Answered from the exact cache ([`crate::serve::cache`]): a hit without the full pipeline.
    Cached(Arc<Hit>),
    /// Answered from the recording `used` (an index key); `checked`: what `--validate` found
    /// in the exchange (its header already in `reply`).
    Hit {
        endpoint: String,
        key: String,
        used: String,
        reply: Reply,
        checked: Option<Arc<Found>>,
    },
    /// No recording: answered with why.
    Miss {
        endpoint: String,
        key: String,
        error: RequestError,
    },
    /// Forwarded upstream and recorded as `used`; `checked`: what the check against Plaid's
    /// spec found in the exchange (its header already in `reply`).
    Recorded {
        endpoint: String,
        key: String,
        used: String,
        reply: Reply,
        checked: Option<Arc<Found>>,
    },
    /// Forwarded upstream, passed through, not recorded (5xx, 429, a JSON answer that is not JSON).
    Forwarded {
        endpoint: String,
        key: String,
        reply: Reply,
    },
    /// Answered by plaid-vcr itself: `/webhook_verification_key/get` for its own signing key.
    OwnKey { endpoint: String, reply: Reply },
    /// plaid-vcr's own API (`/plaid-vcr/sessions`); not counted as a request.
    Control(Reply),
    /// A fault asked for (`Plaid-VCR-Fault`, a fault rule): Plaid's error, or no answer at all
    /// (`reset`). Never sent upstream, never recorded.
    Fault {
        endpoint: String,
        key: String,
        reply: Reply,
        reset: bool,
    },
    /// A webhook upstream sent while recording: forwarded to the app (whose status `reply`
    /// carries back) and recorded as `file`, unless its body was not JSON.
    Webhook {
        reply: Reply,
        file: Option<std::path::PathBuf>,
    },
    /// A `truncate` fault: the answer the request got, sent only in part.
    Truncated(Box<Handled>),
    /// Rejected before matching (bad input, unknown path) or failed (upstream down, store).
    Failed {
        endpoint: Option<String>,
        key: Option<String>,
        error: RequestError,
    },
}

impl Handled {
    pub(crate) fn failed(endpoint: &str, key: &str, error: RequestError) -> Handled {
        Handled::Failed {
            endpoint: Some(endpoint.to_owned()),
            key: Some(key.to_owned()),
            error,
        }
    }

    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Handled::Health(_) => "health",
            Handled::Hit { .. } | Handled::Cached(_) => "hit",
            Handled::Miss { .. } => "miss",
            Handled::Recorded { .. } => "recorded",
            Handled::Forwarded { .. } => "forwarded",
            Handled::OwnKey { .. } => "own-key",
            Handled::Control(_) => "control",
            Handled::Fault { .. } => "fault",
            Handled::Truncated(inner) => inner.outcome(),
            Handled::Webhook { file: Some(_), .. } => "webhook-recorded",
            Handled::Webhook { file: None, .. } => "webhook-forwarded",
            Handled::Failed { .. } => "error",
        }
    }

    pub(crate) fn endpoint_and_key(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Handled::Health(_) | Handled::Webhook { .. } | Handled::Control(_) => (None, None),
            Handled::OwnKey { endpoint, .. } => (Some(endpoint), None),
            Handled::Cached(hit) => (Some(hit.endpoint()), hit.key.to_str().ok()),
            Handled::Hit { endpoint, key, .. }
            | Handled::Miss { endpoint, key, .. }
            | Handled::Recorded { endpoint, key, .. }
            | Handled::Forwarded { endpoint, key, .. }
            | Handled::Fault { endpoint, key, .. } => (Some(endpoint), Some(key)),
            Handled::Failed { endpoint, key, .. } => (endpoint.as_deref(), key.as_deref()),
            Handled::Truncated(inner) => inner.endpoint_and_key(),
        }
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        if let Handled::Truncated(inner) = self {
            let mut response = inner.into_response();
            response.body_mut().cut_in_half();
            return response;
        }
        if let Handled::Cached(hit) = &self {
            // The hot path: everything pre-built, the body shared, no parsing of header values.
            let mut response = Response::new(Body::new(hit.body.clone()));
            *response.status_mut() = hit.status;
            let headers = response.headers_mut();
            if let Some(ct) = &hit.content_type {
                headers.insert(header::CONTENT_TYPE, ct.clone());
            }
            if let Some(at) = &hit.recorded_at {
                headers.insert(RECORDED_AT_HEADER, at.clone());
            }
            if let Some(checked) = &hit.checked {
                headers.insert(VIOLATIONS, checked.header.clone());
            }
            headers.insert(OUTCOME, HeaderValue::from_static("hit"));
            headers.insert(KEY, hit.key.clone());
            return response;
        }
        let outcome = self.outcome();
        let key = self.endpoint_and_key().1.and_then(|k| HeaderValue::from_str(k).ok());
        let reset = matches!(self, Handled::Fault { reset: true, .. });
        let mut response = match self {
            Handled::Health(reply)
            | Handled::Control(reply)
            | Handled::OwnKey { reply, .. }
            | Handled::Webhook { reply, .. }
            | Handled::Hit { reply, .. }
            | Handled::Recorded { reply, .. }
            | Handled::Forwarded { reply, .. }
            | Handled::Fault { reply, .. } => {
                let mut response = Response::new(Body::new(reply.body));
                *response.status_mut() = reply.status;
                *response.headers_mut() = reply.headers;
                response
            }
            Handled::Miss { error, .. } | Handled::Failed { error, .. } => error.into_response(),
            Handled::Cached(_) | Handled::Truncated(_) => unreachable!("answered above"),
        };
        response
            .headers_mut()
            .insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
        if let Some(key) = key {
            response.headers_mut().insert(KEY_HEADER, key);
        }
        if reset {
            response.extensions_mut().insert(ResetConnection);
        }
        response
    }
}
