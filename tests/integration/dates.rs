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

/// A fake Plaid answering `/transactions/get` with [`transactions`].
async fn fake_answering_transactions() -> FakePlaid {
    let fake = FakePlaid::start().await;
    fake.reply(
        "transactions/get",
        Reply {
            status: 200,
            body: transactions(),
        },
    );
    fake
}

/// The day the cassette's `/transactions/get` recording was made (its file's `recorded_at`).
fn recorded_day(dirs: &Dirs) -> time::Date {
    let file = dirs
        .cassette_files()
        .into_iter()
        .find(|f| f.starts_with("transactions_get"))
        .unwrap();
    let i: Value = serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(file)).unwrap()).unwrap();
    plaid_vcr::testing::dates::parse_day(i["recorded_at"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn replayed_dates_move_to_today_by_the_schema_and_the_answer_says_when_it_was_recorded() {
    let dirs = Dirs::new();
    let fake = fake_answering_transactions().await;
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

/// A "last 30 days" request sends new dates every day: a year after recording, its dates read
/// relative to today match the recording made with the same distance from its own day, and the
/// recorded absolute dates still match too.
#[tokio::test]
async fn a_last_30_days_request_still_matches_a_year_later_and_a_miss_says_both_readings() {
    let dirs = Dirs::new();
    let fake = fake_answering_transactions().await;
    let day = |d: time::Date| d.to_string();
    let last_30 = |today: time::Date| {
        json!({"access_token": "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6",
               "start_date": day(today - time::Duration::days(30)), "end_date": day(today)})
        .to_string()
    };
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let recorded = plaid(
        &recorder,
        "transactions/get",
        &last_30(time::OffsetDateTime::now_utc().date()),
    )
    .await;
    recorder.stop().await.unwrap();
    let at = recorded
        .headers
        .get("plaid-vcr-recorded-at")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(at.is_none(), "recording answers are upstream's own");
    let recorded_on = recorded_day(&dirs);
    let a_year_later = recorded_on.replace_year(recorded_on.year() + 1).unwrap();

    let mut cfg = config(&dirs, None);
    cfg.shift_dates = true;
    cfg.today = Some(a_year_later);
    let replay = start(&cfg, Mode::Replay).await;
    let relative = plaid(&replay, "transactions/get", &last_30(a_year_later)).await;
    assert_eq!(relative.outcome(), "hit", "{:?}", relative.body);
    assert_ne!(relative.key(), recorded.key(), "its own key: other dates than recorded");
    let absolute = plaid(&replay, "transactions/get", &last_30(recorded_on)).await;
    assert_eq!(absolute.outcome(), "hit", "the recorded dates themselves");
    assert_eq!(relative.body, absolute.body, "one recording, shifted the same");
    let other = plaid(
        &replay,
        "transactions/get",
        &last_30(a_year_later - time::Duration::days(3)),
    )
    .await;
    assert_eq!(other.outcome(), "miss");
    let message = other.json()["error_message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(&format!("read with its dates relative to today ({a_year_later})")),
        "{message}"
    );
    replay.stop().await.unwrap();

    // In --record-missing, the relative reading is a hit: nothing goes upstream or is recorded.
    let mut cfg = config(&dirs, Some(&fake));
    cfg.shift_dates = true;
    cfg.today = Some(a_year_later);
    let (calls, files) = (fake.total_calls(), dirs.cassette_files().len());
    let filling = start(&cfg, Mode::ReplayRecordMissing).await;
    let relative = plaid(&filling, "transactions/get", &last_30(a_year_later)).await;
    assert_eq!(relative.outcome(), "hit", "{:?}", relative.body);
    filling.stop().await.unwrap();
    assert_eq!((fake.total_calls(), dirs.cassette_files().len()), (calls, files));
}

/// Parallel tests each pick their own day with `Plaid-VCR-Today` on one proxy started without
/// `--shift-dates`: each gets the recording's dates moved to its day, its relative-date
/// request matches, and its session's report names the recording time and the day.
#[tokio::test]
async fn each_session_shifts_to_the_day_its_header_names_and_its_report_names_the_anchor() {
    let dirs = Dirs::new();
    let fake = fake_answering_transactions().await;
    let recorder = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    assert_eq!(plaid(&recorder, "transactions/get", BODY).await.outcome(), "recorded");
    recorder.stop().await.unwrap();

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let recorded = plaid(&replay, "transactions/get", BODY).await;
    let recorded_at = recorded.headers["plaid-vcr-recorded-at"].to_str().unwrap().to_owned();
    let recorded_on = plaid_vcr::testing::dates::parse_day(&recorded_at).unwrap();
    assert_eq!(
        recorded.json()["transactions"][0]["date"],
        "2024-01-30",
        "no header, no shift"
    );

    // The recorded request's dates, the same distance from `today` as from the recording day.
    let relative = |today: time::Date| {
        let d = |s: &str| plaid_vcr::testing::dates::shift_str(s, (today - recorded_on).whole_days()).unwrap();
        json!({"access_token": TOKEN, "start_date": d("2024-01-01"), "end_date": d("2024-02-01")}).to_string()
    };
    const SESSIONS: i64 = 12;
    let base = replay.base_url();
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let (base, today) = (base.clone(), recorded_on + time::Duration::days(100 + i * 37));
            let body = relative(today);
            tokio::spawn(async move {
                let (name, day) = (format!("dates/t{i}"), today.to_string());
                let mut headers = CLIENT_HEADERS.to_vec();
                headers.extend([("plaid-vcr-session", name.as_str()), ("plaid-vcr-today", day.as_str())]);
                let url = format!("{base}/transactions/get");
                let mut answers = Vec::new();
                // The third, the first again, is answered from the exact cache, kept per day.
                for body in [BODY.to_owned(), body, BODY.to_owned()] {
                    answers.push(send("POST", &url, &headers, body).await);
                }
                (today, answers)
            })
        })
        .collect();
    for task in tasks {
        let (today, answers) = task.await.unwrap();
        let days = (today - recorded_on).whole_days();
        let moved = |s: &str| plaid_vcr::testing::dates::shift_str(s, days).unwrap();
        for answer in &answers {
            assert_eq!(answer.outcome(), "hit", "{today}: {:?}", answer.body);
            let body = answer.json();
            assert_eq!(body["transactions"][0]["date"], moved("2024-01-30"), "{today}");
            assert_eq!(body["transactions"][0]["datetime"], moved("2024-01-30T11:00:00Z"));
            assert_eq!(body["transactions"][1]["date"], moved("2024-01-31"));
        }
    }
    for i in 0..SESSIONS {
        let today = recorded_on + time::Duration::days(100 + i * 37);
        let report = send(
            "GET",
            &format!("http://{}/plaid-vcr/sessions/dates/t{i}", replay.local_addr()),
            &[],
            "",
        )
        .await
        .json();
        assert_eq!(report["hits"], 3, "{report}");
        assert_eq!(report["dates"]["recorded_from"], recorded_at.as_str(), "{report}");
        assert_eq!(report["dates"]["recorded_to"], recorded_at.as_str(), "{report}");
        assert_eq!(report["dates"]["shifted_to"], today.to_string(), "{report}");
    }

    let mut headers = CLIENT_HEADERS.to_vec();
    headers.push(("plaid-vcr-today", "next tuesday"));
    let bad = send("POST", &format!("{base}/transactions/get"), &headers, BODY).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error_code"], "PLAID_VCR_INVALID_TODAY");
    assert!(bad.json()["error_message"].as_str().unwrap().contains("next tuesday"));
    let again = plaid(&replay, "transactions/get", BODY).await;
    assert_eq!(
        again.body, recorded.body,
        "a header's day never reaches the run's cache"
    );
    replay.stop().await.unwrap();
}

/// A polled endpoint recorded as a sequence answers its steps in order to a relative-date
/// request a year later, as it does to the recorded dates.
#[tokio::test]
async fn a_sequence_answers_its_steps_in_order_to_a_relative_date_request() {
    let dirs = Dirs::new();
    let fake = fake_answering_transactions().await;
    let last_30 = |today: time::Date| {
        json!({"access_token": TOKEN, "start_date": (today - time::Duration::days(30)).to_string(),
               "end_date": today.to_string()})
        .to_string()
    };
    let mut cfg = config(&dirs, Some(&fake));
    cfg.sequences = true;
    let recorder = start(&cfg, Mode::Record).await;
    let today = time::OffsetDateTime::now_utc().date();
    let mut steps = Vec::new();
    for _ in 0..2 {
        let answer = plaid(&recorder, "transactions/get", &last_30(today)).await;
        assert_eq!(answer.outcome(), "recorded");
        steps.push(answer.json()["request_id"].clone());
    }
    recorder.stop().await.unwrap();
    assert_ne!(steps[0], steps[1], "two steps, two answers");
    let recorded_at = recorded_day(&dirs);
    let a_year_later = recorded_at.replace_year(recorded_at.year() + 1).unwrap();

    let mut cfg = config(&dirs, None);
    cfg.sequences = true;
    cfg.shift_dates = true;
    cfg.today = Some(a_year_later);
    let replay = start(&cfg, Mode::Replay).await;
    let mut answered = Vec::new();
    for _ in 0..3 {
        let answer = plaid(&replay, "transactions/get", &last_30(a_year_later)).await;
        assert_eq!(answer.outcome(), "hit", "{:?}", answer.body);
        answered.push(answer.json()["request_id"].clone());
    }
    replay.stop().await.unwrap();
    assert_eq!(
        answered,
        [steps[0].clone(), steps[1].clone(), steps[1].clone()],
        "in order, then the last"
    );
}
