//! Webhooks and sessions: each session's webhooks are recorded in its own folder, after its
//! own interactions, and replayed to the URL that session registered, while other sessions
//! run the same flow at the same time.

use super::*;
use crate::support::*;

/// The base URL of `session` on the plaid-vcr whose base URL is `base`.
fn session_base(base: &str, session: &str) -> String {
    let root = base.trim_end_matches("/plaid-compatible");
    format!("{root}/sessions/{session}/plaid-compatible")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_records_its_webhooks_and_replay_delivers_them_to_the_url_it_registered() {
    const SESSIONS: [&str; 3] = ["tests/one", "tests/two", "tests/three"];
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.send_webhooks();
    let (mut recorder, _) = recorder(&dirs, &fake, &[]);
    // The fake keeps one item's webhook URL, as the sandbox does per item: one flow at a time.
    for session in SESSIONS {
        let base = session_base(&recorder.base_url(), session);
        let app = App::start(base.clone()).await;
        flow(&base, &app).await;
        assert_seen(&app, ITEM_ID);
    }
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    fake.stop();
    let files = webhook_files(&dirs);
    for session in SESSIONS {
        let own = files
            .iter()
            .filter(|f| f.starts_with(format!("sessions/{session}/webhooks")))
            .count();
        assert_eq!(own, 3, "{session}: {files:?}");
    }
    assert_eq!(files.len(), 9, "none outside the sessions: {files:?}");

    // Replay: the three flows at once, each app at its own URL gets its own three webhooks.
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let base = replay.base_url();
    let mut flows = Vec::new();
    for session in SESSIONS {
        let base = session_base(&base, session);
        flows.push(tokio::spawn(async move {
            let app = App::start(base.clone()).await;
            // Replayed answers name the item by its pseudonym, as its webhooks do.
            let item = flow(&base, &app).await;
            assert_seen(&app, &item);
        }));
    }
    for flow in flows {
        flow.await.unwrap();
    }
    let api = format!(
        "{}/plaid-vcr/sessions/tests/two",
        base.trim_end_matches("/plaid-compatible")
    );
    let report = send("GET", &api, &[], "").await.json();
    assert_eq!(
        (
            report["webhooks"]["delivered"].as_u64(),
            report["webhooks"]["failed"].as_u64()
        ),
        (Some(3), Some(0))
    );
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
}
