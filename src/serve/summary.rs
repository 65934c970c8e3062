//! One run of the proxy: what happened to each request, and the summary printed at shutdown.
//!
//! The [`Tally`] is updated by the proxy as requests are answered; [`Summary`] adds what only
//! the store knows (recordings never used, recordings older than `max_age`) and renders the
//! text for stderr and the JSON for `--report`. Keys and endpoints only: never a body.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::serve::violations::{self, Seen, Violations};
use crate::store::db::Recorded;
use crate::store::interaction::split_index_key;
use crate::store::key;

/// What the proxy did in this run so far. Shared by every connection without a global lock on
/// the hot path: requests and hits are atomic counters; the lists (misses, recordings, the set
/// of recordings used) take a lock, which a repeated hit never needs (see [`Tally::hit_again`]).
#[derive(Debug, Default)]
pub struct Tally {
    requests: AtomicU64,
    hits: AtomicU64,
    errors: AtomicU64,
    forwarded: AtomicU64,
    webhooks_recorded: AtomicU64,
    lists: Mutex<Lists>,
    /// What the live contract check found.
    pub violations: Violations,
}

#[derive(Debug, Default)]
struct Lists {
    misses: Vec<Entry>,
    recorded: Vec<Entry>,
    used: HashSet<String>,
    faults: Vec<FiredFault>,
}

/// A fault that fired: which, on which request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FiredFault {
    /// The Plaid error code, or `delay=MS`, `reset`, `truncate`, `timeout`.
    pub fault: String,
    pub endpoint: String,
    /// The matching key of the request.
    pub key: String,
}

/// The sequence cursor (`--sequences`): which call of each matching key this is, so the n-th
/// identical request is answered with step n. Owned by the proxy; the tally only counts.
#[derive(Debug, Default)]
pub struct Steps {
    seen: std::sync::Mutex<HashMap<String, u32>>,
}

impl Steps {
    /// Counts the next occurrence of `key` and returns its number (1 for the first).
    pub fn next(&self, key: &str) -> u32 {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = seen.entry(key.to_owned()).or_insert(0);
        *n += 1;
        *n
    }
}

/// A request or recording named by endpoint and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub endpoint: String,
    /// The index key: the matching key, `#n` suffixed for step n of a sequence.
    pub key: String,
    /// The cassette file, when the entry is a recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// When it was recorded, for recordings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// For a miss, the one line that explains it (what differs from the closest recording).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

impl Tally {
    fn lists(&self) -> std::sync::MutexGuard<'_, Lists> {
        // A poisoned lock (a panic elsewhere mid-update) still holds the counts.
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Any request, whatever its outcome.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request answered from the recording `index_key`.
    pub fn hit(&self, index_key: &str) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let mut lists = self.lists();
        if !lists.used.contains(index_key) {
            lists.used.insert(index_key.to_owned());
        }
    }

    /// A request answered from a recording already counted as used: no lock.
    pub fn hit_again(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A request with no recording, and the line that explains why, if there is one.
    pub fn miss(&self, endpoint: &str, key: &str, explanation: Option<&str>) {
        self.lists().misses.push(Entry {
            endpoint: endpoint.into(),
            key: key.into(),
            file: None,
            recorded_at: None,
            explanation: explanation.map(str::to_owned),
        });
    }

    /// A request forwarded and recorded as `index_key`.
    pub fn recorded(&self, endpoint: &str, index_key: &str) {
        // A recording is never also a hit in the same run (a hit means it already existed),
        // so `used` tells whether this key was recorded before: re-recording counts once.
        let mut lists = self.lists();
        if lists.used.insert(index_key.to_owned()) {
            lists.recorded.push(Entry {
                endpoint: endpoint.into(),
                key: index_key.into(),
                file: None,
                recorded_at: None,
                explanation: None,
            });
        }
    }

    /// A request forwarded but not recorded (5xx, 429, a JSON answer that is not JSON).
    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// A request rejected or failed.
    /// A webhook upstream sent while recording, forwarded to the app; `recorded` unless its
    /// body was not JSON.
    pub fn webhook_received(&self, recorded: bool) {
        if recorded {
            self.webhooks_recorded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A fault fired on a request to `endpoint` with matching key `key`.
    pub fn fault(&self, fault: String, endpoint: &str, key: &str) {
        self.lists().faults.push(FiredFault {
            fault,
            endpoint: endpoint.into(),
            key: key.into(),
        });
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The summary of this run, given every recording in the cassette.
    ///
    /// The recordings are taken one at a time, and only the unused and stale ones are kept: at
    /// 50,000 recordings, holding them all next to the summary doubled the peak memory of a run.
    pub fn summary(
        &self,
        mode: &str,
        recordings: impl IntoIterator<Item = Recorded>,
        max_age: Option<Duration>,
    ) -> Summary {
        let lists = self.lists();
        let now = SystemTime::now();
        let (mut count, mut unused, mut stale) = (0, Vec::new(), Vec::new());
        for r in recordings {
            count += 1;
            let is_stale = is_stale(&r, max_age, now);
            let is_unused = !lists.used.contains(&r.index_key);
            if !is_stale && !is_unused {
                continue;
            }
            let entry = Entry {
                endpoint: r.endpoint,
                key: r.index_key,
                file: Some(r.file),
                recorded_at: Some(r.recorded_at),
                explanation: None,
            };
            match (is_unused, is_stale) {
                (true, true) => {
                    stale.push(entry.clone());
                    unused.push(entry);
                }
                (true, false) => unused.push(entry),
                _ => stale.push(entry),
            }
        }
        Summary {
            mode: mode.to_owned(),
            requests: self.requests.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: lists.misses.clone(),
            recorded: lists.recorded.clone(),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            recordings: count,
            unused,
            max_age: max_age.map(|d| humantime::format_duration(d).to_string()),
            stale,
            webhooks: WebhookSummary {
                recorded: self.webhooks_recorded.load(Ordering::Relaxed),
                ..WebhookSummary::default()
            },
            sessions: BTreeMap::new(),
            faults: lists.faults.clone(),
            violations: self.violations.list(),
        }
    }
}

/// An index key as the summary shows it: its session, if any, and the key's first characters.
fn short(index_key: &str) -> String {
    match split_index_key(index_key) {
        (Some(session), rest) => format!("{session}/{}", key::prefix(rest)),
        (None, rest) => key::prefix(rest).to_owned(),
    }
}

/// Whether `r` is older than `max_age` at `now` (never without a `max_age`).
fn is_stale(r: &Recorded, max_age: Option<Duration>, now: SystemTime) -> bool {
    let Some(max_age) = max_age else { return false };
    humantime::parse_rfc3339(&r.recorded_at)
        .ok()
        .and_then(|at| now.duration_since(at).ok())
        .is_some_and(|age| age > max_age)
}

/// Recordings older than `max_age` at `now` (none without a `max_age`).
pub fn stale(recordings: &[Recorded], max_age: Option<Duration>, now: SystemTime) -> Vec<&Recorded> {
    recordings.iter().filter(|r| is_stale(r, max_age, now)).collect()
}

/// What a run did, printed to stderr at shutdown and written by `--report FILE`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub mode: String,
    pub requests: u64,
    pub hits: u64,
    pub misses: Vec<Entry>,
    /// Newly recorded in this run.
    pub recorded: Vec<Entry>,
    /// Forwarded but not recorded (5xx, 429, a JSON answer that is not JSON).
    pub forwarded: u64,
    /// Rejected requests and failures (bad input, upstream down).
    pub errors: u64,
    /// Recordings in the cassette.
    pub recordings: usize,
    /// Recordings in the cassette that no request used in this run.
    pub unused: Vec<Entry>,
    /// The configured `max_age`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Recordings older than `max_age`.
    pub stale: Vec<Entry>,
    /// Webhooks recorded and delivered in this run.
    pub webhooks: WebhookSummary,
    /// Each named session's own report, by name (see `serve::session`).
    pub sessions: BTreeMap<String, Report>,
    /// The faults that fired, in order (see docs/failures.md).
    pub faults: Vec<FiredFault>,
    /// What the live check against Plaid's spec found (see docs/contract.md).
    pub violations: Vec<Seen>,
}

/// What one named session did (see `serve::session`): the `sessions` entries of `--report`
/// and of the HTTP API.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub requests: u64,
    pub hits: u64,
    /// Requests with no recording, each with the one-line explanation of its miss.
    pub misses: Vec<Entry>,
    /// Newly recorded in this session.
    pub recorded: Vec<Entry>,
    pub errors: u64,
    /// The session's own recordings (under `sessions/NAME/`).
    pub recordings: usize,
    /// The session's own recordings that no request of it used.
    pub unused: Vec<Entry>,
    pub webhooks: WebhookCounts,
    /// The faults that fired on its requests.
    pub faults: Vec<FiredFault>,
    /// What the live check against Plaid's spec found in its exchanges.
    pub violations: Vec<Seen>,
    /// When its replayed answers were recorded, and the day their dates moved to.
    pub dates: Anchor,
}

/// The dates a session's replayed answers are anchored to, so a test that prefers to freeze
/// its own clock knows where: the earliest and latest recording time (RFC 3339) of the answers
/// it replayed, and the day their dates were shifted to (`None`: not shifted).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Anchor {
    pub recorded_from: Option<String>,
    pub recorded_to: Option<String>,
    pub shifted_to: Option<String>,
}

/// A session's replayed webhooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WebhookCounts {
    pub delivered: u64,
    pub failed: u64,
}

impl Report {
    /// Whether this session has anything to answer for at the end of a run.
    pub fn has_problems(&self) -> bool {
        !self.misses.is_empty() || !self.unused.is_empty() || self.webhooks.failed > 0
    }
}

/// What happened to webhooks in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WebhookSummary {
    /// Received from upstream and recorded (recording modes).
    pub recorded: u64,
    /// Replayed to the app and answered 2xx (replay modes).
    pub delivered: u64,
    /// Replayed but still refused, non-2xx or timed out after the retries.
    pub failed: u64,
    /// Webhook files of the cassette never delivered in this run (replay modes).
    pub undelivered: Vec<String>,
}

impl WebhookSummary {
    /// Adds the replay side's counts.
    pub fn add_deliveries(&mut self, counts: crate::webhooks::delivery::DeliveryCounts) {
        self.delivered = counts.delivered;
        self.failed = counts.failed;
        self.undelivered = counts.undelivered;
    }

    fn is_empty(&self) -> bool {
        self.recorded == 0 && self.delivered == 0 && self.failed == 0 && self.undelivered.is_empty()
    }
}

impl Summary {
    /// Why `--strict` / `--fail-on-unused` fail this run; empty when they do not.
    pub fn failures(&self, strict: bool, fail_on_unused: bool) -> Vec<String> {
        let mut out = Vec::new();
        if strict && !self.misses.is_empty() {
            out.push(format!("{} requests had no recording (--strict)", self.misses.len()));
        }
        if strict && !self.stale.is_empty() {
            let age = self.max_age.as_deref().unwrap_or("max_age");
            out.push(format!(
                "{} recordings are older than {age} (--strict)",
                self.stale.len()
            ));
        }
        let broken = violations::request_errors(&self.violations);
        if strict && broken > 0 {
            out.push(format!(
                "{broken} violations of Plaid's spec in requests the app sent (--strict)"
            ));
        }
        if strict && self.webhooks.failed > 0 {
            out.push(format!("{} webhook deliveries failed (--strict)", self.webhooks.failed));
        }
        if fail_on_unused && !self.unused.is_empty() {
            out.push(format!(
                "{} recordings were never used (--fail-on-unused)",
                self.unused.len()
            ));
        }
        out
    }

    /// The summary as text, a few lines for stderr.
    pub fn render(&self) -> String {
        let mut out = format!(
            "plaid-vcr summary ({}): {} requests, {} hits, {} misses, {} recorded, {} forwarded, {} errors; {} of {} recordings unused\n",
            self.mode,
            self.requests,
            self.hits,
            self.misses.len(),
            self.recorded.len(),
            self.forwarded,
            self.errors,
            self.unused.len(),
            self.recordings,
        );
        let list = |out: &mut String, title: &str, entries: &[Entry]| {
            for e in entries.iter().take(20) {
                let file = e.file.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
                out.push_str(&format!("  {title} {} {}{file}\n", e.endpoint, short(&e.key)));
            }
            if entries.len() > 20 {
                out.push_str(&format!(
                    "  … and {} more {title} (see --report FILE)\n",
                    entries.len() - 20
                ));
            }
        };
        list(&mut out, "miss", &self.misses);
        list(&mut out, "recorded", &self.recorded);
        list(&mut out, "unused", &self.unused);
        list(&mut out, "stale", &self.stale);
        for fault in self.faults.iter().take(20) {
            out.push_str(&format!(
                "  fault {} on {} {}\n",
                fault.fault,
                fault.endpoint,
                short(&fault.key)
            ));
        }
        if self.faults.len() > 20 {
            out.push_str(&format!(
                "  … and {} more faults (see --report FILE)\n",
                self.faults.len() - 20
            ));
        }
        out.push_str(&violations::lines(&self.violations));
        for (name, report) in self.sessions.iter().filter(|(_, r)| r.has_problems()) {
            out.push_str(&format!(
                "session {name}: {} requests, {} misses, {} of {} recordings unused{}\n",
                report.requests,
                report.misses.len(),
                report.unused.len(),
                report.recordings,
                match report.webhooks.failed {
                    0 => String::new(),
                    n => format!(", {n} webhook deliveries failed"),
                }
            ));
            for miss in report.misses.iter().take(5) {
                let why = miss.explanation.as_deref().unwrap_or("no recording");
                out.push_str(&format!("  miss {} {}: {why}\n", miss.endpoint, short(&miss.key)));
            }
            if report.misses.len() > 5 {
                out.push_str(&format!(
                    "  … and {} more misses (see --report FILE)\n",
                    report.misses.len() - 5
                ));
            }
        }
        let w = &self.webhooks;
        if !w.is_empty() {
            out.push_str(&format!(
                "webhooks: {} recorded, {} delivered, {} failed, {} never delivered\n",
                w.recorded,
                w.delivered,
                w.failed,
                w.undelivered.len()
            ));
            for file in w.undelivered.iter().take(20) {
                out.push_str(&format!("  undelivered webhook {file}\n"));
            }
            if w.undelivered.len() > 20 {
                out.push_str(&format!(
                    "  … and {} more undelivered webhooks (see --report FILE)\n",
                    w.undelivered.len() - 20
                ));
            }
        }
        out
    }

    /// The summary as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .expect("a Summary is strings, numbers and lists of them: it always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, at: &str) -> Recorded {
        Recorded {
            index_key: key.into(),
            endpoint: "identity/get".into(),
            plaid_version: None,
            recorded_at: at.into(),
            status: 200,
            file: format!("identity_get/{key}.json"),
        }
    }

    #[test]
    fn summaries_count_and_list_unused_and_stale_recordings() {
        let t = Tally::default();
        t.request();
        t.hit("a");
        t.request();
        t.miss("identity/get", "zzz", None);
        let all = [rec("a", "2020-01-01T00:00:00Z"), rec("b", "2999-01-01T00:00:00Z")];
        let s = t.summary("replay", all.clone(), Some(Duration::from_secs(30 * 86400)));
        assert_eq!((s.requests, s.hits, s.misses.len()), (2, 1, 1));
        assert_eq!(s.unused.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.stale.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.failures(false, false).len(), 0);
        assert_eq!(s.failures(true, false).len(), 2);
        assert_eq!(s.failures(false, true).len(), 1);
        assert!(s.render().contains("  miss identity/get zzz"));
    }

    #[test]
    fn a_sessions_keys_show_its_name_then_the_keys_start() {
        let t = Tally::default();
        t.recorded("identity/get", "tests/a/0123456789abcdef0123#2");
        let s = t.summary("record", [], None);
        assert!(
            s.render()
                .contains("  recorded identity/get tests/a/0123456789abcdef\n"),
            "{}",
            s.render()
        );
    }

    #[test]
    fn steps_count_per_key() {
        let s = Steps::default();
        assert_eq!((s.next("k"), s.next("k"), s.next("j")), (1, 2, 1));
    }
}
