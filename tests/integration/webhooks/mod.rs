//! Webhooks through the real binary: the fake Plaid sends signed webhooks to plaid-vcr's
//! receiver while recording; an in-test app receives them (forwarded live, then replayed) and
//! verifies each exactly as Plaid's docs say, fetching the key through plaid-vcr.
//!
//! Here: the app, the flow it runs and the helpers every webhook test shares. The tests are in
//! [`recording`] (what lands in the cassette), [`order`] (which answer each webhook follows when
//! they race), [`delivery`] (replayed webhooks reaching the app, or failing to) and [`sessions`]
//! (each session's own).

mod delivery;
mod on_demand;
mod order;
mod recording;
mod sessions;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::*;

/// What the app saw, in order: answers the flow got, webhooks the app received.
#[derive(Debug, Clone)]
enum Event {
    Answer(&'static str),
    Webhook {
        path: String,
        code: String,
        item_id: String,
        body: Bytes,
        verified: Result<(), String>,
    },
}

/// A small app: a webhook endpoint that verifies every webhook against the key it fetches
/// through plaid-vcr (`proxy`), and the log of what happened.
struct App {
    addr: SocketAddr,
    events: Arc<Mutex<Vec<Event>>>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start(proxy: String) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let log = events.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, proxy) = (log.clone(), proxy.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (log, proxy) = (log.clone(), proxy.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let jwt = req
                                .headers()
                                .get("plaid-verification")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let verified = verify(&proxy, jwt.as_deref(), &body).await;
                            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            log.lock().unwrap().push(Event::Webhook {
                                path,
                                code: json["webhook_code"].as_str().unwrap_or("").to_owned(),
                                item_id: json["item_id"].as_str().unwrap_or("").to_owned(),
                                body,
                                verified,
                            });
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                        }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        App { addr, events, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn note(&self, answer: &'static str) {
        self.events.lock().unwrap().push(Event::Answer(answer));
    }

    fn webhooks(&self) -> Vec<Event> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|e| matches!(e, Event::Webhook { .. }))
            .cloned()
            .collect()
    }

    /// Waits (bounded: 10 s) until `n` webhooks have arrived.
    async fn wait_for(&self, n: usize) {
        for _ in 0..200 {
            if self.webhooks().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{n} webhooks did not arrive in 10 s; events: {:?}",
            self.events.lock().unwrap()
        );
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Plaid's verification, step by step: the JOSE header must say ES256; the key for its `kid`
/// comes from `/webhook_verification_key/get`; the signature must verify; `iat` must be under
/// 5 minutes old; the body's SHA-256 must be the claimed one.
async fn verify(proxy: &str, jwt: Option<&str>, body: &[u8]) -> Result<(), String> {
    let jwt = jwt.ok_or("no Plaid-Verification header")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("not a JWT: {jwt}"));
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let jose = decode(header)?;
    if jose["alg"] != "ES256" {
        return Err(format!("alg {} is not ES256", jose["alg"]));
    }
    let kid = jose["kid"].as_str().ok_or("no kid")?;
    let resp = post(
        proxy,
        "webhook_verification_key/get",
        &json!({"key_id": kid}).to_string(),
    )
    .await;
    if resp.status != 200 {
        return Err(format!("key fetch answered {}: {:?}", resp.status, resp.body));
    }
    let key = &resp.json()["key"];
    if key["alg"] != "ES256" || key["crv"] != "P-256" || key["kid"] != kid {
        return Err(format!("unexpected key {key}"));
    }
    let mut point = vec![4u8];
    for coordinate in ["x", "y"] {
        point.extend(
            URL_SAFE_NO_PAD
                .decode(key[coordinate].as_str().unwrap_or(""))
                .map_err(|e| e.to_string())?,
        );
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| e.to_string())?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "signature does not verify".to_string())?;
    let claims = decode(claims)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().ok_or("no iat")?;
    if now.saturating_sub(iat) > 5 * 60 {
        return Err(format!("iat {iat} is older than 5 minutes"));
    }
    let digest: String = Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    if claims["request_body_sha256"] != digest {
        return Err("the body's SHA-256 is not the signed one".into());
    }
    Ok(())
}

/// The app's flow: create an item with a webhook URL, exchange its token, fire a webhook,
/// move the webhook URL. Waits for each webhook before going on, as an app driven by webhooks
/// would. Returns the item id the exchange answered.
async fn flow(proxy: &str, app: &App) -> String {
    let call = |endpoint: &'static str, body: Value| async move {
        let resp = post(proxy, endpoint, &body.to_string()).await;
        assert_eq!(resp.status, 200, "{endpoint}: {:?}", resp.body);
        resp
    };
    let created = call(
        "sandbox/public_token/create",
        json!({"institution_id": "ins_109508", "initial_products": ["transactions"],
               "options": {"webhook": app.url("/hooks/first")}}),
    )
    .await;
    app.note("sandbox/public_token/create");
    app.wait_for(1).await;
    let public_token = created.json()["public_token"].as_str().unwrap().to_owned();
    let exchanged = call("item/public_token/exchange", json!({"public_token": public_token})).await;
    app.note("item/public_token/exchange");
    let exchanged = exchanged.json();
    let access_token = exchanged["access_token"].as_str().unwrap().to_owned();
    call(
        "sandbox/item/fire_webhook",
        json!({"access_token": access_token, "webhook_code": "DEFAULT_UPDATE"}),
    )
    .await;
    app.note("sandbox/item/fire_webhook");
    app.wait_for(2).await;
    call(
        "item/webhook/update",
        json!({"access_token": access_token, "webhook": app.url("/hooks/second")}),
    )
    .await;
    app.note("item/webhook/update");
    app.wait_for(3).await;
    exchanged["item_id"].as_str().unwrap().to_owned()
}

/// Checks what the app saw: three verified webhooks, in order, each right after the answer
/// that caused it, about `item_id`, the last at the new URL. Returns the delivered bodies.
fn assert_seen(app: &App, item_id: &str) -> Vec<Bytes> {
    let events = app.events.lock().unwrap().clone();
    let order: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Answer(endpoint) => endpoint.to_string(),
            Event::Webhook { code, .. } => code.clone(),
        })
        .collect();
    let expected = [
        "sandbox/public_token/create",
        "SYNC_UPDATES_AVAILABLE",
        "item/public_token/exchange",
        "sandbox/item/fire_webhook",
        "DEFAULT_UPDATE",
        "item/webhook/update",
        "WEBHOOK_UPDATE_ACKNOWLEDGED",
    ];
    // The app notes an answer once the test's own task has it back, and a webhook sent as the
    // answer leaves (replay) or 50 ms after upstream answered (record) can get to the app first
    // on a loaded machine. That one swap, a webhook just before the answer that caused it, is
    // the only reordering allowed; a webhook anywhere else fails.
    let mut order = order;
    for i in 0..order.len().saturating_sub(1) {
        // Answers are endpoints (`a/b`), webhooks are codes.
        let (webhook_first, answer_next) = (!order[i].contains('/'), order[i + 1].contains('/'));
        if !(webhook_first && answer_next) {
            continue;
        }
        let cause = expected.iter().position(|e| *e == order[i + 1]);
        if cause.is_some_and(|c| expected.get(c + 1) == Some(&order[i].as_str())) {
            order.swap(i, i + 1);
        }
    }
    assert_eq!(order, expected);
    let mut bodies = Vec::new();
    for (event, path) in app
        .webhooks()
        .iter()
        .zip(["/hooks/first", "/hooks/first", "/hooks/second"])
    {
        let Event::Webhook {
            path: got,
            item_id: id,
            verified,
            body,
            ..
        } = event
        else {
            unreachable!()
        };
        assert_eq!(verified, &Ok(()), "{event:?}");
        assert_eq!(got, path);
        assert_eq!(id, item_id, "the webhook names the item the answers name");
        bodies.push(body.clone());
    }
    bodies
}

/// A loopback port nothing listens on right now (for the receiver's public URL, which must be
/// known before the binary starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `plaid-vcr record` against `fake` on a free port whose own address is the
/// receiver's public URL (returned too), with `extra` arguments.
fn recorder(dirs: &Dirs, fake: &FakePlaid, extra: &[&str]) -> (Binary, String) {
    recorder_as("record", dirs, fake, extra)
}

/// [`recorder`] as `command` (`record`, or `replay` with `--record-missing` in `extra`).
fn recorder_as(command: &str, dirs: &Dirs, fake: &FakePlaid, extra: &[&str]) -> (Binary, String) {
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let mut flags = vec!["--webhook-public-url", public.as_str()];
    flags.extend_from_slice(extra);
    let mut args = serve_args(command, dirs, Some(fake), &flags);
    args[2] = format!("127.0.0.1:{port}");
    (Binary::start(&args, &[], dirs.root.path()), public)
}

/// Records the app's whole flow through a webhook-sending fake into `dirs`; stops both.
async fn record_flow(dirs: &Dirs, extra: &[&str]) {
    let fake = FakePlaid::start().await;
    fake.send_webhooks();
    let (mut recorder, _) = recorder(dirs, &fake, extra);
    let app = App::start(recorder.base_url()).await;
    flow(&recorder.base_url(), &app).await;
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    fake.stop();
}

/// Each recorded webhook's code and the endpoint of the interaction it is recorded after.
fn recorded_after(dirs: &Dirs) -> Vec<(String, String)> {
    let mut after: Vec<(String, String)> = webhook_files(dirs)
        .iter()
        .map(|file| {
            let w: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(file)).unwrap()).unwrap();
            let text = |field: &str| w[field].as_str().unwrap_or("(none)").to_owned();
            (text("webhook_code"), text("after_endpoint"))
        })
        .collect();
    after.sort();
    after
}

/// The causes of the flow's three webhooks, as [`recorded_after`] lists them.
fn flow_causes() -> Vec<(String, String)> {
    [
        ("DEFAULT_UPDATE", "sandbox/item/fire_webhook"),
        ("SYNC_UPDATES_AVAILABLE", "sandbox/public_token/create"),
        ("WEBHOOK_UPDATE_ACKNOWLEDGED", "item/webhook/update"),
    ]
    .map(|(code, cause)| (code.to_owned(), cause.to_owned()))
    .to_vec()
}

/// A webhook-sending fake, plaid-vcr recording in front of it, and the app behind plaid-vcr.
async fn recording() -> (Dirs, FakePlaid, Binary, App) {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.send_webhooks();
    let (recorder, _) = recorder(&dirs, &fake, &[]);
    let app = App::start(recorder.base_url()).await;
    (dirs, fake, recorder, app)
}

/// Creates an item whose webhooks go to the app; returns its public token.
async fn create_item(base: &str, app: &App) -> String {
    let body = json!({"institution_id": "ins_109508", "initial_products": ["transactions"],
                      "options": {"webhook": app.url("/hooks/first")}});
    let created = post(base, "sandbox/public_token/create", &body.to_string()).await;
    assert_eq!(created.status, 200);
    created.json()["public_token"].as_str().unwrap().to_owned()
}

/// [`create_item`], waits for its first webhook and exchanges its public token; returns the
/// access token.
async fn create_and_exchange(base: &str, app: &App) -> String {
    let public_token = create_item(base, app).await;
    app.wait_for(1).await;
    let body = json!({"public_token": public_token}).to_string();
    let exchanged = post(base, "item/public_token/exchange", &body).await;
    exchanged.json()["access_token"].as_str().unwrap().to_owned()
}

/// The cassette's webhook files (its own and its sessions'), relative to it.
fn webhook_files(dirs: &Dirs) -> Vec<std::path::PathBuf> {
    dirs.cassette_files()
        .into_iter()
        .filter(|f| f.parent().and_then(|p| p.file_name()).is_some_and(|n| n == "webhooks"))
        .collect()
}

fn cassette_text(dirs: &Dirs) -> String {
    dirs.cassette_files()
        .iter()
        .map(|f| std::fs::read_to_string(dirs.cassette().join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}
