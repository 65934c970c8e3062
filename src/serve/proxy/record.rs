//! Recording: a request forwarded upstream, its answer redacted and made durable by the writer
//! before the client gets it; in `replay --record-missing`, once per miss however many
//! identical requests arrive while it is in flight.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use http::StatusCode;
use serde_json::Value;
use tokio::sync::watch;

use super::Proxy;
use crate::plaid_error::RequestError;
use crate::serve::mode::Recorder;
use crate::serve::outcome::{Handled, Reply};
use crate::serve::request::PlaidRequest;
use crate::store::interaction::{self, index_key, Interaction};
use crate::store::key;
use crate::webhooks::receiver::Receiver;
use crate::webhooks::webhook;

impl Proxy {
    /// Records a miss in `replay --record-missing` with single-flight: identical misses that
    /// arrive while one is being recorded wait for it and share its answer, so upstream is
    /// called once and the recording is written once. The exchange runs on its own task, so
    /// it completes (and is recorded) even if the client that started it goes away.
    pub(super) async fn record_once(
        self: &Arc<Self>,
        recorder: &Arc<Recorder>,
        request: PlaidRequest,
        step: u32,
    ) -> Handled {
        let index = index_key(request.session.as_deref(), &request.key, step);
        let mut flight = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(&index) {
                Some(flight) => {
                    tracing::debug!(endpoint = %request.endpoint, key = key::prefix(&request.key), "joining a recording in flight");
                    flight.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(index.clone(), rx.clone());
                    let (proxy, recorder) = (self.clone(), recorder.clone());
                    tokio::spawn(async move {
                        // Removes the flight however this task ends, so a panic cannot leave
                        // later requests waiting on an answer that never comes.
                        let _landed = Landed {
                            proxy: &proxy,
                            index: &index,
                        };
                        // A recording may have landed between our lookup and this flight.
                        let handled = match proxy.store.get(&index) {
                            Ok(Some(answer)) => {
                                let (reply, checked) = proxy.replayed_checked(&request, &answer);
                                Handled::Hit {
                                    used: index.clone(),
                                    reply,
                                    endpoint: request.endpoint,
                                    key: request.key,
                                    checked,
                                }
                            }
                            Ok(None) => proxy.record(&recorder, request, step).await,
                            Err(e) => Handled::failed(&request.endpoint, &request.key, (&e).into()),
                        };
                        let _ = tx.send(Some(Arc::new(handled)));
                    });
                    rx
                }
            }
        };
        let landed = flight.wait_for(Option::is_some).await.map(|answer| answer.clone());
        match landed {
            Ok(answer) => answer
                .as_deref()
                .cloned()
                .expect("wait_for(Option::is_some) returns only once the value is Some"),
            Err(_) => Handled::Failed {
                endpoint: None,
                key: None,
                error: RequestError::Store("recording this request failed unexpectedly (see plaid-vcr's log)".into()),
            },
        }
    }

    /// Forwards upstream; records 2xx/4xx JSON answers durably before answering the client.
    pub(super) async fn record(&self, recorder: &Recorder, request: PlaidRequest, step: u32) -> Handled {
        let PlaidRequest {
            endpoint,
            plaid_version,
            headers,
            raw_body,
            stored_body,
            key,
            session,
            ..
        } = request;
        let index = index_key(session.as_deref(), &key, step);
        // The app's request as sent, for the check against Plaid's spec (a shared buffer).
        let sent = raw_body.clone();
        let upstream_body = match &self.webhooks.receiver {
            Some(receiver) => receiver.register(&raw_body, &index).unwrap_or(raw_body),
            None => {
                if webhook::registered_url_in(&raw_body).is_some()
                    && !self.told_passthrough.swap(true, Ordering::Relaxed)
                {
                    tracing::info!(
                        %endpoint,
                        "a request registers a webhook URL; it passes through unchanged and webhooks are not \
                         recorded (pass --webhook-public-url URL to record them)"
                    );
                }
                raw_body
            }
        };
        // Webhooks that arrive while it is in flight wait for its answer to be noted (or for
        // it to fail), as it may be their cause.
        let exchange = self.webhooks.receiver.as_ref().map(Receiver::exchange);
        let answer = match recorder.upstream().forward(&endpoint, &headers, upstream_body).await {
            Ok(answer) => answer,
            Err(e) => return Handled::failed(&endpoint, &key, (&e).into()),
        };
        let status = answer.status;
        let content_type = answer.content_type.unwrap_or_else(|| "application/json".into());
        let mut reply = Reply::new(status, &content_type, answer.body.clone());

        let recordable = (status.is_success() || status.is_client_error()) && status != StatusCode::TOO_MANY_REQUESTS;
        if !recordable {
            tracing::warn!(endpoint = %endpoint, status = status.as_u16(), "upstream answered 5xx/429; passed through, not recorded");
            return Handled::Forwarded { endpoint, key, reply };
        }
        // Not JSON (a PDF, a zip): recorded byte for byte, in a file of its own. It cannot be
        // redacted; `scan` lists it.
        let binary = !interaction::is_json_type(&content_type);
        let (body, checked) = if binary {
            (Value::Null, self.check_exchange(&endpoint, &sent, None, &mut reply))
        } else {
            match serde_json::from_slice::<Value>(&answer.body) {
                Ok(body) => {
                    // Checked as Plaid sent it, parsed once for the check and the redaction.
                    let checked = self.check_exchange(&endpoint, &sent, Some(&body), &mut reply);
                    (self.redactor.response(&endpoint, body), checked)
                }
                Err(_) => {
                    tracing::warn!(endpoint = %endpoint, status = status.as_u16(), "upstream answer says JSON but is not; passed through, not recorded");
                    return Handled::Forwarded { endpoint, key, reply };
                }
            }
        };
        if let (Some(receiver), Some(exchange)) = (&self.webhooks.receiver, exchange) {
            receiver.answered(exchange, &index, &endpoint, &stored_body, &body);
        }
        let mut interaction = Interaction::new(
            key.clone(),
            &endpoint,
            plaid_version.as_deref(),
            stored_body,
            status.as_u16(),
            &content_type,
            body,
            SystemTime::now(),
        );
        interaction.unredacted = self.redactor.is_raw();
        interaction.step = (step > 1).then_some(step);
        interaction.session = session;
        if binary {
            interaction.set_binary_body(answer.body);
        }
        let used = interaction.index_key();
        // The writer answers once the cassette file and the store are durable (see
        // `crate::store::writer`): only then does the client get its answer.
        if let Err(e) = recorder.writer().commit(interaction).await {
            tracing::error!(endpoint = %endpoint, error = %e, "recording failed");
            return Handled::failed(&endpoint, &key, (&e).into());
        }
        Handled::Recorded {
            endpoint,
            key,
            used,
            reply,
            checked,
        }
    }
}

/// Removes a finished flight from [`Proxy::flights`] when dropped.
struct Landed<'a> {
    proxy: &'a Proxy,
    index: &'a str,
}

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.proxy
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.index);
    }
}
