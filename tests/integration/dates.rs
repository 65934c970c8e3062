//! Recordings that do not go stale: `replay --shift-dates` moves an answer's dates by the days
//! since it was recorded, by Plaid's schema, and says when it was recorded.

use plaid_vcr::Mode;
use serde_json::{json, Value};

use crate::support::*;

const BODY: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6","start_date":"2024-01-01","end_date":"2024-02-01"}"#;

fn transactions() -> Value {
    json!({
        "accounts": [],
        "item": {"item_id": "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op", "webhook": null, "error": null,
                 "available_products": [], "billed_products": [], "consent_expiration_time": null},
        "total_transactions": 2,
        "transactions": [
            {"transaction_id": "t1", "date": "2024-01-30", "authorized_date": "2024-01-28",
             "datetime": "2024-01-30T11:00:00Z", "pending": false, "amount": 12.5},
            {"transaction_id": "t2", "date": "2024-01-31", "authorized_date": null,
             "datetime": null, "pending": true, "amount": 3}
        ]
    })
}

#[tokio::test]
async fn replayed_dates_move_to_today_by_the_schema_and_the_answer_says_when_it_was_recorded() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.reply(
        "transactions/get",
        Reply {
            status: 200,
            body: transactions(),
        },
    );
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let recorded = plaid(&recorder, "transactions/get", BODY).await;
    assert_eq!(recorded.outcome(), "recorded");
    recorder.stop().await.unwrap();
    // Recorded today: a year from now, the shift is 365 or 366 days.
    let recorded_on = time::OffsetDateTime::now_utc().date();
    let a_year_later = recorded_on.replace_year(recorded_on.year() + 1).unwrap();
    let days = (a_year_later - recorded_on).whole_days();

    let plain = start(&config(&dirs, None), Mode::Replay).await;
    let as_recorded = plaid(&plain, "transactions/get", BODY).await;
    plain.stop().await.unwrap();
    let at = as_recorded.headers["plaid-vcr-recorded-at"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(at.starts_with(&recorded_on.to_string()), "{at}");

    let mut cfg = config(&dirs, None);
    cfg.shift_dates = true;
    cfg.today = Some(a_year_later);
    let shifted = start(&cfg, Mode::Replay).await;
    let first = plaid(&shifted, "transactions/get", BODY).await;
    let again = plaid(&shifted, "transactions/get", BODY).await;
    shifted.stop().await.unwrap();
    assert_eq!(first.outcome(), "hit");
    assert_eq!(first.body, again.body, "the same --today gives the same bytes");
    assert_eq!(
        first.headers["plaid-vcr-recorded-at"],
        at.as_str(),
        "when it was recorded, not shifted"
    );

    let (old, new) = (as_recorded.json(), first.json());
    let moved = |d: &str| {
        let day = time::Date::parse(&d[..10], time::macros::format_description!("[year]-[month]-[day]")).unwrap();
        format!("{}{}", day + time::Duration::days(days), &d[10..])
    };
    for (i, field) in [(0, "date"), (0, "authorized_date"), (0, "datetime"), (1, "date")] {
        let was = old["transactions"][i][field].as_str().unwrap();
        assert_eq!(new["transactions"][i][field].as_str().unwrap(), moved(was), "{field}");
    }
    assert_eq!(
        new["transactions"][0]["datetime"].as_str().unwrap().get(10..),
        Some("T11:00:00Z")
    );
    assert!(new["transactions"][1]["authorized_date"].is_null());
    assert_eq!(new["transactions"][0]["amount"], 12.5);
    // Nothing but the dates changed: shifting them back gives the recorded bytes.
    let mut back = new.clone();
    for (i, field) in [(0, "date"), (0, "authorized_date"), (0, "datetime"), (1, "date")] {
        let now = back["transactions"][i][field].as_str().unwrap().to_owned();
        let day = time::Date::parse(&now[..10], time::macros::format_description!("[year]-[month]-[day]")).unwrap();
        back["transactions"][i][field] = Value::String(format!("{}{}", day - time::Duration::days(days), &now[10..]));
    }
    assert_eq!(serde_json::to_vec_pretty(&back).unwrap(), as_recorded.body.to_vec());
}

/// Every date field of Plaid's own examples (the spec's, for every endpoint): shifted by any
/// number of days and back, the answer is the recorded one, byte for byte.
#[test]
fn shifting_then_unshifting_returns_the_recorded_bytes_for_every_date_field_of_plaids_examples() {
    use proptest::prelude::*;
    let corpus: Value = serde_json::from_str(include_str!("../corpus/plaid_examples.json")).unwrap();
    let examples: Vec<(String, Value)> = corpus["examples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["response"].is_object())
        .map(|e| (e["endpoint"].as_str().unwrap().to_owned(), e["response"].clone()))
        .collect();
    let dated: usize = examples
        .iter()
        .map(|(endpoint, body)| plaid_vcr::testing::dates::shift_answer(endpoint, &mut body.clone(), 1))
        .sum();
    assert!(dated > 300, "Plaid's examples have hundreds of dates to move: {dated}");
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 64,
        ..Default::default()
    });
    runner
        .run(&(-4000i64..4000), |days| {
            for (endpoint, body) in &examples {
                let mut shifted = body.clone();
                let moved = plaid_vcr::testing::dates::shift_answer(endpoint, &mut shifted, days);
                let back = plaid_vcr::testing::dates::shift_answer(endpoint, &mut shifted, -days);
                prop_assert_eq!(moved, back);
                prop_assert_eq!(
                    serde_json::to_vec_pretty(&shifted).unwrap(),
                    serde_json::to_vec_pretty(body).unwrap(),
                    "{}",
                    endpoint
                );
            }
            Ok(())
        })
        .unwrap();
}
