//! Benchmark helper: writes N identity/get interactions (distinct access tokens, the demo's
//! response) into a cassette directory, through the same writer recording uses.
//!
//! `cargo run --release --example gen_cassette -- 10000 /tmp/big-cassette`

use plaid_vcr::cassette::Cassette;
use plaid_vcr::interaction::Interaction;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().ok_or("usage: gen_cassette N DIR")?.parse()?;
    let dir = args.next().ok_or("usage: gen_cassette N DIR")?;
    let demo = std::fs::read("cassettes/demo/identity_get/c131e2cd74a5cfd2.json")?;
    let demo = Interaction::from_file_bytes(&demo)?;
    let cassette = Cassette::new(dir);
    let at = std::time::SystemTime::now();
    for i in 0..n {
        let mut request = serde_json::Map::new();
        request.insert(
            "access_token".into(),
            format!("access-sandbox-{i:08x}-0000-4000-8000-000000000000").into(),
        );
        let interaction = Interaction::new(
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
