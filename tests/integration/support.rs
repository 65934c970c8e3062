//! Test support: a fake Plaid upstream over TLS, a plain HTTP client for the proxy, and
//! helpers to start the proxy in-process or as the real binary. Loopback only; everything
//! stops by itself (tasks are aborted on drop, waits are bounded).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use plaid_vcr::{Config, Mode, RunningServer, Server};
use serde_json::{json, Value};

/// The spec's identity/get example (Plaid's own sandbox data), as the fake answers it.
pub const IDENTITY_RESPONSE: &str = include_str!("fixtures/identity_get.response.json");
/// The spec's accounts/get example.
pub const ACCOUNTS_RESPONSE: &str = include_str!("fixtures/accounts_get.response.json");

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
    /// Set by [`FakePlaid::answer_causes_late`].
    cause_delay: Option<Duration>,
    /// Binary answers by endpoint: content type and bytes ([`FakePlaid::reply_binary`]).
    binary: HashMap<String, (String, Bytes)>,
}

/// Plaid's webhook side, faked: its own ES256 key, the item's webhook URL, and the statuses
/// its deliveries got back.
struct FakeWebhooks {
    signer: Arc<plaid_vcr::signer::Signer>,
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
            signer: Arc::new(plaid_vcr::signer::Signer::generate().unwrap()),
            url: None,
            statuses: Arc::new(Mutex::new(Vec::new())),
        });
    }

    /// Makes a request that causes a webhook get its answer `delay` after the webhook is
    /// sent (50 ms after the request arrives): the webhook reaches plaid-vcr first.
    pub fn answer_causes_late(&self, delay: Duration) {
        self.state.lock().unwrap().cause_delay = Some(Duration::from_millis(50) + delay);
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
    let (reply, delay, hold, webhook, binary, cause_delay) = {
        let mut s = state.lock().unwrap();
        *s.calls.entry(endpoint.clone()).or_default() += 1;
        let webhook = s.webhooks.as_mut().and_then(|w| webhook_reaction(w, &endpoint, &body));
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
            s.cause_delay,
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
            if let Some(delay) = cause_delay {
                tokio::time::sleep(delay).await;
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
    let Reply { status, mut body } = reply.unwrap_or_else(|| default_reply(&endpoint));
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
fn webhook_reaction(hooks: &mut FakeWebhooks, endpoint: &str, body: &[u8]) -> Option<(Value, Option<Sending>)> {
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
                json!({"webhook_type": "TRANSACTIONS", "webhook_code": code, "item_id": ITEM_ID, "new_transactions": 3,
                       "error": null, "environment": "sandbox"})
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
            let send: Sending = Box::pin(async move {
                // Plaid sends webhooks after it has answered, asynchronously.
                tokio::time::sleep(Duration::from_millis(50)).await;
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

fn default_reply(endpoint: &str) -> Reply {
    let body = match endpoint {
        "identity/get" => serde_json::from_str(IDENTITY_RESPONSE).unwrap(),
        "accounts/get" => serde_json::from_str(ACCOUNTS_RESPONSE).unwrap(),
        "sandbox/public_token/create" => json!({"public_token": "public-sandbox-b0e2c4ee-a763-4df5-bfe9-46a46bce993d"}),
        "item/public_token/exchange" => json!({
            "access_token": "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6",
            "item_id": "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op"
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

/// Directories for one proxy: a cassette and a store, cleaned up on drop.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs {
            root: tempfile::tempdir().unwrap(),
        }
    }
    pub fn cassette(&self) -> PathBuf {
        self.root.path().join("cassettes/test")
    }
    pub fn store(&self) -> PathBuf {
        self.root.path().join("store")
    }
    /// Every cassette file, relative to the cassette root.
    pub fn cassette_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.cassette(), &self.cassette(), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// A config for the proxy on 127.0.0.1:0 with the test's dirs and, if given, the fake upstream.
pub fn config(dirs: &Dirs, fake: Option<&FakePlaid>) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        cassette: dirs.cassette(),
        store: dirs.store(),
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    if let Some(fake) = fake {
        config.upstream = fake.url();
        config.upstream_ca = Some(fake.ca_file.clone());
    }
    config
}

/// Records `(endpoint, body)` requests through a fake Plaid into the test's cassette.
pub async fn record_into(dirs: &Dirs, bodies: &[(&str, &str)]) {
    let fake = FakePlaid::start().await;
    let proxy = start(&config(dirs, Some(&fake)), Mode::Record).await;
    for (endpoint, body) in bodies {
        assert_eq!(plaid(&proxy, endpoint, body).await.outcome(), "recorded");
    }
    proxy.stop().await.unwrap();
}
/// Opens a store's sled database directly, as tests that inspect or doctor it do. Like
/// `Store::open`, waits (bounded) for the lock a store this process just stopped is releasing:
/// sled's threads let go of it a moment after the `Db` is dropped.
pub fn open_sled(store: &std::path::Path) -> sled::Db {
    for _ in 0..200 {
        match sled::open(store.join("db")) {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result.expect("the store's sled database opens"),
        }
    }
    panic!("the store's sled database is still locked after 2 s")
}

/// Starts the proxy in-process.
pub async fn start(config: &Config, mode: Mode) -> RunningServer {
    Server::bind(config, mode).await.expect("proxy starts").spawn()
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn outcome(&self) -> &str {
        self.headers
            .get("plaid-vcr-outcome")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn key(&self) -> String {
        self.headers
            .get("plaid-vcr-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
}

/// POSTs `body` to `endpoint` under `base` with the client's headers ([`CLIENT_HEADERS`]), as
/// an app's Plaid client would.
pub async fn post(base: &str, endpoint: &str, body: &str) -> Resp {
    send("POST", &format!("{base}/{endpoint}"), &CLIENT_HEADERS, body.to_string()).await
}

/// Sends one request; headers are (name, value) pairs.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
    try_send(method, url, headers, body).await.unwrap()
}

/// Sends one request, or says why no answer came (refused, reset, 20 s without an answer):
/// for clients of a process the test kills under them.
pub async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Resp, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(body.into())).unwrap();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("answer cut short: {e}"))?
            .to_bytes();
        Ok(Resp { status, headers, body })
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| "no answer within 20 s".to_string())?
}

/// Headers as the official clients send them (credentials in headers).
pub const CLIENT_HEADERS: [(&str, &str); 5] = [
    ("content-type", "application/json"),
    ("plaid-client-id", "0123456789abcdef01234567"),
    ("plaid-secret", "0123456789abcdef0123456789abcd"),
    ("plaid-version", "2020-09-14"),
    ("user-agent", "Plaid Node v47.0.0"),
];

/// The sandbox token in the spec's examples.
pub const TOKEN: &str = "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6";

/// POSTs `body` to `endpoint` on the proxy with the official clients' headers.
pub async fn plaid(server: &RunningServer, endpoint: &str, body: &str) -> Resp {
    send(
        "POST",
        &format!("{}/{endpoint}", server.base_url()),
        &CLIENT_HEADERS,
        body.to_string(),
    )
    .await
}

/// The `plaid-vcr` binary as a command in `cwd` with a clean environment: no `PLAID_VCR_*`
/// variable, `RUST_LOG` or Plaid keys of the developer's can change what a test sees. A test's
/// own variables are added after, so they win.
pub fn plaid_vcr_command(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plaid-vcr"));
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PLAID_VCR_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_LOG")
        .env_remove("PLAID_CLIENT_ID")
        .env_remove("PLAID_SECRET");
    command
}

/// The real `plaid-vcr` binary, started with `args`; reads the first stdout line.
pub struct Binary {
    pub child: Child,
    pub first_line: String,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it; joined once the process has exited.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Binary {
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], envs: &[(&str, &str)], cwd: &Path) -> Binary {
        let mut command = plaid_vcr_command(cwd);
        command.args(args);
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let captured = Arc::new(Mutex::new(String::new()));
        let sink = captured.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on a full pipe.
            let mut rest = String::new();
            while reader.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
                rest.clear();
            }
        });
        let first_line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        Binary {
            child,
            first_line,
            stderr: captured,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// The base URL from the first stdout line.
    pub fn base_url(&self) -> String {
        let start = self
            .first_line
            .find("http://")
            .unwrap_or_else(|| panic!("no URL in {:?}; stderr: {}", self.first_line, self.stderr()));
        let rest = &self.first_line[start..];
        let end = rest.find(' ').unwrap_or(rest.len());
        format!("{}/plaid-compatible", &rest[..end])
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits (bounded) for the exit code.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.wait()
    }

    /// Waits up to 20 s for exit; kills the process if it does not exit.
    pub fn wait(&mut self) -> Option<i32> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The process closed stderr by exiting: the reader ends with its last lines.
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().unwrap();
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("plaid-vcr did not exit in 20 s; stderr: {}", self.stderr());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arguments to run the binary as `command` (record, replay, sandbox-token) on 127.0.0.1:0
/// with the test's cassette and store, and the fake as upstream if given; `extra` follow.
pub fn serve_args(command: &str, dirs: &Dirs, fake: Option<&FakePlaid>, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![command.into()];
    // sandbox-token always listens on a free loopback port of its own.
    if command != "sandbox-token" {
        args.extend(["--listen".into(), "127.0.0.1:0".into()]);
    }
    args.extend(["--cassette".into(), dirs.cassette().display().to_string()]);
    args.extend(["--store".into(), dirs.store().display().to_string()]);
    if let Some(fake) = fake {
        args.extend([
            "--upstream".into(),
            fake.url(),
            "--upstream-ca".into(),
            fake.ca_file.display().to_string(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs the binary to completion (bounded: 30 s) and returns (exit code, stdout, stderr).
pub fn run_binary<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], cwd: &Path) -> (i32, String, String) {
    run_binary_with(args, &[], cwd)
}

/// [`run_binary`] with environment variables of the test's own.
pub fn run_binary_with<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    args: &[S],
    envs: &[(&str, &str)],
    cwd: &Path,
) -> (i32, String, String) {
    let mut command = plaid_vcr_command(cwd);
    command.args(args).envs(envs.iter().copied());
    let mut child = command.spawn().unwrap();
    // Read both pipes while waiting, so a large output can never block the child.
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return (
                status.code().unwrap_or(-1),
                stdout.join().unwrap(),
                stderr.join().unwrap(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("plaid-vcr {args:?} did not finish in 30 s");
}

/// Asserts that `b` has exactly the JSON shape of `a`: the same keys, JSON types, array
/// lengths and nulls, and the same booleans and numbers (redaction only rewrites strings).
pub fn assert_same_shape(a: &Value, b: &Value) {
    fn walk(a: &Value, b: &Value, path: &str) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(
                    x.keys().collect::<Vec<_>>(),
                    y.keys().collect::<Vec<_>>(),
                    "keys at {path}"
                );
                for (k, v) in x {
                    walk(v, &y[k], &format!("{path}.{k}"));
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "array length at {path}");
                for (i, (v, w)) in x.iter().zip(y).enumerate() {
                    walk(v, w, &format!("{path}[{i}]"));
                }
            }
            (Value::String(_), Value::String(_)) => {}
            (x, y) => assert_eq!(x, y, "value at {path}"),
        }
    }
    walk(a, b, "");
}
