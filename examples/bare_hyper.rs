//! Benchmark baseline: a bare hyper server answering every request with the demo cassette's
//! identity/get body, on the same runtime and server builder plaid-vcr uses. `bench/load.sh`
//! runs wrk against it and against `plaid-vcr replay` side by side; the ratio is plaid-vcr's
//! own cost (routing, parsing, redaction, key, sled lookup, logging).

use std::convert::Infallible;

use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let demo = plaid_vcr::Cassette::new("cassettes/demo");
    let first = demo
        .list()
        .map_err(std::io::Error::other)?
        .into_iter()
        .next()
        .ok_or(std::io::ErrorKind::NotFound)?;
    let interaction = demo.read(&first).map_err(std::io::Error::other)?;
    let body = interaction.answer().body;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("bare hyper listening on http://{}", listener.local_addr()?);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
            let body = body.clone();
            async move {
                let mut response = Response::new(Full::new(body));
                response
                    .headers_mut()
                    .insert("content-type", "application/json; charset=utf-8".parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
