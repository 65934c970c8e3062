//! Webhooks through the real binary: the fake Plaid sends signed webhooks to plaid-vcr's
//! receiver while recording; an in-test app receives them (forwarded live, then replayed) and
//! verifies each exactly as Plaid's docs say, fetching the key through plaid-vcr.

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

/// Upstream may send a webhook before plaid-vcr has its answer to the request that caused it
/// (here each answer comes 300 ms after its webhook): the webhook is still recorded after
/// that request, not after whatever was answered before it arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_overtakes_the_answer_that_caused_it_is_recorded_after_that_answer() {
    let (dirs, fake, mut recorder, app) = recording().await;
    fake.answer_causes_late(Duration::from_millis(300));
    flow(&recorder.base_url(), &app).await;
    let seen = app.webhooks().len();
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    fake.stop();
    assert_eq!(seen, 3);
    assert_eq!(recorded_after(&dirs), flow_causes());
    assert!(
        !recorder.stderr().contains("unanswered for"),
        "no webhook waited out the bound: {}",
        recorder.stderr()
    );
}

/// Webhooks that overtake their causes' answers, two at a time: each is recorded after its
/// own cause when that request left before the other (100 ms apart), and in the order they
/// arrived when both requests were unanswered at both arrivals (20 ms apart: each could be the
/// cause of either, and both follow the one answered last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_waiting_for_their_causes_follow_them_in_the_order_they_arrived() {
    let (dirs, fake, mut recorder, app) = recording().await;
    let base = recorder.base_url();
    let access_token = create_and_exchange(&base, &app).await;
    // Each answer comes 400 ms after its webhook (which leaves 50 ms after the request).
    fake.answer_causes_late(Duration::from_millis(400));
    let fire = |code: &'static str| {
        let body = json!({"access_token": access_token, "webhook_type": "ITEM", "webhook_code": code});
        let base = base.clone();
        async move { post(&base, "sandbox/item/fire_webhook", &body.to_string()).await }
    };
    let pair = |first: &'static str, second: &'static str, apart: u64| {
        let (one, two) = (fire(first), fire(second));
        async move {
            let two = async {
                tokio::time::sleep(Duration::from_millis(apart)).await;
                two.await
            };
            let (one, two) = tokio::join!(one, two);
            assert_eq!((one.status, two.status), (200, 200));
        }
    };
    pair("NEW_ACCOUNTS_AVAILABLE", "PENDING_EXPIRATION", 100).await;
    app.wait_for(3).await;
    pair("USER_PERMISSION_REVOKED", "LOGIN_REPAIRED", 20).await;
    app.wait_for(5).await;
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    fake.stop();

    // Which code each fire_webhook interaction asked for, by its index key.
    let mut asked: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for file in dirs
        .cassette_files()
        .iter()
        .filter(|f| f.starts_with("sandbox_item_fire_webhook"))
    {
        let i: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(file)).unwrap()).unwrap();
        let code = i["request"]["body"]["webhook_code"].as_str().unwrap().to_owned();
        asked.insert(i["key"].as_str().unwrap().to_owned(), code);
    }
    let placed: std::collections::HashMap<String, (String, u64)> = webhook_files(&dirs)
        .iter()
        .map(|file| {
            let w: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(file)).unwrap()).unwrap();
            let after = w["after"].as_str().unwrap_or("");
            let cause = asked.get(after).cloned().unwrap_or_else(|| format!("({after})"));
            (
                w["webhook_code"].as_str().unwrap().to_owned(),
                (cause, w["seq"].as_u64().unwrap()),
            )
        })
        .collect();
    let of = |code: &str| {
        placed
            .get(code)
            .cloned()
            .unwrap_or_else(|| panic!("{code} not recorded: {placed:?}"))
    };
    assert_eq!(of("NEW_ACCOUNTS_AVAILABLE").0, "NEW_ACCOUNTS_AVAILABLE", "{placed:?}");
    assert_eq!(of("PENDING_EXPIRATION").0, "PENDING_EXPIRATION", "{placed:?}");
    let (revoked, repaired) = (of("USER_PERMISSION_REVOKED"), of("LOGIN_REPAIRED"));
    assert_eq!(revoked.0, repaired.0, "both follow the same answer: {placed:?}");
    assert_eq!((revoked.1, repaired.1), (1, 2), "in the order they arrived: {placed:?}");
}

/// A webhook that arrives while an unrelated request to upstream hangs reaches the app at once;
/// its placing waits for that request only up to the bound, then says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_hanging_upstream_never_holds_back_a_webhook() {
    let (dirs, fake, mut recorder, app) = recording().await;
    let base = recorder.base_url();
    // Held upstream (answers that cause webhooks are never held) past the placing bound.
    fake.hold();
    let hanging = tokio::spawn({
        let (base, body) = (base.clone(), json!({"access_token": TOKEN}).to_string());
        async move { post(&base, "identity/get", &body).await }
    });
    for _ in 0..200 {
        if fake.calls("identity/get") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.calls("identity/get"), 1);
    let started = std::time::Instant::now();
    create_item(&base, &app).await;
    app.wait_for(1).await;
    let delivered_in = started.elapsed();
    assert!(
        delivered_in < plaid_vcr::receiver::PLACING_WAIT,
        "the app got the webhook after {delivered_in:?}"
    );
    // Recorded once the bound is over, after what was answered when it arrived.
    for _ in 0..100 {
        if webhook_files(&dirs).len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        recorded_after(&dirs),
        [(
            "SYNC_UPDATES_AVAILABLE".to_owned(),
            "sandbox/public_token/create".to_owned()
        )]
    );
    fake.release();
    assert_eq!(hanging.await.unwrap().status, 200);
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    assert!(recorder.stderr().contains("unanswered for 2s"), "{}", recorder.stderr());
}

/// The cassette's webhook files, relative to it.
fn webhook_files(dirs: &Dirs) -> Vec<std::path::PathBuf> {
    dirs.cassette_files()
        .into_iter()
        .filter(|f| f.starts_with("webhooks"))
        .collect()
}

fn cassette_text(dirs: &Dirs) -> String {
    dirs.cassette_files()
        .iter()
        .map(|f| std::fs::read_to_string(dirs.cassette().join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_recorded_live_and_replayed_signed_after_the_answers_that_caused_them() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.send_webhooks();

    // Record: plaid-vcr's own address is the receiver's public URL (a tunnel for real Plaid).
    let (mut recorder, public) = recorder(&dirs, &fake, &[]);
    let app = App::start(recorder.base_url()).await;
    let recorded_item = flow(&recorder.base_url(), &app).await;
    assert_eq!(recorded_item, ITEM_ID);
    assert_seen(&app, ITEM_ID);
    // The app has seen the last webhook; its status is still on the way back to upstream.
    for _ in 0..500 {
        if fake.webhook_statuses().len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.webhook_statuses(),
        [200, 200, 200],
        "upstream got the app's status"
    );
    let (first_url, second_url) = (app.url("/hooks/first"), app.url("/hooks/second"));
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    assert!(
        recorder
            .stderr()
            .contains("webhooks: 3 recorded, 0 delivered, 0 failed, 0 never delivered"),
        "{}",
        recorder.stderr()
    );
    // Upstream never saw the app's URL: plaid-vcr gave it its receiver's.
    for seen in fake.seen() {
        let body = String::from_utf8_lossy(&seen.body).into_owned();
        assert!(!body.contains(&first_url) && !body.contains(&second_url), "{body}");
    }
    fake.stop();

    // One file per webhook, after the interaction it followed, redacted like the interactions.
    let files = webhook_files(&dirs);
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        let w: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(file)).unwrap()).unwrap();
        assert_eq!(w["app_status"], 200);
    }
    assert_eq!(recorded_after(&dirs), flow_causes());
    let text = cassette_text(&dirs);
    for canary in [
        ITEM_ID,
        TOKEN,
        "public-sandbox-b0e2c4ee",
        &first_url,
        &second_url,
        &public,
    ] {
        assert!(!text.contains(canary), "{canary} reached the cassette");
    }
    let cassette = dirs.cassette().display().to_string();
    let (code, out, err) = run_binary(&["check", &cassette], dirs.root.path());
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_binary(&["scan", &cassette], dirs.root.path());
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run_binary(&["ls", &cassette], dirs.root.path());
    assert_eq!(code, 0);
    assert!(
        out.contains("TRANSACTIONS SYNC_UPDATES_AVAILABLE  sandbox/public_token/create"),
        "{out}"
    );
    assert!(out.contains("3 webhooks"), "{out}");

    // Replay, offline, twice, each with an app on a new port: the same webhooks, in order,
    // signed by plaid-vcr's key, byte-identical between runs.
    let mut runs = Vec::new();
    let report = dirs.root.path().join("report.json");
    let report_arg = report.display().to_string();
    for _ in 0..2 {
        let args = serve_args("replay", &dirs, None, &["--strict", "--report", &report_arg]);
        let mut replay = Binary::start(&args, &[], dirs.root.path());
        let app = App::start(replay.base_url()).await;
        let item = flow(&replay.base_url(), &app).await;
        assert_ne!(item, ITEM_ID, "the replayed item id is a pseudonym");
        runs.push(assert_seen(&app, &item));
        assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(
            report["webhooks"],
            json!({"recorded": 0, "delivered": 3, "failed": 0, "undelivered": []}),
            "{report:#}"
        );
        assert!(
            replay
                .stderr()
                .contains("webhooks: 0 recorded, 3 delivered, 0 failed, 0 never delivered"),
            "{}",
            replay.stderr()
        );
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_counted_and_fail_strict_and_unsent_ones_are_named() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;

    // Every delivery goes to a port nothing listens on: refused, retried, failed.
    let dead = format!("http://127.0.0.1:{}/hooks", free_port());
    let mut replay = Binary::start(
        &serve_args("replay", &dirs, None, &["--strict", "--webhook-target", &dead]),
        &[],
        dirs.root.path(),
    );
    let body = json!({"institution_id": "ins_109508", "initial_products": ["transactions"],
                      "options": {"webhook": "http://127.0.0.1:9/unused"}});
    let url = format!("{}/sandbox/public_token/create", replay.base_url());
    let resp = send("POST", &url, &CLIENT_HEADERS, body.to_string()).await;
    assert_eq!(
        (resp.status, resp.outcome()),
        (200, "hit"),
        "the answer never waits for a delivery"
    );
    // Shutdown waits for the queued delivery and its retries.
    assert_eq!(replay.signal_and_wait("TERM"), Some(1), "{}", replay.stderr());
    let stderr = replay.stderr();
    assert!(stderr.contains("webhook delivery failed"), "{stderr}");
    assert!(stderr.contains("attempts=3"), "{stderr}");
    assert!(
        stderr.contains("webhooks: 0 recorded, 0 delivered, 1 failed, 3 never delivered"),
        "{stderr}"
    );
    assert!(stderr.contains("undelivered webhook webhooks/"), "{stderr}");
    assert!(stderr.contains("1 webhook deliveries failed (--strict)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_webhook_urls_pass_through_and_the_receiver_refuses() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let mut recorder = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    let base = recorder.base_url();
    let hook = "http://127.0.0.1:9/app/hook";
    for _ in 0..2 {
        let body = json!({"institution_id": "ins_1", "initial_products": ["auth"], "options": {"webhook": hook}});
        let resp = send(
            "POST",
            &format!("{base}/sandbox/public_token/create"),
            &CLIENT_HEADERS,
            body.to_string(),
        )
        .await;
        assert_eq!(resp.status, 200);
    }
    let seen = fake.seen();
    assert!(
        seen.iter().all(|s| String::from_utf8_lossy(&s.body).contains(hook)),
        "forwarded unchanged"
    );
    let receiver = base.replace("/plaid-compatible", "/plaid-vcr/webhooks/0123456789abcdef");
    let resp = send("POST", &receiver, &[("content-type", "application/json")], "{}").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error_code"], "PLAID_VCR_UNKNOWN_WEBHOOK_RECEIVER");
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    let notices = recorder
        .stderr()
        .matches("pass --webhook-public-url URL to record them")
        .count();
    assert_eq!(notices, 1, "said once: {}", recorder.stderr());
    assert!(!dirs.cassette().join("webhooks").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flows_each_get_their_webhooks_delivered_and_verified() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;

    // 16 clients each create an item three times at once, against one app: 48 deliveries
    // through one queue, every one verified, none lost or doubled.
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let base = replay.base_url();
    let app = Arc::new(App::start(base.clone()).await);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (base, app) = (base.clone(), app.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    let body = json!({"institution_id": "ins_109508", "initial_products": ["transactions"],
                                      "options": {"webhook": app.url("/hooks/first")}});
                    let url = format!("{base}/sandbox/public_token/create");
                    let resp = send("POST", &url, &CLIENT_HEADERS, body.to_string()).await;
                    assert_eq!((resp.status, resp.outcome()), (200, "hit"));
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    app.wait_for(48).await;
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
    let webhooks = app.webhooks();
    assert_eq!(webhooks.len(), 48, "one SYNC_UPDATES_AVAILABLE per replayed create");
    let mut bodies = std::collections::HashSet::new();
    for w in &webhooks {
        let Event::Webhook {
            verified, code, body, ..
        } = w
        else {
            unreachable!()
        };
        assert_eq!(verified, &Ok(()));
        assert_eq!(code, "SYNC_UPDATES_AVAILABLE");
        bodies.insert(body.clone());
    }
    assert_eq!(
        bodies.len(),
        1,
        "every delivery of one recorded webhook has the same bytes"
    );
    assert!(
        replay
            .stderr()
            .contains("webhooks: 0 recorded, 48 delivered, 0 failed, 2 never delivered"),
        "{}",
        replay.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_raw_webhooks_and_redact_fixes_them_and_follows_re_keyed_interactions() {
    let dirs = Dirs::new();
    record_flow(&dirs, &["--no-redact"]).await;
    assert!(
        cassette_text(&dirs).contains(ITEM_ID),
        "--no-redact kept the real item id"
    );

    let cassette = dirs.cassette().display().to_string();
    let (code, out, _) = run_binary(&["scan", &cassette], dirs.root.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("webhooks/") && out.contains("unredacted-file"), "{out}");

    let store = dirs.store().display().to_string();
    let (code, out, err) = run_binary(&["redact", &cassette, "--store", &store], dirs.root.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("key changed"), "raw tokens re-key the interactions: {out}");
    let text = cassette_text(&dirs);
    assert!(!text.contains(ITEM_ID) && !text.contains(TOKEN), "redacted everywhere");
    assert!(!text.contains("\"unredacted\""), "markers cleared");
    // The webhooks still follow their (re-keyed) interactions: check finds no orphan, and a
    // replay delivers all three.
    let (code, out, err) = run_binary(&["check", &cassette], dirs.root.path());
    assert_eq!(code, 0, "{out}{err}");
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &["--strict"]), &[], dirs.root.path());
    let app = App::start(replay.base_url()).await;
    let item = flow(&replay.base_url(), &app).await;
    assert_seen(&app, &item);
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_clients_recording_at_once_lose_no_webhook_and_replay_delivers_them_all() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.send_webhooks();
    let (mut recorder, _) = recorder(&dirs, &fake, &[]);
    let base = recorder.base_url();
    let app = Arc::new(App::start(base.clone()).await);
    let create = |app: &App| {
        json!({"institution_id": "ins_109508", "initial_products": ["transactions"],
               "options": {"webhook": app.url("/hooks/first")}})
        .to_string()
    };
    // The same request from 16 clients at once: one interaction, 16 webhooks after it, received
    // and written concurrently.
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (url, body) = (format!("{base}/sandbox/public_token/create"), create(&app));
            tokio::spawn(async move { send("POST", &url, &CLIENT_HEADERS, body).await.status })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap(), 200);
    }
    app.wait_for(16).await;
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    assert!(
        recorder.stderr().contains("webhooks: 16 recorded"),
        "{}",
        recorder.stderr()
    );
    fake.stop();
    let files = webhook_files(&dirs);
    assert_eq!(files.len(), 16, "{files:?}");

    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let app = App::start(replay.base_url()).await;
    let url = format!("{}/sandbox/public_token/create", replay.base_url());
    assert_eq!(send("POST", &url, &CLIENT_HEADERS, create(&app)).await.status, 200);
    app.wait_for(16).await;
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
    assert!(
        replay
            .stderr()
            .contains("webhooks: 0 recorded, 16 delivered, 0 failed, 0 never delivered"),
        "{}",
        replay.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_nowhere_to_go_is_logged_once_and_replay_goes_on() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;

    // The app skips item creation (which registered the URL): the public token it exchanges
    // is the replayed one, read from the cassette.
    let create = dirs
        .cassette_files()
        .into_iter()
        .find(|f| f.starts_with("sandbox_public_token_create"))
        .unwrap();
    let created: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(create)).unwrap()).unwrap();
    let public_token = created["response"]["body"]["public_token"].as_str().unwrap().to_owned();
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let base = replay.base_url();
    let exchanged = send(
        "POST",
        &format!("{base}/item/public_token/exchange"),
        &CLIENT_HEADERS,
        json!({"public_token": public_token}).to_string(),
    )
    .await;
    let token = exchanged.json()["access_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let fired = send(
            "POST",
            &format!("{base}/sandbox/item/fire_webhook"),
            &CLIENT_HEADERS,
            json!({"access_token": token, "webhook_code": "DEFAULT_UPDATE"}).to_string(),
        )
        .await;
        assert_eq!((fired.status, fired.outcome()), (200, "hit"));
    }
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
    let stderr = replay.stderr();
    assert_eq!(
        stderr.matches("recorded webhooks have nowhere to go").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("webhooks: 0 recorded, 0 delivered, 0 failed, 3 never delivered"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_cassette_keyed_with_its_webhook_url_fails_loudly_and_redact_re_keys_it() {
    // Before webhook URLs stopped counting, the key covered them: such a file must not load as
    // if nothing changed (it would never match), and `plaid-vcr redact` must repair it.
    let dirs = Dirs::new();
    let body = r#"{"institution_id":"ins_109508","initial_products":["auth"],"options":{"webhook":"http://127.0.0.1:4000/hook"}}"#;
    record_into(&dirs, &[("sandbox/public_token/create", body)]).await;
    let file = dirs.cassette().join(&dirs.cassette_files()[0]);
    let mut interaction: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let old_canonical = json!({
        "body": interaction["request"]["body"],
        "endpoint": "sandbox/public_token/create",
        "plaid_version": interaction["plaid_version"],
        "v": 1,
    });
    let old_key: String = Sha256::digest(old_canonical.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    interaction["key"] = json!(old_key);
    std::fs::remove_file(&file).unwrap();
    let old_file = file.with_file_name(format!("{}.json", &old_key[..16]));
    std::fs::write(&old_file, serde_json::to_vec_pretty(&interaction).unwrap()).unwrap();

    let cassette = dirs.cassette().display().to_string();
    let (code, _, err) = run_binary(&serve_args("replay", &dirs, None, &[]), dirs.root.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("does not match its request") && err.contains("plaid-vcr redact DIR"),
        "{err}"
    );
    let store = dirs.store().display().to_string();
    let (code, out, err) = run_binary(&["redact", &cassette, "--store", &store], dirs.root.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("key changed"), "{out}");
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    // Another app port than when recording: still the same recording.
    let moved = body.replace("4000", "5123");
    let resp = send(
        "POST",
        &format!("{}/sandbox/public_token/create", replay.base_url()),
        &CLIENT_HEADERS,
        moved,
    )
    .await;
    assert_eq!((resp.status, resp.outcome()), (200, "hit"), "{:?}", resp.body);
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_missing_records_live_webhooks_and_delivers_recorded_ones_on_hits() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.send_webhooks();
    // Session 1: every request misses, is forwarded and recorded, and so are its webhooks.
    let (mut session, _) = recorder_as("replay", &dirs, &fake, &["--record-missing"]);
    let app = App::start(session.base_url()).await;
    let item = flow(&session.base_url(), &app).await;
    assert_seen(&app, &item);
    assert_eq!(session.signal_and_wait("TERM"), Some(0), "{}", session.stderr());
    assert!(
        session.stderr().contains("webhooks: 3 recorded"),
        "{}",
        session.stderr()
    );
    assert_eq!(webhook_files(&dirs).len(), 3);
    drop(app);

    // Session 2, upstream still there but never needed: every request hits, and the recorded
    // webhooks are delivered, signed by plaid-vcr, as in plain replay.
    let calls = fake.total_calls();
    let (mut session, _) = recorder_as("replay", &dirs, &fake, &["--record-missing"]);
    let app = App::start(session.base_url()).await;
    let item = flow(&session.base_url(), &app).await;
    assert_seen(&app, &item);
    assert_eq!(session.signal_and_wait("TERM"), Some(0), "{}", session.stderr());
    assert!(
        session
            .stderr()
            .contains("webhooks: 0 recorded, 3 delivered, 0 failed, 0 never delivered"),
        "{}",
        session.stderr()
    );
    // The app's key fetches (plaid-vcr's own key id) are answered by plaid-vcr itself.
    assert_eq!(fake.total_calls(), calls, "every request was a hit");
}
