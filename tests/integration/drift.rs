//! `plaid-vcr diff` through the binary: the same flow recorded three times against a fake
//! Plaid, once more with every value changed but the schema kept, once with the schema changed.

use plaid_vcr::Mode;
use serde_json::{json, Value};

use crate::support::*;

/// Fields whose values are a closed set: kept, so only the other values change.
const ENUM_LIKE: [&str; 9] = [
    "type",
    "subtype",
    "iso_currency_code",
    "region",
    "country",
    "update_type",
    "available_products",
    "billed_products",
    "products",
];

/// `value` with every string and number changed (types kept), enum-like fields aside: what a
/// re-recording days later looks like (other ids, tokens, names, amounts, dates).
fn revalued(value: &Value, field: &str) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), revalued(v, k))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(|v| revalued(v, field)).collect()),
        Value::String(s) if !ENUM_LIKE.contains(&field) => Value::String(format!("{s}-later")),
        Value::Number(n) => json!(n.as_f64().unwrap_or(0.0) * 3.0 + 0.25),
        other => other.clone(),
    }
}

/// Records the flow (create, exchange, identity/get, accounts/get) through `fake` into `dirs`.
async fn record(dirs: &Dirs, fake: &FakePlaid) {
    let proxy = start(&config(dirs, Some(fake)), Mode::Record).await;
    let created = plaid(
        &proxy,
        "sandbox/public_token/create",
        r#"{"institution_id":"ins_109508","initial_products":["identity"]}"#,
    )
    .await;
    let exchange = json!({"public_token": created.json()["public_token"]}).to_string();
    let exchanged = plaid(&proxy, "item/public_token/exchange", &exchange).await;
    let token = json!({"access_token": exchanged.json()["access_token"]}).to_string();
    assert_eq!(plaid(&proxy, "identity/get", &token).await.outcome(), "recorded");
    plaid(&proxy, "accounts/get", &token).await;
    proxy.stop().await.unwrap();
}

fn diff(old: &Dirs, new: &Dirs, format: &str) -> (i32, String, String) {
    let (old, new) = (
        old.cassette().display().to_string(),
        new.cassette().display().to_string(),
    );
    run_binary(&["diff", &old, &new, "--format", format], manifest_dir())
}

fn manifest_dir() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn diff_ignores_values_and_names_each_schema_change_with_its_kind() {
    let identity: Value = serde_json::from_str(IDENTITY_RESPONSE).unwrap();
    let accounts: Value = serde_json::from_str(ACCOUNTS_RESPONSE).unwrap();

    let baseline = Dirs::new();
    record(&baseline, &FakePlaid::start().await).await;

    // The unchanged API, every value different: tokens, item and account ids, names, amounts.
    let later = Dirs::new();
    let fake = FakePlaid::start().await;
    for (endpoint, body) in [
        ("identity/get", revalued(&identity, "")),
        ("accounts/get", revalued(&accounts, "")),
        (
            "sandbox/public_token/create",
            json!({"public_token": "public-sandbox-11111111-2222-4333-8444-555555555555"}),
        ),
        (
            "item/public_token/exchange",
            json!({"access_token": "access-sandbox-99999999-8888-4777-8666-555555555555", "item_id": "ZZZitem"}),
        ),
    ] {
        fake.reply(endpoint, Reply { status: 200, body });
    }
    record(&later, &fake).await;
    let (code, out, err) = diff(&baseline, &later, "text");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("0 breaking, 0 informational changes; 4 endpoints"),
        "{out}"
    );

    // The API changed: a field removed, a type changed, a field added, a new enum value, and
    // accounts/get now answers an error.
    let changed = Dirs::new();
    let fake = FakePlaid::start().await;
    let mut drifted = identity.clone();
    for account in drifted["accounts"].as_array_mut().unwrap() {
        account["balances"].as_object_mut().unwrap().remove("available");
        account["mask"] = json!(1234);
        account["verification_status"] = json!("automatically_verified");
    }
    drifted["accounts"][0]["subtype"] = json!("cash management");
    drifted["accounts"][1]["subtype"] = json!("hsa");
    fake.reply(
        "identity/get",
        Reply {
            status: 200,
            body: drifted,
        },
    );
    fake.reply(
        "accounts/get",
        Reply {
            status: 400,
            body: invalid_access_token(),
        },
    );
    record(&changed, &fake).await;

    let (code, out, err) = diff(&baseline, &changed, "text");
    assert_eq!(code, 1, "{out}{err}");
    for line in [
        "  BREAKING  accounts[].balances.available: removed (was number)",
        "  BREAKING  accounts[].mask: type changed: string -> number",
        "  BREAKING  -: status changed: 200 -> 400",
        "  BREAKING  error_code: error_code changed: none -> INVALID_ACCESS_TOKEN",
        "  info      accounts[].verification_status: added (string)",
        "  info      accounts[].subtype: new value \"hsa\"",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // One block per endpoint, breaking first within it.
    assert_eq!(out.matches("identity/get\n").count(), 1, "{out}");
    assert_eq!(out.matches("accounts/get\n").count(), 1, "{out}");
    let identity = &out[out.find("identity/get\n").unwrap()..];
    let identity = &identity[..identity.find("accounts/get\n").unwrap_or(identity.len())];
    assert!(
        identity.rfind("BREAKING").unwrap() < identity.find("  info").unwrap(),
        "{out}"
    );
    assert!(
        !out.contains("request_id") && !out.contains("account_id") && !out.contains(".name"),
        "{out}"
    );

    let (code, out, _) = diff(&baseline, &changed, "json");
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["breaking"], 4, "{report:#}");
    let removed = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "removed")
        .unwrap();
    assert_eq!(
        (
            removed["endpoint"].as_str(),
            removed["path"].as_str(),
            removed["breaking"].as_bool()
        ),
        (Some("identity/get"), Some("accounts[].balances.available"), Some(true))
    );
    assert_eq!(removed["old"], "number");
    assert_eq!(removed["new"], "none");
}

#[tokio::test]
async fn diff_of_a_missing_or_broken_cassette_is_an_error() {
    let dirs = Dirs::new();
    record_into(
        &dirs,
        &[(
            "identity/get",
            r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#,
        )],
    )
    .await;
    let cassette = dirs.cassette().display().to_string();
    let (code, _, err) = run_binary(&["diff", &cassette, "/nonexistent/cassette"], dirs.root.path());
    assert_eq!(code, 2);
    assert!(
        err.starts_with("plaid-vcr: cassette directory /nonexistent/cassette does not exist"),
        "{err}"
    );
    let file = dirs.cassette().join(&dirs.cassette_files()[0]);
    std::fs::write(&file, "{ not json").unwrap();
    let (code, _, err) = run_binary(&["diff", &cassette, &cassette], dirs.root.path());
    assert_eq!(code, 2);
    assert!(err.contains("is not a valid interaction"), "{err}");
}
