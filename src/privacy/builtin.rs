//! The built-in rule table: tokens and identifiers by field name on every endpoint, and
//! Plaid's personal fields per endpoint and side, generated from Plaid's OpenAPI spec into
//! `plaid_pii.tsv` by `tools/plaid_pii.py`. Rules of the config file come before these.

use crate::privacy::pseudonym::Kind;
use crate::privacy::rules::{Action, Rule, Side, CREDENTIALS, OTHER_CREDENTIAL_NAMES};

/// Fields that hold Plaid tokens, on any endpoint, at any depth.
const TOKEN_FIELDS: [&str; 8] = [
    "access_token",
    "public_token",
    "link_token",
    "processor_token",
    "user_token",
    "payment_token",
    "bank_transfer_token",
    "stripe_bank_account_token",
];
/// Fields that hold identifiers linking records, on any endpoint, at any depth.
const ID_FIELDS: [&str; 5] = [
    "account_id",
    "item_id",
    "persistent_account_id",
    "paired_account_id",
    "paired_item_id",
];

/// Plaid's personal fields, one row per endpoint, side and path: generated from Plaid's OpenAPI
/// spec by `tools/plaid_pii.py` (see the file's header for the pinned commit).
pub(super) const SPEC_TABLE: &str = include_str!("plaid_pii.tsv");

/// The spec table's rows as rules, scoped to their endpoint and side.
pub(super) fn from_spec() -> Vec<Rule> {
    SPEC_TABLE
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let mut cells = line.split('\t');
            let mut cell = || cells.next().expect("the generator writes five cells per row");
            let (endpoint, side, path, kind) = (cell(), cell(), cell(), cell());
            let side = if side == "request" {
                Side::Request
            } else {
                Side::Response
            };
            let action = match kind {
                "name" => Action::Pseudonymize(Kind::Name),
                "email" => Action::Pseudonymize(Kind::Email),
                "phone" => Action::Pseudonymize(Kind::Phone),
                "dob" => Action::Pseudonymize(Kind::Dob),
                "id_number" => Action::Pseudonymize(Kind::IdNumber),
                "ip" => Action::Pseudonymize(Kind::Ip),
                "street" => Action::Pseudonymize(Kind::Street),
                "city" => Action::Pseudonymize(Kind::City),
                "postal_code" => Action::Mask,
                "account_number" => Action::Pseudonymize(Kind::AccountNumber),
                "iban" => Action::Pseudonymize(Kind::Iban),
                // A kind the generator writes must be known here; a unit test reads every row.
                other => unreachable!("tools/plaid_pii.py wrote an unknown kind {other:?}"),
            };
            Rule::new(Some(endpoint), side, path, action)
        })
        .collect()
}

/// The built-in rules, checked after any from the config: first the spec table's personal
/// fields (`from_spec`), then the generic ones below. Identity owners' fields are covered
/// wherever an `accounts[].owners[]` appears, also on endpoints the table does not know.
pub fn builtin() -> Vec<Rule> {
    use Action::*;
    let mut rules = from_spec();
    for field in TOKEN_FIELDS {
        rules.push(Rule::new(
            None,
            Side::Both,
            &format!("**.{field}"),
            Pseudonymize(Kind::Token),
        ));
        // The same tokens sent as a list (`/asset_report/create`'s `access_tokens`): the same
        // pseudonyms, so a token a replayed exchange handed out matches there too.
        rules.push(Rule::new(
            None,
            Side::Both,
            &format!("**.{field}s[]"),
            Pseudonymize(Kind::Token),
        ));
    }
    for field in ID_FIELDS {
        rules.push(Rule::new(
            None,
            Side::Both,
            &format!("**.{field}"),
            Pseudonymize(Kind::Id),
        ));
    }
    rules.push(Rule::new(None, Side::Both, "**.account_ids[]", Pseudonymize(Kind::Id)));
    // Credentials nested in answers (a partner's end customer's client_id): hidden as ids, so
    // the shape stays. At the top of a request they are dropped before this (redact).
    for (body, _) in CREDENTIALS {
        rules.push(Rule::new(
            None,
            Side::Both,
            &format!("**.{body}"),
            Pseudonymize(Kind::Id),
        ));
    }
    for other in OTHER_CREDENTIAL_NAMES {
        rules.push(Rule::new(
            None,
            Side::Both,
            &format!("**.{other}"),
            Pseudonymize(Kind::Id),
        ));
    }
    rules.push(Rule::new(None, Side::Both, "**.webhook", Pseudonymize(Kind::Url)));
    // WEBHOOK_UPDATE_ACKNOWLEDGED names the app's new URL, which may embed tokens like `webhook`.
    rules.push(Rule::new(
        None,
        Side::Both,
        "**.new_webhook_url",
        Pseudonymize(Kind::Url),
    ));
    // Plaid's own id of the answer, in every body (top level): no one's data. Without this an
    // all-digit one (rare, but Plaid's are random) reads to the detectors as a number to hide,
    // and replay answers another request_id than the app saw when recording.
    rules.push(Rule::new(None, Side::Response, "request_id", Keep));
    // Sandbox test credentials are public defaults (user_good/pass_good) and choose the answer.
    rules.push(Rule::new(None, Side::Request, "options.override_username", Keep));
    rules.push(Rule::new(None, Side::Request, "options.override_password", Keep));

    let owner = "accounts[].owners[]";
    for (path, action) in [
        ("names[]", Pseudonymize(Kind::Name)),
        ("emails[].data", Pseudonymize(Kind::Email)),
        ("emails[].type", Keep),
        ("phone_numbers[].data", Pseudonymize(Kind::Phone)),
        ("phone_numbers[].type", Keep),
        ("addresses[].data.street", Pseudonymize(Kind::Street)),
        ("addresses[].data.city", Pseudonymize(Kind::City)),
        ("addresses[].data.postal_code", Mask),
        ("addresses[].data.region", Keep),
        ("addresses[].data.country", Keep),
        // Anything else an owner carries (fields added by newer API revisions) is personal.
        ("**", Pseudonymize(Kind::Text)),
    ] {
        rules.push(Rule::new(None, Side::Response, &format!("{owner}.{path}"), action));
    }
    rules.push(Rule::new(None, Side::Response, "accounts[].mask", Mask));
    rules.push(Rule::new(
        None,
        Side::Response,
        "accounts[].verification_name",
        Pseudonymize(Kind::Name),
    ));
    // No rule for `accounts[].name`: account names are usually product names ("Plaid Checking")
    // that tests assert on, so they are kept, but the generic detectors still run on them and
    // catch a phone or email typed into a user-assigned name. To pseudonymize them as names,
    // add a rule `accounts[].name` → pseudonymize/name.

    // The user /identity/match and similar endpoints send about the person.
    for (path, kind) in [
        ("user.legal_name", Some(Kind::Name)),
        ("user.name.**", Some(Kind::Name)),
        ("user.phone_number", Some(Kind::Phone)),
        ("user.email_address", Some(Kind::Email)),
        ("user.address.street", Some(Kind::Street)),
        ("user.address.city", Some(Kind::City)),
        ("user.address.postal_code", None),
        ("user.date_of_birth", None),
        ("user.id_number.value", None),
    ] {
        let action = kind.map_or(Mask, Pseudonymize);
        rules.push(Rule::new(None, Side::Request, path, action));
    }
    rules
}
