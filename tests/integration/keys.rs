//! Property tests for the matching key's invariants.

use plaid_vcr::testing::key;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn token() -> impl Strategy<Value = String> {
    "access-sandbox-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

fn account_ids() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[A-Za-z0-9]{5,37}", 1..6)
}

fn body(token: &str, ids: Option<&[String]>, extra: &[(String, i64)]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("access_token".into(), Value::String(token.into()));
    if let Some(ids) = ids {
        m.insert("options".into(), serde_json::json!({ "account_ids": ids }));
    }
    for (k, v) in extra {
        m.insert(k.clone(), Value::from(*v));
    }
    m
}

/// Serializes with keys in reverse order and arbitrary whitespace, the way no serializer
/// here would, to prove the key depends on the parsed request only.
fn scrambled_text(value: &Value, ws: &str) -> String {
    match value {
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("{ws}{}{ws}:{ws}{}", Value::String(k.clone()), scrambled_text(v, ws)))
                .collect();
            format!("{{{}{ws}}}", parts.join(","))
        }
        Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(|v| format!("{ws}{}", scrambled_text(v, ws)))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn key_ignores_whitespace_key_order_account_id_order_and_credentials(
        token in token(),
        ids in account_ids(),
        extra in prop::collection::vec(("[a-z_]{1,12}", any::<i64>()), 0..4),
        ws in "[ \t\n]{0,3}",
        seed in any::<u64>(),
        client_id in "[0-9a-f]{24}",
        secret in "[0-9a-f]{30}",
    ) {
        let extra: Vec<(String, i64)> = extra.into_iter().filter(|(k, _)| k != "options" && k != "access_token" && k != "client_id" && k != "secret").collect();
        let original = body(&token, Some(&ids), &extra);
        let expected = key::compute("identity/get", Some("2020-09-14"), &original);

        let mut shuffled = ids.clone();
        // A deterministic shuffle from the seed, plus a duplicate.
        let len = shuffled.len();
        for i in 0..len {
            shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % len);
        }
        shuffled.push(ids[0].clone());
        let mut variant = body(&token, Some(&shuffled), &extra);
        variant.insert("client_id".into(), Value::String(client_id));
        variant.insert("secret".into(), Value::String(secret));
        let text = scrambled_text(&Value::Object(variant), &ws);
        let reparsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(key::compute("identity/get", Some("2020-09-14"), &reparsed), expected);
    }

    #[test]
    fn key_changes_with_the_token_the_options_or_the_endpoint(
        a in token(), b in token(), ids in account_ids(), more in "[A-Za-z0-9]{5,37}",
    ) {
        prop_assume!(a != b && !ids.contains(&more));
        let base = key::compute("identity/get", None, &body(&a, Some(&ids), &[]));
        prop_assert_ne!(&base, &key::compute("identity/get", None, &body(&b, Some(&ids), &[])));
        let mut more_ids = ids.clone();
        more_ids.push(more);
        prop_assert_ne!(&base, &key::compute("identity/get", None, &body(&a, Some(&more_ids), &[])));
        prop_assert_ne!(&base, &key::compute("identity/get", None, &body(&a, None, &[])));
        prop_assert_ne!(&base, &key::compute("accounts/get", None, &body(&a, Some(&ids), &[])));
        prop_assert_ne!(&base, &key::compute("identity/get", Some("2020-09-14"), &body(&a, Some(&ids), &[])));
    }
}

#[test]
fn tokens_in_lists_get_the_same_pseudonym_as_the_token_alone() {
    // /asset_report/create sends its tokens as a list; the token a replayed exchange hands out
    // must match there as it does on identity/get.
    use plaid_vcr::testing::redact::{Redactor, RequestPii};
    let redactor = Redactor::new(plaid_vcr::testing::rules::builtin(), RequestPii::Placeholder, b"k");
    let token = "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6";
    let single = redactor.request(
        "identity/get",
        serde_json::json!({ "access_token": token })
            .as_object()
            .unwrap()
            .clone(),
    );
    for (endpoint, body) in [
        (
            "asset_report/create",
            serde_json::json!({ "access_tokens": [token], "days_requested": 30 }),
        ),
        (
            "some/new_endpoint",
            serde_json::json!({ "processor_tokens": [token], "user_tokens": [token] }),
        ),
    ] {
        let listed = redactor.request(endpoint, body.as_object().unwrap().clone());
        for (field, values) in &listed {
            if let Some(values) = values.as_array() {
                assert_eq!(values[0], single["access_token"], "{endpoint} {field}");
            }
        }
    }
}
