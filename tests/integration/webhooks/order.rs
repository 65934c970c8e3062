//! Which answer each webhook is recorded after when webhooks and answers race. The fake holds
//! webhooks and the answers that caused them and lets them go one at a time, so every order
//! here is the one the test chose: nothing waits on a clock.

use serde_json::{json, Value};

use super::*;
use crate::support::*;

/// Waits (bounded: 10 s) until the fake has counted `n` calls to `endpoint`.
async fn calls_reach(fake: &FakePlaid, endpoint: &str, n: usize) {
    for _ in 0..1000 {
        if fake.calls(endpoint) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{endpoint} was called {} times, not {n}", fake.calls(endpoint));
}

/// Upstream may send a webhook before plaid-vcr has its answer to the request that caused it
/// (here every answer is held until the app has its webhook): the webhook is still recorded
/// after that request, not after whatever was answered before it arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_overtakes_the_answer_that_caused_it_is_recorded_after_that_answer() {
    let (dirs, fake, mut recorder, app) = recording().await;
    let base = recorder.base_url();
    fake.hold_causes();
    let answer_each_cause_once_its_webhook_arrived = async {
        for n in 1..=3 {
            app.wait_for(n).await;
            fake.release_cause();
        }
    };
    tokio::join!(flow(&base, &app), answer_each_cause_once_its_webhook_arrived);
    let seen = app.webhooks().len();
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    fake.stop();
    assert_eq!(seen, 3);
    assert_eq!(recorded_after(&dirs), flow_causes());
    assert!(
        !recorder.stderr().contains("unanswered for"),
        "no webhook waited out the bound: {}",
        recorder.stderr()
    );
}

/// Webhooks that overtake their causes' answers, two at a time. When the second request left
/// only after the first's webhook arrived, each webhook follows its own cause. When both
/// requests were unanswered at both arrivals (either could be the cause of either), both
/// follow the one answered last, in the order they arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_waiting_for_their_causes_follow_them_in_the_order_they_arrived() {
    let (dirs, fake, mut recorder, app) = recording().await;
    let base = recorder.base_url();
    let access_token = create_and_exchange(&base, &app).await;
    fake.hold_webhooks();
    fake.hold_causes();
    const FIRE: &str = "sandbox/item/fire_webhook";
    let fire = |code: &'static str| {
        let body = json!({"access_token": access_token, "webhook_type": "ITEM", "webhook_code": code});
        let base = base.clone();
        tokio::spawn(async move { post(&base, FIRE, &body.to_string()).await })
    };

    // One after the other: the second request leaves once the first's webhook has arrived.
    let first = fire("NEW_ACCOUNTS_AVAILABLE");
    calls_reach(&fake, FIRE, 1).await;
    fake.release_webhook();
    app.wait_for(2).await;
    let second = fire("PENDING_EXPIRATION");
    calls_reach(&fake, FIRE, 2).await;
    fake.release_webhook();
    app.wait_for(3).await;
    fake.release_cause();
    assert_eq!(first.await.unwrap().status, 200);
    fake.release_cause();
    assert_eq!(second.await.unwrap().status, 200);

    // Both at once: both requests are at upstream before either webhook arrives.
    let third = fire("USER_PERMISSION_REVOKED");
    calls_reach(&fake, FIRE, 3).await;
    let fourth = fire("LOGIN_REPAIRED");
    calls_reach(&fake, FIRE, 4).await;
    fake.release_webhook();
    app.wait_for(4).await;
    fake.release_webhook();
    app.wait_for(5).await;
    fake.release_cause();
    assert_eq!(third.await.unwrap().status, 200);
    fake.release_cause();
    assert_eq!(fourth.await.unwrap().status, 200);
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    fake.stop();

    // Which code each fire_webhook interaction asked for, by its index key.
    let mut asked: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for file in dirs
        .cassette_files()
        .iter()
        .filter(|f| f.starts_with("sandbox_item_fire_webhook"))
    {
        let i: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(file)).unwrap()).unwrap();
        let code = i["request"]["body"]["webhook_code"].as_str().unwrap().to_owned();
        asked.insert(i["key"].as_str().unwrap().to_owned(), code);
    }
    let placed: std::collections::HashMap<String, (String, u64)> = webhook_files(&dirs)
        .iter()
        .map(|file| {
            let w: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(file)).unwrap()).unwrap();
            let after = w["after"].as_str().unwrap_or("");
            let cause = asked.get(after).cloned().unwrap_or_else(|| format!("({after})"));
            (
                w["webhook_code"].as_str().unwrap().to_owned(),
                (cause, w["seq"].as_u64().unwrap()),
            )
        })
        .collect();
    let of = |code: &str| {
        placed
            .get(code)
            .cloned()
            .unwrap_or_else(|| panic!("{code} not recorded: {placed:?}"))
    };
    assert_eq!(
        of("NEW_ACCOUNTS_AVAILABLE"),
        ("NEW_ACCOUNTS_AVAILABLE".into(), 1),
        "{placed:?}"
    );
    assert_eq!(of("PENDING_EXPIRATION"), ("PENDING_EXPIRATION".into(), 1), "{placed:?}");
    // Both follow LOGIN_REPAIRED, answered last; REVOKED arrived first.
    assert_eq!(
        of("USER_PERMISSION_REVOKED"),
        ("LOGIN_REPAIRED".into(), 1),
        "{placed:?}"
    );
    assert_eq!(of("LOGIN_REPAIRED"), ("LOGIN_REPAIRED".into(), 2), "{placed:?}");
}

/// A webhook that arrives while an unrelated request to upstream hangs reaches the app while
/// that request is still held; its placing waits for that request only up to the bound, then
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_hanging_upstream_never_holds_back_a_webhook() {
    let (dirs, fake, mut recorder, app) = recording().await;
    let base = recorder.base_url();
    // Held upstream (answers that cause webhooks are never held by `hold`).
    fake.hold();
    let hanging = tokio::spawn({
        let (base, body) = (base.clone(), json!({"access_token": TOKEN}).to_string());
        async move { post(&base, "identity/get", &body).await }
    });
    calls_reach(&fake, "identity/get", 1).await;
    create_item(&base, &app).await;
    app.wait_for(1).await;
    assert!(
        !hanging.is_finished(),
        "the app got the webhook while the request hangs"
    );
    // Recorded once the bound is over, after what was answered when it arrived.
    for _ in 0..200 {
        if webhook_files(&dirs).len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        recorded_after(&dirs),
        [(
            "SYNC_UPDATES_AVAILABLE".to_owned(),
            "sandbox/public_token/create".to_owned()
        )]
    );
    assert!(!hanging.is_finished(), "recorded while the request still hangs");
    fake.release();
    assert_eq!(hanging.await.unwrap().status, 200);
    drop(app);
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0), "{}", recorder.stderr());
    assert!(recorder.stderr().contains("unanswered for 2s"), "{}", recorder.stderr());
}
