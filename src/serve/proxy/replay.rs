//! Answering from the store: a hit (the recorded step, or what `sequence_exhausted` says past
//! the last one) and a miss explained against the recordings of its endpoint.

use std::sync::{Arc, PoisonError};

use super::Proxy;
use crate::config::SequenceEnd;
use crate::dates;
use crate::plaid_error::RequestError;
use crate::serve::outcome::{Handled, Reply};
use crate::serve::request::PlaidRequest;
use crate::store::db::{StoreError, WithRequest};
use crate::store::interaction::{self, index_key, Answer};
use crate::store::key;
use crate::store::miss;
use bytes::Bytes;

impl Proxy {
    /// A recorded answer as replay sends it: with `--shift-dates`, its dates moved by the days
    /// since it was recorded (by Plaid's schema, so the rest stays byte for byte).
    pub(super) fn replayed(&self, request: &PlaidRequest, answer: &Answer) -> Reply {
        let endpoint = &request.endpoint;
        let days = self
            .shift_day(request.today)
            .and_then(|today| dates::days_since(&answer.recorded_at, today))
            .filter(|d| *d != 0);
        let shifted = days
            .filter(|_| interaction::is_json_type(&answer.content_type))
            .and_then(|days| {
                let mut body = serde_json::from_slice::<serde_json::Value>(&answer.body).ok()?;
                (dates::shift_answer(endpoint, &mut body, days) > 0).then(|| {
                    // The same form the answer's bytes were made in (`Interaction::answer`).
                    Bytes::from(
                        serde_json::to_vec_pretty(&body).expect("a serde_json::Value always serializes to a Vec"),
                    )
                })
            });
        Reply::replayed(answer, shifted.unwrap_or_else(|| answer.body.clone()))
    }

    /// Answers from the store, or `None` when nothing is recorded for the request. Past the
    /// last recorded step of a sequence, `exhaust` applies `sequence_exhausted` (replay);
    /// otherwise it is `None` too (record-missing records the next step).
    ///
    /// With `--shift-dates`, a request that matches nothing as sent is read a second way: its
    /// dates as computed relative to today (`start_date` = today − 30), moved back to each day
    /// the endpoint's recordings were made.
    pub(super) fn replay(&self, request: &PlaidRequest, step: u32, exhaust: bool) -> Option<Handled> {
        if let Some(handled) = self.replay_key(request, &request.key, step, exhaust) {
            return Some(handled);
        }
        let today = self.shift_day(request.today)?;
        match self.relative_keys(request, today) {
            Ok(keys) => keys
                .into_iter()
                .find_map(|key| self.replay_key(request, &key, step, exhaust)),
            // A store that cannot be read must not read as "nothing recorded".
            Err(e) => Some(Handled::failed(&request.endpoint, &request.key, (&e).into())),
        }
    }

    /// The keys `request` has read relative to today: its date fields moved back by the days
    /// since each day the endpoint's recordings (its session's and the default's) were made.
    fn relative_keys(&self, request: &PlaidRequest, today: time::Date) -> Result<Vec<String>, StoreError> {
        let recordings = self.miss_basis(&request.endpoint)?;
        let mut days: Vec<i64> = recordings
            .iter()
            .filter(|(r, _)| {
                let of = interaction::split_index_key(&r.index_key).0;
                of.is_none() || of == request.session.as_deref()
            })
            .filter_map(|(r, _)| dates::days_since(&r.recorded_at, today))
            .filter(|d| *d != 0)
            .collect();
        days.sort_unstable();
        days.dedup();
        Ok(days
            .into_iter()
            .filter_map(|d| {
                let mut body = serde_json::Value::Object(request.stored_body.clone());
                if dates::shift_request(&request.endpoint, &mut body, -d) == 0 {
                    return None;
                }
                let serde_json::Value::Object(body) = body else {
                    return None;
                };
                Some(key::compute(&request.endpoint, request.plaid_version.as_deref(), &body))
            })
            .collect())
    }

    /// [`Proxy::replay`] for the request as if its matching key were `key`.
    fn replay_key(&self, request: &PlaidRequest, key: &str, step: u32, exhaust: bool) -> Option<Handled> {
        let endpoint = &request.endpoint;
        let hit = |(reply, checked): (Reply, _), used: String| Handled::Hit {
            used,
            reply,
            endpoint: endpoint.clone(),
            key: request.key.clone(),
            checked,
        };
        // A named session answers from its own recordings of this request when it has any,
        // else from the default session's (set-up recorded once, shared by every test).
        let scope = match request.session.as_deref() {
            Some(name) => match self.store.last_step(&index_key(Some(name), key, 1)) {
                Ok(Some(_)) => Some(name),
                Ok(None) => None,
                Err(e) => return Some(Handled::failed(endpoint, key, (&e).into())),
            },
            None => None,
        };
        let index = index_key(scope, key, step);
        match self.store.get(&index) {
            Ok(Some(answer)) => {
                let (reply, checked) = self.replayed_checked(request, &answer);
                self.remember(request, &reply, &index, checked.clone());
                return Some(hit((reply, checked), index));
            }
            Ok(None) => {}
            Err(e) => return Some(Handled::failed(endpoint, key, (&e).into())),
        }
        let last = match self.store.last_step(&index_key(scope, key, 1)) {
            Ok(Some(last)) if exhaust && step > last => last,
            Ok(_) => return None,
            Err(e) => return Some(Handled::failed(endpoint, key, (&e).into())),
        };
        if self.config.sequence_exhausted == SequenceEnd::Error {
            let error = RequestError::SequenceExhausted {
                endpoint: endpoint.clone(),
                key: key.to_owned(),
                recorded: last,
                call: step,
            };
            return Some(Handled::Miss {
                endpoint: endpoint.clone(),
                key: key.to_owned(),
                error,
            });
        }
        let last_index = index_key(scope, key, last);
        match self.store.get(&last_index) {
            Ok(Some(answer)) => Some(hit(self.replayed_checked(request, &answer), last_index)),
            Ok(None) => None,
            Err(e) => Some(Handled::failed(endpoint, key, (&e).into())),
        }
    }

    /// The error for a request with no recording: what was looked up, the closest recording
    /// of the same endpoint and how it differs, and the command that records it.
    pub(super) fn miss(&self, request: PlaidRequest) -> Handled {
        // A store that cannot be read must not read as "nothing recorded".
        let recordings = match self.miss_basis(&request.endpoint) {
            Ok(recordings) => recordings,
            Err(e) => return Handled::failed(&request.endpoint, &request.key, (&e).into()),
        };
        let hint = format!(
            "record it with: plaid-vcr replay --record-missing --upstream {} --cassette {} (recording needs \
             PLAID_CLIENT_ID and PLAID_SECRET, or credentials in the request)",
            self.config.upstream,
            self.cassette.root().display()
        );
        let miss = miss::explain(
            &request.endpoint,
            request.plaid_version.as_deref(),
            &request.stored_body,
            &request.key,
            &recordings,
            self.cassette.root(),
            request.session.as_deref(),
            hint,
        );
        let mut miss = miss;
        let mut dated = serde_json::Value::Object(request.stored_body.clone());
        if let Some(today) = self.shift_day(request.today) {
            if dates::shift_request(&request.endpoint, &mut dated, 0) > 0 {
                // Both readings were tried: say so, so a relative-date request is not a mystery.
                miss.message.push_str(&format!(
                    "; read with its dates relative to today ({today}), as of the days its endpoint was \
                     recorded, it matches nothing either"
                ));
            }
        }
        Handled::Miss {
            endpoint: request.endpoint,
            key: request.key,
            error: RequestError::NoRecording(Box::new(miss)),
        }
    }

    /// The recordings of `endpoint` with their requests, read once per run: replay never
    /// records, and in `--record-missing` what it records is from today, which the relative
    /// reading never needs (it moves dates by the days since a recording; today's is 0). Two
    /// first misses at once may both read; one is kept.
    fn miss_basis(&self, endpoint: &str) -> Result<Arc<Vec<WithRequest>>, StoreError> {
        let cached = self
            .miss_basis
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .cloned();
        if let Some(basis) = cached {
            return Ok(basis);
        }
        let basis = Arc::new(self.store.with_requests(endpoint)?);
        let mut cache = self.miss_basis.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(cache.entry(endpoint.to_owned()).or_insert(basis).clone())
    }
}
