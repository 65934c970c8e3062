//! The first stages of the pipeline: an HTTP request becomes a [`PlaidRequest`] — routed,
//! size- and time-limited, parsed, checked for credentials, redacted and keyed — or a
//! [`RequestError`]. No server, store or upstream here, so every rule is unit-testable.
//!
//! Only the output of [`Redactor::request`] is keyed, and the key is computed here, once; the
//! raw body and headers are kept only to be forwarded upstream, never stored or logged.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use crate::config::Secret;
use crate::plaid_error::RequestError;
use crate::privacy::redact::Redactor;
use crate::privacy::rules::CREDENTIALS;
use crate::serve::session;
use crate::store::interaction::is_endpoint;
use crate::store::key;

/// Path prefix under which Plaid endpoints are served.
pub const PREFIX: &str = "/plaid-compatible";

/// The deepest nesting of objects and arrays a request body may have. Plaid's bodies are a
/// few levels deep; a deeper one would make answers that embed it (a miss shows the looked-up
/// request) too deep for JSON parsers to read back.
pub const MAX_BODY_DEPTH: usize = 64;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Health,
    /// `POST /plaid-compatible/<endpoint>`, or `POST /sessions/NAME/plaid-compatible/<endpoint>`
    /// with the session the path names (checked).
    Plaid { endpoint: String, session: Option<String> },
    /// `POST /plaid-vcr/webhooks/<receiver token>`: a webhook upstream sends while recording.
    Webhook(String),
    /// `/plaid-vcr/sessions[/NAME]`: the sessions' reports, or the end of one.
    Sessions(SessionsRoute),
    /// `POST /plaid-vcr/webhooks/fire`: a signed webhook on demand.
    FireWebhook,
}

/// Where a test fires a webhook (receiver tokens, under the same prefix, are hex).
pub const FIRE_WEBHOOK: &str = "/plaid-vcr/webhooks/fire";

/// What `/plaid-vcr/sessions[/NAME]` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionsRoute {
    /// `GET /plaid-vcr/sessions`: every session seen, with its counts.
    List,
    /// `GET /plaid-vcr/sessions/NAME`: that session's report.
    Report(String),
    /// `DELETE /plaid-vcr/sessions/NAME`: its final report; the name starts again.
    End(String),
    /// `POST /plaid-vcr/sessions/NAME/faults`: a fault rule for the session (the body).
    AddFault(String),
    /// `GET /plaid-vcr/sessions/NAME/faults`: its rules, with how often each fired.
    Faults(String),
    /// `DELETE /plaid-vcr/sessions/NAME/faults`: removes its rules.
    ClearFaults(String),
}

/// The path of the sessions API on plaid-vcr's own listener.
pub const SESSIONS_API: &str = "/plaid-vcr/sessions";

/// Routes by method and path.
pub fn route(method: &Method, path: &str) -> Result<Route, RequestError> {
    if path == "/healthz" {
        return match *method {
            Method::GET | Method::HEAD => Ok(Route::Health),
            _ => Err(RequestError::MethodNotAllowed { allow: "GET" }),
        };
    }
    if path == FIRE_WEBHOOK {
        return match *method {
            Method::POST => Ok(Route::FireWebhook),
            _ => Err(RequestError::MethodNotAllowed { allow: "POST" }),
        };
    }
    if let Some(token) = path.strip_prefix(crate::webhooks::webhook::RECEIVER_PATH) {
        if method != Method::POST {
            return Err(RequestError::MethodNotAllowed { allow: "POST" });
        }
        return Ok(Route::Webhook(token.to_owned()));
    }
    if let Some(rest) = path.strip_prefix(SESSIONS_API) {
        return sessions_route(method, rest);
    }
    let (session, path) = match path.strip_prefix(session::PATH_PREFIX) {
        // `/sessions/NAME/plaid-compatible/…`: NAME ends where the Plaid prefix starts.
        Some(rest) => {
            let at = rest.find(PREFIX).ok_or(RequestError::NotFound)?;
            let name = rest[..at].trim_end_matches('/');
            session::check_name(name).map_err(|rule| RequestError::InvalidSession { rule })?;
            (Some(name.to_owned()), &rest[at..])
        }
        None => (None, path),
    };
    let endpoint = endpoint_of(path).ok_or(RequestError::NotFound)?;
    if method != Method::POST {
        return Err(RequestError::MethodNotAllowed { allow: "POST" });
    }
    Ok(Route::Plaid { endpoint, session })
}

/// `/plaid-vcr/sessions` followed by `rest`.
fn sessions_route(method: &Method, rest: &str) -> Result<Route, RequestError> {
    let route = match rest.strip_prefix('/').filter(|name| !name.is_empty()) {
        None if rest.is_empty() || rest == "/" => match *method {
            Method::GET => SessionsRoute::List,
            _ => return Err(RequestError::MethodNotAllowed { allow: "GET" }),
        },
        None => return Err(RequestError::NotFound),
        // `…/NAME/faults` is NAME's fault rules (a session whose name ends in `/faults` has
        // its report under the same path: name it otherwise).
        Some(name) if name.ends_with("/faults") => {
            let name = name.trim_end_matches("/faults");
            session::check_name(name).map_err(|rule| RequestError::InvalidSession { rule })?;
            match *method {
                Method::POST => SessionsRoute::AddFault(name.to_owned()),
                Method::GET => SessionsRoute::Faults(name.to_owned()),
                Method::DELETE => SessionsRoute::ClearFaults(name.to_owned()),
                _ => {
                    return Err(RequestError::MethodNotAllowed {
                        allow: "GET, POST, DELETE",
                    })
                }
            }
        }
        Some(name) => {
            session::check_name(name).map_err(|rule| RequestError::InvalidSession { rule })?;
            match *method {
                Method::GET => SessionsRoute::Report(name.to_owned()),
                Method::DELETE => SessionsRoute::End(name.to_owned()),
                _ => return Err(RequestError::MethodNotAllowed { allow: "GET, DELETE" }),
            }
        }
    };
    Ok(Route::Sessions(route))
}

/// The request header asking for replayed dates shifted to a day (`--shift-dates` for one
/// request, with its own `--today`).
pub const TODAY_HEADER: &str = "plaid-vcr-today";

/// The day a request's `Plaid-VCR-Today` header names; `None` without one.
pub fn today(headers: &HeaderMap) -> Result<Option<time::Date>, RequestError> {
    let Some(value) = headers.get(TODAY_HEADER) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    crate::config::parse_today(text.trim())
        .map(Some)
        .map_err(|_| RequestError::InvalidToday(text.into_owned()))
}

/// The session a Plaid request belongs to: the one its path names, or its
/// `Plaid-VCR-Session` header's (both checked; if both are given they must agree).
pub fn session(from_path: Option<String>, headers: &HeaderMap) -> Result<Option<String>, RequestError> {
    let Some(value) = headers.get(session::HEADER) else {
        return Ok(from_path);
    };
    let name = value.to_str().map_err(|_| RequestError::InvalidSession {
        rule: "the Plaid-VCR-Session header is not valid text".into(),
    })?;
    session::check_name(name).map_err(|rule| RequestError::InvalidSession { rule })?;
    match from_path {
        Some(path) if path != name => Err(RequestError::InvalidSession {
            rule: format!("the path names session {path:?} and the Plaid-VCR-Session header {name:?}; name one"),
        }),
        _ => Ok(Some(name.to_owned())),
    }
}

/// What the request stage needs to know; borrowed from the [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Time the body may take to arrive.
    pub client_timeout: Duration,
    /// Credentials plaid-vcr adds to requests without their own, as headers.
    pub client_id: Option<&'a Secret>,
    /// See `client_id`.
    pub secret: Option<&'a Secret>,
}

/// A parsed, checked, redacted and keyed Plaid request.
#[derive(Debug)]
pub struct PlaidRequest {
    pub endpoint: String,
    pub plaid_version: Option<String>,
    /// Headers to forward upstream (with configured credentials added).
    pub headers: HeaderMap,
    /// The body exactly as the client sent it, for upstream only.
    pub raw_body: Bytes,
    /// The body as it is keyed and stored (after [`Redactor::request`]).
    pub stored_body: Map<String, Value>,
    /// The matching key, computed once from `stored_body`.
    pub key: String,
    /// Whether the body itself carried `client_id` / `secret` (for [`crate::serve::cache`]).
    pub body_credentials: [bool; 2],
    /// The session it belongs to (`None`: the default session); never part of the key.
    pub session: Option<String>,
    /// The day its `Plaid-VCR-Today` header asks replayed dates to be shifted to.
    pub today: Option<time::Date>,
}

/// Reads `request` (already routed to `endpoint`) into a [`PlaidRequest`]: what the proxy
/// does in two steps, with the exact cache between them.
#[cfg(test)]
pub async fn read<B>(
    endpoint: String,
    request: Request<B>,
    limits: Limits<'_>,
    redactor: &Redactor,
) -> Result<PlaidRequest, RequestError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, raw_body) = collect(request, limits).await?;
    parse(endpoint, parts, raw_body, limits, redactor)
}

/// The head and the whole body, within `max_body_bytes` and `client_timeout`.
pub async fn collect<B>(request: Request<B>, limits: Limits<'_>) -> Result<(http::request::Parts, Bytes), RequestError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = request.into_parts();
    let too_large = RequestError::TooLarge {
        limit: limits.max_body_bytes,
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body_bytes as u64) {
        return Err(too_large);
    }
    // A client that sent its head but stalls on the body must not hold the request open. A
    // body that has already arrived (the usual case) is taken without arming a timer.
    let mut collecting = std::pin::pin!(Limited::new(body, limits.max_body_bytes).collect());
    let first =
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(collecting.as_mut(), cx))).await;
    let collected = match first {
        std::task::Poll::Ready(collected) => collected,
        // Boxed: the timer is large and rarely needed, and this future is part of every
        // request's (hyper moves it into place per request).
        std::task::Poll::Pending => Box::pin(tokio::time::timeout(limits.client_timeout, collecting))
            .await
            .map_err(|_| RequestError::BodyTimeout {
                after: limits.client_timeout,
            })?,
    };
    let raw_body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large),
        Err(_) => return Err(RequestError::UnreadableBody),
    };
    Ok((parts, raw_body))
}

/// Whether the head says JSON: the Content-Type check of [`parse`], for callers that skip it.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type)
}

/// The `Plaid-Version` header, trimmed; `None` if absent or empty, `Err` if not text.
pub fn plaid_version_str(headers: &HeaderMap) -> Result<Option<&str>, RequestError> {
    match headers.get(PLAID_VERSION).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) if v.trim().is_empty() => Ok(None),
        Some(Ok(v)) => Ok(Some(v.trim())),
        Some(Err(_)) => Err(RequestError::InvalidPlaidVersion),
    }
}

/// Whether each credential (see [`CREDENTIALS`]) is present in a header or configured; with
/// the body's own (`body_credentials`), whether the request may go on.
pub fn credentials_present(headers: &HeaderMap, limits: Limits<'_>, body_credentials: [bool; 2]) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .zip([limits.client_id, limits.secret])
        .zip(body_credentials)
        .all(|((header, configured), in_body)| {
            in_body || configured.is_some() || headers.get(header).is_some_and(|v| !v.is_empty())
        })
}

/// [`CREDENTIALS`]' header names, built once: a lookup by `&str` parses the name every time.
const CREDENTIAL_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static(CREDENTIALS[0].1),
    HeaderName::from_static(CREDENTIALS[1].1),
];

/// The `Plaid-Version` header's name.
const PLAID_VERSION: HeaderName = HeaderName::from_static("plaid-version");

/// Parses, checks, redacts and keys a collected request.
pub fn parse(
    endpoint: String,
    parts: http::request::Parts,
    raw_body: Bytes,
    limits: Limits<'_>,
    redactor: &Redactor,
) -> Result<PlaidRequest, RequestError> {
    match parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().map(is_json_content_type))
    {
        None => return Err(RequestError::MissingContentType),
        Some(Ok(true)) => {}
        Some(_) => return Err(RequestError::NotJsonContentType),
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&raw_body) else {
        return Err(RequestError::NotJson);
    };
    if depth(&body) > MAX_BODY_DEPTH {
        return Err(RequestError::TooDeep { max: MAX_BODY_DEPTH });
    }

    let mut headers = parts.headers;
    let body_credentials = CREDENTIALS.map(|(field, _)| has_text(body.get(field)));
    let mut missing = Vec::new();
    let credentials = CREDENTIALS
        .into_iter()
        .zip([limits.client_id, limits.secret])
        .zip(body_credentials);
    for (((field, header), configured), in_body) in credentials {
        if in_body || headers.get(header).is_some_and(|v| !v.is_empty()) {
            continue;
        }
        // A configured credential stands in for a missing one, as a header: never added to
        // the body (Plaid rejects unknown fields) and never stored or logged.
        match configured.and_then(|c| HeaderValue::from_str(c.expose()).ok()) {
            Some(mut value) => {
                value.set_sensitive(true);
                headers.insert(header, value);
            }
            None => missing.push(field),
        }
    }
    if !missing.is_empty() {
        return Err(RequestError::MissingCredentials { fields: missing });
    }

    let plaid_version = plaid_version_str(&headers)?.map(str::to_owned);

    let stored_body = redactor.request(&endpoint, body);
    let key = key::compute(&endpoint, plaid_version.as_deref(), &stored_body);
    Ok(PlaidRequest {
        endpoint,
        plaid_version,
        headers,
        raw_body,
        stored_body,
        key,
        body_credentials,
        session: None,
        today: None,
    })
}

/// The endpoint named by a request path, if it is one: `/plaid-compatible/identity/get` and
/// `/plaid-compatible//identity/get` (clients whose base path ends in `/`) give `identity/get`.
pub fn endpoint_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix(PREFIX)?.strip_prefix('/')?;
    if is_endpoint(rest) {
        // The usual case: nothing to normalize.
        return Some(rest.to_owned());
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(
            crate::privacy::rules::builtin(),
            crate::privacy::redact::RequestPii::Placeholder,
            b"k",
        )
    }

    fn limits() -> Limits<'static> {
        Limits {
            max_body_bytes: 1024,
            client_timeout: Duration::from_secs(5),
            client_id: None,
            secret: None,
        }
    }

    fn post(headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
        let mut request = Request::post("/plaid-compatible/identity/get");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
    }

    const CLIENT: [(&str, &str); 3] = [
        ("content-type", "application/json"),
        ("plaid-client-id", "id"),
        ("plaid-secret", "secret"),
    ];

    async fn read_one(headers: &[(&str, &str)], body: &str) -> Result<PlaidRequest, RequestError> {
        read("identity/get".into(), post(headers, body), limits(), &redactor()).await
    }

    #[tokio::test]
    async fn a_request_is_parsed_redacted_and_keyed_once() {
        let body = r#"{"secret":"s","access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;
        let mut headers = CLIENT.to_vec();
        headers.push(("plaid-version", " 2020-09-14 "));
        let request = read_one(&headers, body).await.unwrap();
        assert_eq!(request.plaid_version.as_deref(), Some("2020-09-14"));
        assert_eq!(request.raw_body, body.as_bytes(), "forwarded unchanged");
        assert!(request.stored_body.get("secret").is_none(), "credentials never stored");
        let token = request.stored_body["access_token"].as_str().unwrap();
        assert!(token.starts_with("access-sandbox-") && !token.contains("de3ce8ef"));
        assert_eq!(
            request.key,
            key::compute("identity/get", Some("2020-09-14"), &request.stored_body)
        );
    }

    #[tokio::test]
    async fn bad_requests_get_their_own_errors() {
        let code = |r: Result<PlaidRequest, RequestError>| r.unwrap_err().error_code();
        assert_eq!(code(read_one(&CLIENT[1..], "{}").await), "INVALID_HEADERS");
        let mut text = CLIENT.to_vec();
        text[0] = ("content-type", "text/plain");
        assert_eq!(code(read_one(&text, "{}").await), "INVALID_BODY");
        assert_eq!(code(read_one(&CLIENT, "[1]").await), "INVALID_BODY");
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(70), "]".repeat(70));
        assert!(matches!(
            read_one(&CLIENT, &deep).await,
            Err(RequestError::TooDeep { .. })
        ));
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(2000));
        assert_eq!(code(read_one(&CLIENT, &big).await), "PLAID_VCR_BODY_TOO_LARGE");
        match read_one(&CLIENT[..1], "{}").await {
            Err(RequestError::MissingCredentials { fields }) => assert_eq!(fields, ["client_id", "secret"]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn configured_credentials_fill_in_as_headers_only() {
        let (id, secret) = (Secret::new("cid"), Secret::new("csecret"));
        let limits = Limits {
            client_id: Some(&id),
            secret: Some(&secret),
            ..limits()
        };
        let request = read("identity/get".into(), post(&CLIENT[..1], "{}"), limits, &redactor())
            .await
            .unwrap();
        assert_eq!(request.headers["plaid-client-id"], "cid");
        assert!(request.headers["plaid-secret"].is_sensitive());
        assert_eq!(request.raw_body, "{}".as_bytes(), "never added to the body");
    }

    #[test]
    fn routes_and_endpoints_are_read_from_the_path_generically() {
        assert_eq!(route(&Method::GET, "/healthz").unwrap(), Route::Health);
        assert_eq!(
            route(&Method::POST, "/plaid-compatible//identity/get").unwrap(),
            Route::Plaid {
                endpoint: "identity/get".into(),
                session: None
            }
        );
        assert!(matches!(
            route(&Method::GET, "/plaid-compatible/identity/get"),
            Err(RequestError::MethodNotAllowed { allow: "POST" })
        ));
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
    fn a_session_is_named_by_base_path_or_header_and_checked() {
        let plaid = |path: &str| route(&Method::POST, path);
        assert_eq!(
            plaid("/sessions/tests/test_link/test_update/plaid-compatible/item/get").unwrap(),
            Route::Plaid {
                endpoint: "item/get".into(),
                session: Some("tests/test_link/test_update".into())
            }
        );
        for bad in [
            "/sessions/a b/plaid-compatible/item/get",
            "/sessions/../plaid-compatible/item/get",
        ] {
            assert!(matches!(plaid(bad), Err(RequestError::InvalidSession { .. })), "{bad}");
        }
        assert!(matches!(plaid("/sessions/a/identity/get"), Err(RequestError::NotFound)));

        let mut headers = HeaderMap::new();
        assert_eq!(session(None, &headers).unwrap(), None);
        assert_eq!(session(Some("p".into()), &headers).unwrap().as_deref(), Some("p"));
        headers.insert(crate::serve::session::HEADER, HeaderValue::from_static("h/1"));
        assert_eq!(session(None, &headers).unwrap().as_deref(), Some("h/1"));
        assert_eq!(session(Some("h/1".into()), &headers).unwrap().as_deref(), Some("h/1"));
        let both = session(Some("p".into()), &headers).unwrap_err().to_string();
        assert!(
            both.contains("the path names session \"p\" and the Plaid-VCR-Session header \"h/1\""),
            "{both}"
        );
        headers.insert(crate::serve::session::HEADER, HeaderValue::from_static("a..b/.."));
        assert!(matches!(
            session(None, &headers),
            Err(RequestError::InvalidSession { .. })
        ));

        assert_eq!(
            route(&Method::GET, "/plaid-vcr/sessions").unwrap(),
            Route::Sessions(SessionsRoute::List)
        );
        assert_eq!(
            route(&Method::DELETE, "/plaid-vcr/sessions/t/1").unwrap(),
            Route::Sessions(SessionsRoute::End("t/1".into()))
        );
        assert!(matches!(
            route(&Method::POST, "/plaid-vcr/sessions/t"),
            Err(RequestError::MethodNotAllowed { .. })
        ));
    }

    #[test]
    fn json_content_types_and_depth_are_recognised() {
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(!is_json_content_type("text/plain"));
        let body = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(depth(&body(json!({"a": 1}))), 1);
        assert_eq!(depth(&body(json!({"a": {"b": [1]}}))), 3);
        assert_eq!(depth(&body(json!({"a": [], "b": {"c": {}}}))), 3);
    }
}
