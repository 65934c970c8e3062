//! Sessions: one proxy, many tests, each with its own recordings, sequence steps and report.
//!
//! A request names its session with the `Plaid-VCR-Session` header or the base path
//! `/sessions/NAME/plaid-compatible/…`; one without belongs to the default session, which is
//! plaid-vcr as it was before sessions. A named session records under `sessions/NAME/` of the
//! cassette and replays from there first, then from the default session's recordings (shared
//! set-up recorded once). Its steps and tally are its own, so parallel tests polling the same
//! endpoint each see their own steps in order.
//!
//! The session is never part of the key and its header is never forwarded upstream. This
//! module owns the name rules, the registry of the sessions seen, and their reports; the
//! default session's counts stay in the proxy's own tally, whose hot path sessions never touch.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::FaultRule;
use crate::faults::rules::Rules;
use crate::serve::summary::{Anchor, Report, Steps, Tally, WebhookCounts};
use crate::store::db::Recorded;
use crate::webhooks::delivery::Counts;

/// The request header naming a session.
pub const HEADER: &str = "plaid-vcr-session";

/// The base path a session can be named by instead: `/sessions/NAME/plaid-compatible/…`.
pub const PATH_PREFIX: &str = "/sessions/";

/// The longest session name.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a session name: 1–200 characters of `A-Za-z0-9._-` and `/`, no empty segment, no
/// `.` or `..` segment. The error says which rule the name breaks.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a session name has 1 to {MAX_NAME_LEN} characters; this one has {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(format!(
            "a session name has only A-Z a-z 0-9 . _ - and /; {c:?} is not allowed (escape it as _)"
        ));
    }
    if let Some(segment) = name.split('/').find(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(format!(
            "a session name's /-separated parts are not empty, . or ..; this one has {segment:?}"
        ));
    }
    Ok(())
}

/// One named session's state in this run: its tally, its sequence steps and its replayed
/// webhooks' counts.
#[derive(Debug, Default)]
pub struct Session {
    pub tally: Tally,
    pub steps: Steps,
    pub deliveries: Arc<Counts>,
    /// Its fault rules (the config's, then its own) and what they stuck to.
    pub faults: Rules,
    /// When the answers it replayed were recorded, and the day their dates moved to.
    pub anchor: Mutex<Anchor>,
}

/// The named sessions seen in this run, by name.
#[derive(Debug, Default)]
pub struct Sessions {
    seen: Mutex<HashMap<String, Arc<Session>>>,
    /// The fault rules every session starts with (`[[faults]]`).
    faults: Vec<FaultRule>,
}

impl Sessions {
    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        // A poisoned lock (a panic elsewhere mid-insert) still holds whole sessions.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// No session yet; each will start with the fault rules `faults`.
    pub fn new(faults: Vec<FaultRule>) -> Sessions {
        Sessions {
            seen: Mutex::default(),
            faults,
        }
    }

    /// The session `name`, started by this call if it had not been seen (or was ended).
    pub fn get_or_start(&self, name: &str) -> Arc<Session> {
        self.seen()
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Session {
                    faults: Rules::new(&self.faults),
                    ..Session::default()
                })
            })
            .clone()
    }

    /// The session `name`, if a request named it since the start (or since it was ended).
    pub fn get(&self, name: &str) -> Option<Arc<Session>> {
        self.seen().get(name).cloned()
    }

    /// Ends the session `name`: its state goes, so the name starts again at step 1.
    pub fn end(&self, name: &str) -> Option<Arc<Session>> {
        self.seen().remove(name)
    }

    /// Every session seen, by name.
    pub fn all(&self) -> BTreeMap<String, Arc<Session>> {
        self.seen().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl Session {
    /// Notes a replayed answer recorded at `recorded_at`, its dates shifted to `shifted_to`.
    pub fn note_replayed(&self, recorded_at: Option<&str>, shifted_to: Option<time::Date>) {
        let mut anchor = self.anchor.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = recorded_at {
            // RFC 3339 times in UTC, as plaid-vcr writes them, order as text.
            if anchor.recorded_from.as_deref().is_none_or(|from| at < from) {
                anchor.recorded_from = Some(at.to_owned());
            }
            if anchor.recorded_to.as_deref().is_none_or(|to| at > to) {
                anchor.recorded_to = Some(at.to_owned());
            }
        }
        if let Some(day) = shifted_to {
            anchor.shifted_to = Some(day.to_string());
        }
    }

    /// The report of this session, given its own recordings (those under its folder).
    pub fn report(&self, own: Vec<Recorded>) -> Report {
        let summary = self.tally.summary("session", own, None);
        Report {
            requests: summary.requests,
            hits: summary.hits,
            misses: summary.misses,
            recorded: summary.recorded,
            errors: summary.errors,
            recordings: summary.recordings,
            unused: summary.unused,
            faults: summary.faults,
            violations: summary.violations,
            dates: self.anchor.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            webhooks: WebhookCounts {
                delivered: self.deliveries.delivered.load(Ordering::Relaxed),
                failed: self.deliveries.failed.load(Ordering::Relaxed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules_and_errors_name_the_rule_broken() {
        for good in [
            "a",
            "test_link/test_update",
            "tests/test_x.py/Test.test_y-1_",
            &"n".repeat(200),
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let rule = |name: &str| check_name(name).unwrap_err();
        assert!(rule("").contains("1 to 200"));
        assert!(rule(&"n".repeat(201)).contains("this one has 201"));
        assert!(rule("a b").contains("' ' is not allowed"));
        assert!(rule("a::b").contains("':' is not allowed"));
        assert!(rule("a//b").contains("\"\""));
        assert!(rule("/a").contains("\"\""));
        assert!(rule("a/").contains("\"\""));
        assert!(rule("a/../b").contains("\"..\""));
        assert!(rule("./a").contains("\".\""));
    }

    #[test]
    fn an_ended_session_starts_again() {
        let sessions = Sessions::default();
        let first = sessions.get_or_start("t");
        assert_eq!(first.steps.next("k"), 1);
        assert_eq!(sessions.get_or_start("t").steps.next("k"), 2, "the same session");
        assert!(sessions.end("t").is_some());
        assert!(sessions.get("t").is_none());
        assert_eq!(sessions.get_or_start("t").steps.next("k"), 1, "started again");
    }
}
