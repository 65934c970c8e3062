//! Credentials plaid-vcr holds for the test code, and `sandbox-token`.

use plaid_vcr::config::Secret;
use plaid_vcr::testing::pseudonym::{Kind, Pseudonymizer};
use plaid_vcr::Mode;

use crate::support::*;

const NO_CREDENTIALS: [(&str, &str); 2] = [("content-type", "application/json"), ("plaid-version", "2020-09-14")];
const BODY: &str = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;

#[tokio::test]
async fn configured_credentials_fill_in_for_missing_ones_upstream_and_in_replay() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let mut cfg = config(&dirs, Some(&fake));
    cfg.client_id = Some(Secret::new("configured-client-id"));
    cfg.secret = Some(Secret::new("configured-secret-0123456789"));
    let proxy = start(&cfg, Mode::Record).await;
    let url = format!("{}/identity/get", proxy.base_url());
    let resp = send("POST", &url, &NO_CREDENTIALS, BODY).await;
    assert_eq!(resp.outcome(), "recorded", "{:?}", resp.body);
    // The request's own credentials win over the configured ones.
    send("POST", &url, &CLIENT_HEADERS, BODY).await;
    proxy.stop().await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen[0].headers["plaid-client-id"], "configured-client-id");
    assert_eq!(seen[0].headers["plaid-secret"], "configured-secret-0123456789");
    assert_eq!(
        seen[0].body,
        BODY.as_bytes(),
        "credentials go in headers, never into the body"
    );
    assert_eq!(seen[1].headers["plaid-client-id"], CLIENT_HEADERS[1].1);
    for file in dirs.cassette_files() {
        let text = std::fs::read_to_string(dirs.cassette().join(file)).unwrap();
        assert!(
            !text.contains("configured-secret") && !text.contains("configured-client"),
            "{text}"
        );
    }

    // Replay: configured credentials satisfy the check; without them it is MISSING_FIELDS.
    let mut replay_cfg = config(&dirs, None);
    replay_cfg.client_id = cfg.client_id.clone();
    replay_cfg.secret = cfg.secret.clone();
    let replay = start(&replay_cfg, Mode::Replay).await;
    let resp = send(
        "POST",
        &format!("{}/identity/get", replay.base_url()),
        &NO_CREDENTIALS,
        BODY,
    )
    .await;
    assert_eq!(resp.outcome(), "hit");
    replay.stop().await.unwrap();
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let resp = send(
        "POST",
        &format!("{}/identity/get", replay.base_url()),
        &NO_CREDENTIALS,
        BODY,
    )
    .await;
    assert_eq!(resp.json()["error_code"], "MISSING_FIELDS");
    replay.stop().await.unwrap();
    assert!(
        !format!("{cfg:?}").contains("configured-secret"),
        "Debug never shows credentials"
    );
}

#[tokio::test]
async fn sandbox_token_runs_create_and_exchange_through_the_proxy_and_prints_both_tokens() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let args = serve_args(
        "sandbox-token",
        &dirs,
        Some(&fake),
        &["--institution", "ins_109508", "--products", "identity,auth"],
    );
    let envs = [
        ("PLAID_CLIENT_ID", "sandbox-client-id"),
        ("PLAID_SECRET", "sandbox-secret-0123456789"),
    ];
    let cwd = dirs.root.path().to_owned();
    let run = args.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || run_binary_with(&run, &envs, &cwd))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    let real = "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"; // what the fake exchanges to
    let pseudonym = Pseudonymizer::new(b"").pseudonymize(Kind::Token, real);
    assert!(stdout.contains(&format!("access token:          {real}")), "{stdout}");
    assert!(
        stdout.contains(&format!("as stored (pseudonym): {pseudonym}")),
        "{stdout}"
    );
    assert!(!stderr.contains(real), "the real token is never logged: {stderr}");

    assert_eq!(
        (
            fake.calls("sandbox/public_token/create"),
            fake.calls("item/public_token/exchange")
        ),
        (1, 1)
    );
    let create = &fake.seen()[0];
    assert_eq!(create.headers["plaid-client-id"], "sandbox-client-id");
    let body: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"institution_id": "ins_109508", "initial_products": ["identity", "auth"]})
    );
    let dirs_found: Vec<String> = dirs
        .cassette_files()
        .iter()
        .map(|p| p.parent().unwrap().display().to_string())
        .collect();
    assert_eq!(
        dirs_found,
        ["item_public_token_exchange", "sandbox_public_token_create"]
    );

    // Without credentials it says what to set, in one line, exit 2.
    let (code, _, stderr) = run_binary(&args, dirs.root.path());
    assert_eq!(code, 2);
    assert!(
        stderr
            .trim()
            .ends_with("set PLAID_CLIENT_ID and PLAID_SECRET (your sandbox keys)"),
        "{stderr}"
    );
}
