//! Connection hygiene through the real binary: silent, trickling and idle clients are closed
//! after the client timeout, a late body gets a Plaid-shaped 408, the connection cap makes
//! room by closing idle connections, and running out of file descriptors neither spins nor
//! floods the log.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A replay binary on the demo-shaped cassette of `dirs` with `extra` flags.
async fn replay(dirs: &Dirs, extra: &[&str]) -> Binary {
    record_into(dirs, &[("identity/get", r#"{"access_token":"access-sandbox-x"}"#)]).await;
    let binary = Binary::start(&serve_args("replay", dirs, None, extra), &[], dirs.root.path());
    assert!(binary.first_line.contains("listening"), "{}", binary.stderr());
    binary
}

fn addr_of(binary: &Binary) -> String {
    let base = binary.base_url();
    base.trim_start_matches("http://")
        .trim_end_matches("/plaid-compatible")
        .to_string()
}

/// Reads until the server closes the connection (bounded); returns what it sent and when the
/// close came. Panics if it stays open for `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Instant) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), Instant::now()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

#[tokio::test]
async fn silent_trickling_and_idle_keep_alive_connections_are_closed_after_the_client_timeout() {
    let dirs = Dirs::new();
    let mut binary = replay(&dirs, &["--client-timeout", "1s"]).await;
    let addr = addr_of(&binary);
    let opened = Instant::now();

    // Sends nothing at all.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    // Sends a header line every 300 ms, never finishing the head.
    let mut trickling = TcpStream::connect(&addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        let _ = trickling
            .write_all(b"POST /plaid-compatible/identity/get HTTP/1.1\r\n")
            .await;
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if trickling
                .write_all(format!("x-trickle-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return (i, trickling);
            }
        }
        (100, trickling)
    });
    // A complete request on a keep-alive connection, then nothing.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    let (nothing, closed_at) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(nothing, "");
    assert!(
        closed_at - opened >= Duration::from_millis(900),
        "not before the timeout"
    );
    let (answered, _) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let (lines_sent, mut trickling) = trickle.await.unwrap();
    assert!(lines_sent < 100, "closed while still trickling");
    let (head, _) = read_until_closed(&mut trickling, Duration::from_secs(10)).await;
    assert!(!head.contains("200 OK"), "{head}");
    assert_eq!(binary.signal_and_wait("TERM"), Some(0), "{}", binary.stderr());
}

#[tokio::test]
async fn a_stop_closes_idle_silent_and_http2_connections_at_once_instead_of_waiting_for_them() {
    let dirs = Dirs::new();
    // Timeouts far past the 20 s the exit is awaited: only the shutdown itself can close these.
    let mut binary = replay(&dirs, &["--client-timeout", "60s", "--shutdown-timeout", "60s"]).await;
    let addr = addr_of(&binary);
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // HTTP/2's graceful close waits for the client to acknowledge a ping: the stop is awaited
    // off this runtime, which keeps the client's connection task answering.
    let (_http2_sender, http2) = http2_connection_after_one_request(&addr).await;
    let (code, binary) = tokio::task::spawn_blocking(move || (binary.signal_and_wait("TERM"), binary))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{}", binary.stderr());
    assert!(
        !binary.stderr().contains("did not finish in time"),
        "{}",
        binary.stderr()
    );
    read_until_closed(&mut silent, Duration::from_secs(5)).await;
    read_until_closed(&mut idle, Duration::from_secs(5)).await;
    tokio::time::timeout(Duration::from_secs(5), http2)
        .await
        .expect("the HTTP/2 connection is closed by the stop (GOAWAY)")
        .unwrap();
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_a_plaid_shaped_408_and_the_connection_closes() {
    let dirs = Dirs::new();
    let mut binary = replay(&dirs, &["--client-timeout", "1s"]).await;
    let mut stream = TcpStream::connect(addr_of(&binary)).await.unwrap();
    stream
        .write_all(
            b"POST /plaid-compatible/identity/get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              PLAID-CLIENT-ID: a\r\nPLAID-SECRET: b\r\nContent-Length: 100\r\n\r\n{\"access_",
        )
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    let body: serde_json::Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["error_type"], "INVALID_REQUEST");
    assert_eq!(body["error_code"], "PLAID_VCR_CLIENT_TIMEOUT");
    assert!(body["hint"].as_str().unwrap().contains("--client-timeout"));
    assert_eq!(binary.signal_and_wait("TERM"), Some(0));
    assert!(binary.stderr().contains("outcome=\"error\"") || binary.stderr().contains("outcome=error"));
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_for_new_clients() {
    let dirs = Dirs::new();
    let mut binary = replay(&dirs, &["--max-connections", "4", "--client-timeout", "60s"]).await;
    let addr = addr_of(&binary);
    // Twenty stalled clients, far past the cap.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(TcpStream::connect(&addr).await.unwrap());
    }
    // A new client is still answered, every time.
    for _ in 0..5 {
        let resp = send("GET", &format!("http://{addr}/healthz"), &[], "").await;
        assert_eq!(resp.status, 200);
    }
    // The oldest stalled clients were closed to make room (long before the 60 s timeout).
    let (_, _) = read_until_closed(&mut stalled[0], Duration::from_secs(10)).await;
    assert_eq!(binary.signal_and_wait("TERM"), Some(0), "{}", binary.stderr());
}

#[tokio::test]
async fn out_of_file_descriptors_the_server_backs_off_logs_once_a_second_and_recovers() {
    let dirs = Dirs::new();
    let mut binary = replay(&dirs, &["--client-timeout", "2s"]).await;
    let addr = addr_of(&binary);
    // Few descriptors: the held connections below exhaust them.
    let pid = binary.child.id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=48:48"])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..120 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Once the held connections time out, descriptors free up and new clients are served.
    let mut answered = false;
    for _ in 0..60 {
        if let Ok(resp) = try_send("GET", &format!("http://{addr}/healthz"), &[], "").await {
            answered = resp.status == 200;
            if answered {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    assert!(answered, "recovered; {}", binary.stderr());
    drop(held);
    assert_eq!(binary.signal_and_wait("TERM"), Some(0));
    let stderr = binary.stderr();
    let lines = stderr.lines().filter(|l| l.contains("accept failed")).count();
    assert!(lines >= 1, "the failure is logged: {stderr}");
    assert!(
        lines as u64 <= elapsed.as_secs() + 1,
        "at most once a second: {lines} lines in {elapsed:?}"
    );
    assert!(stderr.contains("count="), "with a count: {stderr}");
}

/// An HTTP/2 (prior knowledge) connection to `addr` that has answered one health check; returns
/// its sender (kept: dropping it would close the connection from this side) and the
/// connection's task, which ends when the server closes the connection.
async fn http2_connection_after_one_request(
    addr: &str,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    use http_body_util::{BodyExt, Empty};
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(format!("http://{addr}/healthz"))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let _ = response.into_body().collect().await.unwrap();
    (sender, task)
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_client_timeout() {
    let dirs = Dirs::new();
    let mut binary = replay(&dirs, &["--client-timeout", "1s"]).await;
    let addr = addr_of(&binary);
    // Idle after its request (its sender kept): closed after the client timeout.
    let (_idle_sender, idle) = http2_connection_after_one_request(&addr).await;
    let opened = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), idle)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap();
    assert!(opened.elapsed() >= Duration::from_millis(900), "not before the timeout");
    assert_eq!(binary.signal_and_wait("TERM"), Some(0), "{}", binary.stderr());
}
