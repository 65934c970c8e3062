//! Benchmark helper: writes N interactions into a cassette directory, through the same writer
//! recording uses. By default N identity/get interactions (distinct access tokens, the demo's
//! response); with `--corpus`, Plaid's own examples for every endpoint of the pinned spec
//! (tests/corpus), in turn: the cassette `plaid-vcr validate` is measured on. Each request gets
//! its own access token, so every key differs.
//!
//! `cargo run --release --example gen_cassette -- 10000 /tmp/big-cassette [--corpus]`

use plaid_vcr::testing::redact::{Redactor, RequestPii};
use plaid_vcr::Cassette;
use plaid_vcr::Interaction;
use serde_json::{Map, Value};

/// What one interaction is made from: endpoint, request, answer.
type Source = (String, Map<String, Value>, Value);

/// Every answer example of the corpus, with its operation's request.
fn corpus() -> Result<Vec<Source>, Box<dyn std::error::Error>> {
    let examples: Value = serde_json::from_str(include_str!("../tests/corpus/plaid_examples.json"))?;
    let requests: Value = serde_json::from_str(include_str!("../tests/corpus/plaid_requests.json"))?;
    let mut out = Vec::new();
    for e in examples["examples"].as_array().ok_or("no examples")? {
        let endpoint = e["endpoint"].as_str().ok_or("no endpoint")?;
        let request = requests["requests"][endpoint]
            .as_object()
            .cloned()
            .ok_or("no request")?;
        if e["response"].is_object() {
            out.push((endpoint.to_owned(), request, e["response"].clone()));
        }
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().ok_or("usage: gen_cassette N DIR [--corpus]")?.parse()?;
    let dir = args.next().ok_or("usage: gen_cassette N DIR [--corpus]")?;
    let sources = match args.next().as_deref() {
        Some("--corpus") => corpus()?,
        Some(other) => return Err(format!("unknown option {other}").into()),
        None => {
            let source = Cassette::new("cassettes/demo");
            let first = source.list()?.into_iter().next().ok_or("cassettes/demo is empty")?;
            let demo = source.read(&first)?;
            vec![("identity/get".to_owned(), Map::new(), demo.response.body)]
        }
    };
    let cassette = Cassette::new(dir);
    let at = std::time::SystemTime::now();
    let redactor = Redactor::new(
        plaid_vcr::testing::rules::builtin(),
        RequestPii::Placeholder,
        b"gen_cassette",
    );
    for i in 0..n {
        let (endpoint, request, answer) = &sources[i % sources.len()];
        let mut request = request.clone();
        // A distinct access token per interaction: a distinct key.
        request.insert(
            "access_token".into(),
            format!("access-sandbox-{i:08x}-0000-4000-8000-000000000000").into(),
        );
        // As recording does: the stored request and answer are the redacted ones, keyed once.
        let request = redactor.request(endpoint, request);
        let key = plaid_vcr::testing::key::compute(endpoint, Some("2020-09-14"), &request);
        let answer = redactor.response(endpoint, answer.clone());
        let interaction = Interaction::new(
            key,
            endpoint,
            Some("2020-09-14"),
            request,
            200,
            "application/json",
            answer,
            at,
        );
        cassette.write(&interaction)?;
    }
    println!("wrote {n} interactions to {}", cassette.root().display());
    Ok(())
}
