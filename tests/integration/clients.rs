//! The official Plaid clients, npm `plaid` 47.0.0 and PyPI `plaid-python` 46.0.0, through
//! plaid-vcr: the sandbox flow and identity/get with and without account_ids, recorded through
//! the fake upstream and replayed offline, including from the committed `cassettes/clients`.
//!
//! The clients are installed by `tests/clients/setup.sh` (which `.ci/run` runs) into
//! `$PLAID_VCR_CLIENTS_HOME` (default `~/.cache/plaid-vcr-clients`). Without them these tests
//! say SKIPPED on stderr and pass, so `cargo test` works on a machine without Node or Python;
//! under `CI` they fail instead, so CI can never skip them.
//!
//! `cassettes/clients` was made by running `official_clients_record_then_replay_offline` with
//! `PLAID_VCR_CLIENTS_SAVE=cassettes/clients`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use plaid_vcr::config::Secret;
use plaid_vcr::testing::pseudonym::{Kind, Pseudonymizer};
use plaid_vcr::Mode;
use serde_json::Value;

use crate::support::*;

#[derive(Clone, Copy, Debug)]
enum Lang {
    Node,
    Python,
}

const LANGS: [Lang; 2] = [Lang::Node, Lang::Python];

fn clients_home() -> Option<PathBuf> {
    let home = std::env::var_os("PLAID_VCR_CLIENTS_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/plaid-vcr-clients")
        });
    let installed =
        home.join("node/node_modules/plaid/package.json").is_file() && home.join("venv/bin/python").is_file();
    if installed {
        return Some(home);
    }
    let hint = format!(
        "official Plaid clients not installed in {}: run tests/clients/setup.sh",
        home.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{hint} (CI must run them)");
    // Straight to the process's stderr: libtest captures eprintln!, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {hint}");
    None
}

/// Runs the flow script for `lang` against `base` and returns its JSON line (bounded: 90 s).
fn flow(home: &Path, lang: Lang, base: &str, mode: &str, credentials: bool, kid: Option<&str>) -> Value {
    flow_in(home, lang, base, mode, credentials, kid, None)
}

/// [`flow`], its requests in `session` by the `Plaid-VCR-Session` header (the Node script's).
fn flow_in(
    home: &Path,
    lang: Lang,
    base: &str,
    mode: &str,
    credentials: bool,
    kid: Option<&str>,
    session: Option<&str>,
) -> Value {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let mut command = match lang {
        Lang::Node => {
            let mut c = Command::new("node");
            c.arg(scripts.join("flow.js"))
                .env("NODE_PATH", home.join("node/node_modules"));
            c
        }
        Lang::Python => {
            let mut c = Command::new(home.join("venv/bin/python"));
            c.arg(scripts.join("flow.py"));
            c
        }
    };
    command
        .env("PLAID_VCR_BASE", base)
        .env("PLAID_VCR_MODE", mode)
        .env_remove("CLIENT_ID")
        .env_remove("SECRET");
    command.env_remove("PLAID_VCR_KID").env_remove("PLAID_VCR_SESSION");
    if let Some(kid) = kid {
        command.env("PLAID_VCR_KID", kid);
    }
    if let Some(session) = session {
        command.env("PLAID_VCR_SESSION", session);
    }
    if credentials {
        command
            .env("CLIENT_ID", "0123456789abcdef01234567")
            .env("SECRET", "0123456789abcdef0123456789abcd");
    }
    run_script(command, &format!("{lang:?} flow ({mode})"))
}

/// Runs a client script (bounded: 90 s), asserts it succeeded and returns the JSON of its last
/// stdout line; `what` names it in failures.
fn run_script(mut command: Command, what: &str) -> Value {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    for _ in 0..900 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{what} failed: {stderr}\n{stdout}");
            let line = stdout.lines().last().unwrap_or_default();
            return serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("{what} did not finish in 90 s");
}

async fn flow_async(
    home: &Path,
    lang: Lang,
    base: String,
    mode: &'static str,
    credentials: bool,
    kid: Option<String>,
) -> Value {
    let home = home.to_owned();
    tokio::task::spawn_blocking(move || flow(&home, lang, &base, mode, credentials, kid.as_deref()))
        .await
        .unwrap()
}

/// Four tests of a parallel suite, two per client, each in its own session: the Node client
/// names its session with the header, the Python client with its base URL. Recorded in
/// parallel, then replayed in parallel; each session answers from its own recordings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_in_parallel_each_use_their_own_session_by_header_or_base_path() {
    let Some(home) = clients_home() else { return };
    let sessions = [
        (Lang::Node, "suite/node_1"),
        (Lang::Node, "suite/node_2"),
        (Lang::Python, "suite/python_1"),
        (Lang::Python, "suite/python_2"),
    ];
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let run = |server: &plaid_vcr::RunningServer, mode: &'static str| {
        let runs: Vec<_> = sessions
            .iter()
            .map(|&(lang, name)| {
                let (home, base) = match lang {
                    Lang::Node => (home.clone(), server.base_url()),
                    Lang::Python => (home.clone(), server.session_url(name)),
                };
                let header = matches!(lang, Lang::Node).then_some(name);
                tokio::task::spawn_blocking(move || flow_in(&home, lang, &base, mode, true, None, header))
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for run in runs {
                out.push(run.await.unwrap());
            }
            out
        }
    };
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    run(&recorder, "record").await;
    let recorded = recorder.stop().await.unwrap();
    fake.stop();
    for (_, name) in sessions {
        assert_eq!(
            recorded.sessions[name].recorded.len(),
            5,
            "{name}: {:?}",
            recorded.sessions[name]
        );
        let own = dirs
            .cassette_files()
            .iter()
            .filter(|f| f.starts_with(format!("sessions/{name}/")))
            .count();
        assert_eq!(own, 5, "{name}");
    }

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let replayed = run(&replay, "replay").await;
    let summary = replay.stop().await.unwrap();
    for ((lang, name), out) in sessions.iter().zip(&replayed) {
        assert_replayed(*lang, out);
        let report = &summary.sessions[*name];
        // The flow's deliberate miss, and every one of its own recordings used.
        assert_eq!((report.misses.len(), report.unused.len()), (1, 0), "{name}: {report:?}");
        assert!(report.misses[0]
            .explanation
            .as_deref()
            .unwrap()
            .contains(&format!("session {name}")));
    }
}

fn assert_replayed(lang: Lang, out: &Value) {
    assert_eq!(out["accounts"], 2, "{lang:?}: {out}");
    assert_eq!(out["accounts_get"], 3, "{lang:?}: {out}");
    assert!(
        out["owner_email"].as_str().unwrap().ends_with("@example.net"),
        "{lang:?}: redacted data parsed: {out}"
    );
    assert_eq!(out["miss"]["status"], 404, "{lang:?}: {out}");
    assert_eq!(
        out["miss"]["code"], "PLAID_VCR_NO_RECORDING",
        "{lang:?}: the miss reaches the caller: {out}"
    );
    assert_eq!(out["no_credentials"]["status"], 400, "{lang:?}: {out}");
    assert_eq!(out["no_credentials"]["code"], "MISSING_FIELDS", "{lang:?}: {out}");
}

#[tokio::test]
async fn official_clients_record_then_replay_offline() {
    let Some(home) = clients_home() else { return };
    for lang in LANGS {
        let fake = FakePlaid::start().await;
        let dirs = Dirs::new();
        let mut cfg = config(&dirs, Some(&fake));
        // The test code holds no credentials; plaid-vcr has them.
        cfg.client_id = Some(Secret::new("vcr-held-client-id"));
        cfg.secret = Some(Secret::new("vcr-held-secret"));
        let proxy = start(&cfg, Mode::Record).await;
        let recorded = flow_async(&home, lang, proxy.base_url(), "record", false, None).await;
        let summary = proxy.stop().await.unwrap();
        assert_eq!(summary.recorded.len(), 5, "{lang:?}: {summary:?}");
        assert_eq!(
            (
                fake.calls("sandbox/public_token/create"),
                fake.calls("item/public_token/exchange"),
                fake.calls("identity/get"),
                fake.calls("accounts/get")
            ),
            (1, 1, 2, 1),
            "{lang:?}"
        );
        for seen in fake.seen() {
            assert_eq!(
                seen.headers["plaid-client-id"], "vcr-held-client-id",
                "{lang:?} {}",
                seen.path
            );
            assert_eq!(seen.headers["plaid-version"], "2020-09-14");
        }
        let real_token = recorded["token"].as_str().unwrap().to_string();
        fake.stop();

        let replay = start(&config(&dirs, None), Mode::Replay).await;
        let replayed = flow_async(&home, lang, replay.base_url(), "replay", true, None).await;
        let summary = replay.stop().await.unwrap();
        assert_replayed(lang, &replayed);
        assert_eq!(
            replayed["token"],
            Pseudonymizer::new(b"").pseudonymize(Kind::Token, &real_token),
            "{lang:?}"
        );
        assert!(
            summary.unused.is_empty(),
            "{lang:?}: every recording was used: {:?}",
            summary.unused
        );
        assert_eq!(summary.misses.len(), 1, "{lang:?}: only the deliberate miss");

        if let (Lang::Node, Some(save)) = (lang, std::env::var_os("PLAID_VCR_CLIENTS_SAVE")) {
            let save = Path::new(env!("CARGO_MANIFEST_DIR")).join(save);
            for file in dirs.cassette_files() {
                std::fs::create_dir_all(save.join(&file).parent().unwrap()).unwrap();
                std::fs::copy(dirs.cassette().join(&file), save.join(&file)).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn official_clients_replay_the_committed_cassette() {
    let Some(home) = clients_home() else { return };
    for lang in LANGS {
        let cassette = Path::new(env!("CARGO_MANIFEST_DIR")).join("cassettes/clients");
        let server = plaid_vcr::ReplayServer::start(cassette).await.unwrap();
        let kid = server.webhook_key_id().expect("replay signs webhooks").to_owned();
        let out = flow_async(&home, lang, server.base_url(), "replay", true, Some(kid.clone())).await;
        assert_replayed(lang, &out);
        // The client's own model parses plaid-vcr's JWK, answered for its key id.
        assert_eq!(
            out["webhook_key"],
            serde_json::json!({"kid": kid, "alg": "ES256", "crv": "P-256", "kty": "EC", "x": 43, "expired_at": null}),
            "{lang:?}: {out}"
        );
        server.stop().await.unwrap();
    }
}

/// Runs `tests/clients/products.py` against `base` (bounded: 90 s) and returns its JSON line.
async fn products(home: &Path, base: String) -> Value {
    let mut command = Command::new(home.join("venv/bin/python"));
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/products.py"))
        .env("PLAID_VCR_BASE", base)
        .env("CLIENT_ID", "0123456789abcdef01234567")
        .env("SECRET", "0123456789abcdef0123456789abcd");
    tokio::task::spawn_blocking(move || run_script(command, "products.py"))
        .await
        .unwrap()
}

#[tokio::test]
async fn plaid_python_parses_the_redacted_answers_of_other_products() {
    let Some(home) = clients_home() else { return };
    // The fake answers with Plaid's own examples (the spec's, from the corpus).
    let corpus: Value = serde_json::from_str(include_str!("../corpus/plaid_examples.json")).unwrap();
    let fake = FakePlaid::start().await;
    let endpoints = [
        "auth/get",
        "identity_verification/get",
        "transfer/get",
        "beacon/user/get",
    ];
    for example in corpus["examples"].as_array().unwrap() {
        let endpoint = example["endpoint"].as_str().unwrap();
        if endpoints.contains(&endpoint) {
            let body = example["response"].clone();
            fake.reply(endpoint, Reply { status: 200, body });
        }
    }
    let dirs = Dirs::new();
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let recorded = products(&home, proxy.base_url()).await;
    assert_eq!(proxy.stop().await.unwrap().recorded.len(), 3);
    fake.stop();

    // Replayed offline, every answer still passes plaid-python's models, and the personal
    // values in it are pseudonyms of the standard's form.
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let replayed = products(&home, replay.base_url()).await;
    replay.stop().await.unwrap();
    for field in [
        "ach_account",
        "beacon_given_name",
        "beacon_date_of_birth",
        "beacon_id_number",
        "transfer_legal_name",
        "beacon_street",
    ] {
        assert_ne!(recorded[field], replayed[field], "{field} was redacted: {replayed}");
    }
    let get = |f: &str| replayed[f].as_str().unwrap().to_owned();
    // Already pseudonyms: pseudonymizing them again changes nothing.
    for (kind, field) in [
        (Kind::Dob, "beacon_date_of_birth"),
        (Kind::IdNumber, "beacon_id_number"),
    ] {
        assert_eq!(
            Pseudonymizer::new(b"any").pseudonymize(kind, &get(field)),
            get(field),
            "{field}"
        );
    }
    assert!(get("beacon_ip_address").starts_with("192.0.2."), "{replayed}");
    assert_eq!(
        get("ach_account").len(),
        recorded["ach_account"].as_str().unwrap().len()
    );
}
