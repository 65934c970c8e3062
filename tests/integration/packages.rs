//! The packages as users install them: the example projects under `examples/` run against
//! plaid-vcr installed from the wheel (`pip install`) and from the npm tarballs (`npm
//! install`), with the official Plaid clients, recording through the fake Plaid and then
//! replaying offline, in parallel.
//!
//! `tests/packages/setup.sh` (which `.ci/run` runs) builds and installs them into
//! `$PLAID_VCR_PACKAGES_HOME` (default `~/.cache/plaid-vcr-packages`). Without it these tests
//! say SKIPPED on stderr and pass, so `cargo test` works on a machine without Python or Node;
//! under `CI` they fail instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn packages_home() -> Option<PathBuf> {
    let home = std::env::var_os("PLAID_VCR_PACKAGES_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/plaid-vcr-packages")
        });
    if home.join("venv/bin/pytest").is_file() && home.join("jest-project/node_modules/.bin/jest").is_file() {
        return Some(home);
    }
    let hint = format!(
        "plaid-vcr's packages not installed in {}: run tests/packages/setup.sh",
        home.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{hint} (CI must run them)");
    let _ = writeln!(std::io::stderr(), "SKIPPED: {hint}");
    None
}

/// The day a year after the recordings under `cassette` were made (YYYY-MM-DD).
fn a_year_after_recording(cassette: &Path) -> String {
    let mut stack = vec![cassette.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                if let Some(at) = file["recorded_at"].as_str() {
                    let day = plaid_vcr::testing::dates::parse_day(at).unwrap();
                    return day.replace_year(day.year() + 1).unwrap().to_string();
                }
            }
        }
    }
    panic!("no recording under {}", cassette.display())
}

/// A copy of the example project `name` in a fresh directory, as a user's checkout.
fn project(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// Runs `command` in `cwd` (bounded: 180 s) with none of the caller's plaid-vcr or Plaid
/// settings; returns its exit code and its output, stdout then stderr.
fn run(mut command: Command, cwd: &Path) -> (i32, String) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("PLAID_VCR_") || name.starts_with("PLAID_") || name == "RUST_LOG" {
            command.env_remove(name.as_ref());
        }
    }
    let mut child = command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    for _ in 0..1800 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (out.status.code().unwrap_or(-1), text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("{command:?} did not finish in 180 s");
}

/// [`run`] from an async test, with `env` set.
async fn run_in(mut command: Command, project: &Path, env: &[(&str, &str)]) -> (i32, String) {
    for (name, value) in env {
        command.env(name, value);
    }
    let project = project.to_owned();
    tokio::task::spawn_blocking(move || run(command, &project))
        .await
        .unwrap()
}

/// Asserts that the example test `test` recorded its item in a session of its own under
/// `sessions` (`out`: the run's output, for the message).
fn assert_own_session(sessions: &Path, test: &str, out: &str) {
    assert!(
        sessions.join(test).join("item_public_token_exchange").is_dir(),
        "{test} recorded in its own session: {out}"
    );
}

async fn pytest(home: &Path, project: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new(home.join("venv/bin/python"));
    command.args(["-m", "pytest", "-p", "no:cacheprovider"]).args(args);
    run_in(command, project, env).await
}

/// The example pytest project: recorded through the fake with `-n 4` into one session per
/// test, replayed offline with `-n 4`, and a test whose request was never recorded fails
/// with plaid-vcr's explanation of the miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pytest_plugin_records_a_session_per_test_and_replays_offline_under_xdist() {
    let Some(home) = packages_home() else { return };
    // The binary the wheel put on the virtualenv's PATH, and `python -m plaid_vcr` for when
    // PATH is awkward.
    let mut module = Command::new(home.join("venv/bin/python"));
    module.args(["-m", "plaid_vcr", "--version"]);
    let (code, out) = run(module, &home);
    assert_eq!((code, out.trim()), (0, "plaid-vcr 0.1.0"), "{out}");
    let (code, out) = run(Command::new(home.join("venv/bin/plaid-vcr")), &home);
    assert_eq!(code, 2, "no command is a usage error: {out}");

    let fake = FakePlaid::start().await;
    let project = project("pytest");
    let dir = project.path();
    let (upstream, ca) = (
        format!("--plaid-vcr-arg=--upstream={}", fake.url()),
        format!("--plaid-vcr-arg=--upstream-ca={}", fake.ca_file.display()),
    );

    let (code, out) = pytest(&home, dir, &["-n", "4", "--plaid-vcr-mode=record", &upstream, &ca], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("9 passed"), "{out}");
    assert!(
        out.contains("plaid-vcr summary (record)"),
        "the summary is shown: {out}"
    );
    let sessions = dir.join("cassettes/sessions/test_plaid.py");
    for test in [
        "test_a_new_item_has_accounts",
        "test_identity_names_the_owners",
        "test_each_institution_gets_its_own_item_ins_109508_",
        "test_each_institution_gets_its_own_item_ins_109509_",
        "TestAccounts/test_balances_are_numbers",
        "test_a_request_never_recorded_fails_with_the_explanation",
        "../test_failures.py/test_login_required_sends_the_user_through_update_mode",
        "../test_failures.py/test_rate_limits_are_retried_with_back_off",
    ] {
        assert_own_session(&sessions, test, &out);
    }
    let recorded_calls = fake.total_calls();
    fake.stop();

    let (code, out) = pytest(&home, dir, &["-n", "4"], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("9 passed"), "{out}");
    assert!(
        out.contains("plaid-vcr summary (replay)") && out.contains(" 0 misses"),
        "{out}"
    );
    assert_eq!(fake.total_calls(), recorded_calls, "replay is offline");

    // A year later, by the app's clock and plaid-vcr's: every answer's dates shifted, and the
    // "last 30 days" request, with new dates, still matches.
    let later = a_year_after_recording(&dir.join("cassettes"));
    let (shift, today) = (
        "--plaid-vcr-arg=--shift-dates".to_owned(),
        format!("--plaid-vcr-arg=--today={later}"),
    );
    let (code, out) = pytest(&home, dir, &["-n", "4", &shift, &today], &[("EXAMPLE_TODAY", &later)]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("9 passed") && out.contains(" 0 misses"), "{out}");

    let (code, out) = pytest(&home, dir, &["-k", "never_recorded"], &[("EXAMPLE_UNRECORDED", "1")]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 failed"), "{out}");
    assert!(
        out.contains("plaid-vcr: 1 request(s) of this test had no recording")
            && out.contains("session test_plaid.py/test_a_request_never_recorded_fails_with_the_explanation")
            && out.contains("the closest")
            && out.contains("options.account_ids"),
        "the failure holds plaid-vcr's explanation: {out}"
    );
    assert!(
        out.contains("PLAID_VCR_NO_RECORDING"),
        "and the client's own error: {out}"
    );
}

async fn jest(home: &Path, project: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut command = Command::new("node");
    command
        .arg(home.join("jest-project/node_modules/jest/bin/jest.js"))
        .args(["--ci", "--maxWorkers=4"]);
    run_in(command, project, env).await
}

/// The example jest project, with `npm install`ed packages and four workers: recorded through
/// the fake into one session per test, replayed offline, and a test whose request was never
/// recorded fails with plaid-vcr's explanation of the miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jest_helper_records_a_session_per_test_and_replays_offline_with_parallel_workers() {
    let Some(home) = packages_home() else { return };
    let fake = FakePlaid::start().await;
    let project = project("jest");
    let dir = project.path();
    // The packages as `npm install plaid-vcr jest plaid` left them in a project of the user's.
    std::os::unix::fs::symlink(home.join("jest-project/node_modules"), dir.join("node_modules")).unwrap();
    // `npx plaid-vcr`: the bin entry runs this platform's binary.
    let mut npx = Command::new("node");
    npx.args(["node_modules/plaid-vcr/bin/plaid-vcr.js", "--version"]);
    let (code, out) = run(npx, dir);
    assert_eq!((code, out.trim()), (0, "plaid-vcr 0.1.0"), "{out}");
    let args = format!("--upstream={} --upstream-ca={}", fake.url(), fake.ca_file.display());

    let (code, out) = jest(&home, dir, &[("PLAID_VCR_MODE", "record"), ("PLAID_VCR_ARGS", &args)]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Tests:       8 passed, 8 total"), "{out}");
    assert!(
        out.contains("plaid-vcr summary (record)"),
        "the summary is shown: {out}"
    );
    assert!(
        out.contains("Test Suites: 4 passed, 4 total"),
        "four files, in parallel workers: {out}"
    );
    let sessions = dir.join("cassettes/plaid-vcr/sessions");
    for test in [
        "accounts.test.js/a_new_item_has_accounts",
        "identity.test.js/identity_names_the_owners",
        "identity.test.js/each_institution_gets_its_own_item__ins_109508",
        "identity.test.js/each_institution_gets_its_own_item__ins_109509",
        "accounts.test.js/a_request_never_recorded_fails_with_the_explanation",
        "failures.test.js/login_required_sends_the_user_through_update_mode",
        "failures.test.js/rate_limits_are_retried_with_back-off",
    ] {
        assert_own_session(&sessions, test, &out);
    }
    let recorded_calls = fake.total_calls();
    fake.stop();

    let (code, out) = jest(&home, dir, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Tests:       8 passed, 8 total"), "{out}");
    assert!(
        out.contains("plaid-vcr summary (replay)") && out.contains(" 0 misses"),
        "{out}"
    );
    assert_eq!(fake.total_calls(), recorded_calls, "replay is offline");

    // The ES module form of the API, on the same cassette: start, a hit in a test's session, stop.
    let script = r#"
        import { startPlaidVcr } from 'plaid-vcr';
        const vcr = await startPlaidVcr({ cassette: 'cassettes/plaid-vcr' });
        const answer = await fetch(vcr.sessionUrl('identity.test.js/identity_names_the_owners') + '/sandbox/public_token/create', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'plaid-client-id': 'a', 'plaid-secret': 'b', 'plaid-version': '2020-09-14' },
          body: JSON.stringify({ institution_id: 'ins_109508', initial_products: ['auth'] }),
        });
        const report = await vcr.report('identity.test.js/identity_names_the_owners');
        await vcr.stop();
        console.log(JSON.stringify({ status: answer.status, outcome: answer.headers.get('plaid-vcr-outcome'), hits: report.hits }));
    "#;
    let mut esm = Command::new("node");
    esm.args(["--input-type=module", "-e", script]);
    let (code, out) = run_in(esm, dir, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#"{"status":200,"outcome":"hit","hits":1}"#), "{out}");

    let later = a_year_after_recording(&dir.join("cassettes/plaid-vcr"));
    let args = format!("--shift-dates --today={later}");
    let (code, out) = jest(&home, dir, &[("PLAID_VCR_ARGS", &args), ("EXAMPLE_TODAY", &later)]).await;
    assert_eq!(code, 0, "a year later: {out}");
    assert!(
        out.contains("Tests:       8 passed, 8 total") && out.contains(" 0 misses"),
        "{out}"
    );

    let (code, out) = jest(&home, dir, &[("EXAMPLE_UNRECORDED", "1")]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 failed, 7 passed"), "{out}");
    assert!(
        out.contains("plaid-vcr: 1 request(s) of this test had no recording")
            && out.contains("session accounts.test.js/a_request_never_recorded_fails_with_the_explanation")
            && out.contains("the closest")
            && out.contains("options.account_ids"),
        "the failure holds plaid-vcr's explanation: {out}"
    );
}
