//! The live contract check: while recording, each request and answer is held to Plaid's spec
//! as it passes; `replay --validate` does the same for replayed answers. Findings reach the
//! client (`Plaid-VCR-Violations`), the summary and each session's report, exactly counted
//! under concurrent sessions; `--strict` fails the run on a request the app got wrong; the
//! log names path and rule, never the value.

use plaid_vcr::Mode;
use serde_json::{json, Value};

use crate::support::*;

/// A request identity/get's schema refuses (`account_ids` is an array), with a value to look
/// for in logs.
const BAD_REQUEST: &str = r#"{"access_token":"access-sandbox-x","options":{"account_ids":"acct-LEAKME-7"}}"#;
const GOOD_REQUEST: &str = r#"{"access_token":"access-sandbox-x"}"#;

fn violations(resp: &Resp) -> Vec<Value> {
    match resp.headers.get("plaid-vcr-violations") {
        None => Vec::new(),
        Some(v) => serde_json::from_str::<Vec<Value>>(v.to_str().unwrap()).unwrap(),
    }
}

fn in_session(session: &str) -> Vec<(&str, &str)> {
    let mut headers = CLIENT_HEADERS.to_vec();
    headers.push(("plaid-vcr-session", session));
    headers
}

/// The fake's identity/get answer with one field of the wrong type.
fn bad_answer() -> Value {
    let mut answer: Value = serde_json::from_str(IDENTITY_RESPONSE).unwrap();
    answer["accounts"][0]["balances"]["current"] = json!("110");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_names_each_violation_in_a_header_and_counts_it_per_session_under_concurrency() {
    let fake = FakePlaid::start().await;
    fake.reply(
        "identity/get",
        Reply {
            status: 200,
            body: bad_answer(),
        },
    );
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let base = proxy.base_url();
    // 16 sessions at once, each sending the bad request 3 times and a good one once.
    let mut tasks = Vec::new();
    for n in 0..16 {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("t{n}");
            let mut seen = Vec::new();
            for body in [BAD_REQUEST, BAD_REQUEST, BAD_REQUEST, GOOD_REQUEST] {
                let resp = send("POST", &format!("{base}/identity/get"), &in_session(&name), body).await;
                assert_eq!(resp.status, 200, "the answer is unchanged");
                seen.push(violations(&resp));
            }
            seen
        }));
    }
    for task in tasks {
        let seen = task.await.unwrap();
        for found in &seen[..3] {
            let rules: Vec<(&str, &str, &str)> = found
                .iter()
                .map(|v| {
                    (
                        v["part"].as_str().unwrap(),
                        v["path"].as_str().unwrap(),
                        v["rule"].as_str().unwrap(),
                    )
                })
                .collect();
            assert!(rules.contains(&("request", "options.account_ids", "type")), "{found:?}");
            assert!(
                rules.contains(&("response", "accounts[0].balances.current", "type")),
                "{found:?}"
            );
            assert!(found
                .iter()
                .all(|v| v.get("found").is_none() && v["severity"] == "error"));
        }
        let last: Vec<&str> = seen[3].iter().map(|v| v["part"].as_str().unwrap()).collect();
        assert_eq!(last, ["response"], "the good request has only the answer's violation");
    }
    let summary = proxy.stop().await.unwrap();
    // Counted from the report's JSON, as `--report FILE` writes it.
    let count = |seen: &dyn erased::Ser, part: &str| -> u64 {
        let seen = seen.json();
        seen.as_array()
            .unwrap()
            .iter()
            .filter(|s| s["part"] == part)
            .map(|s| s["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count(&summary.violations, "request"), 16 * 3);
    assert_eq!(count(&summary.violations, "response"), 16 * 4);
    assert_eq!(summary.sessions.len(), 16);
    for report in summary.sessions.values() {
        assert_eq!(
            (
                count(&report.violations, "request"),
                count(&report.violations, "response")
            ),
            (3, 4)
        );
    }
    assert!(summary
        .render()
        .contains("violation identity/get request options.account_ids: type"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_strict_fails_on_a_bad_request_and_the_log_never_shows_the_value() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut recorder = Binary::start(
        &serve_args("record", &dirs, Some(&fake), &["--strict"]),
        &[],
        dirs.root.path(),
    );
    let resp = post(&recorder.base_url(), "identity/get", BAD_REQUEST).await;
    assert_eq!((resp.status, resp.outcome()), (200, "recorded"));
    assert_eq!(violations(&resp).len(), 1, "only the request breaks the spec");
    assert_eq!(recorder.signal_and_wait("TERM"), Some(1), "{}", recorder.stderr());
    let stderr = recorder.stderr();
    assert!(stderr.contains("breaks Plaid's spec"), "{stderr}");
    assert!(stderr.contains("options.account_ids"), "{stderr}");
    assert!(
        stderr.contains("violations of Plaid's spec in requests the app sent (--strict)"),
        "{stderr}"
    );
    assert!(!stderr.contains("LEAKME"), "never a value in the log: {stderr}");

    // Without --strict the run passes; with --no-validate nothing is checked.
    let mut recorder = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    assert_eq!(
        violations(&post(&recorder.base_url(), "identity/get", BAD_REQUEST).await).len(),
        1
    );
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    let mut recorder = Binary::start(
        &serve_args("record", &dirs, Some(&fake), &["--no-validate", "--strict"]),
        &[],
        dirs.root.path(),
    );
    assert!(violations(&post(&recorder.base_url(), "identity/get", BAD_REQUEST).await).is_empty());
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));

    // A spec that cannot be read stops the start, with what to do.
    let (code, _, stderr) = run_binary(
        &serve_args("record", &dirs, Some(&fake), &["--spec", "nowhere.yml"]),
        dirs.root.path(),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("plaid-vcr: cannot read the spec nowhere.yml"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_validate_catches_a_hand_edited_cassette() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", GOOD_REQUEST)]).await;
    let file = dirs.cassette().join(&dirs.cassette_files()[0]);
    let mut recorded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    recorded["response"]["body"]["item"]["item_id"] = json!(42);
    std::fs::write(&file, serde_json::to_vec_pretty(&recorded).unwrap()).unwrap();
    std::fs::remove_dir_all(dirs.store()).unwrap();

    let plain = start(&config(&dirs, None), Mode::Replay).await;
    let resp = plaid(&plain, "identity/get", GOOD_REQUEST).await;
    assert_eq!(resp.outcome(), "hit");
    assert!(violations(&resp).is_empty(), "replay checks nothing unless asked");
    plain.stop().await.unwrap();

    let mut cfg = config(&dirs, None);
    cfg.validate = Some(true);
    let checking = start(&cfg, Mode::Replay).await;
    for _ in 0..2 {
        let resp = plaid(&checking, "identity/get", GOOD_REQUEST).await;
        assert_eq!((resp.status, resp.outcome()), (200, "hit"));
        let found = violations(&resp);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0]["path"].as_str(), found[0]["rule"].as_str()),
            (Some("item.item_id"), Some("type"))
        );
    }
    let summary = checking.stop().await.unwrap();
    assert_eq!(
        summary.violations[0].count, 2,
        "every hit is checked, none from a cache"
    );
}

mod erased {
    /// Anything serializable, as JSON: lets one closure count any report's violations.
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}
