//! Reliability under parallel load: many concurrent recordings, kill -9 mid-flight,
//! single-flight for record-missing, and two writers on one cassette.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plaid_vcr::testing::Store;
use plaid_vcr::Cassette;
use plaid_vcr::Mode;

use crate::support::*;

/// A distinct identity/get request: one token per (tag, n).
fn distinct_body(tag: &str, n: usize) -> String {
    format!(r#"{{"access_token":"access-sandbox-{tag}-{n:06}"}}"#)
}

/// Replays the cassette with a fresh store, rebuilt from the files alone, and asserts that every
/// `(endpoint, body, key)` is a hit under its key; returns the session summary.
async fn replay_from_the_files_alone(dirs: &Dirs, recorded: &[(&str, String, String)]) -> plaid_vcr::Summary {
    let mut cfg = config(dirs, None);
    cfg.store = dirs.root.path().join("fresh-store");
    let replay = start(&cfg, Mode::Replay).await;
    for (endpoint, body, key) in recorded {
        let resp = plaid(&replay, endpoint, body).await;
        assert_eq!((resp.outcome(), resp.key()), ("hit", key.clone()), "{endpoint} {body}");
    }
    replay.stop().await.unwrap()
}

/// `files` without the writer's temp files (`.plaid-vcr-*.tmp`).
fn not_temp(files: Vec<std::path::PathBuf>) -> Vec<std::path::PathBuf> {
    files
        .into_iter()
        .filter(|f| {
            !f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".plaid-vcr-"))
        })
        .collect()
}

/// An acknowledged recording: endpoint, request body, key.
type Ack = (&'static str, String, String);

/// What the kill test's binary answers hold.
fn statement_pdf(tag: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("%PDF-1.4\n{tag}\n%%EOF\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_record_two_thousand_interactions_and_a_fresh_store_replays_every_one() {
    const CLIENTS: usize = 32;
    const EACH: usize = 64; // 2,048 in all
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let base = proxy.base_url();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (base, cassette) = (base.clone(), dirs.cassette());
            tokio::spawn(async move {
                let mut keys = Vec::new();
                for i in 0..EACH {
                    let body = distinct_body(&format!("c{c:02}"), i);
                    let resp = send("POST", &format!("{base}/identity/get"), &CLIENT_HEADERS, body.clone()).await;
                    assert_eq!(resp.outcome(), "recorded", "{:?}", resp.body);
                    // Answered means in place: the file is there the moment the answer is
                    // (its fsync may still be under way; the store's journal covers that).
                    let file = cassette.join(Cassette::relative_path(None, "identity/get", &resp.key(), 1));
                    assert!(file.is_file(), "{} is missing right after its answer", file.display());
                    keys.push(("identity/get", body, resp.key()));
                }
                keys
            })
        })
        .collect();
    let mut recorded = Vec::new();
    for client in clients {
        recorded.extend(client.await.unwrap());
    }
    assert_eq!(recorded.len(), CLIENTS * EACH);
    assert_eq!(fake.calls("identity/get"), CLIENTS * EACH);
    let summary = proxy.stop().await.unwrap();
    assert_eq!(summary.recorded.len(), CLIENTS * EACH);
    // No temp file left behind (the spares made ahead are deleted at stop), and every file
    // synced: the journal is empty.
    assert_eq!(
        dirs.cassette_files().len(),
        CLIENTS * EACH,
        "one file each, nothing else"
    );
    assert_eq!(Store::open(&dirs.store(), &dirs.cassette()).unwrap().journal_len(), 0);

    let summary = replay_from_the_files_alone(&dirs, &recorded).await;
    assert_eq!(summary.hits as usize, CLIENTS * EACH);
    assert!(summary.unused.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_recording_survives_kill_9_under_sixteen_concurrent_clients() {
    const CLIENTS: usize = 16;
    const CYCLES: usize = 3;
    let fake = FakePlaid::start().await;
    // Half the clients record binary answers: an interaction file and its body file each.
    fake.reply_binary("statements/download", "application/pdf", statement_pdf("any"));
    let dirs = Dirs::new();
    let mut acknowledged: Vec<Ack> = Vec::new();
    for cycle in 0..CYCLES {
        let mut binary = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
        let base = binary.base_url();
        let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (base, acks) = (base.clone(), acks.clone());
                tokio::spawn(async move {
                    // Bounded: the kill ends it long before 500 requests.
                    let endpoint = if c % 2 == 0 {
                        "identity/get"
                    } else {
                        "statements/download"
                    };
                    for i in 0..500 {
                        let body = distinct_body(&format!("k{cycle}-{c:02}"), i);
                        let url = format!("{base}/{endpoint}");
                        match try_send("POST", &url, &CLIENT_HEADERS, body.clone()).await {
                            Ok(resp) if resp.outcome() == "recorded" => {
                                acks.lock().unwrap().push((endpoint, body, resp.key()))
                            }
                            Ok(resp) => panic!("not recorded: {} {:?}", resp.status, resp.body),
                            // The process died under this request: it was never acknowledged.
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        // Kill mid-flight, once a good number of recordings were acknowledged (bounded wait).
        for _ in 0..6000 {
            if acks.lock().unwrap().len() >= 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(acks.lock().unwrap().len() >= 100, "{}", binary.stderr());
        binary.signal_and_wait("KILL");
        for client in clients {
            client.await.unwrap();
        }
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        assert!(acks.len() < CLIENTS * 500, "the kill came mid-flight");
        acknowledged.extend(acks);

        // The sled store alone, before any restart could rebuild it from the files, has every
        // acknowledged recording: sled buffers unflushed writes in the process, so this fails
        // if the writer acknowledged before its flush.
        let store = Store::open(&dirs.store(), &dirs.cassette()).unwrap();
        for (endpoint, body, key) in &acknowledged {
            assert!(
                store.get(key).unwrap().is_some(),
                "cycle {cycle}: {endpoint} {body} not in the store (or its body file is not whole)"
            );
        }
        drop(store);

        // After the restart, on the same store: every acknowledged interaction hits.
        let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
        let base = replay.base_url();
        for (endpoint, body, key) in &acknowledged {
            let resp = send("POST", &format!("{base}/{endpoint}"), &CLIENT_HEADERS, body.clone()).await;
            assert_eq!(
                (resp.outcome(), resp.key()),
                ("hit", key.clone()),
                "cycle {cycle}: acknowledged {body} lost; {}",
                replay.stderr()
            );
        }
        assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
    }

    // A recording start sweeps what the kills left half-written (never-renamed temp files, body
    // files whose interaction was never renamed into place), after which `check` finds every
    // file whole, valid and uniquely keyed, and no body file without its interaction.
    let mut record = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    assert_eq!(record.signal_and_wait("TERM"), Some(0), "{}", record.stderr());
    let cassette = dirs.cassette().display().to_string();
    let config = dirs.root.path().join("accept-binary.toml");
    std::fs::write(&config, "[scan]\nallow_paths = [\"response.body_file\"]\n").unwrap();
    let config = config.display().to_string();
    let (code, stdout, stderr) = run_binary(&["check", cassette.as_str(), "--config", &config], dirs.root.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    let pdfs = dirs
        .cassette_files()
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "pdf"))
        .count();
    let binary_acks = acknowledged
        .iter()
        .filter(|(e, _, _)| *e == "statements/download")
        .count();
    assert!(
        pdfs >= binary_acks && binary_acks > 0,
        "{pdfs} body files, {binary_acks} acknowledged"
    );

    replay_from_the_files_alone(&dirs, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_misses_in_record_missing_make_one_upstream_call_and_share_its_answer() {
    const N: usize = 12;
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.cassette()).unwrap();
    let proxy = Arc::new(start(&config(&dirs, Some(&fake)), Mode::ReplayRecordMissing).await);
    let body = distinct_body("same", 1);
    fake.hold();
    let requests: Vec<_> = (0..N)
        .map(|_| {
            let (base, body) = (proxy.base_url(), body.clone());
            tokio::spawn(async move { send("POST", &format!("{base}/identity/get"), &CLIENT_HEADERS, body).await })
        })
        .collect();
    // Release upstream only once all N are inside the proxy and the one exchange reached it.
    for _ in 0..2000 {
        if proxy.requests_in_flight() == N && fake.calls("identity/get") >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(proxy.requests_in_flight(), N);
    assert_eq!(fake.calls("identity/get"), 1, "exactly one upstream call");
    fake.release();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    assert_eq!(fake.calls("identity/get"), 1, "exactly one upstream call");
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.outcome(), "recorded");
        assert_eq!(answer.body, answers[0].body, "all get the same answer");
        assert_eq!(answer.key(), answers[0].key());
    }
    // Interaction files only: while recording, the writer keeps empty temp files made ahead.
    assert_eq!(Cassette::new(dirs.cassette()).list().unwrap().len(), 1, "recorded once");
    // A hit afterwards, from the cassette.
    let again = plaid(&proxy, "identity/get", &body).await;
    assert_eq!(again.outcome(), "hit");
    assert_eq!(fake.calls("identity/get"), 1);
    let summary = Arc::into_inner(proxy).unwrap().stop().await.unwrap();
    assert_eq!(
        (summary.requests, summary.recorded.len(), summary.hits),
        (N as u64 + 1, 1, 1)
    );
}

#[tokio::test]
async fn a_second_recorder_on_the_same_cassette_with_another_store_fails_at_start_and_writes_nothing() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut first = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    let base = first.base_url();
    let body = distinct_body("one", 1);
    let resp = send("POST", &format!("{base}/identity/get"), &CLIENT_HEADERS, body).await;
    assert_eq!(resp.outcome(), "recorded");
    let before = not_temp(dirs.cassette_files());

    let other_store = dirs.root.path().join("other-store").display().to_string();
    let cassette = dirs.cassette().display().to_string();
    // `command` on the same cassette with a store of its own.
    let beside = |command: &str| -> Vec<String> {
        let mut args: Vec<String> = command.split(' ').map(str::to_owned).collect();
        let rest = [
            "--listen",
            "127.0.0.1:0",
            "--cassette",
            &cassette,
            "--store",
            &other_store,
        ];
        args.extend(rest.map(str::to_owned));
        args
    };
    for command in ["record", "replay --record-missing"] {
        let args = beside(command);
        let (code, stdout, stderr) = run_binary(&args, dirs.root.path());
        assert_eq!(code, 2, "{command}: {stdout}{stderr}");
        assert_eq!(
            stderr.trim(),
            format!(
                "plaid-vcr: cassette {cassette} is being recorded by another plaid-vcr process; stop it or pass --cassette DIR"
            ),
            "{command}"
        );
        // The running recorder's own temp files (made ahead for its next recordings) aside.
        assert_eq!(
            not_temp(dirs.cassette_files()),
            before,
            "nothing written into the cassette"
        );
    }
    // Replay only reads: it may run beside a recorder (with its own store).
    let mut replay = Binary::start(&beside("replay"), &[], dirs.root.path());
    assert!(replay.first_line.contains("listening"), "{}", replay.stderr());
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
    assert_eq!(first.signal_and_wait("TERM"), Some(0), "{}", first.stderr());
    // Released with the process: recording can start again.
    let mut again = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    assert!(again.first_line.contains("listening"), "{}", again.stderr());
    assert_eq!(again.signal_and_wait("TERM"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_repeating_the_same_requests_get_identical_answers_and_exact_counts() {
    // The exact cache and the tally under contention: first hits (which fill the cache) race
    // with repeats (served from it), on four worker threads.
    const CLIENTS: usize = 32;
    const EACH: usize = 40;
    let dirs = Dirs::new();
    let bodies: Vec<String> = (0..4).map(|n| distinct_body("same", n)).collect();
    let pairs: Vec<(&str, &str)> = bodies.iter().map(|b| ("identity/get", b.as_str())).collect();
    record_into(&dirs, &pairs).await;
    // What each request answers, from a second replay server on its own store, so that the
    // one under test starts cold and its first hits race with the repeats.
    let mut reference_config = config(&dirs, None);
    reference_config.store = dirs.root.path().join("reference-store");
    let reference = start(&reference_config, Mode::Replay).await;
    let mut expected = Vec::new();
    for body in &bodies {
        let first = plaid(&reference, "identity/get", body).await;
        let key = first.key();
        expected.push((first.body, key));
    }
    reference.stop().await.unwrap();
    let replay = Arc::new(start(&config(&dirs, None), Mode::Replay).await);
    let expected = Arc::new(expected);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (replay, bodies, expected) = (replay.clone(), bodies.clone(), expected.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    let n = (c + i) % bodies.len();
                    let resp = plaid(&replay, "identity/get", &bodies[n]).await;
                    assert_eq!(resp.outcome(), "hit");
                    assert_eq!((&resp.body, resp.key()), (&expected[n].0, expected[n].1.clone()));
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let summary = Arc::into_inner(replay).unwrap().stop().await.unwrap();
    let total = (CLIENTS * EACH) as u64;
    assert_eq!(
        (summary.requests, summary.hits),
        (total, total),
        "every request counted once, as a hit"
    );
    assert!(summary.unused.is_empty() && summary.misses.is_empty());
}

/// A power loss right after an answer can leave its cassette file empty or gone (it was
/// renamed into place, not yet synced). The store's journal still holds it, and the next start
/// writes it out again, byte for byte, before it reads the cassette.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_a_power_loss_emptied_or_lost_is_written_again_from_the_journal_at_the_next_start() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let mut recorded = Vec::new();
    for n in 0..3 {
        let body = distinct_body("power", n);
        let resp = plaid(&proxy, "identity/get", &body).await;
        assert_eq!(resp.outcome(), "recorded");
        recorded.push((body, resp.key(), resp.body));
    }
    proxy.stop().await.unwrap();
    // The answers as replayed from intact files, to compare with after the damage.
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    for (body, _, answer) in recorded.iter_mut() {
        *answer = plaid(&replay, "identity/get", body).await.body;
    }
    replay.stop().await.unwrap();
    let relative = |key: &str| Cassette::relative_path(None, "identity/get", key, 1);
    let originals: Vec<Vec<u8>> = recorded
        .iter()
        .map(|(_, key, _)| std::fs::read(dirs.cassette().join(relative(key))).unwrap())
        .collect();
    // What the store looked like at the power loss: the journal holding two of the files,
    // whose syncs had not finished.
    {
        let store = Store::open(&dirs.store(), &dirs.cassette()).unwrap();
        for i in [0, 1] {
            store.journal(&relative(&recorded[i].1), &originals[i]).unwrap();
        }
        store.flush().unwrap();
    }
    std::fs::write(dirs.cassette().join(relative(&recorded[0].1)), b"").unwrap();
    std::fs::remove_file(dirs.cassette().join(relative(&recorded[1].1))).unwrap();

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    for (body, key, answer) in &recorded {
        let resp = plaid(&replay, "identity/get", body).await;
        assert_eq!((resp.outcome(), resp.key()), ("hit", key.clone()));
        assert_eq!(&resp.body, answer, "the same bytes as before the power loss");
    }
    replay.stop().await.unwrap();
    for ((_, key, _), original) in recorded.iter().zip(&originals) {
        assert_eq!(&std::fs::read(dirs.cassette().join(relative(key))).unwrap(), original);
    }
    assert_eq!(Store::open(&dirs.store(), &dirs.cassette()).unwrap().journal_len(), 0);
    assert_eq!(fake.calls("identity/get"), 3, "replay never called upstream");
}

/// A recording that cannot be renamed into place is answered as failed, and nothing of it is
/// written out later: its journal entry goes with it, so the next start does not bring back
/// a recording its client was told had failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_cannot_be_put_in_place_fails_and_is_not_brought_back_at_the_next_start() {
    let fake = FakePlaid::start().await;
    let body = distinct_body("blocked", 1);
    // The key of this request, from a first recording elsewhere.
    let key = {
        let elsewhere = Dirs::new();
        let proxy = start(&config(&elsewhere, Some(&fake)), Mode::Record).await;
        let key = plaid(&proxy, "identity/get", &body).await.key();
        proxy.stop().await.unwrap();
        key
    };
    let dirs = Dirs::new();
    let target = dirs
        .cassette()
        .join(Cassette::relative_path(None, "identity/get", &key, 1));
    // A directory where the file goes: the rename over it fails.
    std::fs::create_dir_all(target.join("blocked")).unwrap();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let resp = plaid(&proxy, "identity/get", &body).await;
    assert_eq!(resp.status, 500, "{:?}", resp.body);
    assert_eq!(resp.json()["error_code"], "PLAID_VCR_STORE_ERROR");
    proxy.stop().await.unwrap();
    assert_eq!(Store::open(&dirs.store(), &dirs.cassette()).unwrap().journal_len(), 0);

    std::fs::remove_dir_all(&target).unwrap();
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    assert_eq!(plaid(&replay, "identity/get", &body).await.outcome(), "miss");
    replay.stop().await.unwrap();
    assert!(!target.exists(), "not written out from the journal");
}
