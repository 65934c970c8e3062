//! Benchmark helper: writes N identity/get interactions (distinct access tokens, the demo's
//! response) into a cassette directory, through the same writer recording uses.
//!
//! `cargo run --release --example gen_cassette -- 10000 /tmp/big-cassette`

use plaid_vcr::testing::redact::{Redactor, RequestPii};
use plaid_vcr::Cassette;
use plaid_vcr::Interaction;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().ok_or("usage: gen_cassette N DIR")?.parse()?;
    let dir = args.next().ok_or("usage: gen_cassette N DIR")?;
    let source = Cassette::new("cassettes/demo");
    let first = source.list()?.into_iter().next().ok_or("cassettes/demo is empty")?;
    let demo = source.read(&first)?;
    let cassette = Cassette::new(dir);
    let at = std::time::SystemTime::now();
    let redactor = Redactor::new(
        plaid_vcr::testing::rules::builtin(),
        RequestPii::Placeholder,
        b"gen_cassette",
    );
    for i in 0..n {
        let mut request = serde_json::Map::new();
        request.insert(
            "access_token".into(),
            format!("access-sandbox-{i:08x}-0000-4000-8000-000000000000").into(),
        );
        // As recording does: the stored request is the redacted one, and keyed once.
        let request = redactor.request("identity/get", request);
        let key = plaid_vcr::testing::key::compute("identity/get", Some("2020-09-14"), &request);
        let interaction = Interaction::new(
            key,
            "identity/get",
            Some("2020-09-14"),
            request,
            200,
            &demo.response.content_type,
            demo.response.body.clone(),
            at,
        );
        cassette.write(&interaction)?;
    }
    println!("wrote {n} interactions to {}", cassette.root().display());
    Ok(())
}
