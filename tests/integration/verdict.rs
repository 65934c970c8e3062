//! One redaction verdict for `record`, `redact` and `scan`: on any body, `scan` reports exactly
//! the values redaction changes, and nothing after it; a placeholder with nothing personal in
//! it is left by both; a personal value Plaid echoes elsewhere in an answer goes everywhere.
//! Checked as a property over generated answers, on Plaid's KYB example recorded through
//! plaid-vcr, and on every example recorded with a mock's placeholder requests.

use std::collections::BTreeSet;
use std::path::Path;

use plaid_vcr::testing::redact::{Redactor, RequestPii};
use plaid_vcr::testing::rules;
use plaid_vcr::testing::scan::{ScanConfig, Scanner};
use plaid_vcr::Mode;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::contract::{examples, record_examples};
use crate::support::*;

/// Values of every sort: personal, pseudonyms already, placeholders, bare words, echo-shaped.
const POOL: [&str; 14] = [
    "Jane Q Public",
    "string",
    "Alvane Ashcombe",
    "+1 415 867 5309",
    "555-0123",
    "jane@mail.com",
    "a1@example.net",
    "123 Main St.",
    "Unit 42",
    "US",
    "4158675309",
    "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6",
    "",
    "Pawnee",
];

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(POOL.to_vec()).prop_map(str::to_owned)
}

/// An identity/get answer with a value of the pool at each personal field, and two free
/// fields (where only detectors and echoes reach).
fn answer() -> impl Strategy<Value = Value> {
    prop::collection::vec(value(), 7).prop_map(|v| {
        json!({
            "accounts": [{"owners": [{
                "names": [v[0]],
                "phone_numbers": [{"data": v[1], "primary": true, "type": "home"}],
                "emails": [{"data": v[2], "primary": true, "type": "primary"}],
                "addresses": [{"data": {"street": v[3], "city": v[4], "country": "US"}, "primary": true}],
            }]}],
            "memo": v[5],
            "match_details": {"street": v[6]},
            "request_id": "m8MDnv9okwxFNBV",
        })
    })
}

/// An identity/match request with a value of the pool at each personal field and a free one.
fn request() -> impl Strategy<Value = Value> {
    prop::collection::vec(value(), 5).prop_map(|v| {
        json!({
            "access_token": "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6",
            "user": {"legal_name": v[0], "phone_number": v[1], "email_address": v[2],
                     "address": {"street": v[3], "city": "Pawnee", "country": "US"}},
            "client_user_id": v[4],
        })
    })
}

fn file(body: &Value) -> Vec<u8> {
    file_of("identity/get", &json!({}), body)
}

fn file_of(endpoint: &str, request: &Value, answer: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "endpoint": endpoint,
        "request": {"body": request},
        "response": {"body": answer, "content_type": "application/json", "status": 200},
    }))
    .unwrap()
}

/// The paths (as `scan` names them) of the strings that differ between two answers.
fn changed(before: &Value, after: &Value, at: &str, out: &mut BTreeSet<String>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let path = format!("{at}.{k}");
                changed(v, &b[k], &path, out);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                changed(x, y, &format!("{at}[{i}]"), out);
            }
        }
        (x, y) if x != y => {
            out.insert(at.to_owned());
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The shared verdict, both ways: what scan reports is what redaction changes, under any
    /// secret; after redaction scan finds nothing.
    #[test]
    fn scan_reports_exactly_what_redaction_changes(body in answer(), secret in prop::sample::select(vec![&b"one"[..], &b"two"[..]])) {
        let rules = rules::builtin();
        let config = ScanConfig::default();
        let scanner = Scanner::new(&rules, &config);
        let redactor = Redactor::new(rules::builtin(), RequestPii::Placeholder, secret);
        let redacted = redactor.response("identity/get", body.clone());
        let reported: BTreeSet<String> =
            scanner.file(Path::new("f.json"), &file(&body)).into_iter().map(|f| f.path).collect();
        let mut differs = BTreeSet::new();
        changed(&body, &redacted, "response.body", &mut differs);
        prop_assert_eq!(&reported, &differs);
        let after = scanner.file(Path::new("f.json"), &file(&redacted));
        prop_assert!(after.is_empty(), "{:?}", after);
        prop_assert_eq!(redactor.response("identity/get", redacted.clone()), redacted, "idempotent");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The same on the request side, where personal data is keyed (`request_pii = "keyed"`:
    /// with placeholders, redaction also rewrites what is no leak, for the key's sake).
    #[test]
    fn scan_reports_exactly_what_redaction_changes_in_a_request(body in request()) {
        let rules = rules::builtin();
        let config = ScanConfig::default();
        let scanner = Scanner::new(&rules, &config);
        let redactor = Redactor::new(rules::builtin(), RequestPii::Keyed, b"one");
        let redacted = Value::Object(redactor.request("identity/match", body.as_object().unwrap().clone()));
        let reported: BTreeSet<String> = scanner
            .file(Path::new("f.json"), &file_of("identity/match", &body, &json!({})))
            .into_iter()
            .map(|f| f.path)
            .collect();
        let mut differs = BTreeSet::new();
        changed(&body, &redacted, "request.body", &mut differs);
        prop_assert_eq!(&reported, &differs);
        let after = scanner.file(Path::new("f.json"), &file_of("identity/match", &redacted, &json!({})));
        prop_assert!(after.is_empty(), "{:?}", after);
    }
}

#[test]
fn a_placeholder_under_a_personal_field_is_left_by_redaction_and_by_scan() {
    let body = json!({"accounts": [{"owners": [{"phone_numbers": [{"data": "string"}], "names": ["string"]}]}]});
    let rules = rules::builtin();
    let config = ScanConfig::default();
    let findings = Scanner::new(&rules, &config).file(Path::new("f.json"), &file(&body));
    let paths: Vec<&str> = findings.iter().map(|f| f.path.as_str()).collect();
    // A phone with no digit has nothing to hide; "string" as a name is a name to both.
    assert_eq!(paths, ["response.body.accounts[0].owners[0].names[0]"]);
    let redacted = Redactor::new(rules::builtin(), RequestPii::Placeholder, b"k").response("identity/get", body);
    assert_eq!(
        redacted["accounts"][0]["owners"][0]["phone_numbers"][0]["data"],
        "string"
    );
    assert_ne!(redacted["accounts"][0]["owners"][0]["names"][0], "string");
}

/// Plaid's KYB answer repeats the searched address in `match_details`: recorded through
/// plaid-vcr, neither appearance survives, and the file is clean for `scan`.
#[tokio::test]
async fn an_echoed_personal_value_is_redacted_everywhere_in_a_recorded_answer() {
    let (endpoint, request, answer) = examples()
        .into_iter()
        .find(|(e, _, _)| e == "business_verification/create")
        .unwrap();
    let street = answer["search_terms"]["address"]["street"].as_str().unwrap().to_owned();
    assert_eq!(
        answer["kyb_check"]["match_details"]["addresses"][0]["street"],
        street.as_str()
    );
    let fake = FakePlaid::start().await;
    fake.reply(
        &endpoint,
        Reply {
            status: 200,
            body: answer,
        },
    );
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    assert_eq!(
        plaid(&proxy, &endpoint, &request.to_string()).await.outcome(),
        "recorded"
    );
    proxy.stop().await.unwrap();
    let text = std::fs::read_to_string(dirs.cassette().join(&dirs.cassette_files()[0])).unwrap();
    for value in [street.as_str(), "Unit 42", "+14025671234", "+12345678909"] {
        assert!(!text.contains(value), "{value} survived in {text}");
    }
    let cassette = dirs.cassette();
    let (code, out, _) = run_binary(&["scan", cassette.to_str().unwrap()], dirs.root.path());
    assert_eq!(code, 0, "{out}");
}

/// Every example recorded with a mock's requests (`"string"` wherever a string goes) is clean
/// for `scan` as `record` wrote it, and `redact` has nothing left to change.
#[tokio::test]
async fn a_cassette_record_wrote_from_plaids_examples_is_clean_for_scan_and_redact() {
    let dirs = Dirs::new();
    record_examples(&dirs).await;
    let cassette = dirs.cassette();
    let cassette = cassette.to_str().unwrap();
    let (code, out, _) = run_binary(&["scan", cassette], dirs.root.path());
    assert_eq!(code, 0, "{out}");
    let contents = || -> Vec<Vec<u8>> {
        let files = dirs.cassette_files();
        files
            .iter()
            .map(|f| std::fs::read(dirs.cassette().join(f)).unwrap())
            .collect()
    };
    let before = contents();
    let store = dirs.store();
    let (code, out, err) = run_binary(
        &["redact", cassette, "--store", store.to_str().unwrap()],
        dirs.root.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(before == contents(), "redact changed a file record wrote: {out}");
}
