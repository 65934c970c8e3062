//! The one redaction verdict: for every string of a body, which pieces are personal or secret
//! and must change. `record` and `redact` ([`crate::privacy::redact`]) rewrite what it names;
//! `scan` ([`crate::privacy::scan`]) reports what it names as a leak. Neither decides anything
//! of its own, so a cassette that `record` or `redact` wrote is clean for `scan`, and `scan`
//! never reports what `redact` would leave unchanged.
//!
//! A piece is a leak exactly when redaction would change it: [`pseudonym::changes`] asks the
//! pseudonym functions themselves, so a placeholder with nothing personal in it (`"string"` as
//! a phone number: no digit to replace) is no leak, for both. And a value found to be a leak
//! anywhere in a body is one everywhere in it ([`body`]): Plaid echoes what was searched for
//! (the KYB `match_details` repeat the address of `search_terms`), and the echo must not keep
//! what its first appearance lost.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::Value;

use crate::privacy::detect;
use crate::privacy::pseudonym::{self, Kind};
use crate::privacy::rules::{self, last_key, Action, Rule, Seg};

/// How a piece is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Replaced by its pseudonym of this kind.
    Pseudonym(Kind),
    /// Digits to `0`, letters to `x`.
    Mask,
}

/// A piece of a string that a rule, its field's name or a detector covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Where in the string (the whole string for rules and names).
    pub range: Range<usize>,
    pub change: Change,
    /// What found it, as `scan` names it: `pii:<kind>`, `pii:mask`, `high-entropy` or a
    /// detector's name (`email`, `phone`, …).
    pub label: &'static str,
    /// Whether redaction changes it: not yet a pseudonym, and something in it to hide.
    pub leak: bool,
}

/// The pieces of `value` (at `path`, governed by `action`) that a rule, the field's name or a
/// detector covers, each saying whether it is a leak.
pub fn judge(path: &[Seg], action: Option<Action>, value: &str) -> Vec<Piece> {
    let whole = |change: Change, label: &'static str| {
        let leak = match change {
            Change::Pseudonym(kind) => pseudonym::changes(kind, value),
            Change::Mask => pseudonym::mask(value) != value,
        };
        vec![Piece {
            range: 0..value.len(),
            change,
            label,
            leak,
        }]
    };
    match action {
        Some(Action::Keep | Action::Drop) => Vec::new(),
        Some(Action::Mask) => whole(Change::Mask, "pii:mask"),
        Some(Action::Pseudonymize(kind)) => whole(Change::Pseudonym(kind), pii_label(kind)),
        None => match detect::by_name(last_key(path), value) {
            Some(Kind::Id) => whole(Change::Pseudonym(Kind::Id), "high-entropy"),
            Some(kind) => whole(Change::Pseudonym(kind), pii_label(kind)),
            None => detect::find_in(last_key(path), value)
                .into_iter()
                .map(|(detector, range)| {
                    let piece = &value[range.clone()];
                    let (change, leak) = match detector.kind() {
                        Some(kind) => (Change::Pseudonym(kind), pseudonym::changes(kind, piece)),
                        None => (Change::Mask, pseudonym::mask(piece) != piece),
                    };
                    Piece {
                        range,
                        change,
                        label: detector.as_str(),
                        leak,
                    }
                })
                .collect(),
        },
    }
}

/// `pii:<kind>`, as `scan` reports a value at a personal path.
fn pii_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Token => "pii:token",
        Kind::Id => "pii:id",
        Kind::Name => "pii:name",
        Kind::Email => "pii:email",
        Kind::Phone => "pii:phone",
        Kind::Street => "pii:street",
        Kind::City => "pii:city",
        Kind::Url => "pii:url",
        Kind::Text => "pii:text",
        Kind::Dob => "pii:dob",
        Kind::IdNumber => "pii:id_number",
        Kind::Ip => "pii:ip",
        Kind::AccountNumber => "pii:account_number",
        Kind::Iban => "pii:iban",
    }
}

/// What [`body`] calls on each string: its path, the string (to rewrite or read) and its
/// pieces; returns how many values it changed.
pub type Act<'a> = dyn FnMut(&[Seg], &mut String, &[Piece]) -> usize + 'a;

/// Judges every string of `body` (which sits at `path`; `rules` apply below it) and calls `act`
/// on each with its pieces. Fields a `drop` governs are removed first. With `echoes` (answers
/// and webhooks: what Plaid sends back), a string equal to a piece that is a leak elsewhere in
/// the body is a leak too, masked (see `echo`), if it has the shape of something personal
/// ([`echoable`]). Returns the drops plus what `act` returned.
///
/// Requests have no echoes: their personal data becomes a placeholder for the key's sake, and
/// chasing it into other fields would change the keys of what is already recorded.
pub fn body(rules: &[&Rule], body: &mut Value, path: &mut Vec<Seg>, echoes: bool, act: &mut Act<'_>) -> usize {
    if !echoes {
        // Nothing to learn from the rest of the body first: judge and act in one walk.
        return rules::walk(rules, body, path, &mut |at, action, s| {
            let pieces = judge(at, action, s);
            act(at, s, &pieces)
        });
    }
    // First the verdict on every string as it is, in the walk's order; nothing rewritten yet.
    let mut judged: Vec<Vec<Piece>> = Vec::new();
    let mut leaked: HashMap<String, Piece> = HashMap::new();
    let dropped = rules::walk(rules, body, path, &mut |at, action, s| {
        let pieces = judge(at, action, s);
        for piece in pieces
            .iter()
            .filter(|p| p.leak && echoable(p.change, &s[p.range.clone()]))
        {
            leaked
                .entry(s[piece.range.clone()].to_owned())
                .or_insert_with(|| piece.clone());
        }
        judged.push(pieces);
        0
    });
    // Then each string with its pieces, or as an echo. The walk without rules drops nothing,
    // so it meets the same strings in the same order.
    let mut next = judged.into_iter();
    let changed = rules::walk(&[], body, path, &mut |at, _, s| {
        let mut pieces = next.next().unwrap_or_default();
        if !pieces.iter().any(|p| p.leak) {
            if let Some(first) = leaked.get(s.as_str()) {
                pieces = echo(first, s).into_iter().collect();
            }
        }
        act(at, s, &pieces)
    });
    dropped + changed
}

/// The piece an echo of the leak `first` is: the whole string, masked. Masked, not given the
/// first appearance's pseudonym: a pseudonym of one kind can look like a leak of another where
/// the echo sits (a street pseudonym under a name, digits a detector takes for a phone), while
/// a mask keeps the length and punctuation and is hidden for every rule and detector.
fn echo(first: &Piece, s: &str) -> Option<Piece> {
    (pseudonym::mask(s) != s).then_some(Piece {
        range: 0..s.len(),
        change: Change::Mask,
        label: first.label,
        leak: true,
    })
}

/// Whether a leaked value is worth chasing through the body: something that names a person
/// (a name, an email, a phone, an address, an identity or account number, an IP, or what a
/// rule masks), with the shape of one (four characters or more, with a space, a digit or an
/// `@`). Not a date, however personal where it was (a date of birth): dates are common values,
/// and `1990-05-29` elsewhere is a formation date, not an echo. Not a bare word that happened to
/// sit under a personal field (`"string"` in a mock's answer, `"US"`): every other field holding
/// it would lose its value and perhaps its format. Tokens and ids are found wherever they are by
/// their own rules and the token detector.
pub fn echoable(change: Change, value: &str) -> bool {
    let personal = match change {
        Change::Mask => true,
        Change::Pseudonym(kind) => matches!(
            kind,
            Kind::Name
                | Kind::Email
                | Kind::Phone
                | Kind::Street
                | Kind::City
                | Kind::Text
                | Kind::IdNumber
                | Kind::AccountNumber
                | Kind::Iban
                | Kind::Ip
        ),
    };
    personal && value.chars().count() >= 4 && value.chars().any(|c| c == ' ' || c == '@' || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The leaks of an identity/get answer: (path, label).
    fn leaks(mut body: Value) -> Vec<(String, &'static str)> {
        let rules = rules::builtin();
        let applicable = rules::applicable(&rules, "identity/get", rules::Side::Response);
        let mut out = Vec::new();
        super::body(&applicable, &mut body, &mut Vec::new(), true, &mut |at, _, pieces| {
            out.extend(
                pieces
                    .iter()
                    .filter(|p| p.leak)
                    .map(|p| (rules::path_text(at), p.label)),
            );
            0
        });
        out
    }

    fn phone(number: &str) -> Value {
        json!({"accounts": [{"owners": [{"phone_numbers": [{"data": number}]}]}]})
    }

    #[test]
    fn a_placeholder_with_nothing_personal_in_it_is_no_leak() {
        assert_eq!(leaks(phone("string")), [], "no digit to hide");
        assert_eq!(
            leaks(phone("+1 415 867 5309")),
            [("accounts[0].owners[0].phone_numbers[0].data".to_owned(), "pii:phone")]
        );
        assert_eq!(
            leaks(json!({"note": "call 4158675309 now"})),
            [("note".to_owned(), "phone")]
        );
    }

    #[test]
    fn an_echo_of_a_leak_is_a_leak_wherever_it_is() {
        let rules = rules::builtin();
        let applicable = rules::applicable(&rules, "identity/get", rules::Side::Response);
        let mut body = json!({"accounts": [{"owners": [{"names": ["Jane Q Public"]}]}], "memo": "Jane Q Public"});
        let mut found = Vec::new();
        super::body(&applicable, &mut body, &mut Vec::new(), true, &mut |at, s, pieces| {
            if pieces.iter().any(|p| p.leak) {
                found.push((rules::path_text(at), s.clone()));
            }
            0
        });
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["accounts[0].owners[0].names[0]", "memo"]);
    }
}
