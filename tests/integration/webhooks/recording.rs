//! What recording makes of webhooks: files after the answers that caused them, pass-through
//! without a public URL, many clients at once, `scan`/`redact`, and `--record-missing`.

use serde_json::{json, Value};

use super::*;
use crate::support::*;

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

    // --shift-dates: a replayed webhook's dates move by the days since its recording, as the
    // answers' do; every other byte stays.
    let recorded_on = time::OffsetDateTime::now_utc().date();
    let today = (recorded_on + time::Duration::days(365)).to_string();
    let args = serve_args("replay", &dirs, None, &["--shift-dates", "--today", &today]);
    let mut replay = Binary::start(&args, &[], dirs.root.path());
    let app = App::start(replay.base_url()).await;
    let item = flow(&replay.base_url(), &app).await;
    let shifted = assert_seen(&app, &item);
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    let (before, after): (Vec<_>, Vec<_>) = (runs[0].iter().map(text).collect(), shifted.iter().map(text).collect());
    let moved = plaid_vcr::testing::dates::shift_str("2030-01-01T00:00:00Z", 365).unwrap();
    assert_eq!(
        before.iter().filter(|b| b.contains("\"2030-01-01T00:00:00Z\"")).count(),
        1,
        "{before:?}"
    );
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(
            after,
            &before.replace("2030-01-01T00:00:00Z", &moved),
            "only the date moved"
        );
    }
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

/// The live check against Plaid's spec covers what upstream sends too: the fake's webhooks of
/// the spec pass, and one the spec does not describe is drift, counted in the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_checked_against_plaids_spec_as_they_arrive() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.send_webhooks();
    let (mut recorder, _) = recorder(&dirs, &fake, &[]);
    let app = App::start(recorder.base_url()).await;
    flow(&recorder.base_url(), &app).await;
    let fired = post(
        &recorder.base_url(),
        "sandbox/item/fire_webhook",
        &json!({"access_token": TOKEN, "webhook_type": "TELEPATHY", "webhook_code": "NOT_A_CODE"}).to_string(),
    )
    .await;
    assert_eq!(fired.status, 200);
    app.wait_for(4).await;
    assert_eq!(app.webhooks().len(), 4);
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    let stderr = recorder.stderr();
    assert!(
        stderr.contains("warning webhook webhook (body): webhook (expected a webhook of the spec) ×1"),
        "{stderr}"
    );
    assert!(!stderr.contains("violation webhook"), "{stderr}");
    fake.stop();
}
