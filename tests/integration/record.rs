//! Recording through the fake Plaid over TLS, and replaying what was recorded.

use std::time::Duration;

use http::Version;
use plaid_vcr::Interaction;
use plaid_vcr::Mode;
use serde_json::Value;

use crate::support::*;

const WITH_IDS: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6","options":{"account_ids":["BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp"]}}"#;
const WITHOUT_IDS: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;

#[tokio::test]
async fn recording_then_replaying_offline_gives_identical_bodies_and_no_upstream_calls() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let recorded_with = plaid(&proxy, "identity/get", WITH_IDS).await;
    let recorded_without = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_eq!(recorded_with.status, 200, "{:?}", recorded_with.body);
    assert_eq!(recorded_with.outcome(), "recorded");
    assert_eq!(recorded_without.outcome(), "recorded");
    assert_eq!(recorded_with.json()["accounts"].as_array().unwrap().len(), 2);
    assert_ne!(
        recorded_with.key(),
        recorded_without.key(),
        "account_ids are part of the key"
    );
    assert_eq!(fake.calls("identity/get"), 2);
    proxy.stop().await.unwrap();
    fake.stop();
    let calls_after_recording = fake.total_calls();

    // Same store, then a fresh store that must be rebuilt from the cassette files alone: both
    // answer the same bytes, every time.
    let mut answers: Vec<bytes::Bytes> = Vec::new();
    for store in [dirs.store(), dirs.root.path().join("fresh-store")] {
        let mut cfg = config(&dirs, Some(&fake));
        cfg.store = store;
        let replay = start(&cfg, Mode::Replay).await;
        let cases = [(WITH_IDS, &recorded_with), (WITHOUT_IDS, &recorded_without)];
        for (i, (body, recorded)) in cases.into_iter().enumerate() {
            let first = plaid(&replay, "identity/get", body).await;
            let second = plaid(&replay, "identity/get", body).await;
            assert_eq!(first.status, 200);
            assert_eq!(first.outcome(), "hit");
            assert_eq!(first.body, second.body, "byte for byte the same every time");
            match answers.get(i) {
                Some(earlier) => assert_eq!(&first.body, earlier, "a rebuilt store answers the same bytes"),
                None => answers.push(first.body.clone()),
            }
            // What was recorded, redacted: same shape, same request_id, no personal data.
            assert_same_shape(&recorded.json(), &first.json());
            assert_eq!(first.json()["request_id"], recorded.json()["request_id"]);
            assert!(!String::from_utf8_lossy(&first.body).contains("Alberta"));
            assert_eq!(first.headers["content-type"], "application/json; charset=utf-8");
        }
        replay.stop().await.unwrap();
    }
    assert_eq!(
        fake.total_calls(),
        calls_after_recording,
        "replay never reached upstream"
    );
}

#[tokio::test]
async fn cassette_files_are_one_sorted_pretty_json_per_interaction_without_credentials() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let body = r#"{"client_id":"0123456789abcdef01234567","secret":"0123456789abcdef0123456789abcd","access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;
    let resp = plaid(&proxy, "identity/get", body).await;
    proxy.stop().await.unwrap();

    let files = dirs.cassette_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let key = resp.key();
    assert_eq!(
        files[0],
        std::path::Path::new("identity_get").join(format!("{}.json", &key[..16]))
    );
    let bytes = std::fs::read(dirs.cassette().join(&files[0])).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    for secret in [
        "0123456789abcdef01234567",
        "0123456789abcdef0123456789abcd",
        "client_id",
        "\"secret\"",
    ] {
        assert!(!text.contains(secret), "{secret} reached the cassette");
    }
    let interaction = Interaction::from_file_bytes(&bytes).unwrap();
    interaction.validate().unwrap();
    assert_eq!(interaction.key, key);
    assert_eq!(interaction.endpoint, "identity/get");
    assert_eq!(interaction.plaid_version.as_deref(), Some("2020-09-14"));
    assert_eq!(interaction.response.status, 200);
    assert!(
        interaction.response.body.is_object(),
        "response body is JSON, not an escaped string"
    );
    assert_eq!(
        interaction.to_file_bytes(),
        bytes,
        "the file is exactly the canonical serialization"
    );
    assert!(
        text.starts_with("{\n  \"endpoint\""),
        "pretty-printed with sorted keys:\n{text}"
    );
}

#[tokio::test]
async fn forwarding_keeps_headers_body_bytes_and_the_upstream_path_prefix() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut cfg = config(&dirs, Some(&fake));
    cfg.upstream = format!("{}/prefix/", fake.url());
    let proxy = start(&cfg, Mode::Record).await;
    let body = "{ \"access_token\" : \"access-sandbox-x\" }";
    let mut headers = CLIENT_HEADERS.to_vec();
    headers.push(("accept-encoding", "gzip, br"));
    headers.push(("connection", "keep-alive"));
    let resp = send("POST", &format!("{}/identity/get", proxy.base_url()), &headers, body).await;
    assert_eq!(resp.status, 200);
    proxy.stop().await.unwrap();

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.path, "/prefix/identity/get");
    assert_eq!(
        seen.body,
        body.as_bytes(),
        "body bytes forwarded unchanged, no field added"
    );
    for (name, value) in CLIENT_HEADERS {
        assert_eq!(
            seen.headers.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name}"
        );
    }
    assert_eq!(seen.headers["accept-encoding"], "identity");
    assert!(seen.headers.get("connection").is_none());
    if seen.version == Version::HTTP_11 {
        assert_eq!(seen.headers["host"], fake.addr.to_string().as_str());
    }
}

#[tokio::test]
async fn upstream_is_reached_over_http2_when_offered_and_http1_otherwise() {
    for (alpn, expected) in [
        (vec![b"h2".to_vec(), b"http/1.1".to_vec()], Version::HTTP_2),
        (vec![b"http/1.1".to_vec()], Version::HTTP_11),
    ] {
        let fake = FakePlaid::start_with_alpn(alpn).await;
        let dirs = Dirs::new();
        let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
        let resp = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        proxy.stop().await.unwrap();
        assert_eq!(fake.seen()[0].version, expected);
    }
}

#[tokio::test]
async fn upstream_4xx_is_recorded_and_replayed_with_its_status() {
    let fake = FakePlaid::start().await;
    fake.reply(
        "identity/get",
        Reply {
            status: 400,
            body: invalid_access_token(),
        },
    );
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let recorded = plaid(&proxy, "identity/get", r#"{"access_token":"access-sandbox-revoked"}"#).await;
    assert_eq!(recorded.status, 400);
    assert_eq!(recorded.outcome(), "recorded");
    proxy.stop().await.unwrap();

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let replayed = plaid(&replay, "identity/get", r#"{"access_token":"access-sandbox-revoked"}"#).await;
    assert_eq!(replayed.status, 400);
    assert_eq!(replayed.outcome(), "hit");
    assert_eq!(replayed.json()["error_code"], "INVALID_ACCESS_TOKEN");
    assert_eq!(replayed.body, recorded.body);
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn upstream_5xx_and_429_are_passed_through_but_not_recorded() {
    for status in [500, 503, 429] {
        let fake = FakePlaid::start().await;
        fake.reply(
            "identity/get",
            Reply {
                status,
                body: serde_json::json!({"error_type": "API_ERROR", "error_code": "INTERNAL_SERVER_ERROR"}),
            },
        );
        let dirs = Dirs::new();
        let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
        let resp = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
        assert_eq!(resp.status, status);
        assert_eq!(resp.outcome(), "forwarded");
        assert_eq!(resp.json()["error_code"], "INTERNAL_SERVER_ERROR");
        proxy.stop().await.unwrap();
        assert!(dirs.cassette_files().is_empty(), "{status} was recorded");

        let replay = start(&config(&dirs, None), Mode::Replay).await;
        assert_eq!(plaid(&replay, "identity/get", WITHOUT_IDS).await.outcome(), "miss");
        replay.stop().await.unwrap();
    }
}

#[tokio::test]
async fn unreachable_upstream_gives_502_and_stores_nothing() {
    let dirs = Dirs::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = config(&dirs, None);
    cfg.upstream = format!("https://127.0.0.1:{port}");
    let proxy = start(&cfg, Mode::Record).await;
    let resp = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_eq!(resp.status, 502);
    let body = resp.json();
    assert_eq!(body["error_type"], "API_ERROR");
    assert_eq!(body["error_code"], "PLAID_VCR_UPSTREAM_UNREACHABLE");
    assert!(body["hint"].is_string());
    proxy.stop().await.unwrap();
    assert!(dirs.cassette_files().is_empty());

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    assert_eq!(plaid(&replay, "identity/get", WITHOUT_IDS).await.outcome(), "miss");
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_refused_with_502() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut cfg = config(&dirs, Some(&fake));
    cfg.upstream_ca = None;
    let proxy = start(&cfg, Mode::Record).await;
    let resp = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.json()["error_message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("certificate"),
        "{:?}",
        resp.json()
    );
    assert_eq!(fake.total_calls(), 0);
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_upstream_gives_504_and_stores_nothing() {
    let fake = FakePlaid::start().await;
    fake.delay(Duration::from_secs(3));
    let dirs = Dirs::new();
    let mut cfg = config(&dirs, Some(&fake));
    cfg.response_timeout = Duration::from_millis(300);
    let proxy = start(&cfg, Mode::Record).await;
    let resp = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.json()["error_code"], "PLAID_VCR_UPSTREAM_TIMEOUT");
    proxy.stop().await.unwrap();
    assert!(dirs.cassette_files().is_empty());
}

#[tokio::test]
async fn record_missing_answers_hits_from_the_cassette_and_records_misses() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let first = plaid(&proxy, "identity/get", WITH_IDS).await;
    proxy.stop().await.unwrap();

    let proxy = start(&config(&dirs, Some(&fake)), Mode::ReplayRecordMissing).await;
    let hit = plaid(&proxy, "identity/get", WITH_IDS).await;
    assert_eq!(hit.outcome(), "hit");
    assert_same_shape(&first.json(), &hit.json());
    assert_eq!(hit.json()["request_id"], first.json()["request_id"]);
    assert_eq!(fake.calls("identity/get"), 1);
    let new = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_eq!(new.outcome(), "recorded");
    assert_eq!(fake.calls("identity/get"), 2);
    let again = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_eq!(again.outcome(), "hit");
    assert_eq!(again.json()["request_id"], new.json()["request_id"]);
    assert_eq!(fake.calls("identity/get"), 2);
    proxy.stop().await.unwrap();
    assert_eq!(dirs.cassette_files().len(), 2);
}

#[tokio::test]
async fn recording_again_overwrites_the_same_key() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let first = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    let second = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_ne!(first.body, second.body, "the fake answers a new request_id each time");
    proxy.stop().await.unwrap();
    assert_eq!(dirs.cassette_files().len(), 1);

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let replayed = plaid(&replay, "identity/get", WITHOUT_IDS).await.json();
    assert_eq!(
        replayed["request_id"],
        second.json()["request_id"],
        "the later recording won"
    );
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn every_endpoint_goes_through_the_same_pipeline() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let create = r#"{"institution_id":"ins_109508","initial_products":["identity","auth"]}"#;
    let created = plaid(&proxy, "sandbox/public_token/create", create).await;
    let exchanged = plaid(
        &proxy,
        "item/public_token/exchange",
        r#"{"public_token":"public-sandbox-b0e2c4ee-a763-4df5-bfe9-46a46bce993d"}"#,
    )
    .await;
    assert_eq!((created.outcome(), exchanged.outcome()), ("recorded", "recorded"));
    proxy.stop().await.unwrap();
    let files: Vec<String> = dirs
        .cassette_files()
        .iter()
        .map(|p| p.parent().unwrap().display().to_string())
        .collect();
    assert_eq!(files, ["item_public_token_exchange", "sandbox_public_token_create"]);

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let again = plaid(&replay, "sandbox/public_token/create", create).await;
    assert_eq!(again.outcome(), "hit");
    assert_eq!(again.json()["request_id"], created.json()["request_id"]);
    let token = again.json()["public_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("public-sandbox-"), "{token}");
    assert_ne!(
        token,
        created.json()["public_token"].as_str().unwrap(),
        "the token is pseudonymized"
    );
    let token: Value = exchanged.json()["access_token"].clone();
    assert!(token.as_str().unwrap().starts_with("access-sandbox-"));
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_recording_finish_and_keeps_it() {
    let fake = FakePlaid::start().await;
    // Upstream holds the answer until the shutdown is under way: exact on any machine.
    fake.hold();
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let (base, addr) = (proxy.base_url(), proxy.local_addr());
    let in_flight =
        tokio::spawn(async move { send("POST", &format!("{base}/identity/get"), &CLIENT_HEADERS, WITHOUT_IDS).await });
    for _ in 0..1000 {
        if fake.total_calls() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.total_calls(), 1, "the request is at upstream");
    let stopping = tokio::spawn(proxy.stop());
    // The shutdown has started once the listener is gone; the request is still held.
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    assert!(!in_flight.is_finished());
    fake.release();
    let resp = in_flight.await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.outcome(), "recorded");
    let summary = stopping.await.unwrap().unwrap();
    assert_eq!(summary.recorded.len(), 1);
    assert_eq!(dirs.cassette_files().len(), 1);
}

#[tokio::test]
async fn an_upstream_that_accepts_but_never_answers_times_out_with_504() {
    // Accepts TCP and then says nothing: not even a TLS handshake.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let dirs = Dirs::new();
    let mut cfg = config(&dirs, None);
    cfg.upstream = format!("https://{addr}");
    cfg.response_timeout = Duration::from_millis(300);
    let proxy = start(&cfg, Mode::Record).await;
    let resp = plaid(&proxy, "identity/get", WITHOUT_IDS).await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.json()["error_code"], "PLAID_VCR_UPSTREAM_TIMEOUT");
    proxy.stop().await.unwrap();
    holder.abort();
    assert!(dirs.cassette_files().is_empty());
}
