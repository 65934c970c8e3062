//! Bad input gets a Plaid-shaped error with the status Plaid would use, and never hurts the server.

use plaid_vcr::Mode;

use crate::support::*;

async fn replay_server() -> (Dirs, plaid_vcr::RunningServer) {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.cassette()).unwrap();
    let server = start(&config(&dirs, None), Mode::Replay).await;
    (dirs, server)
}

fn assert_plaid_error(resp: &Resp, status: u16, error_type: &str, error_code: &str) {
    assert_eq!(resp.status, status, "{:?}", resp.body);
    let body = resp.json();
    assert_eq!(body["error_type"], error_type, "{body}");
    assert_eq!(body["error_code"], error_code, "{body}");
    assert!(body["error_message"].is_string(), "{body}");
    assert!(body.get("display_message").is_some(), "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    assert!(resp.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn malformed_or_non_object_json_is_invalid_body() {
    let (_dirs, server) = replay_server().await;
    for body in ["{\"access_token\": ", "not json", "[1,2]", "\"text\"", ""] {
        let resp = plaid(&server, "identity/get", body).await;
        assert_plaid_error(&resp, 400, "INVALID_REQUEST", "INVALID_BODY");
    }
    let mut headers = CLIENT_HEADERS.to_vec();
    headers[0] = ("content-type", "application/x-www-form-urlencoded");
    let resp = send("POST", &format!("{}/identity/get", server.base_url()), &headers, "{}").await;
    assert_plaid_error(&resp, 400, "INVALID_REQUEST", "INVALID_BODY");
    headers.remove(0);
    let resp = send("POST", &format!("{}/identity/get", server.base_url()), &headers, "{}").await;
    assert_plaid_error(&resp, 400, "INVALID_REQUEST", "INVALID_HEADERS");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_whether_or_not_its_length_is_declared() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.cassette()).unwrap();
    let mut cfg = config(&dirs, None);
    cfg.max_body_bytes = 1024;
    let server = start(&cfg, Mode::Replay).await;
    let big = format!("{{\"access_token\":\"{}\"}}", "a".repeat(2000));
    let resp = plaid(&server, "identity/get", &big).await;
    assert_plaid_error(&resp, 413, "INVALID_REQUEST", "PLAID_VCR_BODY_TOO_LARGE");

    // Chunked (no Content-Length): the limit still holds while streaming.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut request = http::Request::post(format!("{}/identity/get", server.base_url()));
    for (name, value) in CLIENT_HEADERS {
        request = request.header(name, value);
    }
    let request = request.body(Chunks(4)).unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 413);

    let small = plaid(&server, "identity/get", r#"{"access_token":"x"}"#).await;
    assert_eq!(small.status, 404, "a normal request still works: {:?}", small.body);
    server.stop().await.unwrap();
}

/// A body of `n` 600-byte chunks with no declared length, so it is sent chunked.
struct Chunks(usize);

impl hyper::body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![b' '; 600])))))
    }
}

#[tokio::test]
async fn missing_credentials_are_missing_fields_like_plaid() {
    let (_dirs, server) = replay_server().await;
    let url = format!("{}/identity/get", server.base_url());
    let json = [("content-type", "application/json")];
    let resp = send("POST", &url, &json, r#"{"access_token":"x"}"#).await;
    assert_plaid_error(&resp, 400, "INVALID_REQUEST", "MISSING_FIELDS");
    assert_eq!(
        resp.json()["error_message"],
        "the following required fields are missing: client_id, secret"
    );
    let resp = send(
        "POST",
        &url,
        &[json[0], ("plaid-client-id", "abc")],
        r#"{"access_token":"x"}"#,
    )
    .await;
    assert_eq!(
        resp.json()["error_message"],
        "the following required fields are missing: secret"
    );
    // In the body, as the seed's curl sends them, is fine too.
    let resp = send(
        "POST",
        &url,
        &json,
        r#"{"client_id":"a","secret":"b","access_token":"x"}"#,
    )
    .await;
    assert_eq!(resp.json()["error_code"], "PLAID_VCR_NO_RECORDING");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths_are_405_and_404() {
    let (_dirs, server) = replay_server().await;
    let base = server.base_url();
    let resp = send("GET", &format!("{base}/identity/get"), &[], "").await;
    assert_plaid_error(&resp, 405, "INVALID_REQUEST", "PLAID_VCR_METHOD_NOT_ALLOWED");
    assert_eq!(resp.headers["allow"], "POST");
    let root = format!("http://{}", server.local_addr());
    for path in [
        "/identity/get",
        "/",
        "/plaid-compatible",
        "/plaid-compatible/../etc/passwd",
        "/plaid-compatible/a.json",
    ] {
        let resp = send("POST", &format!("{root}{path}"), &CLIENT_HEADERS, "{}").await;
        assert_plaid_error(&resp, 404, "INVALID_REQUEST", "NOT_FOUND");
    }
    let health = send("GET", &format!("{root}/healthz"), &[], "").await;
    assert_eq!(health.status, 200);
    server.stop().await.unwrap();
}
