//! Plaid's contract: `plaid-vcr validate` over cassettes, as a user runs it. Plaid's own examples
//! for every endpoint of the pinned spec are recorded through the fake and hold (nothing beyond
//! the allow-list of quirks), redaction keeps every answer valid, and each kind of violation
//! planted in a cassette is named with its file, endpoint, part, path and rule.

use std::path::{Path, PathBuf};

use plaid_vcr::testing::contract::{Contract, Part, Severity};
use plaid_vcr::testing::redact::{Redactor, RequestPii};
use plaid_vcr::testing::rules;
use plaid_vcr::Mode;
use serde_json::{json, Value};

use crate::support::{config, plaid, record_into, run_binary, start, Dirs, FakePlaid, Reply, IDENTITY_RESPONSE, TOKEN};

const CORPUS: &str = include_str!("../corpus/plaid_examples.json");
/// A request for every operation: the spec's example, else the smallest body its schema
/// accepts (tools/plaid_contract.py), as a mock of Plaid's spec sees them.
const REQUESTS: &str = include_str!("../corpus/plaid_requests.json");

/// Every answer example of the corpus with its operation's request: (endpoint, request, answer).
pub fn examples() -> Vec<(String, Value, Value)> {
    let corpus: Value = serde_json::from_str(CORPUS).unwrap();
    let requests: Value = serde_json::from_str(REQUESTS).unwrap();
    corpus["examples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["response"].is_object())
        .map(|e| {
            let endpoint = e["endpoint"].as_str().unwrap();
            let request = requests["requests"][endpoint].clone();
            assert!(request.is_object(), "{endpoint} has a request");
            (endpoint.to_owned(), request, e["response"].clone())
        })
        .collect()
}

/// `plaid-vcr validate ARGS… --format json`: the exit code and the report.
fn validate(args: &[&str], cwd: &Path) -> (i32, Value) {
    let mut all: Vec<&str> = vec!["validate", "--format", "json"];
    all.extend(args);
    let (code, stdout, stderr) = run_binary(&all, cwd);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    (code, report)
}

fn errors(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect()
}

/// Records Plaid's example of every endpoint through the fake (each answer as the fake's,
/// each request as a mock of the spec sends it) into a new cassette; returns how many.
pub async fn record_examples(dirs: &Dirs) -> usize {
    let fake = FakePlaid::start().await;
    let examples = examples();
    for (endpoint, _, answer) in &examples {
        let reply = Reply {
            status: 200,
            body: answer.clone(),
        };
        fake.reply(endpoint, reply);
    }
    let proxy = start(&config(dirs, Some(&fake)), Mode::Record).await;
    for (endpoint, request, _) in &examples {
        let resp = plaid(&proxy, endpoint, &request.to_string()).await;
        assert_eq!((resp.status, resp.outcome()), (200, "recorded"), "{endpoint}");
    }
    proxy.stop().await.unwrap();
    examples.len()
}

#[tokio::test]
async fn plaids_examples_for_every_endpoint_record_and_validate_beyond_the_allow_list() {
    let dirs = Dirs::new();
    let recorded = record_examples(&dirs).await;
    let cassette = dirs.cassette();
    let (code, report) = validate(&[cassette.to_str().unwrap()], dirs.root.path());
    assert_eq!(
        errors(&report),
        Vec::<&Value>::new(),
        "no finding beyond the allow-list"
    );
    assert_eq!(code, 0);
    assert_eq!(report["spec"], "2020-09-14_1.697.4");
    assert_eq!(report["files_checked"], recorded);
    assert_eq!(report["bodies_checked"], 2 * recorded);
    // The warnings are the quirks of the allow-list (Plaid's own example for /signal/evaluate
    // leaves out a field its spec requires), each with its reason.
    for warning in report["findings"].as_array().unwrap() {
        assert!(warning["reason"].as_str().unwrap().len() > 20, "{warning}");
    }
    assert_eq!(report["warnings"], 4, "{report}");
}

/// What `record` writes is valid whenever what Plaid sent was: for every example, redaction
/// adds no violation (checked on the bodies directly, both sides).
#[test]
fn redaction_keeps_every_answer_of_plaids_examples_valid() {
    let contract = Contract::builtin();
    let redactor = Redactor::new(rules::builtin(), RequestPii::Placeholder, b"k");
    let (mut answers, mut requests) = (0, 0);
    for (endpoint, request, answer) in examples() {
        let before = contract.check(&endpoint, Part::Response, 200, &answer).unwrap();
        let after = contract
            .check(&endpoint, Part::Response, 200, &redactor.response(&endpoint, answer))
            .unwrap();
        assert_eq!(
            before, after,
            "{endpoint}: redaction changed what the spec says of the answer"
        );
        answers += 1;
        let request = redactor.request(&endpoint, request.as_object().unwrap().clone());
        let after = contract
            .check(&endpoint, Part::Request, 0, &Value::Object(request))
            .unwrap();
        assert!(
            after.iter().all(|v| v.severity == Severity::Warning),
            "{endpoint}: {after:?}"
        );
        requests += 1;
    }
    assert_eq!((answers, requests), (310, 310));
}

/// Records one identity/get and returns the cassette and its one file.
async fn one_recording() -> (Dirs, PathBuf) {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", &format!(r#"{{"access_token":"{TOKEN}"}}"#))]).await;
    let file = dirs.cassette().join(&dirs.cassette_files()[0]);
    (dirs, file)
}

fn edit(file: &Path, change: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    change(&mut value);
    std::fs::write(file, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

#[tokio::test]
async fn each_kind_of_violation_planted_in_a_cassette_is_named() {
    let (dirs, file) = one_recording().await;
    let cassette = dirs.cassette();
    let cassette = cassette.to_str().unwrap();
    let (code, report) = validate(&[cassette], dirs.root.path());
    assert_eq!((code, report["errors"].as_u64()), (0, Some(0)), "{report}");
    assert_eq!(
        serde_json::from_str::<Value>(IDENTITY_RESPONSE).unwrap()["accounts"][0]["type"],
        "depository"
    );

    edit(&file, |v| {
        let answer = &mut v["response"]["body"];
        answer["accounts"][0]["balances"]["current"] = json!("110"); // type
        answer["accounts"][0].as_object_mut().unwrap().remove("account_id"); // required
        answer["accounts"][0]["type"] = json!("spaceship"); // enum: drift, a warning
        answer["item"]["consent_expiration_time"] = json!("yesterday"); // format date-time
        v["request"]["body"]["options"] = json!({"account_ids": "one"}); // the app's request
    });
    let (code, report) = validate(&[cassette], dirs.root.path());
    assert_eq!(code, 1, "{report}");
    let named: Vec<(String, String, String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["endpoint"], "identity/get");
            assert!(f["file"].as_str().unwrap().ends_with(".json"));
            let s = |k: &str| f[k].as_str().unwrap().to_owned();
            (s("part"), s("path"), s("rule"), s("severity"))
        })
        .collect();
    let has = |part: &str, path: &str, rule: &str, severity: &str| {
        assert!(
            named.contains(&(part.into(), path.into(), rule.into(), severity.into())),
            "{part} {path} {rule} {severity} not in {named:#?}"
        )
    };
    has("response", "accounts[0].balances.current", "type", "error");
    has("response", "accounts[0]", "required", "error");
    has("response", "accounts[0].type", "enum", "warning");
    has("response", "item.consent_expiration_time", "format", "error");
    has("request", "options.account_ids", "type", "error");
    let drift = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "enum")
        .unwrap();
    assert!(drift["reason"].as_str().unwrap().contains("\"spaceship\""), "{drift}");

    // The text form names the same, one line each, and says what to do.
    let (code, text, _) = run_binary(&["validate", cassette], dirs.root.path());
    assert_eq!(code, 1);
    assert!(
        text.contains(
            "identity/get response: accounts[0].balances.current: type: expected null or number, found string"
        ),
        "{text}"
    );
    assert!(text.lines().last().unwrap().contains("findings"), "{text}");
}

#[tokio::test]
async fn error_answers_are_held_to_plaid_error_and_webhooks_to_their_schema() {
    let (dirs, file) = one_recording().await;
    edit(&file, |v| {
        v["response"]["status"] = json!(400);
        v["response"]["body"] = json!({"error_type": "INVALID_INPUT", "error_code": 3, "request_id": "r"});
    });
    let webhooks = dirs.cassette().join("webhooks");
    std::fs::create_dir_all(&webhooks).unwrap();
    let hook = json!({"format": 1, "after": "k", "delay_ms": 0,
        "webhook": {"body": {"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": 5}}});
    std::fs::write(webhooks.join("0001.json"), hook.to_string()).unwrap();
    let cassette = dirs.cassette();
    let (code, report) = validate(&[cassette.to_str().unwrap()], dirs.root.path());
    assert_eq!(code, 1, "{report}");
    let found = |part: &str, path: &str, rule: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["part"] == part && f["path"] == path && f["rule"] == rule)
    };
    assert!(found("response", "error_code", "type"), "{report}");
    assert!(found("response", "", "required"), "{report}");
    assert!(found("webhook", "item_id", "type"), "{report}");
}

#[tokio::test]
async fn a_spec_file_in_yaml_replaces_the_builtin_one_and_bad_input_exits_2() {
    let (dirs, _) = one_recording().await;
    let spec = dirs.root.path().join("spec.yml");
    // An older spec that knows identity/get with an answer that must carry `owners_total`.
    std::fs::write(
        &spec,
        "openapi: 3.0.0\ninfo:\n  version: '2020-09-14_0.1'\n  title: t\npaths:\n  /identity/get:\n    post:\n      responses:\n        '200':\n          content:\n            application/json:\n              schema:\n                $ref: '#/components/schemas/R'\ncomponents:\n  schemas:\n    R:\n      type: object\n      required: [owners_total]\n      properties:\n        owners_total:\n          type: integer\n          nullable: true\n",
    )
    .unwrap();
    let cassette = dirs.cassette();
    let (code, report) = validate(
        &[cassette.to_str().unwrap(), "--spec", spec.to_str().unwrap()],
        dirs.root.path(),
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["spec"], "2020-09-14_0.1");
    assert_eq!(report["findings"][0]["expected"], "the field owners_total");
    // The config file's `spec` does the same.
    std::fs::write(dirs.root.path().join("plaid-vcr.toml"), "spec = \"spec.yml\"\n").unwrap();
    let (code, report) = validate(&[cassette.to_str().unwrap()], dirs.root.path());
    assert_eq!((code, report["spec"].as_str()), (1, Some("2020-09-14_0.1")));
    std::fs::remove_file(dirs.root.path().join("plaid-vcr.toml")).unwrap();

    let (code, _, stderr) = run_binary(&["validate", "nowhere"], dirs.root.path());
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("plaid-vcr: cassette directory nowhere does not exist"),
        "{stderr}"
    );
    std::fs::write(&spec, "openapi: 2.0\n").unwrap();
    let (code, _, stderr) = run_binary(
        &["validate", cassette.to_str().unwrap(), "--spec", spec.to_str().unwrap()],
        dirs.root.path(),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("is not an OpenAPI 3.0 document"), "{stderr}");
}
