//! Privacy: nothing personal or secret reaches the store, the cassette or the logs; redacted
//! cassettes still replay; `scan` finds leaks and `redact` fixes them.

use std::path::Path;

use plaid_vcr::testing::redact::{Redactor, RequestPii};
use plaid_vcr::Mode;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// Property tests over generated identity/get responses.

fn word() -> impl Strategy<Value = String> {
    "[A-Z][a-z]{5,9}"
}

fn owner() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((word(), word()), 1..3),
        prop::collection::vec(("[a-z]{4,10}[0-9]{0,3}", "[a-z]{4,9}"), 0..3),
        prop::collection::vec("[2-9][0-9]{2}[2-4][0-9]{6}", 0..3),
        prop::collection::vec(("[1-9][0-9]{1,4}", word(), word(), "[1-9][0-9]{4}"), 0..3),
    )
        .prop_map(|(names, emails, phones, addresses)| {
            json!({
                "names": names.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>(),
                "emails": emails.iter().enumerate().map(|(i, (l, d))| json!({"data": format!("{l}@{d}.com"), "primary": i == 0, "type": "primary"})).collect::<Vec<_>>(),
                "phone_numbers": phones.iter().map(|p| json!({"data": p, "primary": false, "type": "mobile"})).collect::<Vec<_>>(),
                "addresses": addresses.iter().map(|(n, s, c, z)| json!({"data": {"street": format!("{n} {s} Road"), "city": c, "region": "NY", "postal_code": z, "country": "US"}, "primary": true})).collect::<Vec<_>>(),
            })
        })
}

fn identity_response() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        ("[A-Za-z0-9]{37}", "[0-9]{4}", prop::option::of(word()), prop::collection::vec(owner(), 0..3), any::<u32>()),
        1..4,
    )
    .prop_map(|accounts| {
        json!({
            "accounts": accounts.into_iter().map(|(id, mask, official, owners, balance)| json!({
                "account_id": id,
                "balances": {"available": balance, "current": 110.5, "iso_currency_code": "USD", "limit": null, "unofficial_currency_code": null},
                "mask": mask,
                "name": "Plaid Checking",
                "official_name": official,
                "owners": owners,
                "subtype": "checking",
                "type": "depository",
            })).collect::<Vec<_>>(),
            "item": {"item_id": "eVBnVMp7zdTJLkRNr33Rs6zr7KNJqBFL9DrE6", "webhook": null, "error": null, "available_products": ["balance"], "billed_products": ["identity"], "consent_expiration_time": null, "update_type": "background"},
            "request_id": "3nARps6TOYtbACO",
        })
    })
}

/// Every personal string in a generated response: owners' names, emails, phones, streets, cities.
fn personal_strings(response: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for account in response["accounts"].as_array().unwrap() {
        out.push(account["account_id"].as_str().unwrap().to_string());
        for owner in account["owners"].as_array().unwrap() {
            out.extend(
                owner["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string()),
            );
            for (list, field) in [("emails", "data"), ("phone_numbers", "data")] {
                out.extend(
                    owner[list]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e[field].as_str().unwrap().to_string()),
                );
            }
            for a in owner["addresses"].as_array().unwrap() {
                // Postal codes are masked (checked separately): five digits are too short for a
                // "does not appear anywhere" check, a balance can contain them by chance.
                for field in ["street", "city"] {
                    out.push(a["data"][field].as_str().unwrap().to_string());
                }
            }
        }
    }
    out
}

fn redactor(key: &[u8]) -> Redactor {
    Redactor::new(plaid_vcr::testing::rules::builtin(), RequestPii::Placeholder, key)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn redaction_is_idempotent_deterministic_shape_preserving_and_leaves_no_pii(response in identity_response()) {
        let r = redactor(b"property-key");
        let once = r.response("identity/get", response.clone());
        prop_assert_eq!(&r.response("identity/get", once.clone()), &once, "idempotent");
        prop_assert_eq!(&redactor(b"property-key").response("identity/get", response.clone()), &once, "deterministic");
        assert_same_shape(&response, &once);
        // Enums, product lists and request_id are untouched.
        for (a, b) in response["accounts"].as_array().unwrap().iter().zip(once["accounts"].as_array().unwrap()) {
            prop_assert_eq!(&a["type"], &b["type"]);
            prop_assert_eq!(&a["subtype"], &b["subtype"]);
            prop_assert_eq!(&a["name"], &b["name"]);
            prop_assert_eq!(a["mask"].as_str().unwrap().len(), b["mask"].as_str().unwrap().len());
            for (x, y) in a["owners"].as_array().unwrap().iter().zip(b["owners"].as_array().unwrap()) {
                for list in ["emails", "phone_numbers"] {
                    for (e, f) in x[list].as_array().unwrap().iter().zip(y[list].as_array().unwrap()) {
                        prop_assert_eq!(&e["type"], &f["type"]);
                    }
                }
            }
        }
        for account in once["accounts"].as_array().unwrap() {
            for owner in account["owners"].as_array().unwrap() {
                for a in owner["addresses"].as_array().unwrap() {
                    prop_assert!(a["data"]["postal_code"].as_str().unwrap().bytes().all(|b| b == b'0'));
                }
            }
        }
        prop_assert_eq!(&response["item"]["billed_products"], &once["item"]["billed_products"]);
        prop_assert_eq!(&response["request_id"], &once["request_id"]);
        let text = once.to_string();
        for pii in personal_strings(&response) {
            prop_assert!(!text.contains(&pii), "{} survived redaction", pii);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A record session with canary values, through the real binary.

const CANARY_TOKEN: &str = "access-sandbox-cafe0001-1111-4222-8333-canary000001";
const CANARY_PUBLIC: &str = "public-sandbox-cafe0002-1111-4222-8333-canary000002";
const CANARY_CLIENT_ID: &str = "canaryclientid0000000001";
const CANARY_SECRET: &str = "canarysecret00000000000000001";
const CANARIES: [&str; 12] = [
    "canary000001",
    "canary000002",
    CANARY_CLIENT_ID,
    CANARY_SECRET,
    "Zanzibarius",
    "canary.person",
    "canary-mail",
    "4158675309",
    "Canaryvale",
    "Canarytown",
    "CANARYacct",
    "canary-hooks",
];

fn canary_identity() -> Value {
    let mut body: Value = serde_json::from_str(IDENTITY_RESPONSE).unwrap();
    for account in body["accounts"].as_array_mut().unwrap() {
        account["account_id"] = json!("CANARYacct0000000000000000000000000001");
        let owner = &mut account["owners"][0];
        owner["names"] = json!(["Quentin Zanzibarius"]);
        owner["emails"][0]["data"] = json!("canary.person@canary-mail.com");
        owner["phone_numbers"][1]["data"] = json!("(415) 867-5309");
        owner["phone_numbers"][2]["data"] = json!("4158675309");
        owner["addresses"][0]["data"]["street"] = json!("4711 Canaryvale Boulevard");
        owner["addresses"][0]["data"]["city"] = json!("Canarytown");
    }
    body["item"]["webhook"] = json!("https://canary-hooks.com/hook?token=canary000001");
    body
}

fn all_bytes_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn assert_no_canary(what: &str, bytes: &[u8]) {
    for canary in CANARIES {
        let found = bytes
            .windows(canary.len())
            .any(|w| w.eq_ignore_ascii_case(canary.as_bytes()));
        assert!(!found, "canary {canary:?} reached {what}");
    }
}

#[tokio::test]
async fn a_record_session_writes_no_canary_to_store_cassette_or_logs_and_replays_with_either_token() {
    let fake = FakePlaid::start().await;
    fake.reply(
        "identity/get",
        Reply {
            status: 200,
            body: canary_identity(),
        },
    );
    fake.reply(
        "sandbox/public_token/create",
        Reply {
            status: 200,
            body: json!({"public_token": CANARY_PUBLIC}),
        },
    );
    fake.reply(
        "item/public_token/exchange",
        Reply {
            status: 200,
            body: json!({"access_token": CANARY_TOKEN, "item_id": "CANARYacct0000000000000000000000000099"}),
        },
    );
    let dirs = Dirs::new();
    // RUST_LOG=trace: every library's logs (hyper, h2, rustls, sled), not just ours.
    let args = serve_args("record", &dirs, Some(&fake), &[]);
    let mut binary = Binary::start(&args, &[("RUST_LOG", "trace")], dirs.root.path());
    let base = binary.base_url();
    let headers = [
        ("content-type", "application/json"),
        ("plaid-client-id", CANARY_CLIENT_ID),
        ("plaid-secret", CANARY_SECRET),
        ("plaid-version", "2020-09-14"),
    ];
    let create = r#"{"institution_id":"ins_109508","initial_products":["identity"]}"#;
    let created = send("POST", &format!("{base}/sandbox/public_token/create"), &headers, create).await;
    let public = created.json()["public_token"].as_str().unwrap().to_string();
    assert_eq!(public, CANARY_PUBLIC, "record mode answers upstream's real values");
    let exchange =
        format!(r#"{{"public_token":"{public}","client_id":"{CANARY_CLIENT_ID}","secret":"{CANARY_SECRET}"}}"#);
    let exchanged = send(
        "POST",
        &format!("{base}/item/public_token/exchange"),
        &headers,
        exchange.clone(),
    )
    .await;
    let token = exchanged.json()["access_token"].as_str().unwrap().to_string();
    let identity = format!(
        r#"{{"access_token":"{token}","options":{{"account_ids":["CANARYacct0000000000000000000000000001"]}}}}"#
    );
    let recorded = send("POST", &format!("{base}/identity/get"), &headers, identity.clone()).await;
    assert_eq!(recorded.outcome(), "recorded", "{:?}", recorded.body);
    assert_eq!(binary.signal_and_wait("TERM"), Some(0));

    for (path, bytes) in all_bytes_under(&dirs.store())
        .into_iter()
        .chain(all_bytes_under(&dirs.cassette()))
    {
        assert_no_canary(&path.display().to_string(), &bytes);
    }
    let logs = binary.stderr();
    assert!(logs.contains("outcome=\"recorded\""), "{logs}");
    assert_no_canary("the logs", logs.as_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dirs.store().join("redact.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the redaction key is private to its owner");
    }

    // Replay: the real token and the pseudonym the replayed exchange hands out both hit.
    let replay = start(&config(&dirs, None), Mode::Replay).await;
    let url = format!("{}/item/public_token/exchange", replay.base_url());
    let replayed_exchange = send("POST", &url, &headers, exchange).await;
    assert_eq!(replayed_exchange.outcome(), "hit");
    let pseudonym = replayed_exchange.json()["access_token"].as_str().unwrap().to_string();
    assert!(
        pseudonym.starts_with("access-sandbox-") && pseudonym.len() == CANARY_TOKEN.len(),
        "{pseudonym}"
    );
    let url = format!("{}/identity/get", replay.base_url());
    let with_real = send("POST", &url, &headers, identity.clone()).await;
    let with_pseudonym = send("POST", &url, &headers, identity.replace(CANARY_TOKEN, &pseudonym)).await;
    assert_eq!((with_real.outcome(), with_pseudonym.outcome()), ("hit", "hit"));
    assert_eq!(with_real.body, with_pseudonym.body);
    assert_no_canary("a replayed answer", &with_real.body);
    assert_same_shape(&recorded.json(), &with_real.json());
    replay.stop().await.unwrap();
}

#[tokio::test]
async fn no_redact_warns_and_marks_every_file_which_scan_reports() {
    let fake = FakePlaid::start().await;
    let dirs = Dirs::new();
    let (cassette, store) = (
        dirs.cassette().display().to_string(),
        dirs.store().display().to_string(),
    );
    let mut binary = Binary::start(
        &serve_args("record", &dirs, Some(&fake), &["--no-redact"]),
        &[],
        dirs.root.path(),
    );
    let resp = send(
        "POST",
        &format!("{}/identity/get", binary.base_url()),
        &CLIENT_HEADERS,
        format!(r#"{{"access_token":"{TOKEN}"}}"#),
    )
    .await;
    assert_eq!(resp.outcome(), "recorded");
    assert_eq!(binary.signal_and_wait("TERM"), Some(0));
    assert!(binary.stderr().contains("--no-redact"), "{}", binary.stderr());
    let file = std::fs::read_to_string(dirs.cassette().join(&dirs.cassette_files()[0])).unwrap();
    assert!(file.contains("\"unredacted\": true"), "{file}");
    assert!(file.contains(TOKEN), "raw mode keeps the token");
    assert!(
        !file.contains("0123456789abcdef01234567"),
        "credentials are dropped even in raw mode"
    );

    let (code, stdout, _) = run_binary(&["scan", &cassette], dirs.root.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("unredacted-file") && stdout.contains("pii:token"),
        "{stdout}"
    );
    let raw_name = dirs.cassette_files()[0].clone();
    let (code, stdout, _) = run_binary(&["redact", &cassette, "--store", &store], dirs.root.path());
    assert_eq!(code, 0);
    assert!(
        stdout.contains("key changed"),
        "the raw token was keyed; its pseudonym keys differently: {stdout}"
    );
    let files = dirs.cassette_files();
    assert_eq!(files.len(), 1);
    assert_ne!(files[0], raw_name, "the file is renamed after its new key");
    let redacted = std::fs::read_to_string(dirs.cassette().join(&files[0])).unwrap();
    assert!(
        !redacted.contains("unredacted") && !redacted.contains(TOKEN),
        "{redacted}"
    );
    let (code, stdout, _) = run_binary(&["scan", &cassette], dirs.root.path());
    assert_eq!(code, 0, "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// scan and redact on a cassette edited by hand.

fn demo_copy(dirs: &Dirs) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("cassettes/demo/identity_get");
    let target = dirs.cassette().join("identity_get");
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(source).unwrap().flatten() {
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    dirs.cassette()
}

#[test]
fn scan_names_injected_leaks_and_redact_then_scan_is_clean_and_idempotent() {
    let dirs = Dirs::new();
    let cassette = demo_copy(&dirs);
    let cassette_arg = cassette.display().to_string();
    let store_arg = dirs.store().display().to_string();
    let (code, stdout, _) = run_binary(&["scan", &cassette_arg], dirs.root.path());
    assert_eq!(code, 0, "the committed demo is clean: {stdout}");

    let file = cassette.join(&dirs.cassette_files()[0]);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let owner = &mut v["response"]["body"]["accounts"][0]["owners"][0];
    owner["emails"][0]["data"] = json!("jane.realperson@gmail.com");
    owner["phone_numbers"][0]["data"] = json!("415-867-5309");
    owner["names"][0] = json!("Jane Realperson");
    v["request"]["body"]["secret"] = json!("0123456789abcdef0123456789abcd");
    v["response"]["body"]["item"]["institution_name"] = json!("Call me at (212) 736-5000");
    v["response"]["body"]["item"]["api_key"] = json!("sk_live_9fK2pQ7xZ1mN4bV8cR3tYw");
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();

    let (code, stdout, _) = run_binary(&["scan", &cassette_arg], dirs.root.path());
    assert_eq!(code, 1, "{stdout}");
    for (path, detector) in [
        ("owners[0].emails[0].data", "pii:email"),
        ("owners[0].phone_numbers[0].data", "pii:phone"),
        ("owners[0].names[0]", "pii:name"),
        ("request.body.secret", "credential"),
        ("item.institution_name", "phone"),
        ("item.api_key", "high-entropy"),
    ] {
        assert!(
            stdout.lines().any(|l| l.contains(path) && l.contains(detector)),
            "{path} {detector} missing:\n{stdout}"
        );
    }
    for leak in [
        "jane.realperson@gmail.com",
        "415-867-5309",
        "Jane Realperson",
        "0123456789abcdef0123456789abcd",
        "736-5000",
        "sk_live_9fK2",
    ] {
        assert!(!stdout.contains(leak), "scan printed the value {leak}:\n{stdout}");
    }
    let (code, json_out, _) = run_binary(&["scan", &cassette_arg, "--format", "json"], dirs.root.path());
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 6, "{json_out}");
    assert_eq!(report["files_scanned"], 2);

    let (code, stdout, stderr) = run_binary(&["redact", &cassette_arg, "--store", &store_arg], dirs.root.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(6 values)") && stdout.contains("1 of 2 files changed"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("key changed"),
        "credentials are never part of the key: {stdout}"
    );
    let (code, stdout, _) = run_binary(&["scan", &cassette_arg], dirs.root.path());
    assert_eq!(code, 0, "{stdout}");
    let before: Vec<_> = all_bytes_under(&cassette);
    let (code, stdout, _) = run_binary(&["redact", &cassette_arg, "--store", &store_arg], dirs.root.path());
    assert_eq!(code, 0);
    assert!(stdout.contains("0 of 2 files changed"), "{stdout}");
    let mut after = all_bytes_under(&cassette);
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after, "redact is idempotent byte for byte");

    let (code, _, stderr) = run_binary(&["scan", "no/such/dir"], dirs.root.path());
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn the_scan_allowlist_silences_known_values() {
    let dirs = Dirs::new();
    let cassette = demo_copy(&dirs);
    let file = cassette.join(&dirs.cassette_files()[0]);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    v["response"]["body"]["item"]["institution_name"] = json!("support@bank.example.org");
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let cassette_arg = cassette.display().to_string();
    assert_eq!(run_binary(&["scan", &cassette_arg], dirs.root.path()).0, 1);
    std::fs::write(
        dirs.root.path().join("plaid-vcr.toml"),
        "[scan]\nallow = [\"support@bank.example.org\"]\n",
    )
    .unwrap();
    assert_eq!(run_binary(&["scan", &cassette_arg], dirs.root.path()).0, 0);
}

#[test]
fn a_phone_typed_into_an_account_name_is_redacted_and_reported() {
    let r = redactor(b"k");
    let out = r.response(
        "identity/get",
        json!({"accounts": [{"name": "Call 415-867-5309", "owners": []}, {"name": "Plaid Checking", "owners": []}]}),
    );
    assert!(!out.to_string().contains("867-5309"), "{out}");
    assert_eq!(out["accounts"][1]["name"], "Plaid Checking", "product names stay");

    let dirs = Dirs::new();
    let cassette = demo_copy(&dirs);
    let file = cassette.join(&dirs.cassette_files()[0]);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    v["response"]["body"]["accounts"][0]["name"] = json!("Call 415-867-5309");
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let (code, stdout, _) = run_binary(&["scan", &cassette.display().to_string()], dirs.root.path());
    assert_eq!(code, 1);
    assert!(stdout.contains("accounts[0].name: phone"), "{stdout}");
}

#[test]
fn a_keep_rule_on_an_object_is_honoured_by_redact_and_scan_alike() {
    let dirs = Dirs::new();
    let cassette = demo_copy(&dirs);
    let file = cassette.join(&dirs.cassette_files()[0]);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    v["response"]["body"]["accounts"][0]["owners"][0]["addresses"][0]["data"]["street"] = json!("2992 Cameron Road");
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let cassette_arg = cassette.display().to_string();
    let store_arg = dirs.store().display().to_string();
    // Without the rule, the raw street is a leak.
    let (code, stdout, _) = run_binary(&["scan", &cassette_arg], dirs.root.path());
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("addresses[0].data.street: pii:street"), "{stdout}");

    // With it, redact keeps the street and scan, reading the same rule, does not report it.
    std::fs::write(
        dirs.root.path().join("plaid-vcr.toml"),
        "[redact]\nrules = [{ side = \"response\", path = \"accounts[].owners[].addresses\", action = \"keep\" }]\n",
    )
    .unwrap();
    let (code, _, stderr) = run_binary(&["redact", &cassette_arg, "--store", &store_arg], dirs.root.path());
    assert_eq!(code, 0, "{stderr}");
    let after = std::fs::read_to_string(dirs.cassette().join(&dirs.cassette_files()[0])).unwrap();
    assert!(after.contains("2992 Cameron Road"), "kept by the rule");
    let (code, stdout, _) = run_binary(&["scan", &cassette_arg], dirs.root.path());
    assert_eq!(code, 0, "redact, then scan is clean: {stdout}");
}
