//! Privacy on every Plaid product, measured on Plaid's own examples: the first example of the
//! request and 200 response of every POST endpoint in the spec (tests/corpus, written by
//! tools/plaid_pii.py at the pinned spec commit). A value is personal when the spec table
//! (src/privacy/plaid_pii.tsv) marks its path.

use std::collections::BTreeSet;
use std::path::Path;

use plaid_vcr::testing::pseudonym::{self, Kind};
use plaid_vcr::testing::redact::{Redactor, RequestPii};
use plaid_vcr::testing::rules::{self, Side};
use plaid_vcr::testing::scan::{ScanConfig, Scanner};
use serde_json::{json, Value};

use crate::support::assert_same_shape;

const CORPUS: &str = include_str!("../corpus/plaid_examples.json");
const TABLE: &str = include_str!("../../src/privacy/plaid_pii.tsv");

/// Field names whose values are not personal and that tests assert on: they must survive.
const NOT_PERSONAL: [&str; 16] = [
    "institution_name",
    "institution_id",
    "merchant_name",
    "official_name",
    "routing_number",
    "wire_routing",
    "iso_currency_code",
    "type",
    "subtype",
    "date",
    "authorized_date",
    "payment_channel",
    "category_id",
    "website",
    "status",
    "request_id",
];

struct Example {
    endpoint: String,
    side: Side,
    body: Value,
}

fn examples() -> Vec<Example> {
    let corpus: Value = serde_json::from_str(CORPUS).unwrap();
    let mut out = Vec::new();
    for e in corpus["examples"].as_array().unwrap() {
        let endpoint = e["endpoint"].as_str().unwrap().to_owned();
        for (side, key) in [(Side::Request, "request"), (Side::Response, "response")] {
            if e[key].is_object() {
                out.push(Example {
                    endpoint: endpoint.clone(),
                    side,
                    body: e[key].clone(),
                });
            }
        }
    }
    out
}

/// The table's paths, with their kinds, for one endpoint and side.
fn personal_paths(endpoint: &str, side: Side) -> Vec<(String, String)> {
    let side = if side == Side::Request { "request" } else { "response" };
    TABLE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            (cells[0] == endpoint && cells[1] == side).then(|| (cells[2].to_owned(), cells[3].to_owned()))
        })
        .collect()
}

/// Whether an example's value is already nobody's: a phone in the fictional 555-01xx block or
/// an IP in a documentation range. Pseudonyms take these forms, so they are left as they are.
fn fictional(kind: &str, value: &str) -> bool {
    match kind {
        "phone" => pseudonym::is_pseudonym(Kind::Phone, value),
        "ip" => pseudonym::is_pseudonym(Kind::Ip, value),
        _ => false,
    }
}

/// The personal values of one example: (concrete path, value), fictional ones left out and
/// counted in `fictional_count`.
fn personal_values(e: &Example, fictional_count: &mut usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, kind) in personal_paths(&e.endpoint, e.side) {
        for (at, raw) in strings_at(&e.body, &path) {
            if fictional(&kind, &raw) {
                *fictional_count += 1;
            } else {
                out.push((at, raw));
            }
        }
    }
    out
}

/// Every non-empty string under `value` at `path` (`a.b[].c`), with its concrete path.
fn strings_at(value: &Value, path: &str) -> Vec<(String, String)> {
    let mut found = vec![(String::new(), value)];
    for part in path.split('.') {
        let name = part.trim_end_matches("[]");
        let arrays = (part.len() - name.len()) / 2;
        let mut next = Vec::new();
        for (at, v) in found {
            let Some(child) = (if name.is_empty() { Some(v) } else { v.get(name) }) else {
                continue;
            };
            let mut level = vec![(join(&at, name), child)];
            for _ in 0..arrays {
                level = level
                    .into_iter()
                    .flat_map(|(at, v)| {
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .enumerate()
                            .map(move |(i, item)| (format!("{at}[{i}]"), item))
                    })
                    .collect();
            }
            next.extend(level);
        }
        found = next;
    }
    found
        .into_iter()
        .filter_map(|(at, v)| v.as_str().filter(|s| !s.is_empty()).map(|s| (at, s.to_owned())))
        .collect()
}

fn join(at: &str, name: &str) -> String {
    match (at.is_empty(), name.is_empty()) {
        (_, true) => at.to_owned(),
        (true, false) => name.to_owned(),
        (false, false) => format!("{at}.{name}"),
    }
}

/// The value at a concrete path (`a.b[0].c`), if any.
fn at_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = value;
    for part in path.split('.') {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            v = v.get(name)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            v = v.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

fn redactor() -> Redactor {
    Redactor::new(rules::builtin(), RequestPii::Keyed, b"corpus-test-secret")
}

fn redacted(redactor: &Redactor, e: &Example) -> Value {
    match e.side {
        Side::Request => Value::Object(redactor.request(&e.endpoint, e.body.as_object().unwrap().clone())),
        _ => redactor.response(&e.endpoint, e.body.clone()),
    }
}

/// A cassette file holding `body` on its side, as `scan` reads one.
fn as_file(e: &Example, body: &Value) -> Vec<u8> {
    let (request, response) = match e.side {
        Side::Request => (body.clone(), json!({})),
        _ => (json!({}), body.clone()),
    };
    serde_json::to_vec(&json!({
        "endpoint": e.endpoint,
        "request": {"body": request},
        "response": {"body": response, "content_type": "application/json", "status": 200},
    }))
    .unwrap()
}

fn half(side: Side) -> &'static str {
    if side == Side::Request {
        "request"
    } else {
        "response"
    }
}

#[test]
fn every_personal_value_in_plaids_examples_is_redacted_and_the_rest_survives() {
    let redactor = redactor();
    let (mut personal, mut endpoints, mut fictional) = (0, BTreeSet::new(), 0);
    let mut survived = Vec::new();
    let mut kept = 0;
    for e in examples() {
        let after = redacted(&redactor, &e);
        // The skeleton survives: keys, types, nulls, array lengths (requests lose only their
        // top-level credentials, which are never stored).
        let mut before = e.body.clone();
        if e.side == Side::Request {
            before
                .as_object_mut()
                .unwrap()
                .retain(|field, _| !rules::is_credential(field));
        }
        assert_same_shape(&before, &after);
        for (at, raw) in personal_values(&e, &mut fictional) {
            personal += 1;
            endpoints.insert(e.endpoint.clone());
            let now = at_path(&after, &at).and_then(Value::as_str);
            if now == Some(raw.as_str()) {
                survived.push(format!("{} {} {at} = {raw:?}", e.endpoint, half(e.side)));
            }
        }
        for key in NOT_PERSONAL {
            for (at, raw) in strings_at_key(&e.body, key) {
                let now = at_path(&after, &at).and_then(Value::as_str);
                assert_eq!(
                    now,
                    Some(raw.as_str()),
                    "{} {at}: not personal, must survive",
                    e.endpoint
                );
                kept += 1;
            }
        }
    }
    eprintln!(
        "corpus: {personal} personal values on {} endpoints, {} survived; {fictional} already fictional \
         (555-01xx phones, documentation IPs) kept as they are; {kept} non-personal values kept",
        endpoints.len(),
        survived.len()
    );
    assert!(personal > 400, "{personal}");
    assert!(
        survived.is_empty(),
        "{} survived:\n{}",
        survived.len(),
        survived.join("\n")
    );
}

/// Every string under a field named `key`, anywhere, with its concrete path.
fn strings_at_key(value: &Value, key: &str) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, key: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let here = join(at, k);
                    if k == key {
                        if let Some(s) = child.as_str() {
                            out.push((here.clone(), s.to_owned()));
                        }
                    }
                    walk(child, &here, key, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{at}[{i}]"), key, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", key, &mut out);
    out
}

#[test]
fn scan_finds_the_personal_values_in_plaids_examples_and_nothing_after_redaction() {
    let rules = rules::builtin();
    let config = ScanConfig::default();
    let scanner = Scanner::new(&rules, &config);
    let redactor = redactor();
    let (mut personal, mut reported, mut fictional) = (0, 0, 0);
    let mut missed = Vec::new();
    for e in examples() {
        let file = Path::new("example.json");
        let findings: BTreeSet<String> = scanner
            .file(file, &as_file(&e, &e.body))
            .into_iter()
            .map(|f| f.path)
            .collect();
        for (at, raw) in personal_values(&e, &mut fictional) {
            personal += 1;
            let full = format!("{}.body.{at}", half(e.side));
            if findings.contains(&full) {
                reported += 1;
            } else {
                missed.push(format!("{} {full} = {raw:?}", e.endpoint));
            }
        }
        let after = redacted(&redactor, &e);
        let leftover = scanner.file(file, &as_file(&e, &after));
        assert!(leftover.is_empty(), "{} after redaction: {leftover:?}", e.endpoint);
    }
    let share = reported as f64 / personal as f64;
    eprintln!(
        "corpus: scan reports {reported} of {personal} personal values ({:.1} %)",
        share * 100.0
    );
    assert!(share >= 0.95, "{reported}/{personal}; missed:\n{}", missed.join("\n"));
}

/// A body holding `value` at `path` (`a.b[].c`), arrays of one element.
fn body_with(path: &str, value: &str) -> Value {
    let mut node = Value::String(value.to_owned());
    for part in path.split('.').rev() {
        let name = part.trim_end_matches("[]");
        for _ in 0..(part.len() - name.len()) / 2 {
            node = Value::Array(vec![node]);
        }
        if !name.is_empty() {
            node = json!({ name: node });
        }
    }
    node
}

#[test]
fn every_request_side_personal_field_of_the_table_is_redacted() {
    // Plaid's spec has no request example carrying personal data, so each request-side row of
    // the table gets one: a realistic value of its kind at its path.
    let sample = |kind: &str| match kind {
        "name" => "Jane Quinn Sample",
        "email" => "jane.sample@gmail.com",
        "phone" => "+1 415 867 5309",
        "dob" => "1985-07-14",
        "id_number" => "123-45-6789",
        "ip" => "81.2.69.160",
        "street" => "2992 Cameron Road",
        "city" => "Malakoff",
        "postal_code" => "93405-2255",
        "account_number" => "9900009606",
        "iban" => "GB82WEST12345698765432",
        other => panic!("a kind the table has and this test does not: {other}"),
    };
    let (keyed, placeholder) = (
        redactor(),
        Redactor::new(rules::builtin(), RequestPii::Placeholder, b"corpus-test-secret"),
    );
    let mut checked = 0;
    for line in TABLE.lines().filter(|l| !l.starts_with('#')) {
        let cells: Vec<&str> = line.split('\t').collect();
        let (endpoint, side, path, kind) = (cells[0], cells[1], cells[2], cells[3]);
        if side != "request" {
            continue;
        }
        let raw = sample(kind);
        let body = body_with(path, raw);
        for redactor in [&keyed, &placeholder] {
            let after = Value::Object(redactor.request(endpoint, body.as_object().unwrap().clone()));
            let now = strings_at(&after, path);
            assert_eq!(now.len(), 1, "{endpoint} {path}: {after}");
            assert_ne!(now[0].1, raw, "{endpoint} request {path} ({kind}) survived");
        }
        checked += 1;
    }
    eprintln!("corpus: {checked} request-side personal fields redacted");
    assert!(checked > 100, "{checked}");
}
