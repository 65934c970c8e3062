//! Replayed webhooks reaching the app: signed and verified under many concurrent flows,
//! retried when the app fails, and reported when they have nowhere to go.

use serde_json::{json, Value};

use super::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_counted_and_fail_strict_and_unsent_ones_are_named() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;

    // Every delivery goes to a port nothing listens on: refused, retried, failed.
    let dead = format!("http://127.0.0.1:{}/hooks", free_port());
    let mut replay = Binary::start(
        &serve_args("replay", &dirs, None, &["--strict", "--webhook-target", &dead]),
        &[],
        dirs.root.path(),
    );
    let body = json!({"institution_id": "ins_109508", "initial_products": ["transactions"],
                      "options": {"webhook": "http://127.0.0.1:9/unused"}});
    let url = format!("{}/sandbox/public_token/create", replay.base_url());
    let resp = send("POST", &url, &CLIENT_HEADERS, body.to_string()).await;
    assert_eq!(
        (resp.status, resp.outcome()),
        (200, "hit"),
        "the answer never waits for a delivery"
    );
    // Shutdown waits for the queued delivery and its retries.
    assert_eq!(replay.signal_and_wait("TERM"), Some(1), "{}", replay.stderr());
    let stderr = replay.stderr();
    assert!(stderr.contains("webhook delivery failed"), "{stderr}");
    assert!(stderr.contains("attempts=3"), "{stderr}");
    assert!(
        stderr.contains("webhooks: 0 recorded, 0 delivered, 1 failed, 3 never delivered"),
        "{stderr}"
    );
    assert!(stderr.contains("undelivered webhook webhooks/"), "{stderr}");
    assert!(stderr.contains("1 webhook deliveries failed (--strict)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flows_each_get_their_webhooks_delivered_and_verified() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;

    // 16 clients each create an item three times at once, against one app: 48 deliveries
    // through one queue, every one verified, none lost or doubled.
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let base = replay.base_url();
    let app = Arc::new(App::start(base.clone()).await);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (base, app) = (base.clone(), app.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    let body = json!({"institution_id": "ins_109508", "initial_products": ["transactions"],
                                      "options": {"webhook": app.url("/hooks/first")}});
                    let url = format!("{base}/sandbox/public_token/create");
                    let resp = send("POST", &url, &CLIENT_HEADERS, body.to_string()).await;
                    assert_eq!((resp.status, resp.outcome()), (200, "hit"));
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    app.wait_for(48).await;
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
    let webhooks = app.webhooks();
    assert_eq!(webhooks.len(), 48, "one SYNC_UPDATES_AVAILABLE per replayed create");
    let mut bodies = std::collections::HashSet::new();
    for w in &webhooks {
        let Event::Webhook {
            verified, code, body, ..
        } = w
        else {
            unreachable!()
        };
        assert_eq!(verified, &Ok(()));
        assert_eq!(code, "SYNC_UPDATES_AVAILABLE");
        bodies.insert(body.clone());
    }
    assert_eq!(
        bodies.len(),
        1,
        "every delivery of one recorded webhook has the same bytes"
    );
    assert!(
        replay
            .stderr()
            .contains("webhooks: 0 recorded, 48 delivered, 0 failed, 2 never delivered"),
        "{}",
        replay.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_nowhere_to_go_is_logged_once_and_replay_goes_on() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;

    // The app skips item creation (which registered the URL): the public token it exchanges
    // is the replayed one, read from the cassette.
    let create = dirs
        .cassette_files()
        .into_iter()
        .find(|f| f.starts_with("sandbox_public_token_create"))
        .unwrap();
    let created: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(create)).unwrap()).unwrap();
    let public_token = created["response"]["body"]["public_token"].as_str().unwrap().to_owned();
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let base = replay.base_url();
    let exchanged = send(
        "POST",
        &format!("{base}/item/public_token/exchange"),
        &CLIENT_HEADERS,
        json!({"public_token": public_token}).to_string(),
    )
    .await;
    let token = exchanged.json()["access_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let fired = send(
            "POST",
            &format!("{base}/sandbox/item/fire_webhook"),
            &CLIENT_HEADERS,
            json!({"access_token": token, "webhook_code": "DEFAULT_UPDATE"}).to_string(),
        )
        .await;
        assert_eq!((fired.status, fired.outcome()), (200, "hit"));
    }
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
    let stderr = replay.stderr();
    assert_eq!(
        stderr.matches("recorded webhooks have nowhere to go").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("webhooks: 0 recorded, 0 delivered, 0 failed, 3 never delivered"),
        "{stderr}"
    );
}
