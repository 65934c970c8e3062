//! The allow-list of Plaid's known quirks: findings that are Plaid's spec being behind Plaid,
//! not the app or the cassette being wrong. Reported as warnings, each with its reason.
//!
//! The list is versioned in the repo (`quirks.toml`, next to this file): every entry names the
//! spec versions it applies to, so a newer spec that fixes the quirk makes it a finding again.

use serde::Deserialize;

use crate::contract::{Part, Violation};
use crate::privacy::rules::{Rule, Seg};

const BUILTIN: &str = include_str!("quirks.toml");

/// One quirk as `quirks.toml` writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// Spec versions (`info.version` prefixes, as `2020-09-14_1.697`) it applies to.
    specs: Vec<String>,
    /// Endpoints it applies to; every endpoint if empty.
    #[serde(default)]
    endpoints: Vec<String>,
    /// request, response or webhook.
    part: Part,
    /// Where, in the path language of redaction rules (`accounts[].balances.limit`, `**.x`).
    path: String,
    /// The rule (`type`, `enum`, `required`, `format`, …).
    rule: String,
    /// Why it is allowed: shown with the warning.
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    quirk: Vec<Entry>,
}

/// The quirks that apply to one spec version.
#[derive(Debug)]
pub struct Quirks {
    entries: Vec<(Entry, Rule)>,
}

impl Quirks {
    /// The repo's quirks that apply to the spec `version`.
    pub fn for_version(version: &str) -> Quirks {
        // quirks.toml ships in the binary and a unit test parses it: always a list.
        let file: File = toml::from_str(BUILTIN).expect("quirks.toml is a valid list of quirks");
        let entries = file
            .quirk
            .into_iter()
            .filter(|e| e.specs.iter().any(|s| version.starts_with(s.as_str())))
            .map(|e| {
                let rule = Rule::matcher(&e.path);
                (e, rule)
            })
            .collect();
        Quirks { entries }
    }

    /// The reason `violation` is a known quirk, if it is one.
    pub fn reason(&self, endpoint: &str, violation: &Violation, path: &[Seg]) -> Option<&str> {
        self.entries
            .iter()
            .find(|(e, matcher)| {
                e.part == violation.part
                    && e.rule == violation.rule
                    && (e.endpoints.is_empty() || e.endpoints.iter().any(|x| x == endpoint))
                    && matcher.matches(path)
            })
            .map(|(e, _)| e.reason.as_str())
    }

    /// Whether no quirk applies.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repos_quirks_parse_and_each_has_a_reason() {
        let file: File = toml::from_str(BUILTIN).unwrap();
        for e in &file.quirk {
            assert!(e.reason.len() > 20, "{e:?}");
            assert!(!e.specs.is_empty(), "{e:?}");
        }
        assert!(Quirks::for_version("1999-01-01").is_empty());
        assert_eq!(
            Quirks::for_version("2020-09-14_1.697.4").entries.len(),
            file.quirk.len()
        );
    }
}
