//! Pattern detectors for personal and secret data in free text: emails, phone numbers,
//! SSN-like numbers, street addresses and Plaid tokens.
//!
//! Shared by the redaction stage (which pseudonymizes what they find where no rule applies)
//! and by `scan` (which reports what they find). Patterns only: no JSON, no I/O.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// What a detector looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    Email,
    Phone,
    Ssn,
    Street,
    Token,
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
        }
    }
}

struct Patterns {
    email: Regex,
    phone: Regex,
    ssn: Regex,
    street: Regex,
    token: Regex,
}

// The patterns are literals, so compiling them cannot fail once it has worked. That is checked
// with the shipped binary's exact regex features by the integration tests that run the real
// `plaid-vcr scan`/`redact` (unit tests alone are not enough: dev-dependencies can turn on regex
// features the binary lacks, which once hid a missing `unicode-case`).
static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    Patterns {
    email: Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").expect("email pattern"),
    // North American and international numbers written with 10 to 13 digits, with or without
    // separators; bounded by non-word characters so digit runs inside ids do not match.
    phone: Regex::new(r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\b\d{3}[ .\-]?)\d{3}[ .\-]?\d{4}\b").expect("phone pattern"),
    ssn: Regex::new(r"\b\d{3}-\d{2}-\d{4}\b").expect("ssn pattern"),
    street: Regex::new(
        r"\b\d{1,6}\s+(?:[A-Za-z][A-Za-z'\-]*\s+){1,4}(?i:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace|circle|parkway|pkwy|highway|hwy|square|trail)\b\.?",
    )
    .expect("street pattern"),
    token: Regex::new(r"\b[a-z]+-(?:sandbox|development|production)-[A-Za-z0-9\-]{6,}").expect("token pattern"),
}
});

/// Every match in `text`, in order of position; an SSN is not also reported as a phone.
pub fn find(text: &str) -> Vec<(Detector, Range<usize>)> {
    let p = &*PATTERNS;
    let mut out: Vec<(Detector, Range<usize>)> = Vec::new();
    // Cheap pre-checks keep the common case (short ids, enums) free of regex work.
    let has_digit = text.bytes().any(|b| b.is_ascii_digit());
    if text.contains('@') {
        out.extend(p.email.find_iter(text).map(|m| (Detector::Email, m.range())));
    }
    if text.contains("-sandbox-") || text.contains("-development-") || text.contains("-production-") {
        out.extend(p.token.find_iter(text).map(|m| (Detector::Token, m.range())));
    }
    if has_digit {
        out.extend(p.ssn.find_iter(text).map(|m| (Detector::Ssn, m.range())));
        out.extend(p.street.find_iter(text).map(|m| (Detector::Street, m.range())));
        for m in p.phone.find_iter(text) {
            let overlaps = out.iter().any(|(_, r)| r.start < m.end() && m.start() < r.end);
            if !overlaps {
                out.push((Detector::Phone, m.range()));
            }
        }
    }
    out.sort_by_key(|(_, r)| r.start);
    // Keep the first of overlapping matches (an email's digits are not also a phone).
    let mut kept: Vec<(Detector, Range<usize>)> = Vec::with_capacity(out.len());
    for (d, r) in out {
        if kept.last().is_none_or(|(_, last)| r.start >= last.end) {
            kept.push((d, r));
        }
    }
    kept
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
    fn ignores_ids_dates_and_amounts() {
        for text in [
            "BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp",
            "2026-11-25T00:00:00Z",
            "c131e2cd74a5cfd2f025cff57731583f4f0d3c26e2c4b01f95db50c4476c3195",
            "ins_109508",
            "3nARps6TOYtbACO",
            "Plaid Gold Standard 0% Interest Checking",
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
