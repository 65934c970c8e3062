//! Replay matching: what hits, what misses, and what a miss tells the caller.

use plaid_vcr::Mode;

use crate::support::*;

/// Records one identity/get with two account_ids and returns the dirs and the recorded answer.
async fn recorded_session() -> (Dirs, Resp) {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let body = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6","options":{"account_ids":["acc_1","acc_2"]}}"#;
    let resp = plaid(&proxy, "identity/get", body).await;
    assert_eq!(resp.outcome(), "recorded");
    proxy.stop().await.unwrap();
    (dirs, resp)
}

#[tokio::test]
async fn reordered_keys_whitespace_account_ids_order_and_credentials_still_hit() {
    let (dirs, recorded) = recorded_session().await;
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let variants = [
        // python's json.dumps spacing, keys reordered
        r#"{"options": {"account_ids": ["acc_2", "acc_1"]}, "access_token": "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#,
        // duplicates, newlines, credentials in the body as well
        "{\n  \"client_id\": \"other-client\",\n  \"secret\": \"other-secret\",\n  \"access_token\": \"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6\",\n  \"options\": {\"account_ids\": [\"acc_1\", \"acc_2\", \"acc_1\"]}\n}",
    ];
    for body in variants {
        let resp = plaid(&replay, "identity/get", body).await;
        assert_eq!(resp.outcome(), "hit", "{body}: {:?}", resp.body);
        assert_eq!(resp.key(), recorded.key());
        assert_eq!(resp.json()["request_id"], recorded.json()["request_id"]);
    }
    // A client whose base path ends in "/" sends //identity/get.
    let resp = send(
        "POST",
        &format!("{}//identity/get", replay.base_url()),
        &CLIENT_HEADERS,
        variants[0].to_string(),
    )
    .await;
    assert_eq!(resp.outcome(), "hit");
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn another_token_or_other_options_miss_with_the_key_and_a_hint() {
    let (dirs, recorded) = recorded_session().await;
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let misses = [
        r#"{"access_token":"access-sandbox-00000000-0000-0000-0000-000000000000","options":{"account_ids":["acc_1","acc_2"]}}"#,
        r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6","options":{"account_ids":["acc_1"]}}"#,
        r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#,
    ];
    for body in misses {
        let resp = plaid(&replay, "identity/get", body).await;
        assert_eq!(resp.status, 404, "{body}");
        assert_eq!(resp.outcome(), "miss");
        let err = resp.json();
        assert_eq!(err["error_type"], "INVALID_REQUEST");
        assert_eq!(err["error_code"], "PLAID_VCR_NO_RECORDING");
        assert_eq!(err["key"].as_str().unwrap(), resp.key());
        assert_ne!(err["key"].as_str().unwrap(), recorded.key());
        assert!(err["hint"].as_str().unwrap().contains("--record-missing"), "{err}");
        assert!(err["display_message"].is_null());
        assert_eq!(err["request_id"].as_str().unwrap().len(), 15);
        assert!(
            !resp.body.windows(16).any(|w| w == b"access-sandbox-0"),
            "the token is not echoed back"
        );
    }
    // A different Plaid-Version is a different request.
    let mut headers = CLIENT_HEADERS.to_vec();
    headers.retain(|(name, _)| *name != "plaid-version");
    let body = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6","options":{"account_ids":["acc_1","acc_2"]}}"#;
    let resp = send("POST", &format!("{}/identity/get", replay.base_url()), &headers, body).await;
    assert_eq!(resp.outcome(), "miss");
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn replay_of_a_missing_cassette_directory_fails_at_start() {
    let dirs = Dirs::new();
    let err = plaid_vcr::Server::bind(&config(&dirs, None), Mode::Replay)
        .await
        .err()
        .expect("start fails");
    let message = err.to_string();
    assert!(message.contains(&dirs.cassette().display().to_string()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn a_repeated_request_answers_exactly_like_the_first_and_is_still_checked_each_time() {
    let dirs = Dirs::new();
    let body = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;
    record_into(&dirs, &[("identity/get", body)]).await;
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    // The first goes through the full pipeline; the next ones through the exact cache.
    let first = plaid(&replay, "identity/get", body).await;
    for _ in 0..3 {
        let again = plaid(&replay, "identity/get", body).await;
        assert_eq!((again.status, again.outcome(), again.key()), (200, "hit", first.key()));
        assert_eq!(again.body, first.body, "byte for byte");
        assert_eq!(again.headers["content-type"], first.headers["content-type"]);
    }
    let url = format!("{}/identity/get", replay.base_url());
    // What the cache cannot remember is checked on every request: credentials...
    let no_credentials = send(
        "POST",
        &url,
        &[("content-type", "application/json"), ("plaid-version", "2020-09-14")],
        body,
    )
    .await;
    assert_eq!(no_credentials.status, 400);
    assert_eq!(no_credentials.json()["error_code"], "MISSING_FIELDS");
    // ...the content type, and the Plaid-Version (another version is another request).
    let mut text = CLIENT_HEADERS.to_vec();
    text[0] = ("content-type", "text/plain");
    assert_eq!(
        send("POST", &url, &text, body).await.json()["error_code"],
        "INVALID_BODY"
    );
    let mut other_version = CLIENT_HEADERS.to_vec();
    other_version[3] = ("plaid-version", "2019-05-29");
    assert_eq!(send("POST", &url, &other_version, body).await.outcome(), "miss");
    let summary = replay.stop().await.unwrap();
    assert_eq!(
        (summary.requests, summary.hits, summary.misses.len(), summary.errors),
        (7, 4, 1, 2)
    );
    assert!(summary.unused.is_empty(), "counted as used once, by the first hit");
}
