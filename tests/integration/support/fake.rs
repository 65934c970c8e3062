//! A fake Plaid upstream over TLS (rcgen's self-signed certificate on 127.0.0.1:0): counts
//! calls per endpoint, answers with a fresh `request_id`, and can be told to fail, hold, answer
//! binary bodies, or send signed webhooks as Plaid's sandbox does, with gates that let a test
//! decide the order in which webhooks and the answers that caused them arrive.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use super::{try_send, ACCOUNTS_RESPONSE, IDENTITY_RESPONSE};

/// A canned answer the fake gives for one endpoint instead of its default.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// What the fake saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct FakeState {
    calls: HashMap<String, usize>,
    seen: Vec<Seen>,
    replies: HashMap<String, Reply>,
    delay: Option<Duration>,
    /// While set and `true`, answers wait (see [`FakePlaid::hold`]).
    hold: Option<tokio::sync::watch::Receiver<bool>>,
    /// Set by [`FakePlaid::send_webhooks`].
    webhooks: Option<FakeWebhooks>,
    /// Set by [`FakePlaid::hold_causes`]: the held answers to webhooks' causes, oldest first.
    held_causes: Option<VecDeque<Gate>>,
    /// Set by [`FakePlaid::hold_webhooks`]: the held webhooks, oldest first.
    held_webhooks: Option<VecDeque<Gate>>,
    /// Binary answers by endpoint: content type and bytes ([`FakePlaid::reply_binary`]).
    binary: HashMap<String, (String, Bytes)>,
}

/// Plaid's webhook side, faked: its own ES256 key, the item's webhook URL, and the statuses
/// its deliveries got back.
struct FakeWebhooks {
    signer: Arc<plaid_vcr::testing::Signer>,
    url: Option<String>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

/// The item the fake's exchange hands out (the spec's example id).
pub const ITEM_ID: &str = "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op";

/// A fake Plaid: TLS with a self-signed rcgen certificate on 127.0.0.1:0, counting calls per
/// endpoint and answering with a fresh random `request_id` every time.
pub struct FakePlaid {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
    gate: Mutex<Option<tokio::sync::watch::Sender<bool>>>,
    _dir: tempfile::TempDir,
}

impl FakePlaid {
    /// A fake offering HTTP/2 and HTTP/1.1 by ALPN.
    pub async fn start() -> FakePlaid {
        Self::start_with_alpn(vec![b"h2".to_vec(), b"http/1.1".to_vec()]).await
    }

    /// A fake offering exactly the ALPN protocols given.
    pub async fn start_with_alpn(alpn: Vec<Vec<u8>>) -> FakePlaid {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("generate cert");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("fake-plaid-ca.pem");
        std::fs::write(&ca_file, certified.cert.pem()).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        tls.alpn_protocols = alpn;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FakeState::default()));
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = task_state.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = service_fn(move |req| fake_answer(state.clone(), req));
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        FakePlaid {
            addr,
            ca_file,
            state,
            task,
            gate: Mutex::new(None),
            _dir: dir,
        }
    }

    /// The upstream URL to give the proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Calls received for `endpoint` (e.g. "identity/get"), whatever the path prefix.
    pub fn calls(&self, endpoint: &str) -> usize {
        self.state.lock().unwrap().calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Calls received in all.
    pub fn total_calls(&self) -> usize {
        self.state.lock().unwrap().calls.values().sum()
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Makes `endpoint` answer `reply` from now on.
    pub fn reply(&self, endpoint: &str, reply: Reply) {
        self.state.lock().unwrap().replies.insert(endpoint.to_string(), reply);
    }

    /// Makes `endpoint` answer 200 with `bytes` of `content_type` (a PDF, a zip) from now on.
    pub fn reply_binary(&self, endpoint: &str, content_type: &str, bytes: Bytes) {
        let mut state = self.state.lock().unwrap();
        state
            .binary
            .insert(endpoint.to_string(), (content_type.to_string(), bytes));
    }

    /// Delays every answer.
    pub fn delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = Some(delay);
    }

    /// Holds every answer (requests are still counted as they arrive) until [`release`].
    ///
    /// [`release`]: FakePlaid::release
    pub fn hold(&self) {
        let (tx, rx) = tokio::sync::watch::channel(true);
        *self.gate.lock().unwrap() = Some(tx);
        self.state.lock().unwrap().hold = Some(rx);
    }

    /// Lets held answers (and later ones) go.
    pub fn release(&self) {
        if let Some(tx) = self.gate.lock().unwrap().take() {
            let _ = tx.send(false);
        }
        self.state.lock().unwrap().hold = None;
    }

    /// Makes the fake send signed webhooks as Plaid's sandbox does: `SYNC_UPDATES_AVAILABLE`
    /// after `/sandbox/public_token/create` (to its `options.webhook`), the code asked for by
    /// `/sandbox/item/fire_webhook`, `WEBHOOK_UPDATE_ACKNOWLEDGED` to the new URL after
    /// `/item/webhook/update`; it answers `/webhook_verification_key/get` with its key.
    pub fn send_webhooks(&self) {
        self.state.lock().unwrap().webhooks = Some(FakeWebhooks {
            signer: Arc::new(plaid_vcr::testing::Signer::generate().unwrap()),
            url: None,
            statuses: Arc::new(Mutex::new(Vec::new())),
        });
    }

    /// Holds every answer to a webhook's cause, after its webhook went out, until
    /// [`FakePlaid::release_cause`] lets it go. Each is queued as its request is counted, so
    /// "the oldest" is the one whose request arrived first.
    pub fn hold_causes(&self) {
        self.state.lock().unwrap().held_causes = Some(VecDeque::new());
    }

    /// Lets the oldest held answer to a webhook's cause go.
    pub fn release_cause(&self) {
        let mut state = self.state.lock().unwrap();
        let gate = state.held_causes.as_mut().and_then(VecDeque::pop_front);
        let _ = gate.expect("an answer to a webhook's cause is held").send(());
    }

    /// Holds every webhook the fake would send until [`FakePlaid::release_webhook`], queued as
    /// their causes are counted.
    pub fn hold_webhooks(&self) {
        self.state.lock().unwrap().held_webhooks = Some(VecDeque::new());
    }

    /// Lets the oldest held webhook go.
    pub fn release_webhook(&self) {
        let mut state = self.state.lock().unwrap();
        let gate = state.held_webhooks.as_mut().and_then(VecDeque::pop_front);
        let _ = gate.expect("a webhook is held").send(());
    }

    /// The statuses the fake's webhook deliveries were answered with, in order.
    pub fn webhook_statuses(&self) -> Vec<u16> {
        let state = self.state.lock().unwrap();
        state
            .webhooks
            .as_ref()
            .map(|w| w.statuses.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Stops accepting; the port closes.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for FakePlaid {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_answer(
    state: Arc<Mutex<FakeState>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let version = req.version();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // The endpoint is the path without any prefix: the fake is reachable under /prefix/... too.
    let endpoint = [
        "identity/get",
        "accounts/get",
        "sandbox/public_token/create",
        "item/public_token/exchange",
    ]
    .into_iter()
    .find(|e| path.ends_with(&format!("/{e}")))
    .map(str::to_string)
    .unwrap_or_else(|| path.trim_start_matches('/').to_string());
    // An endpoint a test gave an answer of its own is itself, not the one it ends with
    // (processor/identity/get is not identity/get).
    let exact = path.trim_start_matches('/');
    let endpoint = if state.lock().unwrap().replies.contains_key(exact) {
        exact.to_string()
    } else {
        endpoint
    };
    let (reply, delay, hold, webhook, binary, cause_gate) = {
        let mut guard = state.lock().unwrap();
        let s = &mut *guard;
        *s.calls.entry(endpoint.clone()).or_default() += 1;
        // Gates are queued here, under the lock that counts the call: their order is the
        // order the test sees in `calls`.
        let mut webhook = s
            .webhooks
            .as_mut()
            .and_then(|w| webhook_reaction(w, &endpoint, &body, s.held_webhooks.as_mut()));
        let cause_gate = match (&mut webhook, s.held_causes.as_mut()) {
            (Some((_, Some(_))), Some(held)) => Some(queued(held)),
            _ => None,
        };
        s.seen.push(Seen {
            path,
            version,
            headers,
            body,
        });
        let binary = s.binary.get(&endpoint).cloned();
        (
            s.replies.get(&endpoint).cloned(),
            s.delay,
            s.hold.clone(),
            webhook,
            binary,
            cause_gate,
        )
    };
    if let Some((content_type, bytes)) = binary {
        return Ok(Response::builder()
            .header("content-type", content_type)
            .body(Full::new(bytes))
            .unwrap());
    }
    if let Some((reply, send)) = webhook {
        if let Some(send) = send {
            tokio::spawn(send);
            if let Some(gate) = cause_gate {
                opened(gate).await;
            }
        }
        let bytes = serde_json::to_vec_pretty(&reply).unwrap();
        return Ok(Response::builder()
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(bytes)))
            .unwrap());
    }
    if let Some(mut hold) = hold {
        // Bounded: a test that forgets to release fails on its own timeouts, not by hanging.
        let _ = tokio::time::timeout(Duration::from_secs(30), hold.wait_for(|held| !held)).await;
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let Reply { status, mut body } = reply.unwrap_or_else(|| default_reply(&endpoint, &seen_body(&state)));
    if let Some(obj) = body.as_object_mut() {
        obj.insert("request_id".into(), Value::String(random_request_id()));
    }
    let bytes = serde_json::to_vec_pretty(&body).unwrap();
    Ok(Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap())
}

type Sending = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What the webhook-sending fake answers `endpoint` with, and the webhook it sends after;
/// `None` for endpoints without webhook behaviour.
fn webhook_reaction(
    hooks: &mut FakeWebhooks,
    endpoint: &str,
    body: &[u8],
    held: Option<&mut VecDeque<Gate>>,
) -> Option<(Value, Option<Sending>)> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let with_id = |mut v: Value| {
        v["request_id"] = Value::String(random_request_id());
        v
    };
    let (answer, webhook) = match endpoint {
        "sandbox/public_token/create" => {
            hooks.url = request["options"]["webhook"].as_str().map(str::to_owned);
            let sync = json!({
                "webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": ITEM_ID,
                "initial_update_complete": true, "historical_update_complete": false, "environment": "sandbox"
            });
            (
                json!({"public_token": "public-sandbox-b0e2c4ee-a763-4df5-bfe9-46a46bce993d"}),
                Some(sync),
            )
        }
        "sandbox/item/fire_webhook" => {
            let code = request["webhook_code"].as_str().unwrap_or("DEFAULT_UPDATE");
            let fired = if code == "DEFAULT_UPDATE" {
                // A date-time too (Plaid's webhooks have some), for `--shift-dates`.
                json!({"webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": ITEM_ID, "new_transactions": 3,
                       "error": null, "environment": "sandbox", "consent_expiration_time": "2030-01-01T00:00:00Z"})
            } else {
                json!({"webhook_type": request["webhook_type"].as_str().unwrap_or("ITEM"), "webhook_code": code,
                       "item_id": ITEM_ID, "environment": "sandbox"})
            };
            (json!({"webhook_fired": true}), Some(fired))
        }
        "item/webhook/update" => {
            let new = request["webhook"].as_str().unwrap_or("").to_owned();
            hooks.url = Some(new.clone());
            let item = json!({"item": {"item_id": ITEM_ID, "webhook": new, "institution_id": "ins_109508",
                "available_products": [], "billed_products": ["transactions"], "error": null,
                "update_type": "background", "consent_expiration_time": null}});
            let ack = json!({"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED", "item_id": ITEM_ID,
                             "new_webhook_url": new, "error": null, "environment": "sandbox"});
            (item, Some(ack))
        }
        "webhook_verification_key/get" => {
            if request["key_id"].as_str() != Some(hooks.signer.kid()) {
                return None;
            }
            (json!({"key": hooks.signer.jwk()}), None)
        }
        _ => return None,
    };
    let send = match (webhook, hooks.url.clone()) {
        (Some(webhook), Some(url)) => {
            let (signer, statuses) = (hooks.signer.clone(), hooks.statuses.clone());
            let gate = held.map(queued);
            let send: Sending = Box::pin(async move {
                match gate {
                    Some(gate) => opened(gate).await,
                    // Plaid sends webhooks after it has answered, asynchronously.
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                let bytes = serde_json::to_vec_pretty(&webhook).unwrap();
                let jwt = signer.sign(&bytes).unwrap();
                let headers = [
                    ("content-type", "application/json"),
                    ("plaid-verification", jwt.as_str()),
                ];
                let status = match try_send("POST", &url, &headers, bytes).await {
                    Ok(resp) => resp.status,
                    Err(_) => 0,
                };
                statuses.lock().unwrap().push(status);
            });
            Some(send)
        }
        _ => None,
    };
    Some((with_id(answer), send))
}

/// One held answer or webhook: the test's side opens it.
type Gate = tokio::sync::oneshot::Sender<()>;

/// A new gate at the back of `held`; the fake's side waits on what this returns.
fn queued(held: &mut VecDeque<Gate>) -> tokio::sync::oneshot::Receiver<()> {
    let (open, wait) = tokio::sync::oneshot::channel();
    held.push_back(open);
    wait
}

/// Waits for the test to open a gate. Bounded: a test that forgets to release fails on its
/// own timeouts, not by hanging.
async fn opened(gate: tokio::sync::oneshot::Receiver<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(30), gate).await;
}

/// The body of the last request the fake saw (the one being answered).
fn seen_body(state: &Arc<Mutex<FakeState>>) -> Value {
    let state = state.lock().unwrap();
    state
        .seen
        .last()
        .and_then(|s| serde_json::from_slice(&s.body).ok())
        .unwrap_or(Value::Null)
}

fn default_reply(endpoint: &str, request: &Value) -> Reply {
    let body = match endpoint {
        "identity/get" => serde_json::from_str(IDENTITY_RESPONSE).unwrap(),
        "accounts/get" => serde_json::from_str(ACCOUNTS_RESPONSE).unwrap(),
        "sandbox/public_token/create" => json!({"public_token": "public-sandbox-b0e2c4ee-a763-4df5-bfe9-46a46bce993d"}),
        "item/public_token/exchange" => json!({
            "access_token": "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6",
            "item_id": "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op"
        }),
        // The spec's example, its transactions moved into the asked-for window as the
        // sandbox's are (the first dated the day before its end), every gap between dates kept.
        "transactions/get" => {
            let corpus: Value = serde_json::from_str(include_str!("../../corpus/plaid_examples.json")).unwrap();
            let example = corpus["examples"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["endpoint"] == "transactions/get")
                .unwrap();
            let mut body = example["response"].clone();
            let day = |text: &str| {
                time::Date::parse(&text[..10], time::macros::format_description!("[year]-[month]-[day]")).unwrap()
            };
            let end = day(request["end_date"].as_str().unwrap_or("2023-09-29"));
            let days = (end - day(body["transactions"][0]["date"].as_str().unwrap())).whole_days() - 1;
            for t in body["transactions"].as_array_mut().unwrap() {
                for field in ["date", "authorized_date", "datetime", "authorized_datetime"] {
                    if let Some(text) = t[field].as_str() {
                        let moved = format!("{}{}", day(text) + time::Duration::days(days), &text[10..]);
                        t[field] = Value::String(moved);
                    }
                }
            }
            body
        }
        // The spec's example (update mode's link token, for an existing item).
        "link/token/create" => json!({
            "link_token": "link-sandbox-af1a0311-da53-4636-b754-dd15cc058176",
            "expiration": "2020-03-27T12:56:34Z"
        }),
        _ => json!({}),
    };
    Reply { status: 200, body }
}

fn random_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    format!(
        "{:015x}",
        (t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) & 0x0fff_ffff_ffff_ffff
    )
}

/// The spec's `INVALID_ACCESS_TOKEN` error body.
pub fn invalid_access_token() -> Value {
    json!({
        "display_message": null,
        "documentation_url": "https://plaid.com/docs/?ref=error#invalid-input-errors",
        "error_code": "INVALID_ACCESS_TOKEN",
        "error_message": "could not find matching access token",
        "error_type": "INVALID_INPUT",
        "request_id": "x",
        "suggested_action": null
    })
}
