//! Detectors for personal and secret data in free text and under telling field names: emails,
//! phone numbers (North American and international), SSNs (dashed anywhere, undashed where the
//! text says so), street addresses, Plaid tokens, card numbers (Luhn-checked), IBANs (mod-97
//! checked), JWTs, `Bearer`/`Basic` credentials, cloud API keys and PEM private keys; and, by
//! field name, dates of birth and identity numbers.
//!
//! Shared by the redaction stage (which replaces what they find where no rule applies) and by
//! `scan` (which reports what they find). Patterns and checks only: no JSON, no I/O.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use crate::privacy::numbers;
use crate::privacy::pseudonym::Kind;

/// What a detector looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Email,
    Phone,
    Ssn,
    Street,
    Token,
    Card,
    Iban,
    Jwt,
    AuthHeader,
    CloudKey,
    PrivateKey,
}

impl Detector {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Ssn => "ssn",
            Detector::Street => "street",
            Detector::Token => "plaid-token",
            Detector::Card => "card-number",
            Detector::Iban => "iban",
            Detector::Jwt => "jwt",
            Detector::AuthHeader => "authorization",
            Detector::CloudKey => "cloud-api-key",
            Detector::PrivateKey => "private-key",
        }
    }

    /// The pseudonym kind a match becomes, or `None` where it is masked: secrets and numbers
    /// with no shape worth keeping in free text.
    pub fn kind(self) -> Option<Kind> {
        match self {
            Detector::Email => Some(Kind::Email),
            Detector::Phone => Some(Kind::Phone),
            Detector::Street => Some(Kind::Street),
            Detector::Token => Some(Kind::Token),
            Detector::Iban => Some(Kind::Iban),
            Detector::Ssn
            | Detector::Card
            | Detector::Jwt
            | Detector::AuthHeader
            | Detector::CloudKey
            | Detector::PrivateKey => None,
        }
    }
}

struct Patterns {
    email: Regex,
    phone: Regex,
    international_phone: Regex,
    ssn: Regex,
    ssn_in_words: Regex,
    street: Regex,
    token: Regex,
    card: Regex,
    iban: Regex,
    jwt: Regex,
    auth: Regex,
    cloud_key: Regex,
    private_key: Regex,
}

// The patterns are literals, so compiling them cannot fail once it has worked. That is checked
// with the shipped binary's exact regex features by the integration tests that run the real
// `plaid-vcr scan`/`redact` (unit tests alone are not enough: dev-dependencies can turn on regex
// features the binary lacks, which once hid a missing `unicode-case`).
static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let re = |pattern: &str| Regex::new(pattern).expect("detector patterns are valid literals");
    Patterns {
        email: re(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
        // North American numbers written with 10 to 13 digits, with or without separators;
        // bounded by non-word characters so digit runs inside ids do not match.
        phone: re(r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\b\d{3}[ .\-]?)\d{3}[ .\-]?\d{4}\b"),
        // E.164 and international formats: a `+`, a country code, 8 to 15 digits in all.
        international_phone: re(r"\+[1-9](?:[ .\-]?\(?\d\)?){7,14}\b"),
        ssn: re(r"\b\d{3}-\d{2}-\d{4}\b"),
        // Nine digits undashed only where the text names them.
        ssn_in_words: re(r"(?i)\b(?:ssn|social security(?: number)?|itin|tin|taxpayer id)\b\D{0,12}?(\d{9})\b"),
        street: re(
            r"\b\d{1,6}\s+(?:[A-Za-z][A-Za-z'\-]*\s+){1,4}(?i:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace|circle|parkway|pkwy|highway|hwy|square|trail)\b\.?",
        ),
        token: re(r"\b[a-z]+-(?:sandbox|development|production)-[A-Za-z0-9\-]{6,}"),
        // 13 to 19 digits, optionally grouped by spaces or dashes; the Luhn check decides.
        card: re(r"\b\d(?:[ \-]?\d){12,18}\b"),
        // Country, check digits, then groups; the mod-97 check decides.
        iban: re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
        jwt: re(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{8,}"),
        auth: re(r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
        // Fixed lengths where the format has one; no closing `\b` after a key that may end in `-`.
        cloud_key: re(
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_\-]{35}|\bgh[pousr]_[A-Za-z0-9]{36,}|\bxox[abprs]-[A-Za-z0-9\-]{10,}|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
        ),
        private_key: re(r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"),
    }
});

/// Every match in `text`, in order of position; of overlapping matches the first found wins
/// (an SSN is not also a phone, a card number not also a phone).
pub fn find(text: &str) -> Vec<(Detector, Range<usize>)> {
    let p = &*PATTERNS;
    let mut out: Vec<(Detector, Range<usize>)> = Vec::new();
    let add = |out: &mut Vec<(Detector, Range<usize>)>, detector: Detector, range: Range<usize>| {
        if !out.iter().any(|(_, r)| r.start < range.end && range.start < r.end) {
            out.push((detector, range));
        }
    };
    // Cheap pre-checks keep the common case (short ids, enums) free of regex work.
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if text.contains("PRIVATE KEY-----") {
        for m in p.private_key.find_iter(text) {
            add(&mut out, Detector::PrivateKey, m.range());
        }
    }
    if text.contains("eyJ") {
        for m in p.jwt.find_iter(text) {
            add(&mut out, Detector::Jwt, m.range());
        }
    }
    if text.len() >= 14 {
        for m in p.auth.find_iter(text) {
            add(&mut out, Detector::AuthHeader, m.range());
        }
        for m in p.cloud_key.find_iter(text) {
            add(&mut out, Detector::CloudKey, m.range());
        }
    }
    if text.contains('@') {
        for m in p.email.find_iter(text) {
            add(&mut out, Detector::Email, m.range());
        }
    }
    if text.contains("-sandbox-") || text.contains("-development-") || text.contains("-production-") {
        for m in p.token.find_iter(text) {
            add(&mut out, Detector::Token, m.range());
        }
    }
    if digits >= 8 && text.contains('+') {
        // Before cards: an E.164 number can pass the Luhn check by chance.
        for m in p.international_phone.find_iter(text) {
            add(&mut out, Detector::Phone, m.range());
        }
    }
    if digits >= 9 {
        for m in p.card.find_iter(text) {
            let compact: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
            if numbers::luhn_valid(&compact) && compact.bytes().any(|b| b != compact.as_bytes()[0]) {
                add(&mut out, Detector::Card, m.range());
            }
        }
        for m in p.iban.find_iter(text) {
            if numbers::iban_valid(m.as_str()) {
                add(&mut out, Detector::Iban, m.range());
            }
        }
        for c in p.ssn_in_words.captures_iter(text) {
            if let Some(number) = c.get(1) {
                add(&mut out, Detector::Ssn, number.range());
            }
        }
        for m in p.ssn.find_iter(text) {
            add(&mut out, Detector::Ssn, m.range());
        }
        for m in p.phone.find_iter(text) {
            if !labelled_as_id(&text[..m.start()]) {
                add(&mut out, Detector::Phone, m.range());
            }
        }
    }
    if digits > 0 {
        for m in p.street.find_iter(text) {
            add(&mut out, Detector::Street, m.range());
        }
    }
    out.sort_by_key(|(_, r)| r.start);
    out
}

/// [`find`] for the value of `field`: a value that is nothing but a run of digits is a phone
/// number only under a field named for one (`phone`, `mobile`, `tel`, `contact`, `fax`);
/// elsewhere it is a reference or account number (`payment_reference_number: "4277075694"`).
pub fn find_in(field: &str, text: &str) -> Vec<(Detector, Range<usize>)> {
    let field = field.to_ascii_lowercase();
    let phone_field = ["phone", "mobile", "tel", "contact", "fax"]
        .iter()
        .any(|w| field.contains(w));
    let bare_digits = text.bytes().all(|b| b.is_ascii_digit());
    let mut found = find(text);
    if bare_digits && !phone_field {
        found.retain(|(detector, range)| !(*detector == Detector::Phone && *range == (0..text.len())));
    }
    found
}

/// Whether the text just before a number labels it an identifier (`PPD ID: 1234567890`, an ACH
/// company id in a bank descriptor; `#1234567890`), which a bare digit run must not be taken
/// for a phone number beside.
fn labelled_as_id(before: &str) -> bool {
    let label = before.trim_end_matches([' ', ':', '.']).to_ascii_uppercase();
    label.ends_with(" ID") || label == "ID" || label.ends_with('#') || label.ends_with(" NO")
}

/// What a field's name says its value is, for fields no rule covers (`field` in any case): a
/// date of birth, an identity number, or a secret (a random-looking value under a secret-like
/// name such as `api_key`, hidden as an id). Redaction and `scan` both decide by this.
pub fn by_name(field: &str, value: &str) -> Option<Kind> {
    let field = field.to_ascii_lowercase();
    if let Some(kind) = by_field(&field, value) {
        return Some(kind);
    }
    if !(is_secret_like(&field) && is_high_entropy(value)) {
        return None;
    }
    // A Plaid token under a name no rule knows (`*_tokens[]`) keeps its token pseudonym, the
    // one the same token gets everywhere else; any other secret is hidden as an id.
    let plaid_token = PATTERNS
        .token
        .find(value)
        .is_some_and(|m| m.range() == (0..value.len()));
    Some(if plaid_token { Kind::Token } else { Kind::Id })
}

/// What a field's name says its value is, when the value has that form: a date of birth
/// under `date_of_birth`/`dob`/`birth_date`, an identity number under `ssn`/`tin`/`itin`/
/// `tax_id`/`national_id`/`id_number`. `field` is lower case.
pub fn by_field(field: &str, value: &str) -> Option<Kind> {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let dob_field = field.contains("birth") || field == "dob";
    let id_field = matches!(
        field,
        "ssn"
            | "ssn_full"
            | "ssn_last_4"
            | "tin"
            | "itin"
            | "tax_id"
            | "national_id"
            | "id_number"
            | "social_security_number"
    );
    if dob_field && digits >= 6 && value.len() <= 10 {
        return Some(Kind::Dob);
    }
    if id_field && digits >= 4 {
        return Some(Kind::IdNumber);
    }
    None
}

/// Whether a field name suggests a secret (`client_secret`, `api_key`, `password`, …).
pub fn is_secret_like(field: &str) -> bool {
    ["secret", "token", "password", "passwd", "credential"]
        .iter()
        .any(|w| field.contains(w))
        || field == "key"
        || field.ends_with("_key")
        || field.ends_with("apikey")
}

/// At least 16 characters and about 3.5 bits of entropy per character: a random string.
pub fn is_high_entropy(value: &str) -> bool {
    let len = value.chars().count();
    if len < 16 {
        return false;
    }
    let mut counts = std::collections::HashMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = len as f64;
    let entropy: f64 = counts.values().map(|&c| c as f64 / n).map(|p| -p * p.log2()).sum();
    entropy >= 3.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Detector> {
        find(text).into_iter().map(|(d, _)| d).collect()
    }

    #[test]
    fn finds_each_kind_in_free_text() {
        assert_eq!(kinds("mail jane.doe+x@mail.example.com now"), [Detector::Email]);
        for phone in ["2025550123", "(202) 555-0123", "+1 111-555-3333", "202.555.0123"] {
            assert_eq!(kinds(&format!("call {phone}")), [Detector::Phone], "{phone}");
        }
        assert_eq!(kinds("ssn 123-45-6789"), [Detector::Ssn]);
        assert_eq!(kinds("lives at 2992 Cameron Road, Malakoff"), [Detector::Street]);
        assert_eq!(
            kinds("access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"),
            [Detector::Token]
        );
    }

    #[test]
    fn finds_numbers_of_a_standard_and_secrets() {
        assert_eq!(kinds("card 4111 1111 1111 1111 on file"), [Detector::Card]);
        assert_eq!(kinds("pay to GB82 WEST 1234 5698 7654 32"), [Detector::Iban]);
        assert_eq!(kinds("my ssn is 123456789"), [Detector::Ssn]);
        assert_eq!(kinds("ring +44 20 7946 0958"), [Detector::Phone]);
        assert_eq!(kinds("+4915112345678"), [Detector::Phone]);
        assert_eq!(kinds("Authorization: Bearer abc.def-ghi_jkl"), [Detector::AuthHeader]);
        assert_eq!(kinds("AKIAIOSFODNN7EXAMPLE"), [Detector::CloudKey]);
        assert_eq!(
            kinds("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV"),
            [Detector::Jwt]
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(kinds(pem), [Detector::PrivateKey]);
        assert_eq!(by_field("date_of_birth", "1985-07-14"), Some(Kind::Dob));
        assert_eq!(by_field("ssn", "123456789"), Some(Kind::IdNumber));
        assert_eq!(by_field("date", "1985-07-14"), None);
        assert!(find_in("payment_reference_number", "4277075694").is_empty());
        assert_eq!(find_in("phone", "4155550101").len(), 1);
    }

    #[test]
    fn ignores_ids_dates_and_amounts() {
        for text in [
            "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp",
            "2026-11-25T00:00:00Z",
            "c131e2cd74a5cfd2f025cff57731583f4f0d3c26e2c4b01f95db50c4476c3195",
            "ins_109508",
            "3nARps6TOYtbACO",
            "Plaid Gold Standard 0% Interest Checking",
            "4111111111111112",
            "0000000000000000",
            "account 123456789",
            "DE89370400440532013001",
            "+1",
            "12345.67",
            "AIRBNB PAYMENTS PPD ID: 1234567890",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn entropy_separates_random_strings_from_words() {
        assert!(is_high_entropy("0123456789abcdef0123456789abcd"));
        assert!(is_high_entropy("sk_live_9fK2pQ7xZ1mN4bV8cR3t"));
        assert!(!is_high_entropy("aaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(!is_high_entropy("short"));
    }
}
