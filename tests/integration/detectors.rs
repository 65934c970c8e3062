//! The detectors: generated positives are caught, generated Plaid-like negatives are not, and
//! none fires on the non-personal values of Plaid's own examples.

use plaid_vcr::testing::detect::{self, Detector};
use plaid_vcr::testing::numbers;
use proptest::prelude::*;
use serde_json::Value;

fn detectors(text: &str) -> Vec<Detector> {
    detect::find(text).into_iter().map(|(d, _)| d).collect()
}

/// A card number of `len` digits whose last digit makes the Luhn check pass.
fn with_luhn(mut digits: Vec<u8>) -> String {
    for check in 0..10 {
        digits.push(check);
        let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        if numbers::luhn_valid(&text) {
            return text;
        }
        digits.pop();
    }
    unreachable!("one of ten check digits passes the Luhn check")
}

fn card() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![4u8, 5, 3, 6]),
        prop::collection::vec(0u8..10, 14..15),
        any::<bool>(),
    )
        .prop_map(|(first, rest, grouped)| {
            let mut digits = vec![first];
            digits.extend(rest);
            let number = with_luhn(digits);
            if grouped {
                number
                    .as_bytes()
                    .chunks(4)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                number
            }
        })
        .prop_filter("not a single repeated digit", |n| {
            n.bytes()
                .filter(u8::is_ascii_digit)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        })
}

fn iban() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["GB", "DE", "FR", "NL", "ES"]),
        "[A-Z]{4}[0-9]{14}",
    )
        .prop_map(|(country, bban)| {
            let check = numbers::iban_check_digits(country, &bban).unwrap();
            format!("{country}{check}{bban}")
        })
}

/// Values Plaid answers with that are not personal: ids, amounts, dates, masks, codes.
fn plaid_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9]{37}",                                                      // account_id, item_id
        "[0-9]{1,7}\\.[0-9]{2}",                                                // an amount as text
        "20[0-9]{2}-[01][0-9]-[0-3][0-9](T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z)?", // dates
        "[0-9]{4}",                                                             // masks
        "ins_[0-9]{1,6}",                                                       // institution ids
        "[A-Za-z0-9]{15}",                                                      // request_id
        "[0-9]{9}",                                                             // routing numbers
        "[A-Z]{3}",                                                             // currency codes
        "[a-z_]{3,20}",                                                         // enums
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn card_numbers_are_caught_in_text(number in card()) {
        prop_assert_eq!(detectors(&format!("paid with {number} yesterday")), vec![Detector::Card]);
    }

    #[test]
    fn ibans_with_a_valid_check_are_caught_and_others_are_not(iban in iban()) {
        prop_assert_eq!(detectors(&format!("to {iban}")), vec![Detector::Iban]);
        let wrong = format!("{}{:02}{}", &iban[..2], (iban[2..4].parse::<u32>().unwrap() + 1) % 100, &iban[4..]);
        prop_assert!(!detectors(&wrong).contains(&Detector::Iban), "{}", wrong);
    }

    #[test]
    fn jwts_are_caught(header in "[A-Za-z0-9_-]{10,40}", claims in "[A-Za-z0-9_-]{10,80}", signature in "[A-Za-z0-9_-]{20,60}") {
        let jwt = format!("eyJ{header}.eyJ{claims}.{signature}");
        prop_assert_eq!(detectors(&jwt), vec![Detector::Jwt]);
    }

    #[test]
    fn bearer_and_basic_credentials_are_caught(scheme in prop::sample::select(vec!["Bearer", "bearer", "Basic"]), credential in "[A-Za-z0-9._~+/=-]{12,60}") {
        prop_assert_eq!(detectors(&format!("Authorization: {scheme} {credential}")), vec![Detector::AuthHeader]);
    }

    #[test]
    fn undashed_ssns_are_caught_where_the_text_names_them(ssn in "[1-8][0-9]{8}", word in prop::sample::select(vec!["SSN", "ssn:", "ITIN", "social security number"])) {
        prop_assert_eq!(detectors(&format!("{word} {ssn}")), vec![Detector::Ssn]);
        let unnamed = format!("reference {ssn}");
        prop_assert!(!detectors(&unnamed).contains(&Detector::Ssn), "{}", unnamed);
    }

    #[test]
    fn international_phones_are_caught(country in "[1-9][0-9]{0,2}", rest in prop::collection::vec("[0-9]{2,4}", 3..5), spaced in any::<bool>()) {
        let separator = if spaced { " " } else { "" };
        let phone = format!("+{country}{separator}{}", rest.join(separator));
        let digits = phone.bytes().filter(u8::is_ascii_digit).count();
        prop_assume!((8..=15).contains(&digits));
        prop_assert_eq!(detectors(&format!("call {phone} now")), vec![Detector::Phone], "{}", phone);
    }

    #[test]
    fn cloud_keys_and_private_keys_are_caught(aws in "AKIA[0-9A-Z]{16}", google in "AIza[0-9A-Za-z_-]{35}", body in "[A-Za-z0-9+/]{40,200}") {
        prop_assert_eq!(detectors(&format!("key={aws}")), vec![Detector::CloudKey]);
        prop_assert_eq!(detectors(&format!("key={google}")), vec![Detector::CloudKey]);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----");
        prop_assert_eq!(detectors(&pem), vec![Detector::PrivateKey]);
    }

    #[test]
    fn plaid_like_values_are_not_personal(value in plaid_like()) {
        prop_assert!(detectors(&value).is_empty(), "{}: {:?}", value, detectors(&value));
        prop_assert_eq!(detect::by_name("amount", &value), None);
        prop_assert!(detect::find_in("reference_number", &value).is_empty(), "{}", value);
    }

    #[test]
    fn dates_of_birth_and_id_numbers_are_known_by_their_field(date in "19[4-9][0-9]-0[1-9]-[12][0-9]", ssn in "[0-9]{9}") {
        prop_assert_eq!(detect::by_name("date_of_birth", &date), Some(plaid_vcr::testing::pseudonym::Kind::Dob));
        prop_assert_eq!(detect::by_name("ssn", &ssn), Some(plaid_vcr::testing::pseudonym::Kind::IdNumber));
        prop_assert_eq!(detect::by_name("date", &date), None);
    }
}

#[test]
fn no_detector_of_a_standard_fires_on_the_non_personal_values_of_plaids_examples() {
    let corpus: Value = serde_json::from_str(include_str!("../corpus/plaid_examples.json")).unwrap();
    let table = include_str!("../../src/privacy/plaid_pii.tsv");
    let personal_fields: std::collections::BTreeSet<&str> = table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('\t').nth(2)?.rsplit('.').next())
        .map(|f| f.trim_end_matches("[]"))
        .collect();
    let mut strings = Vec::new();
    fn walk<'a>(
        v: &'a Value,
        field: &'a str,
        skip: &std::collections::BTreeSet<&str>,
        out: &mut Vec<(&'a str, &'a str)>,
    ) {
        match v {
            Value::Object(map) => map
                .iter()
                .filter(|(k, _)| !skip.contains(k.as_str()))
                .for_each(|(k, c)| walk(c, k, skip, out)),
            Value::Array(items) => items.iter().for_each(|c| walk(c, field, skip, out)),
            Value::String(s) => out.push((field, s)),
            _ => {}
        }
    }
    for example in corpus["examples"].as_array().unwrap() {
        walk(&example["response"], "", &personal_fields, &mut strings);
        walk(&example["request"], "", &personal_fields, &mut strings);
    }
    let standards = [
        Detector::Card,
        Detector::Iban,
        Detector::Jwt,
        Detector::AuthHeader,
        Detector::CloudKey,
        Detector::PrivateKey,
        Detector::Ssn,
        Detector::Phone,
    ];
    // A phone written as one (`111-222-3333` in a merchant's bank descriptor) is a phone, if a
    // business's; a bare run of digits found as a phone would be an id taken for one.
    let mut formatted_phones = 0;
    let mut fired = Vec::new();
    for (field, s) in &strings {
        for (detector, range) in detect::find_in(field, s) {
            if !standards.contains(&detector) {
                continue;
            }
            if detector == Detector::Phone && s[range].bytes().any(|b| !b.is_ascii_digit()) {
                formatted_phones += 1;
                continue;
            }
            fired.push(format!("{field}: {detector:?} in {s:?}"));
        }
    }
    eprintln!(
        "detectors: {} non-personal strings of Plaid's examples checked; {formatted_phones} formatted phone numbers \
         in descriptions (redacted: they may be a person's)",
        strings.len()
    );
    assert!(strings.len() > 3000, "{}", strings.len());
    assert!(fired.is_empty(), "false positives:\n{}", fired.join("\n"));
}
