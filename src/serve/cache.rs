//! The exact replay cache: the hot path for a request seen before.
//!
//! Redaction and the key are deterministic functions of (endpoint, Plaid-Version, body bytes),
//! and a replayed recording never changes, so the answer to a hit can be kept against exactly
//! those: a repeated request then costs one hash and a lookup instead of parse → redact →
//! canonicalize → SHA-256 → sled. A request seen for the first time takes the full path
//! ([`crate::serve::request`]) and, if it hits, is remembered here.
//!
//! What the full path checks per request and the cache cannot know is still checked per
//! request: the Content-Type, and the credentials (a header may carry them one time and not the
//! next). Bounded by entries and bytes; when full, new requests simply take the full path.
//! Never used with `--sequences` (the n-th identical request has its own answer).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::header::HeaderValue;
use http::StatusCode;

use crate::serve::violations::Found;

/// Most requests remembered.
const MAX_ENTRIES: usize = 100_000;
/// Most bytes of request and answer bodies remembered (answers are shared with nothing else).
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// A hit, as the cache keeps it: everything its answer needs, pre-built.
#[derive(Debug)]
pub struct Hit {
    /// The session it was answered in (`None`: the default session): a session's own
    /// recording must never answer another session's request.
    session: Option<String>,
    /// The day its `Plaid-VCR-Today` header shifted it to (`None`: the run's dates).
    today: Option<time::Date>,
    endpoint: String,
    plaid_version: Option<String>,
    request: Bytes,
    /// Whether the body itself carries `client_id` / `secret` (headers are checked per request).
    pub body_credentials: [bool; 2],
    /// The matching key, as the `plaid-vcr-key` header.
    pub key: HeaderValue,
    /// The recording answered from (its index key), for the tally.
    pub used: String,
    /// Set once this recording has been counted as used in the tally.
    pub counted: AtomicBool,
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    /// `Plaid-VCR-Recorded-At`.
    pub recorded_at: Option<HeaderValue>,
    pub body: Bytes,
    /// What `--validate` found in the exchange, answered and counted with every repeat.
    pub checked: Option<Arc<Found>>,
}

impl Hit {
    /// A hit of `used` (matching key `key`) for the request (session, endpoint, version, body
    /// bytes).
    #[allow(clippy::too_many_arguments)] // one per part of the request and the answer
    pub fn new(
        (session, today): (Option<&str>, Option<time::Date>),
        endpoint: &str,
        plaid_version: Option<&str>,
        request: Bytes,
        body_credentials: [bool; 2],
        key: &str,
        used: String,
        status: StatusCode,
        content_type: Option<HeaderValue>,
        recorded_at: Option<HeaderValue>,
        body: Bytes,
    ) -> Option<Hit> {
        Some(Hit {
            session: session.map(str::to_owned),
            today,
            endpoint: endpoint.to_owned(),
            plaid_version: plaid_version.map(str::to_owned),
            request,
            body_credentials,
            key: HeaderValue::from_str(key).ok()?,
            used,
            counted: AtomicBool::new(false),
            status,
            content_type,
            recorded_at,
            body,
            checked: None,
        })
    }

    /// The hit with what `--validate` found in its exchange.
    pub fn with_checked(mut self, checked: Option<Arc<Found>>) -> Hit {
        self.checked = checked;
        self
    }

    /// The endpoint of the request this answers.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn size(&self) -> usize {
        self.request.len()
            + self.body.len()
            + self.used.len()
            + self.endpoint.len()
            + self.session.as_ref().map_or(0, String::len)
    }
}

/// The cache: hash of (session, day, endpoint, version, body) → the hit with exactly those.
#[derive(Debug, Default)]
pub struct Cache {
    hasher: RandomState,
    entries: RwLock<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Keyed by a hash already: hashing it again (SipHash) would be a second pass for nothing.
    by_hash: HashMap<u64, Arc<Hit>, BuildHasherDefault<Prehashed>>,
    bytes: usize,
}

/// The hasher of [`Entries::by_hash`]: its keys are already random-seeded SipHash values.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here (see `write_u64`); fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Cache {
    /// The hit remembered for exactly this request of `session`, shifted to `today` (its
    /// `Plaid-VCR-Today`), if any.
    pub fn get(
        &self,
        (session, today): (Option<&str>, Option<time::Date>),
        endpoint: &str,
        plaid_version: Option<&str>,
        request: &[u8],
    ) -> Option<Arc<Hit>> {
        let hash = self.hash((session, today), endpoint, plaid_version, request);
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let hit = entries.by_hash.get(&hash)?;
        // The hash only finds the entry; equality of all five decides.
        (hit.request == request
            && hit.endpoint == endpoint
            && hit.plaid_version.as_deref() == plaid_version
            && hit.session.as_deref() == session
            && hit.today == today)
            .then(|| hit.clone())
    }

    /// Remembers `hit`, unless the cache is full or another request has the same hash.
    pub fn insert(&self, hit: Hit) {
        let hash = self.hash(
            (hit.session.as_deref(), hit.today),
            &hit.endpoint,
            hit.plaid_version.as_deref(),
            &hit.request,
        );
        // A full cache is told apart under the shared lock: requests past the bound must not
        // queue on the exclusive one just to be turned away.
        {
            let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            if entries.by_hash.len() >= MAX_ENTRIES || entries.bytes + hit.size() > MAX_BYTES {
                return;
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.by_hash.len() >= MAX_ENTRIES || entries.bytes + hit.size() > MAX_BYTES {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = entries.by_hash.entry(hash) {
            let size = hit.size();
            slot.insert(Arc::new(hit));
            entries.bytes += size;
        }
    }

    /// Marks `hit`'s recording as counted; true the first time only.
    pub fn first_use(hit: &Hit) -> bool {
        !hit.counted.swap(true, Ordering::Relaxed)
    }

    fn hash(
        &self,
        scope: (Option<&str>, Option<time::Date>),
        endpoint: &str,
        plaid_version: Option<&str>,
        request: &[u8],
    ) -> u64 {
        self.hasher.hash_one((scope, endpoint, plaid_version, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(body: &'static str, version: Option<&str>) -> Hit {
        Hit::new(
            (None, None),
            "identity/get",
            version,
            Bytes::from_static(body.as_bytes()),
            [false, false],
            "abc",
            "abc".into(),
            StatusCode::OK,
            Some(HeaderValue::from_static("application/json")),
            None,
            Bytes::from_static(b"{}"),
        )
        .unwrap()
    }

    #[test]
    fn only_exactly_the_same_request_is_a_cache_hit() {
        let cache = Cache::default();
        cache.insert(hit("{\"a\":1}", Some("2020-09-14")));
        assert!(cache
            .get((None, None), "identity/get", Some("2020-09-14"), b"{\"a\":1}")
            .is_some());
        assert!(
            cache
                .get((Some("t"), None), "identity/get", Some("2020-09-14"), b"{\"a\":1}")
                .is_none(),
            "another session"
        );
        let day = time::Date::from_calendar_date(2027, time::Month::March, 1).unwrap();
        assert!(
            cache
                .get((None, Some(day)), "identity/get", Some("2020-09-14"), b"{\"a\":1}")
                .is_none(),
            "shifted to another day (Plaid-VCR-Today)"
        );
        assert!(
            cache.get((None, None), "identity/get", None, b"{\"a\":1}").is_none(),
            "another version"
        );
        assert!(
            cache
                .get((None, None), "identity/get", Some("2020-09-14"), b"{\"a\": 1}")
                .is_none(),
            "other bytes"
        );
        assert!(
            cache
                .get((None, None), "accounts/get", Some("2020-09-14"), b"{\"a\":1}")
                .is_none(),
            "another endpoint"
        );
    }

    #[test]
    fn a_recording_counts_as_used_once() {
        let h = hit("{}", None);
        assert!(Cache::first_use(&h));
        assert!(!Cache::first_use(&h));
    }
}
