//! Test support: a fake Plaid upstream over TLS ([`fake`]), a plain HTTP client for the proxy,
//! and helpers to start the proxy in-process or as the real binary ([`binary`]). Loopback
//! only; everything stops by itself (tasks are aborted on drop, waits are bounded).

mod binary;
mod fake;

pub use binary::*;
pub use fake::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use plaid_vcr::{Config, Mode, RunningServer, Server};
use serde_json::Value;

/// The spec's identity/get example (Plaid's own sandbox data), as the fake answers it.
pub const IDENTITY_RESPONSE: &str = include_str!("../fixtures/identity_get.response.json");
/// The spec's accounts/get example.
pub const ACCOUNTS_RESPONSE: &str = include_str!("../fixtures/accounts_get.response.json");

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
