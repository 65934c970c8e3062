//! Pseudonyms, through the public API: shapes kept, standards kept (an IBAN still validates),
//! idempotence, keyed versus unkeyed, and how each kind is named in config files.

use plaid_vcr::testing::pseudonym::{is_pseudonym, mask, Kind, Pseudonymizer};

fn p() -> Pseudonymizer {
    Pseudonymizer::new(b"test-key")
}

#[test]
fn tokens_keep_their_prefix_and_shape_and_are_the_same_without_a_key() {
    let raw = "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6";
    let a = p().pseudonymize(Kind::Token, raw);
    let b = Pseudonymizer::new(b"another key").pseudonymize(Kind::Token, raw);
    assert_eq!(a, b, "token pseudonyms are unkeyed");
    assert_ne!(a, raw);
    assert!(a.starts_with("access-sandbox-"));
    assert_eq!(a.len(), raw.len());
    let shape = |s: &str| s.chars().map(|c| if c == '-' { '-' } else { 'h' }).collect::<String>();
    assert_eq!(shape(&a), shape(raw));
    assert!(
        a["access-sandbox-".len()..]
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{a}"
    );
    assert_eq!(p().pseudonymize(Kind::Token, &a), a, "idempotent");
    assert!(!is_pseudonym(Kind::Token, raw));
}

#[test]
fn ids_keep_character_classes() {
    let raw = "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp";
    let a = p().pseudonymize(Kind::Id, raw);
    assert_eq!(a.len(), raw.len());
    for (x, y) in a.chars().zip(raw.chars()) {
        assert_eq!(x.is_ascii_digit(), y.is_ascii_digit());
        assert_eq!(x.is_ascii_uppercase(), y.is_ascii_uppercase());
    }
    assert_eq!(p().pseudonymize(Kind::Id, &a), a);
}

#[test]
fn personal_data_keeps_its_shape_and_depends_on_the_key() {
    let cases = [
        (Kind::Name, "Alberta Bobbeth Charleson"),
        (Kind::Email, "accountholder0@example.com"),
        (Kind::Phone, "+1 111-555-3333"),
        (Kind::Phone, "1112224444"),
        (Kind::Street, "2992 Cameron Road"),
        (Kind::City, "Malakoff"),
        (Kind::Url, "https://www.genericwebhookurl.com/webhook"),
    ];
    for (kind, raw) in cases {
        let a = p().pseudonymize(kind, raw);
        assert_ne!(a, raw, "{kind:?}");
        assert_eq!(p().pseudonymize(kind, &a), a, "{kind:?} idempotent");
        assert!(is_pseudonym(kind, &a), "{kind:?} {a}");
        assert!(!is_pseudonym(kind, raw), "{kind:?} {raw}");
    }
    let other = Pseudonymizer::new(b"other");
    assert_ne!(
        p().pseudonymize(Kind::Phone, "1112224444"),
        other.pseudonymize(Kind::Phone, "1112224444")
    );
    // 555-0100..0199 is reserved for fiction: such a number is no one's and stays as is.
    assert_eq!(p().pseudonymize(Kind::Phone, "2025550123"), "2025550123");
    // Formatting kept (every non-digit where it was), digits replaced, and the last seven
    // digits in the fictional 555-01xx block.
    let raw = "+1 111-555-3333";
    let phone = p().pseudonymize(Kind::Phone, raw);
    let skeleton = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii_digit() { 'd' } else { c })
            .collect::<String>()
    };
    assert_eq!(skeleton(&phone), skeleton(raw));
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(digits.len(), 11);
    assert_eq!(&digits[4..9], "55501", "{phone}");
    assert_ne!(&phone[..6], &raw[..6], "the other digits are replaced too");
    assert_eq!(
        p().pseudonymize(Kind::Name, "Alberta Bobbeth Charleson")
            .split(' ')
            .count(),
        3
    );
    assert!(p().pseudonymize(Kind::Street, "2992 Cameron Road").ends_with(" Road"));
    assert!(p().pseudonymize(Kind::Email, "a.b@x.com").ends_with("@example.net"));
}

#[test]
fn short_test_identifiers_are_kept_and_short_text_is_masked() {
    assert_eq!(p().pseudonymize(Kind::Id, "acc_1"), "acc_1");
    assert_eq!(p().pseudonymize(Kind::Token, "access-sandbox-x"), "access-sandbox-x");
    assert_eq!(p().pseudonymize(Kind::Text, "JQ"), "XX");
}

#[test]
fn every_kind_is_named_in_config_files_as_as_str_says() {
    for kind in [
        Kind::Token,
        Kind::Id,
        Kind::Name,
        Kind::Email,
        Kind::Phone,
        Kind::Street,
        Kind::City,
        Kind::Url,
        Kind::Text,
        Kind::Dob,
        Kind::IdNumber,
        Kind::Ip,
        Kind::AccountNumber,
        Kind::Iban,
    ] {
        let named: Kind = serde_json::from_value(serde_json::Value::from(kind.as_str())).unwrap();
        assert_eq!(named, kind);
    }
}

#[test]
fn new_kinds_keep_their_standard_and_are_idempotent() {
    let cases = [
        (Kind::Dob, "1985-07-14"),
        (Kind::IdNumber, "123-45-6789"),
        (Kind::IdNumber, "D1234567890123"),
        (Kind::Ip, "203.45.1.9"),
        (Kind::AccountNumber, "9900009606"),
        (Kind::AccountNumber, "1111222233330000"),
        (Kind::Iban, "GB33BUKB20201555555555"),
    ];
    for (kind, raw) in cases {
        let a = p().pseudonymize(kind, raw);
        assert_ne!(a, raw, "{kind:?}");
        if kind != Kind::Ip {
            assert_eq!(a.len(), raw.len(), "{kind:?} keeps its length: {a}");
        }
        assert_eq!(p().pseudonymize(kind, &a), a, "{kind:?} idempotent");
        assert!(is_pseudonym(kind, &a), "{kind:?} {a}");
    }
    assert!(plaid_vcr::testing::numbers::iban_valid(
        &p().pseudonymize(Kind::Iban, "GB33BUKB20201555555555")
    ));
    assert_eq!(p().pseudonymize(Kind::IdNumber, "123-45-6789"), "000-00-0000");
}

#[test]
fn masks_keep_length_and_classes() {
    assert_eq!(mask("0123"), "0000");
    assert_eq!(mask("93405-2255"), "00000-0000");
    assert_eq!(mask("SW1A 1AA"), "XX0X 0XX");
    assert_eq!(mask(&mask("ab12")), "xx00");
}
