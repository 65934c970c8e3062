//! Deterministic, format-preserving pseudonyms, and how to recognise one.
//!
//! Two sources of randomness, by what is being hidden:
//! - tokens and identifiers (high entropy): an **unkeyed** SHA-256 of the raw value, so a
//!   pseudonym is the same on every machine and cannot be reversed for a random token;
//! - personal data (low entropy: names, emails, phones, addresses): **HMAC-SHA256** with the
//!   redaction secret, because an unkeyed hash of a phone number is reversed by trying them all.
//!
//! Every pseudonym is recognisable, so pseudonymizing a pseudonym returns it unchanged
//! (idempotence): identifiers end in a keyless check of 6 characters derived from the rest;
//! emails use the reserved domain `example.net`; phones end in the fictional `555-01xx`
//! block; names, streets and cities are built from invented words; masks are all `0`/`x`.
//! Nothing here does I/O or knows JSON.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// What kind of value a pseudonym stands for; decides its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A Plaid token (`access-sandbox-…`): prefix kept, identifier hashed (unkeyed).
    Token,
    /// An opaque identifier (`account_id`, `item_id`): shape kept, hashed (unkeyed).
    Id,
    /// A person's or business's name: invented words, same word count (keyed).
    Name,
    /// An email address: same local-part shape at `example.net` (keyed).
    Email,
    /// A phone number: same digits count and formatting, fictional 555-01xx (keyed).
    Phone,
    /// A street line: same house-number length, invented street name, suffix kept (keyed).
    Street,
    /// A city: an invented town name (keyed).
    City,
    /// A URL (webhooks): `https://example.net/webhook/<hash>` (keyed).
    Url,
    /// Any other text: same character classes and length (keyed).
    Text,
    /// A date of birth: another plausible `YYYY-MM-DD` date, marked (keyed).
    Dob,
    /// An SSN, TIN, ITIN, document or other identity number: same shape (keyed).
    IdNumber,
    /// An IP address: one in a documentation range, 192.0.2.0/24 or 2001:db8::/32 (keyed).
    Ip,
    /// A bank account number: same length and character classes (keyed).
    AccountNumber,
    /// An IBAN: same country and length, a new account part, valid check digits (keyed).
    Iban,
}

/// The domain pseudonymous emails use (reserved by RFC 2606; Plaid's sandbox uses example.com).
pub const EMAIL_DOMAIN: &str = "example.net";
const URL_PREFIX: &str = "https://example.net/webhook/";
const CHECK_LEN: usize = 6;
/// Identifiers with fewer letters and digits than this are kept as they are: they cannot hold
/// a hash and a check without colliding (`acc_1` vs `acc_2`), and they are test fixtures —
/// Plaid's own tokens and ids have 30 or more.
pub const MIN_ID_LEN: usize = 12;

const FIRST: [&str; 32] = [
    "Alvane", "Bexley", "Corvin", "Dalvie", "Emrith", "Fennet", "Galwin", "Hestra", "Ilvane", "Jorna", "Kestrel",
    "Lorrin", "Mirel", "Nalda", "Orwen", "Pellam", "Quenby", "Rosalt", "Sevrin", "Talwyn", "Ulvie", "Varra", "Wendric",
    "Xanthe", "Yorrel", "Zenna", "Averil", "Brannoc", "Cadwen", "Dorrit", "Elspin", "Farrow",
];
#[rustfmt::skip]
const LAST: [&str; 32] = [
    "Ashcombe", "Brackwell", "Culverin", "Dunmarrow", "Elderby", "Foxmantle", "Grimsbury", "Hollowell", "Ivybrook",
    "Juniperton", "Kettlewick", "Larkspurr", "Marrowdale", "Nettlefield", "Oakhurstle", "Pebbleton", "Quillfeather",
    "Rookwhistle", "Sablethorn", "Thistlewood", "Umberfield", "Vantablen", "Wrenholt", "Yarrowby", "Zephyrine",
    "Amberlane", "Birchwhistle", "Coppervale", "Driftmoor", "Emberly", "Fernhallow", "Glimmerton",
];
#[rustfmt::skip]
const STREETS: [&str; 16] = [
    "Quillon", "Brambleway", "Mossgate", "Tinderfall", "Wickerly", "Fablehurst", "Lanternmoor", "Pipersend",
    "Hearthstead", "Cobblewick", "Marigrove", "Thimbledown", "Saltmarrow", "Willowquay", "Frostwyn", "Amberquill",
];
#[rustfmt::skip]
const CITIES: [&str; 16] = [
    "Eldermoor", "Quillbrook", "Ravenmere", "Thornwick", "Mistlehaven", "Brackenridge Vale", "Fallowmere",
    "Gloamfield", "Harrowgate Cross", "Ironholt", "Juniper Hollow", "Kindlewood", "Lanternfield", "Moonbrook",
    "Nettlecombe", "Oakenvale",
];
#[rustfmt::skip]
const SUFFIXES: [&str; 28] = [
    "Street", "St", "Road", "Rd", "Avenue", "Ave", "Lane", "Ln", "Drive", "Dr", "Boulevard", "Blvd", "Court", "Ct",
    "Way", "Place", "Pl", "Terrace", "Ter", "Circle", "Cir", "Parkway", "Pkwy", "Highway", "Hwy", "Square", "Sq",
    "Trail",
];

/// Makes pseudonyms; holds the redaction secret personal data is keyed with.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Pseudonymizer { .. }")
    }
}

impl Kind {
    /// The name config files and reports use (`name`, `email`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::Id => "id",
            Kind::Name => "name",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Street => "street",
            Kind::City => "city",
            Kind::Url => "url",
            Kind::Text => "text",
            Kind::Dob => "dob",
            Kind::IdNumber => "id_number",
            Kind::Ip => "ip",
            Kind::AccountNumber => "account_number",
            Kind::Iban => "iban",
        }
    }
}

impl Pseudonymizer {
    /// A pseudonymizer whose personal-data pseudonyms are keyed with `key`.
    pub fn new(key: &[u8]) -> Self {
        Pseudonymizer { key: key.to_vec() }
    }

    /// The pseudonym of `raw` as `kind`; `raw` itself if it already is one.
    pub fn pseudonymize(&self, kind: Kind, raw: &str) -> String {
        if raw.trim().is_empty() || is_pseudonym(kind, raw) {
            return raw.to_owned();
        }
        match kind {
            Kind::Token => token(raw, Bytes::unkeyed("token", raw)),
            Kind::Id => checked(raw, Bytes::unkeyed("id", raw)),
            Kind::Name => name(raw, self.keyed("name", raw)),
            Kind::Email => email(raw, self.keyed("email", raw)),
            Kind::Phone => phone(raw, self.keyed("phone", raw)),
            Kind::Street => street(raw, self.keyed("street", raw)),
            Kind::City => CITIES[usize::from(self.keyed("city", raw).next()) % CITIES.len()].to_owned(),
            Kind::Url => {
                let mut bytes = self.keyed("url", raw);
                let tail: String = (0..10).map(|_| HEX[usize::from(bytes.next()) % 16] as char).collect();
                format!("{URL_PREFIX}{tail}")
            }
            Kind::Text | Kind::IdNumber | Kind::AccountNumber if alnum_count(raw) < MIN_ID_LEN => mask(raw),
            Kind::Text | Kind::IdNumber | Kind::AccountNumber => checked(raw, self.keyed(kind.as_str(), raw)),
            // A value that does not follow its standard is still hidden, by its shape.
            Kind::Dob => {
                let mut bytes = self.keyed("dob", raw);
                crate::privacy::numbers::dob_pseudonym(raw, &mut || bytes.next()).unwrap_or_else(|| mask(raw))
            }
            Kind::Ip => {
                let mut bytes = self.keyed("ip", raw);
                crate::privacy::numbers::ip_pseudonym(raw, &mut || bytes.next()).unwrap_or_else(|| mask(raw))
            }
            Kind::Iban => iban(raw, self.keyed("iban", raw)).unwrap_or_else(|| mask(raw)),
        }
    }

    fn keyed(&self, domain: &str, raw: &str) -> Bytes {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"plaid-vcr/v1/");
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        mac.update(raw.as_bytes());
        Bytes::from_seed(mac.finalize().into_bytes().into())
    }
}

/// Whether redaction changes `raw` as `kind`: the one test of a leak, for redaction and `scan`
/// alike ([`crate::privacy::verdict`]). The same under every secret: a keyed pseudonym always
/// differs from a value that is not one yet, and what is not keyed (masks, ids) is the same
/// for all; a property test holds it to two secrets.
pub fn changes(kind: Kind, raw: &str) -> bool {
    Pseudonymizer::new(b"").pseudonymize(kind, raw) != raw
}

/// Whether `value` is already a pseudonym of `kind` (or a mask, or a request placeholder).
pub fn is_pseudonym(kind: Kind, value: &str) -> bool {
    if is_masked(value) || is_placeholder(value) {
        return true;
    }
    match kind {
        Kind::Token => is_id_pseudonym(split_token(value).1),
        Kind::Id => is_id_pseudonym(value),
        Kind::Text => alnum_count(value) >= MIN_ID_LEN && is_checked(value),
        Kind::Name => {
            let mut words = value.split_whitespace().peekable();
            words.peek().is_some() && words.all(|w| in_list(&FIRST, w) || in_list(&LAST, w))
        }
        Kind::Email => value
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain == EMAIL_DOMAIN),
        Kind::Phone => is_phone_pseudonym(value),
        Kind::Street => is_street_pseudonym(value),
        Kind::City => in_list(&CITIES, value),
        Kind::Url => value.starts_with(URL_PREFIX),
        // Unlike opaque ids, short ones are personal too (an SSN has 9 digits): masked.
        Kind::IdNumber | Kind::AccountNumber => alnum_count(value) >= MIN_ID_LEN && is_checked(value),
        Kind::Dob => crate::privacy::numbers::is_marked_date(value),
        Kind::Ip => crate::privacy::numbers::is_documentation_ip(value),
        Kind::Iban => {
            let compact: String = value.chars().filter(|c| *c != ' ').collect();
            crate::privacy::numbers::iban_valid(&compact) && compact.get(4..).is_some_and(is_checked)
        }
    }
}

/// The IBAN's country kept, its account part replaced like an identifier (a check of its own
/// included), and the check digits recomputed so that it validates; `None` if `raw` is not an
/// IBAN with an account part long enough to carry the check.
fn iban(raw: &str, bytes: Bytes) -> Option<String> {
    let compact: String = raw
        .chars()
        .filter(|c| *c != ' ')
        .collect::<String>()
        .to_ascii_uppercase();
    if !crate::privacy::numbers::iban_valid(&compact) || compact.len() - 4 < MIN_ID_LEN {
        return None;
    }
    let (country, bban) = (&compact[..2], &compact[4..]);
    let bban = checked(bban, bytes).to_ascii_uppercase();
    let check = crate::privacy::numbers::iban_check_digits(country, &bban)?;
    Some(format!("{country}{check}{bban}"))
}

/// Masks a value: every digit becomes `0`, every letter `x` (`X` if upper case); length and
/// punctuation stay. Idempotent by construction.
pub fn mask(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '0'..='9' => '0',
            'a'..='z' => 'x',
            'A'..='Z' => 'X',
            other => other,
        })
        .collect()
}

fn is_masked(value: &str) -> bool {
    value.chars().any(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| matches!(c, '0' | 'x' | 'X') || !c.is_ascii_alphanumeric())
}

/// The fixed value personal data in a *request* is replaced by (see `redact`), per kind.
pub fn placeholder(kind: Kind) -> String {
    format!("[redacted {}]", kind.as_str())
}

/// Whether `value` is a request placeholder made by [`placeholder`].
pub fn is_placeholder(value: &str) -> bool {
    value.starts_with("[redacted ") && value.ends_with(']')
}

/// A byte stream seeded by a hash: SHA-256(seed ‖ counter) blocks.
struct Bytes {
    seed: [u8; 32],
    block: [u8; 32],
    counter: u32,
    pos: usize,
}

impl Bytes {
    fn unkeyed(domain: &str, raw: &str) -> Bytes {
        let mut h = Sha256::new();
        h.update(b"plaid-vcr/v1/");
        h.update(domain.as_bytes());
        h.update(b"\0");
        h.update(raw.as_bytes());
        Bytes::from_seed(h.finalize().into())
    }

    fn from_seed(seed: [u8; 32]) -> Bytes {
        Bytes {
            seed,
            block: seed,
            counter: 0,
            pos: 0,
        }
    }

    fn next(&mut self) -> u8 {
        if self.pos == self.block.len() {
            self.counter += 1;
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.counter.to_be_bytes());
            self.block = h.finalize().into();
            self.pos = 0;
        }
        let b = self.block[self.pos];
        self.pos += 1;
        b
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Replaces each ASCII letter/digit with one of its class from `bytes` (hex strings stay hex),
/// then overwrites the last [`CHECK_LEN`] of them with a keyless check of everything before.
fn checked(raw: &str, bytes: Bytes) -> String {
    let hex = raw
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    let mut out: Vec<char> = class_map(raw, bytes, hex).chars().collect();
    write_check(&mut out);
    out.into_iter().collect()
}

/// Each ASCII digit becomes a digit, each letter a letter of the same case (only `a`-`f` when
/// `hex`); everything else is kept.
fn class_map(raw: &str, mut bytes: Bytes, hex: bool) -> String {
    raw.chars()
        .map(|c| {
            let b = bytes.next();
            match c {
                '0'..='9' => (b'0' + b % 10) as char,
                'a'..='z' if hex => HEX[10 + usize::from(b % 6)] as char,
                'a'..='z' => (b'a' + b % 26) as char,
                'A'..='Z' => (b'A' + b % 26) as char,
                other => other,
            }
        })
        .collect()
}

fn alnum_count(value: &str) -> usize {
    value.chars().filter(char::is_ascii_alphanumeric).count()
}

/// Short identifiers are kept (see [`MIN_ID_LEN`]), so they count as already redacted.
fn is_id_pseudonym(value: &str) -> bool {
    alnum_count(value) < MIN_ID_LEN || is_checked(value)
}

/// Positions of the check characters: the last [`CHECK_LEN`] alphanumerics (callers only
/// check values with at least [`MIN_ID_LEN`] of them).
fn check_positions(chars: &[char]) -> Vec<usize> {
    let alnum: Vec<usize> = (0..chars.len()).filter(|&i| chars[i].is_ascii_alphanumeric()).collect();
    alnum[alnum.len().saturating_sub(CHECK_LEN)..].to_vec()
}

fn check_chars(chars: &[char], positions: &[usize]) -> Vec<char> {
    let head: String = chars[..positions.first().copied().unwrap_or(chars.len())]
        .iter()
        .collect();
    let digest = Sha256::new()
        .chain_update(b"plaid-vcr/v1/check\0")
        .chain_update(head)
        .finalize();
    positions
        .iter()
        .zip(digest.iter())
        .map(|(&i, b)| match chars[i] {
            '0'..='9' => (b'0' + b % 10) as char,
            'a'..='z' => HEX[10 + usize::from(b % 6)] as char,
            _ => HEX[10 + usize::from(b % 6)].to_ascii_uppercase() as char,
        })
        .collect()
}

fn write_check(out: &mut [char]) {
    let positions = check_positions(out);
    let check = check_chars(out, &positions);
    for (i, c) in positions.into_iter().zip(check) {
        out[i] = c;
    }
}

fn is_checked(value: &str) -> bool {
    let chars: Vec<char> = value.chars().collect();
    let positions = check_positions(&chars);
    !positions.is_empty() && positions.iter().map(|&i| chars[i]).eq(check_chars(&chars, &positions))
}

/// Splits `access-sandbox-<id>` style tokens into the kept prefix and the identifier.
fn split_token(value: &str) -> (&str, &str) {
    let mut parts = value.splitn(3, '-');
    if let (Some(kind), Some(env), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
        if !kind.is_empty()
            && kind.bytes().all(|b| b.is_ascii_lowercase())
            && matches!(env, "sandbox" | "development" | "production")
            && !rest.is_empty()
        {
            return value.split_at(kind.len() + env.len() + 2);
        }
    }
    ("", value)
}

fn token(raw: &str, bytes: Bytes) -> String {
    let (prefix, id) = split_token(raw);
    format!("{prefix}{}", checked(id, bytes))
}

fn in_list(list: &[&str], word: &str) -> bool {
    list.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// Same case style as `like`: all upper, all lower, or as listed (capitalized).
fn styled(word: &str, like: &str) -> String {
    let letters = || like.chars().filter(|c| c.is_alphabetic());
    if letters().count() > 1 && letters().all(char::is_uppercase) {
        word.to_uppercase()
    } else if letters().count() > 0 && letters().all(char::is_lowercase) {
        word.to_lowercase()
    } else {
        word.to_owned()
    }
}

fn name(raw: &str, mut bytes: Bytes) -> String {
    let words: Vec<&str> = raw.split_whitespace().collect();
    let last = words.len() - 1;
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let list: &[&str] = if i == last && last > 0 { &LAST } else { &FIRST };
            styled(list[usize::from(bytes.next()) % list.len()], w)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn email(raw: &str, bytes: Bytes) -> String {
    let local = raw.rsplit_once('@').map_or(raw, |(local, _)| local);
    // No check characters needed: the reserved domain is the marker.
    format!("{}@{EMAIL_DOMAIN}", class_map(local, bytes, false))
}

/// Digits replaced, formatting kept; the last 7 digits become the fictional 555-01xx block
/// (NANP reserves 555-0100..0199 for fiction). Fewer than 7 digits: all zeros.
fn phone(raw: &str, mut bytes: Bytes) -> String {
    let digits = raw.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    raw.chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            let b = bytes.next();
            let from_end = digits - seen;
            seen += 1;
            if digits < 7 {
                return '0';
            }
            match from_end {
                5..=7 => '5',
                4 => '0',
                3 => '1',
                _ => (b'0' + b % 10) as char,
            }
        })
        .collect()
}

fn is_phone_pseudonym(value: &str) -> bool {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return false;
    }
    if digits.len() < 7 {
        return digits.bytes().all(|b| b == b'0');
    }
    digits[digits.len() - 7..].starts_with("55501")
}

fn street(raw: &str, mut bytes: Bytes) -> String {
    let words: Vec<&str> = raw.split_whitespace().collect();
    let number = words.first().filter(|w| w.bytes().all(|b| b.is_ascii_digit()));
    let suffix = words.iter().rev().find_map(|w| {
        let bare = w.trim_end_matches(['.', ',']);
        SUFFIXES.iter().find(|s| s.eq_ignore_ascii_case(bare))
    });
    let mut out = Vec::new();
    if let Some(number) = number {
        out.push(
            number
                .chars()
                .map(|_| (b'0' + bytes.next() % 10) as char)
                .collect::<String>(),
        );
    }
    out.push(STREETS[usize::from(bytes.next()) % STREETS.len()].to_owned());
    out.push(suffix.copied().unwrap_or("Street").to_owned());
    out.join(" ")
}

fn is_street_pseudonym(value: &str) -> bool {
    let mut words = value.split_whitespace().peekable();
    if words.peek().is_some_and(|w| w.bytes().all(|b| b.is_ascii_digit())) {
        words.next();
    }
    let (Some(name), Some(suffix), None) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    in_list(&STREETS, name) && in_list(&SUFFIXES, suffix)
}
