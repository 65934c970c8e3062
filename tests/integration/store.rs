//! The working store: exclusive use, durability across a crash, and syncing with the cassette.

use plaid_vcr::testing::Store;
use plaid_vcr::Cassette;
use plaid_vcr::Mode;

use crate::support::*;

const BODY: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;

#[tokio::test]
async fn a_second_plaid_vcr_on_the_same_store_fails_with_a_clear_error() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.cassette()).unwrap();
    let first = start(&config(&dirs, None), Mode::Replay).await;
    let err = plaid_vcr::Server::bind(&config(&dirs, None), Mode::Replay)
        .await
        .err()
        .expect("second start fails");
    let message = err.to_string();
    assert!(message.contains(&dirs.store().display().to_string()), "{message}");
    assert!(message.contains("in use by another plaid-vcr process"), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    assert!(message.contains("--store"), "{message}");
    assert_eq!(err.exit_code(), 2);
    first.stop().await.unwrap();
    // Released on shutdown: the store can be opened again.
    start(&config(&dirs, None), Mode::Replay).await.stop().await.unwrap();
}

#[tokio::test]
async fn an_interaction_acknowledged_before_a_crash_survives_it() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut binary = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    let base = binary.base_url();
    let resp = send("POST", &format!("{base}/identity/get"), &CLIENT_HEADERS, BODY).await;
    assert_eq!(resp.outcome(), "recorded", "{:?} {}", resp.body, binary.stderr());
    // SIGKILL: no shutdown, no flush, nothing runs after the acknowledgement.
    binary.signal_and_wait("KILL");

    // The sled store alone (not the cassette files) has it.
    let store = Store::open(&dirs.store(), &dirs.cassette()).unwrap();
    let answer = store.get(&resp.key()).unwrap().expect("interaction survived the crash");
    assert_eq!(answer.status, 200);
    let stored: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_same_shape(&resp.json(), &stored);
    drop(store);
    // And so do the cassette files: replay from a fresh store answers it.
    let mut cfg = config(&dirs, None);
    cfg.store = dirs.root.path().join("other-store");
    let replay = start(&cfg, Mode::Replay).await;
    assert_eq!(plaid(&replay, "identity/get", BODY).await.body, answer.body);
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn a_broken_cassette_file_fails_start_naming_the_file_and_the_problem() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", BODY)]).await;
    let file = dirs.cassette().join(&dirs.cassette_files()[0]);
    let original = std::fs::read_to_string(&file).unwrap();

    let cases = [
        ("{ truncated", "not a valid interaction"),
        (
            &*original.replace(
                "\"access_token\": \"access-sandbox-",
                "\"access_token\": \"access-sandbox-edited",
            ),
            "does not match its request",
        ),
        (
            &*original.replace("\"status\": 200", "\"status\": 1200"),
            "not an HTTP status",
        ),
        (
            &*original.replace("\"endpoint\": \"identity/get\"", "\"endpoint\": \"../../etc\""),
            "not a Plaid endpoint",
        ),
    ];
    for (content, problem) in cases {
        std::fs::write(&file, content).unwrap();
        let err = plaid_vcr::Server::bind(&config(&dirs, None), Mode::Replay)
            .await
            .err()
            .expect("start fails");
        let message = err.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains(problem), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
}

#[tokio::test]
async fn unchanged_files_are_not_reparsed_and_deleted_ones_leave_the_index() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    plaid(&proxy, "identity/get", BODY).await;
    plaid(&proxy, "identity/get", r#"{"access_token":"access-sandbox-other"}"#).await;
    proxy.stop().await.unwrap();

    let cassette = Cassette::new(dirs.cassette());
    let store = Store::open(&dirs.store(), &dirs.cassette()).unwrap();
    let report = store.sync_cassette(&cassette).unwrap();
    assert_eq!(
        (report.files, report.loaded, report.removed),
        (2, 0, 0),
        "recorded files are already indexed"
    );

    let files = dirs.cassette_files();
    std::fs::remove_file(dirs.cassette().join(&files[0])).unwrap();
    let report = store.sync_cassette(&cassette).unwrap();
    assert_eq!((report.files, report.loaded, report.removed), (1, 0, 1));
    assert_eq!(store.len(), 1);

    // A file copied in by hand (e.g. git pull) is parsed once, then skipped.
    let copy = dirs.cassette().join("identity_get/copied.json");
    let remaining = std::fs::read(dirs.cassette().join(&files[1])).unwrap();
    std::fs::remove_file(dirs.cassette().join(&files[1])).unwrap();
    std::fs::write(&copy, remaining).unwrap();
    let report = store.sync_cassette(&cassette).unwrap();
    assert_eq!((report.files, report.loaded), (1, 1));
    assert_eq!(store.sync_cassette(&cassette).unwrap().loaded, 0);
}

#[tokio::test]
async fn two_files_with_the_same_key_are_refused() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", BODY)]).await;
    let file = dirs.cassette().join(&dirs.cassette_files()[0]);
    std::fs::copy(&file, file.with_file_name("duplicate.json")).unwrap();
    let err = plaid_vcr::Server::bind(&config(&dirs, None), Mode::Replay)
        .await
        .err()
        .expect("start fails");
    assert!(err.to_string().contains("hold the same key"), "{err}");
}

#[tokio::test]
async fn one_store_keeps_separate_indexes_for_separate_cassettes() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", BODY)]).await;
    let mut other = config(&dirs, None);
    other.cassette = dirs.root.path().join("cassettes/empty");
    std::fs::create_dir_all(&other.cassette).unwrap();
    let replay = start(&other, Mode::Replay).await;
    assert_eq!(plaid(&replay, "identity/get", BODY).await.outcome(), "miss");
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_changed_under_a_running_replay_fails_loudly_instead_of_answering_for_another_request() {
    // The store indexes keys to files and reads answers from them on a first hit: a file
    // replaced since the start must not answer for the request it no longer holds.
    let dirs = Dirs::new();
    let other = r#"{"access_token":"access-sandbox-00000000-1111-4222-8333-444444444444"}"#;
    record_into(&dirs, &[("identity/get", BODY), ("identity/get", other)]).await;
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let files = dirs.cassette_files();
    let (a, b) = (dirs.cassette().join(&files[0]), dirs.cassette().join(&files[1]));
    let b_bytes = std::fs::read(&b).unwrap();
    std::fs::write(&a, &b_bytes).unwrap();
    let (first, second) = (
        plaid(&replay, "identity/get", BODY).await,
        plaid(&replay, "identity/get", other).await,
    );
    let changed = if first.status == 500 { first } else { second };
    assert_eq!(changed.status, 500, "{:?}", changed.body);
    assert_eq!(changed.json()["error_code"], "PLAID_VCR_STORE_ERROR");
    assert!(changed.json()["error_message"]
        .as_str()
        .unwrap()
        .contains("restart plaid-vcr"));
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn a_store_from_the_previous_format_is_rebuilt_once_and_its_old_trees_dropped() {
    let dirs = Dirs::new();
    record_into(&dirs, &[("identity/get", BODY)]).await;
    // Turn the store into one of the previous format: index.v2 (key → file), meta (with the
    // request), and a state whose listing digest claims the index is up to date.
    plaid_vcr::testing::store_doctor::downgrade(&dirs.store(), &dirs.cassette());
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let resp = plaid(&replay, "identity/get", BODY).await;
    assert_eq!(
        resp.outcome(),
        "hit",
        "rebuilt from the cassette, not read as up to date"
    );
    let summary = replay.stop().await.unwrap();
    assert_eq!((summary.recordings, summary.unused.len()), (1, 0));
    let old = plaid_vcr::testing::store_doctor::old_trees(&dirs.store());
    assert!(old.is_empty(), "the old format's trees are dropped: {old:?}");
}

/// Holds an exclusive lock on `file` from this process for `for_ms`, as a child process forked a
/// moment ago does with every descriptor it inherited until its `exec`.
fn hold_lock(file: std::path::PathBuf, for_ms: u64) -> std::thread::JoinHandle<()> {
    let held = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    held.lock().unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(for_ms));
        drop(held);
    })
}

#[test]
fn a_store_lock_this_process_is_releasing_is_waited_for_and_one_never_released_still_fails() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.cassette()).unwrap();
    // Once, so that both lock files exist (ours with this process's pid in it).
    drop(Store::open(&dirs.store(), &dirs.cassette()).unwrap());

    // Held by this process though no store of it has the path open: released a moment later.
    for file in ["LOCK", "db/db"] {
        let release = hold_lock(dirs.store().join(file), 300);
        let store = Store::open(&dirs.store(), &dirs.cassette());
        assert!(store.is_ok(), "{file}: {:?}", store.err());
        release.join().unwrap();
    }

    // Never released in time: the same clear error as before, after a bounded wait.
    let release = hold_lock(dirs.store().join("LOCK"), 4000);
    let err = Store::open(&dirs.store(), &dirs.cassette()).expect_err("still locked");
    assert!(
        matches!(err, plaid_vcr::testing::StoreError::Locked { pid: Some(pid), .. } if pid == std::process::id()),
        "{err}"
    );
    release.join().unwrap();
}
