//! Values that follow a published standard, and pseudonyms that still follow it: card numbers
//! (the Luhn check), IBANs (ISO 13616: the mod-97 check), IP addresses (the documentation
//! ranges of RFC 5737 and RFC 3849) and dates of birth (a plausible ISO 8601 date).
//!
//! Used by [`crate::privacy::detect`] to tell a real card number or IBAN from a run of digits, and by
//! [`crate::privacy::pseudonym`] so that a redacted IBAN still validates and a redacted date still parses
//! in every official client. Pure functions: no keys (callers pass the bytes), no I/O.

use sha2::{Digest, Sha256};

/// Whether `digits` (ASCII digits only) passes the Luhn check card numbers carry.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match i % 2 {
                1 if d * 2 > 9 => d * 2 - 9,
                1 => d * 2,
                _ => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `iban` (spaces allowed) is a well-formed IBAN whose check digits are right.
pub fn iban_valid(iban: &str) -> bool {
    let compact: String = iban.chars().filter(|c| *c != ' ').collect();
    let bytes = compact.as_bytes();
    (15..=34).contains(&bytes.len())
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && bytes[4..].iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && mod97(&format!("{}{}", &compact[4..], &compact[..4])) == Some(1)
}

/// The two check digits that make `country` + check + `bban` a valid IBAN.
pub fn iban_check_digits(country: &str, bban: &str) -> Option<String> {
    let remainder = mod97(&format!("{bban}{country}00"))?;
    Some(format!("{:02}", 98 - remainder))
}

/// The ISO 7064 mod-97 of an alphanumeric string, letters counting as 10..35.
fn mod97(text: &str) -> Option<u32> {
    let mut rest = 0u32;
    for c in text.chars() {
        let value = c.to_digit(36)?;
        rest = if value > 9 {
            (rest * 100 + value) % 97
        } else {
            (rest * 10 + value) % 97
        };
    }
    Some(rest)
}

/// A documentation address for `raw`: IPv4 in 192.0.2.0/24, IPv6 in 2001:db8::/32. `None`
/// if `raw` is not an IP address.
pub fn ip_pseudonym(raw: &str, next: &mut dyn FnMut() -> u8) -> Option<String> {
    let ip: std::net::IpAddr = raw.trim().parse().ok()?;
    Some(match ip {
        std::net::IpAddr::V4(_) => format!("192.0.2.{}", next()),
        std::net::IpAddr::V6(_) => format!("2001:db8::{:x}{:02x}", next(), next()),
    })
}

/// Whether `value` is in a documentation range (RFC 5737, RFC 3849): nobody's address.
pub fn is_documentation_ip(value: &str) -> bool {
    match value.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.segments()[..2] == [0x2001, 0x0db8],
        Err(_) => false,
    }
}

/// A plausible date of birth (born 1940–2001) in `raw`'s `YYYY-MM-DD` form, chosen by `next`
/// among the dates that carry plaid-vcr's mark (see [`is_marked_date`]). `None` if `raw` is not
/// such a date.
pub fn dob_pseudonym(raw: &str, next: &mut dyn FnMut() -> u8) -> Option<String> {
    parse_date(raw)?;
    // Every candidate date, from a start `next` picks: bounded, and about five carry the mark.
    const TOTAL: u32 = 62 * 12 * 28;
    let start = (u32::from(next()) << 8 | u32::from(next())) % TOTAL;
    (0..TOTAL).map(|i| (start + i) % TOTAL).find_map(|n| {
        let (year, month, day) = (1940 + n / (12 * 28), 1 + n / 28 % 12, 1 + n % 28);
        let candidate = format!("{year:04}-{month:02}-{day:02}");
        is_marked_date(&candidate).then_some(candidate)
    })
}

/// Whether a `YYYY-MM-DD` date carries the mark of a plaid-vcr pseudonym: the first 12 bits of
/// a keyless hash of it are zero. One real date in 4,096 carries it by chance (and is then
/// left as it is, which the redaction of dates accepts as its residual risk).
pub fn is_marked_date(value: &str) -> bool {
    if parse_date(value).is_none() {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(b"plaid-vcr/v1/date\0")
        .chain_update(value.as_bytes())
        .finalize();
    digest[0] == 0 && digest[1] < 16
}

fn parse_date(value: &str) -> Option<(u32, u32, u32)> {
    let bytes = value.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = value[..4].parse().ok()?;
    let month = value[5..7].parse().ok()?;
    let day = value[8..].parse().ok()?;
    ((1..=12).contains(&month) && (1..=31).contains(&day)).then_some((year, month, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> u8 {
        let mut n = 0u8;
        move || {
            n = n.wrapping_add(37);
            n
        }
    }

    #[test]
    fn luhn_and_iban_checks_follow_the_standards() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(!iban_valid("DE89370400440532013001"));
        assert_eq!(iban_check_digits("GB", "WEST12345698765432").as_deref(), Some("82"));
    }

    #[test]
    fn ips_go_to_documentation_ranges() {
        let mut next = counter();
        let v4 = ip_pseudonym("203.45.1.9", &mut next).unwrap();
        assert!(v4.starts_with("192.0.2.") && is_documentation_ip(&v4), "{v4}");
        let v6 = ip_pseudonym("2a00:1450:4001::200e", &mut next).unwrap();
        assert!(is_documentation_ip(&v6), "{v6}");
        assert!(!is_documentation_ip("8.8.8.8"));
        assert_eq!(ip_pseudonym("not an ip", &mut next), None);
    }

    #[test]
    fn dates_of_birth_stay_plausible_dates_with_a_mark() {
        let mut next = counter();
        let dob = dob_pseudonym("1985-07-14", &mut next).unwrap();
        let (year, month, day) = parse_date(&dob).unwrap();
        assert!((1940..2002).contains(&year) && (1..=12).contains(&month) && (1..=28).contains(&day));
        assert!(is_marked_date(&dob));
        assert!(!is_marked_date("1985-07-14"));
        assert_eq!(dob_pseudonym("14/07/1985", &mut next), None);
    }
}
