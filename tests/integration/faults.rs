//! Failures on demand: Plaid's documented errors and network faults, asked for per request
//! (`Plaid-VCR-Fault`) or by a session's rules, in replay and in record; never sent upstream,
//! never recorded; reported.

use plaid_vcr::Mode;
use serde_json::{json, Value};

use crate::support::*;

const BODY: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;

/// POSTs `body` to `endpoint`, in `session` if given, with extra headers.
async fn ask(base: &str, session: Option<&str>, endpoint: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = CLIENT_HEADERS.to_vec();
    if let Some(name) = session {
        headers.push(("plaid-vcr-session", name));
    }
    headers.extend_from_slice(extra);
    send("POST", &format!("{base}/{endpoint}"), &headers, body.to_string()).await
}

/// POSTs `BODY` to `endpoint` with a `Plaid-VCR-Fault: fault` header, in no session.
async fn with_fault(base: &str, endpoint: &str, fault: &str) -> Resp {
    ask(base, None, endpoint, BODY, &[("plaid-vcr-fault", fault)]).await
}

/// A replay of `identity/get` and `accounts/get` recorded through the fake.
async fn replaying(dirs: &Dirs) -> plaid_vcr::RunningServer {
    record_into(dirs, &[("identity/get", BODY), ("accounts/get", BODY)]).await;
    start(&config(dirs, None), Mode::Replay).await
}

/// `PlaidError` of the pinned spec (plaid-openapi 2020-09-14.yml, commit 26f1a05): its required
/// fields and the JSON type of every field it has.
fn assert_plaid_error(body: &Value) {
    for required in ["error_type", "error_code", "error_message", "display_message"] {
        assert!(body.get(required).is_some(), "{required} missing: {body}");
    }
    type Check = fn(&Value) -> bool;
    let types: [(&str, Check); 7] = [
        ("error_type", Value::is_string),
        ("error_code", Value::is_string),
        ("error_message", Value::is_string),
        ("display_message", |v| v.is_string() || v.is_null()),
        ("request_id", Value::is_string),
        ("documentation_url", Value::is_string),
        ("suggested_action", |v| v.is_string() || v.is_null()),
    ];
    for (field, ok) in types {
        assert!(
            body.get(field).is_some_and(ok),
            "{field} is not what PlaidError says: {body}"
        );
    }
}

#[tokio::test]
async fn a_fault_header_answers_plaids_own_error_and_unknown_ones_name_the_close_matches() {
    let dirs = Dirs::new();
    let replay = replaying(&dirs).await;
    let base = replay.base_url();
    let login = with_fault(&base, "accounts/get", "ITEM_LOGIN_REQUIRED").await;
    assert_eq!((login.status, login.outcome()), (400, "fault"));
    let body = login.json();
    assert_plaid_error(&body);
    assert_eq!(
        (body["error_type"].as_str(), body["error_code"].as_str()),
        (Some("ITEM_ERROR"), Some("ITEM_LOGIN_REQUIRED"))
    );
    assert!(body["display_message"].is_null());
    let again = with_fault(&base, "accounts/get", "ITEM_LOGIN_REQUIRED").await;
    assert_ne!(again.json()["request_id"], body["request_id"], "a fresh request_id");

    let limited = with_fault(&base, "accounts/get", "RATE_LIMIT_EXCEEDED").await;
    assert_eq!(
        (limited.status, limited.json()["error_code"].as_str()),
        (429, Some("ACCOUNTS_LIMIT"))
    );
    let down = with_fault(&base, "identity/get", "INTERNAL_SERVER_ERROR").await;
    assert_eq!(
        (down.status, down.json()["error_type"].as_str()),
        (500, Some("API_ERROR"))
    );

    let unknown = with_fault(&base, "identity/get", "ITEM_LOGIN_REQIRED").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["error_code"], "PLAID_VCR_UNKNOWN_FAULT");
    assert!(unknown.json()["error_message"]
        .as_str()
        .unwrap()
        .contains("did you mean ITEM_LOGIN_REQUIRED"));
    // A cached hit of the same request is not what a fault header gets.
    assert_eq!(ask(&base, None, "identity/get", BODY, &[]).await.outcome(), "hit");
    assert_eq!(ask(&base, None, "identity/get", BODY, &[]).await.outcome(), "hit");
    let faulted = with_fault(&base, "identity/get", "PRODUCT_NOT_READY").await;
    assert_eq!(faulted.json()["error_code"], "PRODUCT_NOT_READY");

    let summary = replay.stop().await.unwrap();
    let fired: Vec<&str> = summary.faults.iter().map(|f| f.fault.as_str()).collect();
    assert_eq!(
        fired,
        [
            "ITEM_LOGIN_REQUIRED",
            "ITEM_LOGIN_REQUIRED",
            "ACCOUNTS_LIMIT",
            "INTERNAL_SERVER_ERROR",
            "PRODUCT_NOT_READY"
        ]
    );
    assert!(
        summary.render().contains("  fault ACCOUNTS_LIMIT on accounts/get"),
        "{}",
        summary.render()
    );
}

#[tokio::test]
async fn session_rules_fire_after_n_requests_for_times_and_item_login_required_sticks_until_removed() {
    let dirs = Dirs::new();
    let replay = replaying(&dirs).await;
    let base = replay.base_url();
    let api = format!("http://{}/plaid-vcr/sessions/t/login/faults", replay.local_addr());
    let rule = json!({"error_code": "ITEM_LOGIN_REQUIRED", "endpoint": "/accounts/get", "after": 2, "times": 1});
    let added = send("POST", &api, &[("content-type", "application/json")], rule.to_string()).await;
    assert_eq!(added.status, 200, "{:?}", added.body);
    let code = |resp: Resp| {
        (
            resp.outcome().to_owned(),
            resp.json()["error_code"].as_str().map(str::to_owned),
        )
    };
    let session = Some("t/login");
    assert_eq!(code(ask(&base, session, "accounts/get", BODY, &[]).await).0, "hit");
    assert_eq!(
        code(ask(&base, session, "identity/get", BODY, &[]).await).0,
        "hit",
        "another endpoint"
    );
    assert_eq!(code(ask(&base, session, "accounts/get", BODY, &[]).await).0, "hit");
    assert_eq!(
        code(ask(&base, session, "accounts/get", BODY, &[]).await),
        ("fault".into(), Some("ITEM_LOGIN_REQUIRED".into()))
    );
    // The item now needs a new login: every later request with its token fails, whatever the rule's
    // times, until the rule goes; update mode's link token still works, other sessions never fail.
    assert_eq!(
        code(ask(&base, session, "identity/get", BODY, &[]).await).1.as_deref(),
        Some("ITEM_LOGIN_REQUIRED")
    );
    assert_eq!(ask(&base, None, "identity/get", BODY, &[]).await.outcome(), "hit");
    assert_eq!(
        ask(&base, Some("t/other"), "accounts/get", BODY, &[]).await.outcome(),
        "hit"
    );
    let listed = send("GET", &api, &[], "").await.json();
    assert_eq!(
        (
            listed["faults"][0]["seen"].as_u64(),
            listed["faults"][0]["fired"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(
        send("DELETE", &api, &[], "").await.json()["removed"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ask(&base, session, "identity/get", BODY, &[]).await.outcome(),
        "hit",
        "fixed"
    );

    let bad = send("POST", &api, &[], r#"{"error_code": "NOPE"}"#).await;
    assert_eq!(
        (bad.status, bad.json()["error_code"].as_str()),
        (400, Some("PLAID_VCR_UNKNOWN_FAULT"))
    );
    let malformed = send("POST", &api, &[], r#"{"code": "X"}"#).await;
    assert_eq!(malformed.json()["error_code"], "PLAID_VCR_INVALID_FAULT_RULE");
    let report = send(
        "GET",
        &format!("http://{}/plaid-vcr/sessions/t/login", replay.local_addr()),
        &[],
        "",
    )
    .await
    .json();
    assert_eq!(report["faults"].as_array().unwrap().len(), 2, "{report}");
    replay.stop().await.unwrap();
}

/// Sixteen sessions at once, each with its own rule: each fails exactly as its rule says, and
/// never as another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_in_parallel_each_get_their_own_faults() {
    let dirs = Dirs::new();
    let replay = replaying(&dirs).await;
    let (base, origin) = (replay.base_url(), format!("http://{}", replay.local_addr()));
    const CODES: [&str; 4] = [
        "ITEM_LOGIN_REQUIRED",
        "PRODUCT_NOT_READY",
        "INSTITUTION_DOWN",
        "INTERNAL_SERVER_ERROR",
    ];
    let tests: Vec<_> = (0..16)
        .map(|n| {
            let (base, origin) = (base.clone(), origin.clone());
            tokio::spawn(async move {
                let name = format!("par/t{n:02}");
                let code = CODES[n % CODES.len()];
                let rule = json!({"error_code": code, "endpoint": "identity/get", "after": n % 3, "times": 2});
                let added = send(
                    "POST",
                    &format!("{origin}/plaid-vcr/sessions/{name}/faults"),
                    &[],
                    rule.to_string(),
                )
                .await;
                assert_eq!(added.status, 200);
                let mut seen = Vec::new();
                for _ in 0..6 {
                    let resp = ask(&base, Some(&name), "identity/get", BODY, &[]).await;
                    seen.push(resp.json()["error_code"].as_str().unwrap_or("-").to_owned());
                }
                (n, code, seen)
            })
        })
        .collect();
    for test in tests {
        let (n, code, seen) = test.await.unwrap();
        let mut expected = vec!["-".to_owned(); 6];
        let first = n % 3;
        let stuck = code == "ITEM_LOGIN_REQUIRED";
        for (i, slot) in expected.iter_mut().enumerate().skip(first) {
            if i < first + 2 || stuck {
                *slot = code.to_owned();
            }
        }
        assert_eq!(seen, expected, "session {n} ({code})");
    }
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn network_faults_delay_reset_truncate_and_time_out() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", BODY)]).await;
    let mut cfg = config(&dirs, None);
    cfg.client_timeout = std::time::Duration::from_millis(500);
    let replay = start(&cfg, Mode::Replay).await;
    let base = replay.base_url();
    let delayed = with_fault(&base, "identity/get", "delay=50").await;
    assert_eq!(
        (delayed.status, delayed.outcome()),
        (200, "hit"),
        "a late answer is still the answer"
    );
    let url = format!("{base}/identity/get");
    let headers = |fault: &'static str| [CLIENT_HEADERS.as_slice(), &[("plaid-vcr-fault", fault)]].concat();
    for fault in ["reset", "timeout"] {
        let err = try_send("POST", &url, &headers(fault), BODY).await.expect_err(fault);
        assert!(err.contains("request failed"), "{fault}: no answer at all: {err}");
    }
    let err = try_send("POST", &url, &headers("truncate"), BODY)
        .await
        .expect_err("truncate");
    assert!(
        err.contains("answer cut short"),
        "the head came, the body was cut: {err}"
    );
    assert_eq!(
        ask(&base, None, "identity/get", BODY, &[]).await.outcome(),
        "hit",
        "and plaid-vcr goes on"
    );
    let summary = replay.stop().await.unwrap();
    let fired: Vec<&str> = summary.faults.iter().map(|f| f.fault.as_str()).collect();
    assert_eq!(fired, ["delay=50", "reset", "timeout", "truncate"]);
}

#[tokio::test]
async fn in_record_a_faulted_request_never_reaches_upstream_and_nothing_is_recorded() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let mut cfg = config(&dirs, Some(&fake));
    // Every session (and the default one) starts with the config's rules.
    cfg.faults =
        vec![serde_json::from_value(json!({"error_code": "PRODUCT_NOT_READY", "endpoint": "accounts/get"})).unwrap()];
    let recorder = start(&cfg, Mode::Record).await;
    let base = recorder.base_url();
    let faulted = with_fault(&base, "identity/get", "INSTITUTION_DOWN").await;
    assert_eq!((faulted.status, faulted.outcome()), (400, "fault"));
    for session in [None, Some("cfg/a"), Some("cfg/b")] {
        let first = ask(&base, session, "accounts/get", BODY, &[]).await;
        assert_eq!(first.json()["error_code"], "PRODUCT_NOT_READY", "{session:?}");
        assert_eq!(
            ask(&base, session, "accounts/get", BODY, &[]).await.outcome(),
            "recorded",
            "{session:?}"
        );
    }
    recorder.stop().await.unwrap();
    assert_eq!((fake.calls("identity/get"), fake.calls("accounts/get")), (0, 3));
    assert!(
        dirs.cassette_files().iter().all(|f| !f.starts_with("identity_get")),
        "{:?}",
        dirs.cassette_files()
    );
}

#[tokio::test]
async fn in_record_missing_a_faulted_miss_is_not_recorded_and_a_faulted_hit_not_answered() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    record_into(&dirs, &[("identity/get", BODY)]).await;
    let calls = fake.total_calls();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::ReplayRecordMissing).await;
    let base = proxy.base_url();
    let hit = with_fault(&base, "identity/get", "INSTITUTION_DOWN").await;
    assert_eq!((hit.status, hit.outcome()), (400, "fault"));
    let miss = with_fault(&base, "accounts/get", "PRODUCT_NOT_READY").await;
    assert_eq!(
        (miss.status, miss.json()["error_code"].as_str()),
        (400, Some("PRODUCT_NOT_READY"))
    );
    assert_eq!(ask(&base, None, "identity/get", BODY, &[]).await.outcome(), "hit");
    let summary = proxy.stop().await.unwrap();
    assert_eq!(fake.total_calls(), calls, "nothing faulted reached upstream");
    assert!(summary.recorded.is_empty(), "{:?}", summary.recorded);
    assert_eq!(summary.faults.len(), 2);
}
