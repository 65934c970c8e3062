//! Binary answers (PDF, zip) through the real binary: recorded byte for byte next to their
//! interaction file, replayed with the same status, Content-Type and bytes; `check`, `scan`,
//! `ls`, `redact` and sequences handle them.

use bytes::Bytes;
use serde_json::Value;

use crate::support::*;

/// A PDF-looking body with every byte value in it (no text encoding could survive it).
fn pdf(variant: u8) -> Bytes {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend((0..=255u8).map(|b| b ^ variant));
    bytes.extend_from_slice(b"\n%%EOF\n");
    Bytes::from(bytes)
}

fn zip() -> Bytes {
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend((0..=255u8).rev());
    Bytes::from(bytes)
}

const PDF_REQUEST: &str = r#"{"asset_report_token":"assets-sandbox-6f12f5bb-22dd-4071-aa1c-9b4c5f1e3b7a"}"#;

fn content_type(resp: &Resp) -> &str {
    resp.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdfs_and_zips_are_recorded_byte_exact_and_replayed_with_their_content_type() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.reply_binary("asset_report/pdf/get", "application/pdf", pdf(0));
    fake.reply_binary("income/verification/documents/download", "application/zip", zip());
    let mut recorder = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    let base = recorder.base_url();
    let recorded = post(&base, "asset_report/pdf/get", PDF_REQUEST).await;
    assert_eq!((recorded.status, recorded.outcome()), (200, "recorded"));
    assert_eq!((content_type(&recorded), &recorded.body), ("application/pdf", &pdf(0)));
    let zipped = post(
        &base,
        "income/verification/documents/download",
        &format!(r#"{{"access_token":"{TOKEN}"}}"#),
    )
    .await;
    assert_eq!(
        (zipped.outcome(), content_type(&zipped), &zipped.body),
        ("recorded", "application/zip", &zip())
    );
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    fake.stop();

    // The interaction file names its body file and checksum; the body file holds the bytes.
    let files = dirs.cassette_files();
    let pdf_json = files
        .iter()
        .find(|f| f.starts_with("asset_report_pdf_get") && f.extension().unwrap() == "json")
        .unwrap();
    let interaction: Value =
        serde_json::from_str(&std::fs::read_to_string(dirs.cassette().join(pdf_json)).unwrap()).unwrap();
    let body_file = interaction["response"]["body_file"].as_str().unwrap();
    assert_eq!(interaction["response"]["body"], Value::Null);
    assert_eq!(interaction["response"]["content_type"], "application/pdf");
    assert_eq!(
        body_file,
        pdf_json.with_extension("pdf").file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(
        std::fs::read(dirs.cassette().join(pdf_json).with_file_name(body_file)).unwrap(),
        pdf(0)
    );
    assert!(
        files.iter().any(|f| f.extension().is_some_and(|e| e == "zip")),
        "{files:?}"
    );

    // Replay: the same bytes and Content-Type, every time (first hit and cached repeats).
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &["--strict"]), &[], dirs.root.path());
    for _ in 0..3 {
        let resp = post(&replay.base_url(), "asset_report/pdf/get", PDF_REQUEST).await;
        assert_eq!(
            (resp.status, resp.outcome(), content_type(&resp)),
            (200, "hit", "application/pdf")
        );
        assert_eq!(resp.body, pdf(0));
    }
    assert_eq!(replay.signal_and_wait("TERM"), Some(0), "{}", replay.stderr());

    let cassette = dirs.cassette().display().to_string();
    let config = dirs.root.path().join("scan.toml");
    std::fs::write(&config, "[scan]\nallow_paths = [\"response.body_file\"]\n").unwrap();
    let config = config.display().to_string();
    let (code, out, _) = run_binary(&["check", &cassette], dirs.root.path());
    assert_eq!(code, 1, "binary answers are unscanned until accepted: {out}");
    assert_eq!(out.matches("unscanned: a binary answer").count(), 2, "{out}");
    let (code, out, err) = run_binary(&["check", &cassette, "--config", &config], dirs.root.path());
    assert_eq!(code, 0, "accepted, and the body files are no orphans: {out}{err}");
    let (code, out, _) = run_binary(&["ls", &cassette], dirs.root.path());
    assert_eq!(code, 0);
    assert!(
        out.contains("(application/pdf)") && out.contains("(application/zip)"),
        "{out}"
    );

    // scan cannot look inside: it lists both until they are allowlisted.
    let (code, out, _) = run_binary(&["scan", &cassette], dirs.root.path());
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("binary-body").count(), 2, "{out}");
    let (code, out, _) = run_binary(&["scan", &cassette, "--config", &config], dirs.root.path());
    assert_eq!(code, 0, "{out}");

    // A changed body file is caught, never served; a missing one fails the start.
    let body_path = dirs.cassette().join(pdf_json).with_file_name(body_file);
    std::fs::write(&body_path, b"%PDF-1.4 tampered").unwrap();
    let (code, out, _) = run_binary(&["check", &cassette, "--config", &config], dirs.root.path());
    assert_eq!(code, 1);
    assert!(out.contains("does not match the body_sha256"), "{out}");
    let mut replay = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let resp = post(&replay.base_url(), "asset_report/pdf/get", PDF_REQUEST).await;
    assert_eq!(
        (resp.status, resp.json()["error_code"].as_str()),
        (500, Some("PLAID_VCR_STORE_ERROR"))
    );
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
    std::fs::remove_file(&body_path).unwrap();
    // A fresh store (every CI checkout) reads every file at start.
    std::fs::remove_dir_all(dirs.store()).unwrap();
    let (code, _, err) = run_binary(&serve_args("replay", &dirs, None, &[]), dirs.root.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("binary body file") && err.contains("is missing"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_steps_replay_in_order_and_move_with_their_interaction_when_redact_re_keys_it() {
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    let request = format!(r#"{{"access_token":"{TOKEN}","options":{{"statement_id":"s1"}}}}"#);
    let mut recorder = Binary::start(
        &serve_args("record", &dirs, Some(&fake), &["--sequences", "--no-redact"]),
        &[],
        dirs.root.path(),
    );
    for variant in [0, 7] {
        fake.reply_binary("statements/download", "application/pdf", pdf(variant));
        let resp = post(&recorder.base_url(), "statements/download", &request).await;
        assert_eq!((resp.outcome(), &resp.body), ("recorded", &pdf(variant)));
    }
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    fake.stop();
    let before: Vec<_> = dirs.cassette_files();
    assert_eq!(
        before.iter().filter(|f| f.extension().unwrap() == "pdf").count(),
        2,
        "{before:?}"
    );

    // The raw token in the request re-keys both steps: their body files are renamed with them.
    let cassette = dirs.cassette().display().to_string();
    let store = dirs.store().display().to_string();
    let (code, out, err) = run_binary(&["redact", &cassette, "--store", &store], dirs.root.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("key changed"), "{out}");
    let after = dirs.cassette_files();
    assert_eq!(after.len(), before.len(), "{after:?}");
    assert!(
        after.iter().all(|f| !before.contains(f)),
        "every file renamed: {before:?} -> {after:?}"
    );
    let config = dirs.root.path().join("scan.toml");
    std::fs::write(&config, "[scan]\nallow_paths = [\"response.body_file\"]\n").unwrap();
    let (code, out, err) = run_binary(
        &["check", &cassette, "--config", &config.display().to_string()],
        dirs.root.path(),
    );
    assert_eq!(code, 0, "{out}{err}");

    let mut replay = Binary::start(
        &serve_args("replay", &dirs, None, &["--sequences"]),
        &[],
        dirs.root.path(),
    );
    for variant in [0, 7, 7] {
        let resp = post(&replay.base_url(), "statements/download", &request).await;
        assert_eq!(
            (resp.status, resp.outcome(), content_type(&resp)),
            (200, "hit", "application/pdf")
        );
        assert_eq!(resp.body, pdf(variant), "steps in order, then the last repeats");
    }
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
    assert!(
        replay.stderr().contains("3 requests, 3 hits, 0 misses"),
        "{}",
        replay.stderr()
    );
}

#[tokio::test]
async fn the_asset_report_flow_replays_with_the_exchanged_token_in_a_list_and_its_pdf() {
    use plaid_vcr::Mode;
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    fake.reply(
        "asset_report/create",
        Reply {
            status: 200,
            body: serde_json::json!({"asset_report_id": "ar-1", "asset_report_token": "assets-sandbox-6f12f5bb-22dd-4071-aa1c-9b4c5f1e3b7a"}),
        },
    );
    fake.reply_binary("asset_report/pdf/get", "application/pdf", pdf(3));
    // The flow an app runs: exchange, create the report with the token in a list, fetch the PDF.
    let run = |server: &plaid_vcr::RunningServer| {
        let base = server.base_url();
        async move {
            let exchanged = post(
                &base,
                "item/public_token/exchange",
                r#"{"public_token":"public-sandbox-b0e2c4ee-a763-4df5-bfe9-46a46bce993d"}"#,
            )
            .await;
            let token = exchanged.json()["access_token"].as_str().unwrap().to_owned();
            let created = post(
                &base,
                "asset_report/create",
                &format!(r#"{{"access_tokens":["{token}"],"days_requested":30}}"#),
            )
            .await;
            let report_token = created.json()["asset_report_token"].as_str().unwrap().to_owned();
            let pdf = post(
                &base,
                "asset_report/pdf/get",
                &format!(r#"{{"asset_report_token":"{report_token}"}}"#),
            )
            .await;
            [exchanged, created, pdf]
        }
    };
    let proxy = start(&config(&dirs, Some(&fake)), Mode::Record).await;
    let recorded = run(&proxy).await;
    assert!(recorded.iter().all(|r| r.outcome() == "recorded"));
    proxy.stop().await.unwrap();
    fake.stop();

    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let replayed = run(&replay).await;
    let outcomes: Vec<&str> = replayed.iter().map(Resp::outcome).collect();
    assert_eq!(
        outcomes,
        ["hit", "hit", "hit"],
        "the exchanged token's pseudonym matches inside the list"
    );
    assert_eq!(
        (content_type(&replayed[2]), &replayed[2].body),
        ("application/pdf", &pdf(3))
    );
    replay.stop().await.unwrap();
}

/// A large answer to a reader slower than `client_timeout` allows for the whole of it: the
/// connection stays busy while the answer is being written, so it is not closed as idle
/// halfway (which would cut the PDF short).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_reaches_a_slow_reader_whole_past_the_client_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dirs = Dirs::new();
    let fake = FakePlaid::start().await;
    // 12 MiB: more than the kernel's socket buffers and hyper's write buffer hold.
    let big: Bytes = (0..12 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    fake.reply_binary("asset_report/pdf/get", "application/pdf", big.clone());
    let mut recorder = Binary::start(&serve_args("record", &dirs, Some(&fake), &[]), &[], dirs.root.path());
    let recorded = post(&recorder.base_url(), "asset_report/pdf/get", PDF_REQUEST).await;
    assert_eq!((recorded.status, recorded.body.len()), (200, big.len()));
    assert_eq!(recorder.signal_and_wait("TERM"), Some(0));
    fake.stop();

    let mut replay = Binary::start(
        &serve_args("replay", &dirs, None, &["--client-timeout", "1s"]),
        &[],
        dirs.root.path(),
    );
    let base = replay.base_url();
    let addr: std::net::SocketAddr = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut head = "POST /plaid-compatible/asset_report/pdf/get HTTP/1.1\r\nhost: 127.0.0.1\r\n".to_owned();
    for (name, value) in CLIENT_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n{PDF_REQUEST}", PDF_REQUEST.len()));
    stream.write_all(head.as_bytes()).await.unwrap();
    // About 2.5 MB/s: the answer takes several times the client timeout to read.
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 128 * 1024];
    let expected_total = loop {
        let end = received.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = end {
            if received.len() >= end + 4 + big.len() {
                break end + 4 + big.len();
            }
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "bounded");
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("bounded: the server sends or closes")
            .unwrap();
        if n == 0 {
            break 0;
        }
        received.extend_from_slice(&buf[..n]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    let head_end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(
        (expected_total, received.len() - head_end),
        (head_end + big.len(), big.len()),
        "the connection was closed {took:?} in, with part of the answer unread"
    );
    assert!(received[head_end..] == big[..], "the bytes arrive unchanged");
    assert!(
        took > std::time::Duration::from_secs(2),
        "the reader was slower than the timeout: {took:?}"
    );

    // The same answer over HTTP/2 (prior knowledge), in its frames, arrives whole too.
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driving = tokio::spawn(connection);
    let mut request = hyper::Request::post(format!("http://{addr}/plaid-compatible/asset_report/pdf/get"));
    for (name, value) in CLIENT_HEADERS {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(Bytes::from_static(PDF_REQUEST.as_bytes())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.version()),
        (200, hyper::Version::HTTP_2)
    );
    let over_h2 = response.into_body().collect().await.unwrap().to_bytes();
    assert!(over_h2 == big, "{} bytes of {}", over_h2.len(), big.len());
    drop(sender);
    driving.abort();
    assert_eq!(replay.signal_and_wait("TERM"), Some(0));
}
