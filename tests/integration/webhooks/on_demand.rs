//! Webhooks on demand: a test fires any webhook of Plaid's spec, and an `ITEM_LOGIN_REQUIRED`
//! fault sends Plaid's `ITEM` `ERROR` webhook; both signed so the app's own verification passes.

use serde_json::{json, Value};

use super::*;
use crate::support::*;

/// The body of the `n`-th webhook the app got (from 1).
fn webhook_body(app: &App, n: usize) -> Value {
    let Event::Webhook { body, verified, .. } = &app.webhooks()[n - 1] else {
        unreachable!()
    };
    assert_eq!(verified, &Ok(()), "verified as Plaid's");
    serde_json::from_slice(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_fires_a_signed_webhook_of_plaids_spec_to_the_url_its_session_registered() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let root = replay.base_url().trim_end_matches("/plaid-compatible").to_owned();
    let base = format!("{root}/sessions/fire/t1/plaid-compatible");
    let app = App::start(base.clone()).await;
    let item = flow(&base, &app).await;
    let before = app.webhooks().len();

    let fire = json!({"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE", "item_id": item,
                      "session": "fire/t1", "fields": {"historical_update_complete": true}});
    let fired = send(
        "POST",
        &format!("{root}/plaid-vcr/webhooks/fire"),
        &[],
        fire.to_string(),
    )
    .await;
    assert_eq!(fired.status, 200, "{:?}", fired.body);
    assert_eq!(fired.json()["schema"], "SyncUpdatesAvailableWebhook");
    app.wait_for(before + 1).await;
    let got = webhook_body(&app, before + 1);
    assert_eq!(
        (got["webhook_type"].as_str(), got["webhook_code"].as_str()),
        (Some("TRANSACTIONS"), Some("SYNC_UPDATES_AVAILABLE"))
    );
    assert_eq!(
        (got["item_id"].as_str(), got["historical_update_complete"].as_bool()),
        (Some(item.as_str()), Some(true))
    );
    assert_eq!(got["environment"], "sandbox");
    assert!(
        got.get("initial_update_complete").is_some(),
        "every field the spec requires: {got}"
    );

    let unknown = json!({"webhook_type": "ITEM", "webhook_code": "NOPE", "session": "fire/t1"});
    let refused = send(
        "POST",
        &format!("{root}/plaid-vcr/webhooks/fire"),
        &[],
        unknown.to_string(),
    )
    .await;
    assert_eq!(
        (refused.status, refused.json()["error_code"].as_str()),
        (400, Some("PLAID_VCR_INVALID_WEBHOOK"))
    );
    assert!(
        refused.json()["error_message"]
            .as_str()
            .unwrap()
            .contains("known ones of ITEM: ERROR"),
        "{:?}",
        refused.body
    );
    drop(app);
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_login_required_sends_the_item_error_webhook_once_to_the_sessions_url() {
    let dirs = Dirs::new();
    record_flow(&dirs, &[]).await;
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let root = replay.base_url().trim_end_matches("/plaid-compatible").to_owned();
    let base = format!("{root}/sessions/login/t1/plaid-compatible");
    let app = App::start(base.clone()).await;
    // The app's set-up, replayed: an item whose webhooks go to the app, and its access token.
    let public_token = create_item(&base, &app).await;
    app.wait_for(1).await;
    let exchanged = post(
        &base,
        "item/public_token/exchange",
        &json!({"public_token": public_token}).to_string(),
    )
    .await;
    let (token, item) = (
        exchanged.json()["access_token"].as_str().unwrap().to_owned(),
        exchanged.json()["item_id"].as_str().unwrap().to_owned(),
    );
    let before = app.webhooks().len();
    let rule = json!({"error_code": "ITEM_LOGIN_REQUIRED", "endpoint": "/accounts/get"});
    let added = send(
        "POST",
        &format!("{root}/plaid-vcr/sessions/login/t1/faults"),
        &[],
        rule.to_string(),
    )
    .await;
    assert_eq!(added.status, 200);
    for _ in 0..2 {
        let answer = post(&base, "accounts/get", &json!({"access_token": token}).to_string()).await;
        assert_eq!(answer.json()["error_code"], "ITEM_LOGIN_REQUIRED");
    }
    app.wait_for(before + 1).await;
    let got = webhook_body(&app, before + 1);
    assert_eq!(
        (got["webhook_type"].as_str(), got["webhook_code"].as_str()),
        (Some("ITEM"), Some("ERROR"))
    );
    assert_eq!(got["error"]["error_code"], "ITEM_LOGIN_REQUIRED");
    assert_eq!(got["error"]["status"], 400);
    assert_eq!(got["item_id"].as_str(), Some(item.as_str()), "the item of the token");
    // Once: the second failure is the same state, not news.
    let api = format!("{root}/plaid-vcr/sessions/login/t1");
    let report = send("GET", &api, &[], "").await.json();
    assert_eq!(report["faults"].as_array().unwrap().len(), 2);
    assert_eq!(app.webhooks().len(), before + 1, "one ITEM ERROR webhook");
    drop(app);
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());
}
