//! A session's fault rules: "fail the 3rd `/transactions/sync` with `ITEM_LOGIN_REQUIRED`,
//! once", set over HTTP (`POST /plaid-vcr/sessions/NAME/faults`) or for every session in the
//! config (`[[faults]]`), with how often each has fired; and the access tokens an
//! `ITEM_LOGIN_REQUIRED` stuck to.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::{Fault, UnknownFault};

/// A rule as it is asked for (JSON body, or a `[[faults]]` table of the config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A Plaid error code, or `delay=MS`, `reset`, `truncate`, `timeout`.
    pub error_code: String,
    /// The endpoint it applies to (`/transactions/sync` or `transactions/sync`); any if absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How many matching requests go through first.
    #[serde(default)]
    pub after: u32,
    /// How many matching requests fail (default 1); `null` until the rule is removed.
    #[serde(default = "once")]
    pub times: Option<u32>,
}

fn once() -> Option<u32> {
    Some(1)
}

impl RuleSpec {
    /// Checks the fault it names, and normalizes the endpoint (no leading `/`).
    pub fn checked(mut self) -> Result<RuleSpec, UnknownFault> {
        Fault::check(&self.error_code)?;
        self.endpoint = self.endpoint.map(|e| e.trim_start_matches('/').to_owned());
        Ok(self)
    }

    fn matches(&self, endpoint: &str) -> bool {
        self.endpoint.as_deref().is_none_or(|e| e == endpoint)
    }
}

/// A rule with its counts: the `GET …/faults` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// Matching requests seen.
    pub seen: u32,
    /// Requests it failed.
    pub fired: u32,
}

/// The rules of one session (or the default session), and the tokens `ITEM_LOGIN_REQUIRED`
/// stuck to.
#[derive(Debug, Default)]
pub struct Rules {
    state: Mutex<State>,
    /// Whether there is anything to check (a rule, or a token stuck): read without the lock on
    /// every request, so a session without faults costs one atomic load.
    active: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    /// Access tokens (as stored: pseudonyms) whose item needs a new login.
    stuck: HashSet<String>,
    /// The item of each access token, learned from `/item/public_token/exchange` answers (for
    /// the `ITEM` `ERROR` webhook an `ITEM_LOGIN_REQUIRED` sends).
    items: HashMap<String, String>,
}

/// Endpoints an item in `ITEM_LOGIN_REQUIRED` still answers: update mode's link token, removing
/// the item, and the sandbox's own tools.
fn exempt_from_login(endpoint: &str) -> bool {
    endpoint == "link/token/create" || endpoint == "item/remove" || endpoint.starts_with("sandbox/")
}

impl Rules {
    /// Rules starting from `specs` (the config's), none fired yet.
    pub fn new(specs: &[RuleSpec]) -> Rules {
        let rules = specs
            .iter()
            .map(|spec| Rule {
                spec: spec.clone(),
                seen: 0,
                fired: 0,
            })
            .collect();
        Rules {
            active: AtomicBool::new(!specs.is_empty()),
            state: Mutex::new(State {
                rules,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock (a panic elsewhere mid-update) still holds whole rules.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any rule or stuck token may fault a request.
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Adds a rule.
    pub fn add(&self, spec: RuleSpec) {
        self.state().rules.push(Rule {
            spec,
            seen: 0,
            fired: 0,
        });
        self.active.store(true, Ordering::Release);
    }

    /// Removes every rule, and with them what `ITEM_LOGIN_REQUIRED` stuck to (the user went
    /// through update mode).
    pub fn clear(&self) -> Vec<Rule> {
        let mut state = self.state();
        state.stuck.clear();
        self.active.store(false, Ordering::Release);
        std::mem::take(&mut state.rules)
    }

    /// The rules with their counts.
    pub fn list(&self) -> Vec<Rule> {
        self.state().rules.clone()
    }

    /// The fault a request to `endpoint` with `access_token` gets from these rules, if any:
    /// an item stuck in `ITEM_LOGIN_REQUIRED` first, then the first rule due (every matching
    /// rule counts the request).
    #[cfg(test)]
    pub fn check(&self, endpoint: &str, access_token: Option<&str>) -> Option<Fault> {
        self.check_new(endpoint, access_token).map(|(fault, _)| fault)
    }

    /// What `Rules::check` (tests) answers, and whether the fault just put an item into
    /// `ITEM_LOGIN_REQUIRED` (Plaid tells the app so once, with an `ITEM` `ERROR` webhook).
    pub fn check_new(&self, endpoint: &str, access_token: Option<&str>) -> Option<(Fault, bool)> {
        let mut state = self.state();
        let stuck = access_token.is_some_and(|t| state.stuck.contains(t));
        if stuck && !exempt_from_login(endpoint) {
            return Fault::parse("ITEM_LOGIN_REQUIRED", endpoint).ok().map(|f| (f, false));
        }
        let mut due = None;
        for rule in state.rules.iter_mut().filter(|r| r.spec.matches(endpoint)) {
            rule.seen += 1;
            let left = rule.spec.times.is_none_or(|times| rule.fired < times);
            if due.is_none() && rule.seen > rule.spec.after && left {
                rule.fired += 1;
                due = Fault::parse(&rule.spec.error_code, endpoint).ok();
            }
        }
        let mut new = false;
        if let (Some(fault), Some(token)) = (&due, access_token) {
            if fault.sticks() && !exempt_from_login(endpoint) {
                new = state.stuck.insert(token.to_owned());
            }
        }
        due.map(|fault| (fault, new))
    }

    /// Notes that an `ITEM_LOGIN_REQUIRED` asked for by header hit `access_token`; whether it
    /// was new.
    pub fn stick(&self, access_token: &str) -> bool {
        let new = self.state().stuck.insert(access_token.to_owned());
        self.active.store(true, Ordering::Release);
        new
    }

    /// Notes that `access_token` belongs to `item_id`.
    pub fn learn_item(&self, access_token: &str, item_id: &str) {
        self.state().items.insert(access_token.to_owned(), item_id.to_owned());
    }

    /// The item `access_token` belongs to, if an exchange said so.
    pub fn item_of(&self, access_token: &str) -> Option<String> {
        self.state().items.get(access_token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> RuleSpec {
        serde_json::from_str::<RuleSpec>(json).unwrap().checked().unwrap()
    }

    #[test]
    fn a_rule_lets_after_requests_through_then_fails_times_and_counts() {
        let rules = Rules::new(&[]);
        rules.add(spec(
            r#"{"error_code": "PRODUCT_NOT_READY", "endpoint": "/transactions/sync", "after": 2}"#,
        ));
        let label = |f: Option<Fault>| f.map(|f| f.label());
        assert_eq!(label(rules.check("accounts/get", None)), None, "another endpoint");
        assert_eq!(label(rules.check("transactions/sync", None)), None);
        assert_eq!(label(rules.check("transactions/sync", None)), None);
        assert_eq!(
            label(rules.check("transactions/sync", None)).as_deref(),
            Some("PRODUCT_NOT_READY")
        );
        assert_eq!(
            label(rules.check("transactions/sync", None)),
            None,
            "times defaults to 1"
        );
        assert_eq!((rules.list()[0].seen, rules.list()[0].fired), (4, 1));

        let forever = Rules::new(&[spec(r#"{"error_code": "INTERNAL_SERVER_ERROR", "times": null}"#)]);
        for _ in 0..5 {
            assert!(forever.check("any/thing", None).is_some());
        }
        assert_eq!(forever.clear().len(), 1);
        assert!(forever.check("any/thing", None).is_none());
    }

    #[test]
    fn item_login_required_sticks_to_the_token_until_the_rules_go() {
        let rules = Rules::new(&[spec(
            r#"{"error_code": "ITEM_LOGIN_REQUIRED", "endpoint": "accounts/get"}"#,
        )]);
        assert!(rules.check("accounts/get", Some("access-a")).is_some());
        let again = rules.check("identity/get", Some("access-a")).map(|f| f.label());
        assert_eq!(
            again.as_deref(),
            Some("ITEM_LOGIN_REQUIRED"),
            "every later request of the item"
        );
        assert!(rules.check("identity/get", Some("access-b")).is_none(), "another item");
        assert!(
            rules.check("link/token/create", Some("access-a")).is_none(),
            "update mode works"
        );
        rules.clear();
        assert!(rules.check("identity/get", Some("access-a")).is_none(), "fixed");
        assert!(serde_json::from_str::<RuleSpec>(r#"{"error_code": "X", "bogus": 1}"#).is_err());
        assert!(spec_err(r#"{"error_code": "NOPE_NOT_A_CODE"}"#));
    }

    fn spec_err(json: &str) -> bool {
        serde_json::from_str::<RuleSpec>(json).unwrap().checked().is_err()
    }
}
