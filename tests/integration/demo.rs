//! The committed demo cassette answers the README's curl, as a new user would run it.

use plaid_vcr::Mode;

use crate::support::*;

#[tokio::test]
async fn the_demo_cassette_answers_the_readme_curl_and_the_official_clients_headers() {
    let dirs = Dirs::new();
    let mut cfg = config(&dirs, None);
    cfg.cassette = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cassettes/demo");
    let server = start(&cfg, Mode::Replay).await;
    let url = format!("{}/identity/get", server.base_url());

    // The README's curl: the API doc's shape, credentials in the body, no Plaid-Version.
    let curl_headers = [
        ("content-type", "application/json"),
        ("plaid-client-id", "demo-client-id"),
    ];
    let curl_body = format!(r#"{{"client_id": "demo-client-id", "secret": "demo-secret", "access_token": "{TOKEN}"}}"#);
    let resp = send("POST", &url, &curl_headers, curl_body).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(resp.outcome(), "hit");
    let body = resp.json();
    assert_eq!(body["accounts"].as_array().unwrap().len(), 2);
    assert!(body["accounts"][0]["owners"][0]["names"][0].is_string());

    // The official clients: credentials in headers, Plaid-Version 2020-09-14.
    let resp = plaid(&server, "identity/get", &format!(r#"{{"access_token":"{TOKEN}"}}"#)).await;
    assert_eq!(resp.outcome(), "hit", "{:?}", resp.body);
    server.stop().await.unwrap();
}
