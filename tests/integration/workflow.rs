//! The CI workflow: misses that explain themselves, summaries and reports, strict exit codes,
//! sequences, expiry, `ls` and `check`.

use plaid_vcr::config::SequenceEnd;
use plaid_vcr::Mode;
use serde_json::{json, Value};

use crate::support::*;

const RECORDED: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6","options":{"account_ids":["acc_1","acc_2"]}}"#;
const OTHER_IDS: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6","options":{"account_ids":["acc_1","acc_3"]}}"#;

#[tokio::test]
async fn a_miss_names_the_closest_recording_and_the_differing_fields_in_body_and_log() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", RECORDED)]).await;
    let mut binary = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let base = binary.base_url();
    // No Plaid-Version, other account_ids.
    let headers = [
        ("content-type", "application/json"),
        ("plaid-client-id", "c"),
        ("plaid-secret", "s"),
    ];
    let resp = send("POST", &format!("{base}/identity/get"), &headers, OTHER_IDS).await;
    assert_eq!(resp.status, 404);
    let err = resp.json();
    assert_eq!(err["error_code"], "PLAID_VCR_NO_RECORDING");
    assert_eq!(err["endpoint"], "identity/get");
    assert_eq!(err["key"].as_str().unwrap(), resp.key());
    assert_eq!(
        err["pseudonymized_request"]["body"]["options"]["account_ids"],
        json!(["acc_1", "acc_3"]),
        "{err}"
    );
    assert!(err["pseudonymized_request"]["body"].get("client_id").is_none());
    let summary: Vec<&str> = err["closest"]["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        summary,
        [
            "Plaid-Version: recorded 2020-09-14, got none",
            r#"options.account_ids: recorded ["acc_1","acc_2"], got ["acc_1","acc_3"]"#
        ],
        "{err}"
    );
    assert!(err["closest"]["file"].as_str().unwrap().starts_with("identity_get/"));
    assert!(err["error_message"].as_str().unwrap().contains("options.account_ids"));
    assert!(err["hint"]
        .as_str()
        .unwrap()
        .starts_with("record it with: plaid-vcr replay --record-missing"));

    let nothing = send("POST", &format!("{base}/accounts/get"), &headers, OTHER_IDS)
        .await
        .json();
    assert!(nothing["closest"].is_null());
    assert!(
        nothing["error_message"]
            .as_str()
            .unwrap()
            .contains("nothing recorded for accounts/get"),
        "{nothing}"
    );

    assert_eq!(binary.signal_and_wait("TERM"), Some(0));
    let logs = binary.stderr();
    assert!(
        logs.contains("closest=") && logs.contains("differing=Plaid-Version, options.account_ids"),
        "{logs}"
    );
    assert!(logs.contains("nothing recorded for this endpoint"), "{logs}");
}

#[tokio::test]
async fn the_summary_counts_the_session_and_the_report_is_json() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", RECORDED), ("identity/get", OTHER_IDS)]).await;
    let report = dirs.root.path().join("report.json");
    let report_arg = report.display().to_string();
    let args = serve_args("replay", &dirs, None, &["--report", &report_arg]);
    let mut binary = Binary::start(&args, &[], dirs.root.path());
    let base = binary.base_url();
    let url = format!("{base}/identity/get");
    assert_eq!(send("POST", &url, &CLIENT_HEADERS, RECORDED).await.outcome(), "hit");
    assert_eq!(send("POST", &url, &CLIENT_HEADERS, RECORDED).await.outcome(), "hit");
    let miss = send("POST", &url, &CLIENT_HEADERS, r#"{"access_token":"access-sandbox-x"}"#).await;
    assert_eq!(
        send("POST", &url, &[("content-type", "application/json")], "{}")
            .await
            .status,
        400
    );
    assert_eq!(
        binary.signal_and_wait("TERM"),
        Some(0),
        "not strict: misses do not fail"
    );
    let logs = binary.stderr();
    assert!(
        logs.contains("plaid-vcr summary (replay): 4 requests, 2 hits, 1 misses, 0 recorded, 0 forwarded, 1 errors; 1 of 2 recordings unused"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("  miss identity/get {}", &miss.key()[..16])),
        "{logs}"
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        (report["requests"].as_u64(), report["hits"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(report["misses"][0]["key"], miss.key().as_str());
    assert_eq!(report["misses"][0]["endpoint"], "identity/get");
    assert_eq!(report["unused"].as_array().unwrap().len(), 1);
    assert!(report["unused"][0]["file"]
        .as_str()
        .unwrap()
        .starts_with("identity_get/"));
    assert_eq!(report["recordings"], 2);
}

#[tokio::test]
async fn record_mode_summarises_what_it_recorded() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let recorded = plaid(&proxy, "identity/get", RECORDED).await;
    plaid(&proxy, "identity/get", RECORDED).await;
    let summary = proxy.stop().await.unwrap();
    assert_eq!(
        (summary.requests, summary.recorded.len()),
        (2, 1),
        "re-recording one key counts once"
    );
    assert_eq!(summary.recorded[0].key, recorded.key());
    assert!(summary.unused.is_empty());
}

#[test]
fn strict_and_fail_on_unused_set_the_exit_code() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dirs = Dirs::new();
    runtime.block_on(record_into(
        &dirs,
        &[("identity/get", RECORDED), ("identity/get", OTHER_IDS)],
    ));
    let run = |flags: &[&str], body: &str| {
        let mut binary = Binary::start(&serve_args("replay", &dirs, None, flags), &[], dirs.root.path());
        let url = format!("{}/identity/get", binary.base_url());
        runtime.block_on(send("POST", &url, &CLIENT_HEADERS, body.to_string()));
        let code = binary.signal_and_wait("TERM");
        (code, binary.stderr())
    };
    let (code, logs) = run(&["--strict"], r#"{"access_token":"access-sandbox-x"}"#);
    assert_eq!(code, Some(1), "{logs}");
    assert!(
        logs.contains("plaid-vcr: failing: 1 requests had no recording (--strict)"),
        "{logs}"
    );
    let (code, logs) = run(&["--strict"], RECORDED);
    assert_eq!(code, Some(0), "strict, no miss: {logs}");
    let (code, logs) = run(&["--fail-on-unused"], RECORDED);
    assert_eq!(code, Some(1), "{logs}");
    assert!(logs.contains("1 recordings were never used"), "{logs}");
    // The environment works as in CI: PLAID_VCR_STRICT=1.
    let args = serve_args("replay", &dirs, None, &["--log-level=warn"]);
    let mut binary = Binary::start(&args, &[("PLAID_VCR_STRICT", "1")], dirs.root.path());
    let url = format!("{}/identity/get", binary.base_url());
    runtime.block_on(send(
        "POST",
        &url,
        &CLIENT_HEADERS,
        r#"{"access_token":"access-sandbox-x"}"#,
    ));
    assert_eq!(binary.signal_and_wait("TERM"), Some(1));
}

#[tokio::test]
async fn a_three_step_sequence_replays_in_order_then_repeats_or_errors() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut cfg = config(&dirs, Some(&fake));
    cfg.sequences = true;
    let proxy = start(&cfg, Mode::Record).await;
    let mut recorded_ids = Vec::new();
    for _ in 0..3 {
        let resp = plaid(&proxy, "identity/get", RECORDED).await;
        assert_eq!(resp.outcome(), "recorded");
        recorded_ids.push(resp.json()["request_id"].clone());
    }
    proxy.stop().await.unwrap();
    let names: Vec<String> = dirs
        .cassette_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let prefix = names[0]
        .trim_end_matches(".json")
        .split('-')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        names,
        [
            format!("{prefix}-2.json"),
            format!("{prefix}-3.json"),
            format!("{prefix}.json")
        ]
    );

    let mut replay_cfg = config(&dirs, None);
    replay_cfg.sequences = true;
    let replay = start(&replay_cfg, Mode::Replay).await;
    let mut replayed = Vec::new();
    for _ in 0..4 {
        let resp = plaid(&replay, "identity/get", RECORDED).await;
        assert_eq!(resp.outcome(), "hit");
        replayed.push(resp.json()["request_id"].clone());
    }
    assert_eq!(replayed[..3], recorded_ids[..], "steps in order");
    assert_eq!(replayed[3], recorded_ids[2], "then the last step again");
    let summary = replay.stop().await.unwrap();
    assert!(summary.unused.is_empty(), "every step was used: {:?}", summary.unused);

    replay_cfg.sequence_exhausted = SequenceEnd::Error;
    let replay = start(&replay_cfg, Mode::Replay).await;
    for _ in 0..3 {
        plaid(&replay, "identity/get", RECORDED).await;
    }
    let fourth = plaid(&replay, "identity/get", RECORDED).await;
    assert_eq!(fourth.status, 404);
    assert_eq!(fourth.json()["error_code"], "PLAID_VCR_SEQUENCE_EXHAUSTED");
    replay.stop().await.unwrap();

    // Without --sequences, one answer per key: the first step, every time.
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    for _ in 0..2 {
        assert_eq!(
            plaid(&replay, "identity/get", RECORDED).await.json()["request_id"],
            recorded_ids[0]
        );
    }
    let summary = replay.stop().await.unwrap();
    assert_eq!(summary.unused.len(), 2, "steps 2 and 3 were not used");

    // Files are byte-stable: redacting the sequence changes nothing.
    let store = dirs.store().display().to_string();
    let (_, stdout, _) = run_binary(
        &["redact", &dirs.cassette().display().to_string(), "--store", &store],
        dirs.root.path(),
    );
    assert!(stdout.contains("0 of 3 files changed"), "{stdout}");
}

fn age_cassette(dirs: &Dirs) {
    for file in dirs.cassette_files() {
        let path = dirs.cassette().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("\"recorded_at\": \"").unwrap() + 16;
        let end = start + text[start..].find('"').unwrap();
        std::fs::write(&path, format!("{}2020-01-01T00:00:00Z{}", &text[..start], &text[end..])).unwrap();
    }
}

#[tokio::test]
async fn recordings_older_than_max_age_warn_at_start_and_fail_strict() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", RECORDED)]).await;
    age_cassette(&dirs);
    let args = serve_args("replay", &dirs, None, &["--max-age", "30d"]);
    let mut binary = Binary::start(&args, &[], dirs.root.path());
    let url = format!("{}/identity/get", binary.base_url());
    assert_eq!(send("POST", &url, &CLIENT_HEADERS, RECORDED).await.outcome(), "hit");
    assert_eq!(
        binary.signal_and_wait("TERM"),
        Some(0),
        "without --strict, a warning only"
    );
    let logs = binary.stderr();
    assert!(
        logs.contains("older than max_age") && logs.contains("oldest=\"2020-01-01T00:00:00Z\""),
        "{logs}"
    );
    assert!(logs.contains("  stale identity/get"), "{logs}");

    let strict_args = serve_args("replay", &dirs, None, &["--max-age", "30d", "--strict"]);
    let mut binary = Binary::start(&strict_args, &[], dirs.root.path());
    let url = format!("{}/identity/get", binary.base_url());
    send("POST", &url, &CLIENT_HEADERS, RECORDED).await;
    assert_eq!(binary.signal_and_wait("TERM"), Some(1));
    assert!(
        binary
            .stderr()
            .contains("1 recordings are older than 30days (--strict)"),
        "{}",
        binary.stderr()
    );

    // Answers shifted to today are still old recordings: --shift-dates hides nothing.
    let shifted_args = serve_args(
        "replay",
        &dirs,
        None,
        &["--max-age", "30d", "--strict", "--shift-dates", "--today", "2026-01-01"],
    );
    let mut binary = Binary::start(&shifted_args, &[], dirs.root.path());
    let url = format!("{}/identity/get", binary.base_url());
    let shifted = send("POST", &url, &CLIENT_HEADERS, RECORDED).await;
    assert_eq!(shifted.outcome(), "hit");
    assert_eq!(binary.signal_and_wait("TERM"), Some(1), "{}", binary.stderr());
    assert!(binary.stderr().contains("  stale identity/get"), "{}", binary.stderr());

    // max_age in the config file works the same.
    std::fs::write(dirs.root.path().join("plaid-vcr.toml"), "max_age = \"30d\"\n").unwrap();
    let mut binary = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    assert_eq!(binary.signal_and_wait("TERM"), Some(0));
    assert!(binary.stderr().contains("older than max_age"), "{}", binary.stderr());
}

#[tokio::test]
async fn ls_and_check_report_on_good_and_broken_cassettes() {
    let dirs = Dirs::new();
    record_into(
        &dirs,
        &[
            ("identity/get", RECORDED),
            (
                "sandbox/public_token/create",
                r#"{"institution_id":"ins_109508","initial_products":["auth"]}"#,
            ),
        ],
    )
    .await;
    let cassette = dirs.cassette();
    let arg = cassette.display().to_string();
    let root = dirs.root.path();
    let (code, table, _) = run_binary(&["ls", &arg], root);
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ENDPOINT") && lines[0].contains("RECORDED AT") && lines[0].ends_with("SIZE"),
        "{table}"
    );
    assert!(
        table.contains("identity/get: 1") && table.contains("sandbox/public_token/create: 1"),
        "{table}"
    );
    assert!(table.contains("2 interactions, 2 endpoints"), "{table}");
    let (code, out, _) = run_binary(&["check", &arg], root);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 2 files"), "{out}");

    // Break it in every way check knows.
    let files = dirs.cassette_files();
    let identity = cassette.join(&files[0]);
    std::fs::write(cassette.join("identity_get/notes.txt"), "scratch").unwrap();
    std::fs::copy(&identity, cassette.join("identity_get/renamed.json")).unwrap();
    let text = std::fs::read_to_string(&identity).unwrap();
    let mut stepped: Value = serde_json::from_str(&text).unwrap();
    stepped["step"] = json!(3);
    let key = stepped["key"].as_str().unwrap()[..16].to_string();
    std::fs::write(
        cassette.join(format!("identity_get/{key}-3.json")),
        serde_json::to_vec_pretty(&stepped).unwrap(),
    )
    .unwrap();
    let other = cassette.join(&files[1]);
    let mut leaked: Value = serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    leaked["request"]["body"]["institution_id"] = json!("ins_edited");
    leaked["response"]["body"]["note"] = json!("jane.realperson@gmail.com");
    std::fs::write(&other, serde_json::to_vec_pretty(&leaked).unwrap()).unwrap();

    let (code, out, _) = run_binary(&["check", &arg], root);
    assert_eq!(code, 1, "{out}");
    for (file, problem) in [
        ("notes.txt", "orphan: not an interaction file"),
        ("renamed.json", "orphan: misnamed"),
        ("renamed.json", "duplicate: same key and step"),
        (&format!("{key}-3.json"), "orphan: sequence step 3 without step 2"),
        (files[1].to_str().unwrap(), "does not match its request"),
        (files[1].to_str().unwrap(), "leak: response.body.note: email"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(file) && l.contains(problem)),
            "{file}: {problem} missing:\n{out}"
        );
    }
    // The same findings as one JSON object, same exit code.
    let (code, json_out, _) = run_binary(&["check", &arg, "--format", "json"], root);
    assert_eq!(code, 1, "{json_out}");
    let report: serde_json::Value = serde_json::from_str(&json_out).expect("check --format json prints JSON");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(
        problems.len(),
        out.lines().count() - 1,
        "one entry per text line: {json_out}"
    );
    assert!(problems
        .iter()
        .any(|p| p["file"] == "identity_get/notes.txt" && p["problem"].as_str().unwrap().starts_with("orphan")));
    assert!(report["files"].as_u64().unwrap() >= 4);

    let (code, _, _) = run_binary(&["ls", &arg], root);
    assert_eq!(code, 0, "ls still lists a broken cassette");

    let (code, _, stderr) = run_binary(&["check", "no/such/dir"], root);
    assert_eq!(code, 2, "{stderr}");
}
