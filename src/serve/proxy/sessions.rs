//! The sessions' reports: `/plaid-vcr/sessions[/NAME]` on plaid-vcr's own listener, and the
//! `sessions` of the summary at the end of a run. Reads the store's index, never the network.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::Proxy;
use crate::config::FaultRule;
use crate::plaid_error::RequestError;
use crate::serve::outcome::{Handled, Reply};
use crate::serve::request;
use crate::serve::request::SessionsRoute;
use crate::serve::session::Session;
use crate::serve::summary::Report;
use crate::store::db::{Recorded, StoreError};
use crate::store::interaction::split_index_key;
use http::Request;

impl Proxy {
    /// Answers `/plaid-vcr/sessions[/NAME[/faults]]`.
    pub(super) async fn sessions_api<B>(&self, asked: SessionsRoute, request: Request<B>) -> Handled
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let body = match asked {
            SessionsRoute::AddFault(name) => {
                let spec = match request::collect(request, self.limits()).await {
                    Ok((_, body)) => serde_json::from_slice::<FaultRule>(&body)
                        .map_err(|e| RequestError::InvalidFaultRule(e.to_string()))
                        .and_then(|spec| {
                            spec.checked().map_err(|e| RequestError::UnknownFault {
                                asked: e.asked,
                                close: e.close,
                            })
                        }),
                    Err(error) => Err(error),
                };
                match spec {
                    Ok(spec) => {
                        let session = self.sessions.get_or_start(&name);
                        session.faults.add(spec);
                        json!({ "faults": session.faults.list() })
                    }
                    Err(error) => return control_error(error),
                }
            }
            SessionsRoute::Faults(name) => match self.sessions.get(&name) {
                Some(session) => json!({ "faults": session.faults.list() }),
                None => return control_error(RequestError::UnknownSession { name }),
            },
            SessionsRoute::ClearFaults(name) => match self.sessions.get(&name) {
                Some(session) => json!({ "removed": session.faults.clear() }),
                None => return control_error(RequestError::UnknownSession { name }),
            },
            reports => return self.reports_api(reports),
        };
        control(body)
    }

    /// Answers `/plaid-vcr/sessions[/NAME]`: reports, and the end of a session.
    fn reports_api(&self, asked: SessionsRoute) -> Handled {
        let failed = control_error;
        let mut recordings = match self.session_recordings() {
            Ok(recordings) => recordings,
            Err(e) => return failed((&e).into()),
        };
        let body = match asked {
            SessionsRoute::List => {
                let reports = self.session_reports(recordings);
                let list: Vec<_> = reports
                    .iter()
                    .map(|(name, r)| {
                        json!({
                            "name": name,
                            "requests": r.requests,
                            "hits": r.hits,
                            "misses": r.misses.len(),
                            "recorded": r.recorded.len(),
                            "errors": r.errors,
                            "recordings": r.recordings,
                            "unused": r.unused.len(),
                        })
                    })
                    .collect();
                json!({ "sessions": list })
            }
            SessionsRoute::Report(name) => match self.sessions.get(&name) {
                Some(session) => json!(session.report(recordings.remove(&name).unwrap_or_default())),
                None => return failed(RequestError::UnknownSession { name }),
            },
            SessionsRoute::End(name) => match self.sessions.end(&name) {
                Some(session) => json!(session.report(recordings.remove(&name).unwrap_or_default())),
                None => return failed(RequestError::UnknownSession { name }),
            },
            SessionsRoute::AddFault(_) | SessionsRoute::Faults(_) | SessionsRoute::ClearFaults(_) => {
                unreachable!("sessions_api answers the faults routes")
            }
        };
        control(body)
    }

    /// The recordings of every named session, by session (the default session's are left out).
    pub(super) fn session_recordings(&self) -> Result<BTreeMap<String, Vec<Recorded>>, StoreError> {
        let mut by_session = BTreeMap::new();
        for recorded in self.store.recorded_iter() {
            add_if_named(&mut by_session, &recorded?);
        }
        Ok(by_session)
    }

    /// Every session's report: those seen in this run, and those with recordings no request of
    /// this run named (all of them unused), by name.
    pub(super) fn session_reports(&self, mut recordings: BTreeMap<String, Vec<Recorded>>) -> BTreeMap<String, Report> {
        let mut reports: BTreeMap<String, Report> = self
            .sessions
            .all()
            .into_iter()
            .map(|(name, session)| {
                let report = session.report(recordings.remove(&name).unwrap_or_default());
                (name, report)
            })
            .collect();
        for (name, own) in recordings {
            reports.insert(name, Session::default().report(own));
        }
        reports
    }
}

/// plaid-vcr's own API's answer.
pub(super) fn control(body: serde_json::Value) -> Handled {
    let mut bytes = serde_json::to_vec_pretty(&body).expect("a serde_json::Value always serializes to a Vec");
    bytes.push(b'\n');
    Handled::Control(Reply::new(
        StatusCode::OK,
        "application/json; charset=utf-8",
        Bytes::from(bytes),
    ))
}

/// plaid-vcr's own API's errors are answered like Plaid's, but are not requests of the run (a
/// test's set-up ending a session no request named is no error of the suite).
pub(super) fn control_error(error: RequestError) -> Handled {
    Handled::Control(Reply::new(
        error.status(),
        "application/json; charset=utf-8",
        error.body(),
    ))
}

/// Adds `recorded` to its session's recordings, if it is a named session's.
pub(super) fn add_if_named(by_session: &mut BTreeMap<String, Vec<Recorded>>, recorded: &Recorded) {
    if let Some(name) = split_index_key(&recorded.index_key).0 {
        by_session.entry(name.to_owned()).or_default().push(recorded.clone());
    }
}
