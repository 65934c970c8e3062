//! Failures are loud: a damaged store surfaces instead of reading as "no recordings", an
//! answer without a token fails `sandbox-token`, and no request body, however odd, makes the
//! pipeline panic or answer 5xx.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use plaid_vcr::Mode;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};

use crate::support::*;

const BODY: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;

/// Damages every entry of the cassette's index in the store past its file name: the file still
/// answers hits, but what the entry says about the recording is not a recording, as a damaged
/// disk or another plaid-vcr version might leave it.
fn damage_store_meta(dirs: &Dirs) {
    let damaged = plaid_vcr::testing::store_doctor::damage_index(&dirs.store(), &dirs.cassette());
    assert!(damaged > 0, "the store indexes the cassette's recordings");
}

#[tokio::test]
async fn a_damaged_store_fails_miss_diagnosis_and_the_summary_instead_of_reading_as_empty() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", BODY)]).await;
    damage_store_meta(&dirs);

    let mut binary = Binary::start(
        &serve_args("replay", &dirs, None, &["--fail-on-unused"]),
        &[],
        dirs.root.path(),
    );
    let base = binary.base_url();
    // Hits still answer: the index is intact.
    let hit = send("POST", &format!("{base}/identity/get"), &CLIENT_HEADERS, BODY).await;
    assert_eq!(hit.outcome(), "hit");
    // A miss cannot be explained from a damaged store: it says so instead of "nothing recorded".
    let miss = send(
        "POST",
        &format!("{base}/identity/get"),
        &CLIENT_HEADERS,
        r#"{"access_token":"access-sandbox-other"}"#,
    )
    .await;
    assert_eq!(miss.status, 500, "{:?}", miss.body);
    assert_eq!(miss.json()["error_code"], "PLAID_VCR_STORE_ERROR");
    assert!(miss.json()["error_message"].as_str().unwrap().contains("unreadable"));
    // The summary cannot say what was unused: exit 2 with the reason, not a clean 0.
    assert_eq!(binary.signal_and_wait("TERM"), Some(2), "{}", binary.stderr());
    let stderr = binary.stderr();
    assert!(stderr.contains("plaid-vcr: store entry"), "{stderr}");
    assert!(stderr.contains("delete the store directory"), "{stderr}");
}

#[tokio::test]
async fn sandbox_token_fails_when_the_answer_holds_no_token() {
    let fake = FakePlaid::start().await;
    fake.reply(
        "sandbox/public_token/create",
        Reply {
            status: 200,
            body: json!({"request_id": "x"}),
        },
    );
    let dirs = Dirs::new();
    let args = serve_args("sandbox-token", &dirs, Some(&fake), &[]);
    let cwd = dirs.root.path().to_owned();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_binary_with(&args, &[("PLAID_CLIENT_ID", "id"), ("PLAID_SECRET", "secret")], &cwd)
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "no empty token printed: {stdout}");
    assert!(
        stderr.contains("plaid-vcr: sandbox/public_token/create answered without a public_token"),
        "{stderr}"
    );
    assert_eq!(fake.calls("item/public_token/exchange"), 0);
}

/// Field names the pipeline treats specially, mixed with arbitrary ones.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "access_token",
            "access_tokens",
            "public_token",
            "client_id",
            "secret",
            "options",
            "account_ids",
            "user",
            "legal_name",
            "email_address",
            "phone_number",
            "address",
            "webhook",
            "count",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// Any JSON: every type in every place, nesting, huge and tiny numbers, odd unicode.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "access-sandbox-[0-9a-f-]{0,40}".prop_map(Value::String),
        "[a-z.]{1,10}@[a-z]{1,8}\\.com".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A request body as bytes: a JSON object of any fields, any JSON at all, or text that only
/// looks like JSON (numbers past f64, nesting past the parser's limit, broken UTF-8).
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec((field_name(), json_value()), 0..8)
            .prop_map(|fields| Value::Object(fields.into_iter().collect()).to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (1usize..400).prop_map(|depth| format!("{{\"options\":{}1{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes()),
        1 => "[0-9]{20,400}".prop_map(|n| format!("{{\"access_token\":{n},\"count\":{n}e999}}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

#[test]
fn arbitrary_request_bodies_get_a_400_or_a_miss_never_a_panic_or_a_5xx() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dirs = Dirs::new();
    runtime.block_on(record_into(&dirs, &[("identity/get", BODY)]));
    let proxy = Arc::new(plaid_vcr::testing::open_proxy(&config(&dirs, None), Mode::Replay).unwrap());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    let credentials = prop_oneof![Just(true), Just(false)];
    runner
        .run(&(body_bytes(), credentials), |(body, with_credentials)| {
            let mut request = http::Request::post("/plaid-compatible/identity/get")
                .header("content-type", "application/json")
                .header("plaid-version", "2020-09-14");
            if with_credentials {
                request = request.header("plaid-client-id", "id").header("plaid-secret", "secret");
            }
            let request = request.body(Full::new(Bytes::from(body))).unwrap();
            let response = runtime.block_on(proxy.clone().handle(request));
            let status = response.status().as_u16();
            let bytes = runtime.block_on(response.into_body().collect()).unwrap().to_bytes();
            prop_assert!(matches!(status, 400 | 404), "status {} for {:?}", status, bytes);
            let answer: Value = serde_json::from_slice(&bytes).expect("a JSON body");
            prop_assert_eq!(&answer["error_type"], "INVALID_REQUEST");
            prop_assert!(answer["error_code"].is_string());
            prop_assert!(answer["request_id"].is_string());
            if status == 404 {
                prop_assert_eq!(&answer["error_code"], "PLAID_VCR_NO_RECORDING");
            }
            Ok(())
        })
        .unwrap();
}
