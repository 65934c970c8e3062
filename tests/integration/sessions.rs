//! Sessions: many tests on one proxy, each with its own recordings, sequence steps and report,
//! named by the `Plaid-VCR-Session` header or a `/sessions/NAME/` base path; concurrently.

use std::collections::BTreeMap;

use plaid_vcr::Mode;
use serde_json::Value;

use crate::support::*;

const BODY: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;
const OTHER: &str = r#"{"access_token":"access-sandbox-other"}"#;

/// POSTs `body` to `endpoint` in `session` (by header), or in none.
async fn in_session(base: &str, session: Option<&str>, endpoint: &str, body: &str) -> Resp {
    let mut headers = CLIENT_HEADERS.to_vec();
    if let Some(name) = session {
        headers.push(("plaid-vcr-session", name));
    }
    send("POST", &format!("{base}/{endpoint}"), &headers, body.to_string()).await
}

fn request_id(resp: &Resp) -> String {
    resp.json()["request_id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_records_in_its_folder_and_replays_its_own_answers_before_the_default_ones() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let base = recorder.base_url();
    // The same request in the default session, in one session by header, in another by path.
    let default = in_session(&base, None, "identity/get", BODY).await;
    let by_header = in_session(&base, Some("tests/test_a"), "identity/get", BODY).await;
    let by_path = post(&recorder.session_url("tests/test_b"), "identity/get", BODY).await;
    let shared = in_session(&base, None, "accounts/get", BODY).await;
    for resp in [&default, &by_header, &by_path, &shared] {
        assert_eq!((resp.status, resp.outcome()), (200, "recorded"), "{:?}", resp.body);
    }
    assert_eq!(by_header.key(), default.key(), "the session is never part of the key");
    recorder.stop().await.unwrap();
    assert!(
        fake.seen().iter().all(|s| s.headers.get("plaid-vcr-session").is_none()),
        "the header is never forwarded upstream"
    );
    let files = dirs.cassette_files();
    let prefix = &default.key()[..16];
    for expected in [
        format!("identity_get/{prefix}.json"),
        format!("sessions/tests/test_a/identity_get/{prefix}.json"),
        format!("sessions/tests/test_b/identity_get/{prefix}.json"),
    ] {
        assert!(
            files.iter().any(|f| f.to_str() == Some(expected.as_str())),
            "{expected} in {files:?}"
        );
    }

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let base = replay.base_url();
    // Each asked twice: the second from the exact cache, which keeps sessions apart.
    let answer = |session: Option<&'static str>, endpoint: &'static str| {
        let base = base.clone();
        async move {
            let first = in_session(&base, session, endpoint, BODY).await;
            let again = in_session(&base, session, endpoint, BODY).await;
            assert_eq!((first.outcome(), again.outcome()), ("hit", "hit"));
            assert_eq!(first.body, again.body, "{session:?} {endpoint}");
            first
        }
    };
    assert_eq!(
        request_id(&answer(Some("tests/test_a"), "identity/get").await),
        request_id(&by_header)
    );
    let by_path_replayed = post(&replay.session_url("tests/test_b"), "identity/get", BODY).await;
    assert_eq!(request_id(&by_path_replayed), request_id(&by_path));
    assert_eq!(request_id(&answer(None, "identity/get").await), request_id(&default));
    // Nothing of its own: the default session's recording answers.
    assert_eq!(
        request_id(&answer(Some("tests/test_c"), "identity/get").await),
        request_id(&default)
    );
    assert_eq!(
        request_id(&answer(Some("tests/test_a"), "accounts/get").await),
        request_id(&shared)
    );
    assert_eq!(
        request_id(&answer(Some("tests/test_a"), "identity/get").await),
        request_id(&by_header)
    );

    // A miss names the session and both places it looked.
    let miss = in_session(&base, Some("tests/test_a"), "identity/get", OTHER).await;
    assert_eq!((miss.status, miss.outcome()), (404, "miss"));
    let message = miss.json()["error_message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("in session tests/test_a (sessions/tests/test_a/ of cassette")
            && message.contains("or in the cassette's default recordings; the closest"),
        "{message}"
    );
    let summary = replay.stop().await.unwrap();
    assert_eq!(summary.misses.len(), 1);
    let a = &summary.sessions["tests/test_a"];
    assert_eq!(
        (a.requests, a.hits, a.misses.len(), a.recordings, a.unused.len()),
        (7, 6, 1, 1, 0)
    );
    assert!(a.misses[0].explanation.as_deref().unwrap().contains("the closest"));
    assert_eq!(summary.sessions["tests/test_c"].recordings, 0);
}

#[tokio::test]
async fn bad_session_names_get_a_plaid_shaped_400_naming_the_rule() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", BODY)]).await;
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let base = replay.base_url();
    for (name, rule) in [
        ("a b", "' ' is not allowed"),
        ("../up", "\"..\""),
        ("a//b", "\"\""),
        (&"n".repeat(201) as &str, "1 to 200"),
    ] {
        let resp = in_session(&base, Some(name), "identity/get", BODY).await;
        assert_eq!(resp.status, 400, "{name}");
        let body = resp.json();
        assert_eq!(body["error_code"], "PLAID_VCR_INVALID_SESSION");
        assert!(body["error_message"].as_str().unwrap().contains(rule), "{name}: {body}");
        assert!(body["request_id"].is_string());
    }
    let addr = replay.local_addr();
    let both = send(
        "POST",
        &format!("http://{addr}/sessions/p/plaid-compatible/identity/get"),
        &[CLIENT_HEADERS.as_slice(), &[("plaid-vcr-session", "h")]].concat(),
        BODY,
    )
    .await;
    assert_eq!(both.status, 400);
    assert!(both.json()["error_message"].as_str().unwrap().contains("name one"));
    replay.stop().await.unwrap();
}

/// Sixteen tests at once, each polling the same request three times in its own session, as a
/// parallel suite would: recorded in parallel, then replayed in parallel, each session sees
/// exactly its own steps in order; a retried test (its session ended) starts at step 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_sessions_in_parallel_each_replay_their_own_sequence_in_order() {
    const SESSIONS: usize = 16;
    const STEPS: usize = 3;
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let mut cfg = config(&dirs, Some(&fake));
    cfg.sequences = true;
    let recorder = start(&cfg, Mode::Record).await;
    let run = |base: String| async move {
        let tests: Vec<_> = (0..SESSIONS)
            .map(|n| {
                let base = base.clone();
                tokio::spawn(async move {
                    let name = format!("suite/test_{n:02}");
                    let mut ids = Vec::new();
                    for _ in 0..STEPS {
                        let resp = in_session(&base, Some(&name), "identity/get", BODY).await;
                        assert_eq!(resp.status, 200, "{name}: {:?}", resp.body);
                        ids.push((resp.outcome().to_owned(), request_id(&resp)));
                    }
                    (name, ids)
                })
            })
            .collect();
        let mut out = BTreeMap::new();
        for test in tests {
            let (name, ids) = test.await.unwrap();
            out.insert(name, ids);
        }
        out
    };
    let recorded = run(recorder.base_url()).await;
    recorder.stop().await.unwrap();
    assert_eq!(fake.calls("identity/get"), SESSIONS * STEPS);
    let files = dirs.cassette_files();
    assert_eq!(files.len(), SESSIONS * STEPS, "{files:?}");

    let replay = start(&cfg, Mode::Replay).await;
    let replayed = run(replay.base_url()).await;
    for (name, steps) in &recorded {
        let ids: Vec<&str> = steps.iter().map(|(_, id)| id.as_str()).collect();
        let again: Vec<&str> = replayed[name].iter().map(|(_, id)| id.as_str()).collect();
        assert!(
            steps.iter().all(|(outcome, _)| outcome == "recorded"),
            "{name}: {steps:?}"
        );
        assert!(replayed[name].iter().all(|(outcome, _)| outcome == "hit"), "{name}");
        assert_eq!(again, ids, "{name} sees its own steps in order");
    }
    let all: std::collections::HashSet<&String> = recorded.values().flatten().map(|(_, id)| id).collect();
    assert_eq!(
        all.len(),
        SESSIONS * STEPS,
        "every step of every session is its own answer"
    );

    // Ended, the name starts again: a retried test gets step 1 first.
    let name = "suite/test_03";
    let ended = send(
        "DELETE",
        &format!("http://{}/plaid-vcr/sessions/{name}", replay.local_addr()),
        &[],
        "",
    )
    .await;
    assert_eq!(ended.status, 200);
    assert_eq!(ended.json()["hits"], 3, "the final report: {}", ended.json());
    let retried = in_session(&replay.base_url(), Some(name), "identity/get", BODY).await;
    assert_eq!(request_id(&retried), recorded[name][0].1);
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn the_sessions_api_lists_reports_and_ends_sessions_and_never_touches_the_network() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    for name in ["t/one", "t/two"] {
        in_session(&recorder.base_url(), Some(name), "identity/get", BODY).await;
        in_session(&recorder.base_url(), Some(name), "accounts/get", BODY).await;
    }
    recorder.stop().await.unwrap();
    let calls = fake.total_calls();

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let api = format!("http://{}/plaid-vcr/sessions", replay.local_addr());
    in_session(&replay.base_url(), Some("t/one"), "identity/get", BODY).await;
    in_session(&replay.base_url(), Some("t/one"), "identity/get", OTHER).await;

    let list = send("GET", &api, &[], "").await;
    assert_eq!(list.status, 200);
    let sessions: Vec<Value> = list.json()["sessions"].as_array().unwrap().clone();
    let one = sessions.iter().find(|s| s["name"] == "t/one").expect("t/one is listed");
    assert_eq!(
        (one["requests"].as_u64(), one["hits"].as_u64(), one["misses"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!((one["recordings"].as_u64(), one["unused"].as_u64()), (Some(2), Some(1)));
    let two = sessions
        .iter()
        .find(|s| s["name"] == "t/two")
        .expect("t/two has recordings, so it is listed");
    assert_eq!((two["requests"].as_u64(), two["unused"].as_u64()), (Some(0), Some(2)));

    let report = send("GET", &format!("{api}/t/one"), &[], "").await.json();
    assert_eq!(report["hits"], 1);
    assert!(report["misses"][0]["explanation"]
        .as_str()
        .unwrap()
        .contains("session t/one"));
    assert_eq!(report["unused"][0]["endpoint"], "accounts/get");
    assert!(report["unused"][0]["file"]
        .as_str()
        .unwrap()
        .starts_with("sessions/t/one/accounts_get/"));

    let unknown = send("GET", &format!("{api}/t/never"), &[], "").await;
    assert_eq!(
        (unknown.status, unknown.json()["error_code"].as_str()),
        (404, Some("PLAID_VCR_UNKNOWN_SESSION"))
    );
    let bad = send("GET", &format!("{api}/a%20b"), &[], "").await;
    assert_eq!(bad.json()["error_code"], "PLAID_VCR_INVALID_SESSION");
    assert_eq!(send("DELETE", &format!("{api}/t/one"), &[], "").await.status, 200);
    assert_eq!(send("GET", &format!("{api}/t/one"), &[], "").await.status, 404, "ended");
    replay.stop().await.unwrap();
    assert_eq!(fake.total_calls(), calls, "the API never reaches upstream");
}

/// Through the real binary, as CI runs it: a session with a miss fails `--strict`, is named in
/// the summary, in `--report`'s sessions and as a failed test case of `--junit`; `ls --session`
/// lists that session's recordings alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_end_of_a_run_each_session_is_reported_in_the_summary_the_report_and_junit() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    in_session(&recorder.base_url(), None, "accounts/get", BODY).await;
    for name in ["ci/passes", "ci/misses"] {
        in_session(&recorder.base_url(), Some(name), "identity/get", BODY).await;
    }
    recorder.stop().await.unwrap();

    let (report, junit) = (dirs.root.path().join("report.json"), dirs.root.path().join("junit.xml"));
    let extra = [
        "--strict",
        "--report",
        report.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ];
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &extra), &[], dirs.root.path());
    let base = replay.base_url();
    for name in ["ci/passes", "ci/misses"] {
        assert_eq!(
            in_session(&base, Some(name), "identity/get", BODY).await.outcome(),
            "hit"
        );
        assert_eq!(
            in_session(&base, Some(name), "accounts/get", BODY).await.outcome(),
            "hit",
            "shared set-up"
        );
    }
    assert_eq!(
        in_session(&base, Some("ci/misses"), "identity/get", OTHER)
            .await
            .outcome(),
        "miss"
    );
    assert_eq!(
        replay.signal_and_wait("TERM"),
        Some(1),
        "--strict fails on a session's miss"
    );
    let stderr = replay.stderr();
    assert!(
        stderr.contains("session ci/misses: 3 requests, 1 misses, 0 of 1 recordings unused"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("session ci/passes:"),
        "a session without problems is not listed: {stderr}"
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["sessions"]["ci/passes"]["hits"], 2);
    assert_eq!(report["sessions"]["ci/misses"]["misses"].as_array().unwrap().len(), 1);
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains("tests=\"2\" failures=\"1\""), "{junit}");
    assert!(
        junit.contains("<testcase classname=\"plaid-vcr\" name=\"ci/passes\"/>"),
        "{junit}"
    );
    assert!(junit.contains("name=\"ci/misses\">\n<failure"), "{junit}");

    let cassette = dirs.cassette();
    let (code, all, _) = run_binary(&["ls", cassette.to_str().unwrap()], dirs.root.path());
    assert_eq!(code, 0);
    assert!(all.starts_with("SESSION"), "a cassette with sessions lists them: {all}");
    assert!(all.contains("3 interactions, 2 endpoints"), "{all}");
    let (code, one, _) = run_binary(
        &["ls", "--session", "ci/misses", cassette.to_str().unwrap()],
        dirs.root.path(),
    );
    assert_eq!(code, 0);
    assert!(one.starts_with("ENDPOINT") && one.contains("identity/get"), "{one}");
    assert!(
        one.contains("1 interactions, 1 endpoints in") && one.contains("(session ci/misses)"),
        "{one}"
    );
}

/// Sixteen sessions record a sequence of one request each, concurrently, until plaid-vcr is
/// killed with SIGKILL: after the restart every step any session had acknowledged replays, in
/// that session, in its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_step_of_sixteen_parallel_sessions_survives_kill_9() {
    const SESSIONS: usize = 16;
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut recorder = Binary::start(
        &serve_args("record", &dirs, Some(&fake), &["--sequences"]),
        &[],
        dirs.root.path(),
    );
    let base = recorder.base_url();
    let acked: Vec<std::sync::Arc<std::sync::Mutex<Vec<String>>>> = (0..SESSIONS).map(|_| Default::default()).collect();
    let tests: Vec<_> = (0..SESSIONS)
        .map(|n| {
            let (base, acked) = (base.clone(), acked[n].clone());
            tokio::spawn(async move {
                let name = format!("kill/test_{n:02}");
                let headers = [CLIENT_HEADERS.as_slice(), &[("plaid-vcr-session", name.as_str())]].concat();
                // Bounded: the kill ends it long before 200 steps.
                for _ in 0..200 {
                    match try_send("POST", &format!("{base}/identity/get"), &headers, BODY).await {
                        Ok(resp) if resp.outcome() == "recorded" => acked.lock().unwrap().push(request_id(&resp)),
                        Ok(resp) => panic!("{name}: not recorded: {} {:?}", resp.status, resp.body),
                        // The process died under this request: it was never acknowledged.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Kill mid-flight, once every session has a few steps acknowledged (bounded wait).
    for _ in 0..6000 {
        if acked.iter().all(|a| a.lock().unwrap().len() >= 3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        acked.iter().all(|a| a.lock().unwrap().len() >= 3),
        "{}",
        recorder.stderr()
    );
    recorder.signal_and_wait("KILL");
    for test in tests {
        test.await.unwrap();
    }

    let mut replay = Binary::start(
        &serve_args("replay", &dirs, None, &["--sequences"]),
        &[],
        dirs.root.path(),
    );
    let base = replay.base_url();
    let checks: Vec<_> = acked
        .iter()
        .enumerate()
        .map(|(n, acked)| {
            let (base, acked) = (base.clone(), acked.lock().unwrap().clone());
            tokio::spawn(async move {
                let name = format!("kill/test_{n:02}");
                for (step, id) in acked.iter().enumerate() {
                    let resp = in_session(&base, Some(&name), "identity/get", BODY).await;
                    assert_eq!(resp.outcome(), "hit", "{name} step {}: {:?}", step + 1, resp.body);
                    assert_eq!(&request_id(&resp), id, "{name} step {}", step + 1);
                }
            })
        })
        .collect();
    for check in checks {
        check.await.unwrap();
    }
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
}

#[tokio::test]
async fn record_missing_records_a_sessions_miss_into_that_session() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    in_session(&recorder.base_url(), None, "identity/get", BODY).await;
    recorder.stop().await.unwrap();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::ReplayRecordMissing).await;
    let base = proxy.base_url();
    // The default session's recording answers the session: nothing to record.
    assert_eq!(
        in_session(&base, Some("rm/t"), "identity/get", BODY).await.outcome(),
        "hit"
    );
    let missed = in_session(&base, Some("rm/t"), "identity/get", OTHER).await;
    assert_eq!(missed.outcome(), "recorded");
    assert_eq!(
        in_session(&base, Some("rm/t"), "identity/get", OTHER).await.outcome(),
        "hit"
    );
    // Another session does not see it: it is rm/t's own.
    assert_eq!(
        in_session(&base, Some("rm/u"), "identity/get", OTHER).await.outcome(),
        "recorded"
    );
    let summary = proxy.stop().await.unwrap();
    assert_eq!(summary.sessions["rm/t"].recorded.len(), 1);
    let prefix = &missed.key()[..16];
    let files = dirs.cassette_files();
    for expected in [
        format!("sessions/rm/t/identity_get/{prefix}.json"),
        format!("sessions/rm/u/identity_get/{prefix}.json"),
    ] {
        assert!(
            files.iter().any(|f| f.to_str() == Some(expected.as_str())),
            "{expected} in {files:?}"
        );
    }
    assert_eq!(files.len(), 3, "{files:?}");
}
