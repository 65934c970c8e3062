//! Replaying webhooks: after answering an interaction, the webhooks recorded after it are
//! delivered, in recorded order, signed by plaid-vcr's own key ([`crate::webhooks::signer`]).
//!
//! Where to: `--webhook-target` if given, else the URL the app registered in this session with
//! the request that registered it when recording (`registered_by`), else the URL it registered
//! last. One worker delivers everything in order, each batch only once the answer that caused
//! it has been handed to the connection ([`crate::body::Body::on_sent`]), so the app sees the
//! answer first and the answer never waits for a delivery. A failed attempt (refused, non-2xx,
//! timeout) is retried; what still fails is logged and counted, and `--strict` fails the run.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::store::cassette::CassetteError;
use crate::upstream::Poster;
use crate::webhooks::signer::Signer;
use crate::webhooks::webhook;

/// How often a delivery is tried before it counts as failed, and the pauses between tries.
const BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// One recorded webhook, ready to deliver.
#[derive(Debug)]
pub struct Recorded {
    /// Its file, relative to the cassette.
    pub file: PathBuf,
    registered_by: Option<String>,
    body: Bytes,
    label: String,
    /// When it was recorded (RFC 3339), for `--shift-dates`.
    recorded_at: String,
}

/// The webhooks of a cassette, the session's registered URLs, and the delivery worker.
#[derive(Debug)]
pub struct Deliveries {
    by_interaction: HashMap<String, Vec<Arc<Recorded>>>,
    files: Vec<PathBuf>,
    signer: Signer,
    poster: Poster,
    target: Option<String>,
    registered: Mutex<Registered>,
    /// `--shift-dates`: the day replayed webhooks' dates move to.
    shift_to: Option<time::Date>,
    queue: Mutex<Queue>,
    delivered_files: Mutex<HashSet<PathBuf>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    warned_nowhere: AtomicBool,
}

/// The webhook URLs the app registered in this run, per session (`None`: the default one), so
/// that two tests registering different URLs through the same recording each get their own.
#[derive(Debug, Default)]
struct Registered {
    /// (session, index key of the replayed request that carried a URL) → that URL.
    by_request: HashMap<(Option<String>, String), String>,
    /// Per session, the URL it registered last.
    latest: HashMap<Option<String>, String>,
}

/// One session's delivered and failed webhooks, counted as they happen.
#[derive(Debug, Default)]
pub struct Counts {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

/// Webhooks to deliver after one answer, each with where it goes, and the session's counts.
#[derive(Debug)]
pub struct Batch {
    webhooks: Vec<(Arc<Recorded>, Option<String>)>,
    counts: Option<Arc<Counts>>,
}

#[derive(Debug, Default)]
enum Queue {
    #[default]
    Idle,
    Running {
        jobs: mpsc::UnboundedSender<Job>,
        worker: JoinHandle<()>,
    },
    Closed,
}

#[derive(Debug)]
struct Job {
    batch: Batch,
    sent: oneshot::Receiver<()>,
}

/// `webhook` with its dates moved by the days between its recording and `today`.
fn shifted(webhook: &Arc<Recorded>, today: time::Date) -> Arc<Recorded> {
    let days = crate::dates::days_since(&webhook.recorded_at, today).filter(|d| *d != 0);
    let moved = days.and_then(|days| {
        let mut body = serde_json::from_slice::<Value>(&webhook.body).ok()?;
        (crate::dates::shift_answer(crate::privacy::rules::WEBHOOK_ENDPOINT, &mut body, days) > 0)
            // The delivered form: compact, keys sorted (`Webhook::delivered_body`).
            .then(|| Bytes::from(serde_json::to_vec(&body).expect("a serde_json::Value always serializes to a Vec")))
    });
    match moved {
        Some(body) => Arc::new(Recorded {
            file: webhook.file.clone(),
            registered_by: webhook.registered_by.clone(),
            body,
            label: webhook.label.clone(),
            recorded_at: webhook.recorded_at.clone(),
        }),
        None => webhook.clone(),
    }
}

/// What happened to the webhooks of the cassette in this session.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DeliveryCounts {
    pub delivered: u64,
    pub failed: u64,
    /// Webhook files never delivered in this session.
    pub undelivered: Vec<String>,
}

impl Deliveries {
    /// The webhooks recorded in the cassette at `root`, keyed by the interaction they follow.
    pub fn load(
        root: &Path,
        signer: Signer,
        poster: Poster,
        target: Option<String>,
    ) -> Result<Deliveries, CassetteError> {
        let mut by_interaction: HashMap<String, Vec<Arc<Recorded>>> = HashMap::new();
        let mut files = Vec::new();
        let mut loaded = webhook::load(root)?;
        loaded.sort_by(|(_, a), (_, b)| (&a.after, a.seq).cmp(&(&b.after, b.seq)));
        for (file, w) in loaded {
            files.push(file.clone());
            let Some(after) = w.after.clone() else { continue };
            let label = w.label();
            by_interaction.entry(after).or_default().push(Arc::new(Recorded {
                file,
                registered_by: w.registered_by.clone(),
                body: w.delivered_body(),
                label,
                recorded_at: w.recorded_at.clone(),
            }));
        }
        files.sort();
        Ok(Deliveries {
            by_interaction,
            files,
            signer,
            poster,
            target,
            registered: Mutex::new(Registered::default()),
            shift_to: None,
            queue: Mutex::new(Queue::Idle),
            delivered_files: Mutex::new(HashSet::new()),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            warned_nowhere: AtomicBool::new(false),
        })
    }

    /// Replayed webhooks' dates move to `today` (`--shift-dates`), as the answers' do.
    pub fn shifting_dates_to(mut self, today: time::Date) -> Deliveries {
        self.shift_to = Some(today);
        self
    }

    /// Whether the cassette has any webhook to deliver; without, requests cost nothing extra.
    pub fn any(&self) -> bool {
        !self.by_interaction.is_empty()
    }

    /// The signing key id.
    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// `/webhook_verification_key/get`'s answer for plaid-vcr's own key id, or `None` for any
    /// other (those replay from the cassette like every request).
    pub fn key_answer(&self, raw_body: &[u8]) -> Option<Bytes> {
        let body: Value = serde_json::from_slice(raw_body).ok()?;
        if body.get("key_id").and_then(Value::as_str) != Some(self.signer.kid()) {
            return None;
        }
        let answer = json!({"key": self.signer.jwk(), "request_id": crate::plaid_error::request_id()});
        let mut bytes = serde_json::to_vec_pretty(&answer).expect("a serde_json::Value always serializes to a Vec");
        bytes.push(b'\n');
        Some(Bytes::from(bytes))
    }

    /// Notes the webhook URL a request of `session` answered as `used` registered (raw, from
    /// the client's bytes; never stored), and returns the webhooks to deliver after that
    /// answer, to the URLs that session registered, counted in `counts` too.
    pub fn answered(
        &self,
        session: Option<&str>,
        counts: Option<Arc<Counts>>,
        used: &str,
        raw_body: &[u8],
    ) -> Option<Batch> {
        let mut registered = self.registered.lock().unwrap_or_else(PoisonError::into_inner);
        let session = session.map(str::to_owned);
        if let Some(url) = webhook::registered_url_in(raw_body) {
            registered
                .by_request
                .insert((session.clone(), used.to_owned()), url.clone());
            registered.latest.insert(session.clone(), url);
        }
        let webhooks = self.by_interaction.get(used)?;
        let webhooks = webhooks
            .iter()
            .map(|w| match self.shift_to {
                Some(today) => shifted(w, today),
                None => w.clone(),
            })
            .map(|w| {
                let target = self.target.clone().or_else(|| {
                    w.registered_by
                        .as_ref()
                        .and_then(|r| registered.by_request.get(&(session.clone(), r.clone())).cloned())
                        .or_else(|| registered.latest.get(&session).cloned())
                });
                (w, target)
            })
            .collect();
        Some(Batch { webhooks, counts })
    }

    /// Queues `batch` for delivery once `sent` completes (the answer is on its way).
    pub fn enqueue(self: &Arc<Self>, batch: Batch, sent: oneshot::Receiver<()>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*queue, Queue::Idle) {
            let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
            let this = self.clone();
            let worker = tokio::spawn(async move {
                while let Some(job) = rx.recv().await {
                    // An error only means the body was dropped without a sender: sent or gone.
                    let _ = job.sent.await;
                    let counts = job.batch.counts.as_deref();
                    for (webhook, target) in &job.batch.webhooks {
                        this.deliver(webhook, target.as_deref(), counts).await;
                    }
                }
            });
            *queue = Queue::Running { jobs, worker };
        }
        match &*queue {
            Queue::Running { jobs, .. } => {
                // The worker only stops once the sender is dropped in `finish`.
                let _ = jobs.send(Job { batch, sent });
            }
            Queue::Idle | Queue::Closed => {
                tracing::warn!("a webhook delivery was asked for after shutdown began; not delivered");
            }
        }
    }

    async fn deliver(&self, webhook: &Recorded, target: Option<&str>, session: Option<&Counts>) {
        let Some(target) = target else {
            if !self.warned_nowhere.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "recorded webhooks have nowhere to go: the app registered no webhook URL in this session; \
                     pass --webhook-target URL"
                );
            }
            return;
        };
        let (outcome, attempts) = self.send_signed(target, &webhook.body).await;
        let file = webhook.file.display();
        match outcome {
            Ok(status) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(session) = session {
                    session.delivered.fetch_add(1, Ordering::Relaxed);
                }
                self.delivered_files
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(webhook.file.clone());
                tracing::info!(webhook = %webhook.label, %file, status = status.as_u16(), "webhook delivered");
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Some(session) = session {
                    session.failed.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(webhook = %webhook.label, %file, attempts, %error, "webhook delivery failed");
            }
        }
    }

    /// Signs `body` as Plaid does and POSTs it to `target`, retrying a refusal, a non-2xx
    /// answer or a timeout (see [`BACKOFF`]); the app's status, or why it failed, and how many
    /// attempts it took.
    async fn send_signed(&self, target: &str, body: &Bytes) -> (Result<http::StatusCode, String>, usize) {
        let mut attempt = 0;
        let outcome = loop {
            let result = match self.signer.sign(body) {
                Ok(jwt) => {
                    let mut headers = HeaderMap::new();
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    match HeaderValue::from_str(&jwt) {
                        Ok(v) => {
                            headers.insert("plaid-verification", v);
                        }
                        Err(e) => break Err(format!("signature is not header text: {e}")),
                    }
                    match self.poster.post(target, headers, body.clone()).await {
                        Ok(answer) if answer.status.is_success() => Ok(answer.status),
                        Ok(answer) => Err(format!("the app answered {}", answer.status)),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => break Err(e.to_string()),
            };
            match (result, BACKOFF.get(attempt)) {
                (Ok(status), _) => break Ok(status),
                (Err(_), Some(pause)) => {
                    attempt += 1;
                    tokio::time::sleep(*pause).await;
                }
                (Err(e), None) => break Err(e),
            }
        };
        (outcome, attempt + 1)
    }

    /// Sends `body` now, signed, to `url`, else the `--webhook-target`, else the URL `session`
    /// registered last (a webhook a test fired, or one a fault caused): where it went and what
    /// the app answered.
    pub async fn fire(&self, session: Option<&str>, url: Option<String>, body: Bytes) -> Result<(String, u16), String> {
        let target = url.or_else(|| self.target.clone()).or_else(|| {
            let registered = self.registered.lock().unwrap_or_else(PoisonError::into_inner);
            registered.latest.get(&session.map(str::to_owned)).cloned()
        });
        let Some(target) = target else {
            return Err("no webhook URL: this session registered none; give \"url\" or --webhook-target".into());
        };
        let (outcome, _) = self.send_signed(&target, &body).await;
        outcome.map(|status| (target, status.as_u16()))
    }

    /// Stops taking deliveries and waits up to `timeout` for the queued ones to finish.
    pub async fn finish(&self, timeout: Duration) {
        let queue = std::mem::replace(
            &mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner),
            Queue::Closed,
        );
        if let Queue::Running { jobs, worker } = queue {
            drop(jobs);
            let abort = worker.abort_handle();
            if tokio::time::timeout(timeout, worker).await.is_err() {
                abort.abort();
                tracing::warn!(timeout = ?timeout, "webhook deliveries did not finish in time; abandoned");
            }
        }
    }

    /// Delivered, failed and never-delivered webhooks so far.
    pub fn counts(&self) -> DeliveryCounts {
        let delivered_files = self.delivered_files.lock().unwrap_or_else(PoisonError::into_inner);
        DeliveryCounts {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            undelivered: self
                .files
                .iter()
                .filter(|f| !delivered_files.contains(*f))
                .map(|f| f.display().to_string())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_webhook_moves_its_dates_by_the_days_since_it_was_recorded() {
        let webhook = Arc::new(Recorded {
            file: PathBuf::from("webhooks/x.json"),
            registered_by: None,
            body: Bytes::from_static(
                br#"{"consent_expiration_time":"2025-04-01T10:00:00Z","item_id":"i","webhook_code":"PENDING_EXPIRATION","webhook_type":"ITEM"}"#,
            ),
            label: "ITEM PENDING_EXPIRATION".into(),
            recorded_at: "2025-03-01T09:00:00Z".into(),
        });
        let day = |s| crate::dates::parse_day(s).unwrap();
        let moved = shifted(&webhook, day("2026-03-01"));
        assert_eq!(
            &moved.body[..],
            br#"{"consent_expiration_time":"2026-04-01T10:00:00Z","item_id":"i","webhook_code":"PENDING_EXPIRATION","webhook_type":"ITEM"}"#,
            "365 days later, the time of day kept, the delivered form kept"
        );
        assert_eq!(moved.file, webhook.file);
        let same_day = shifted(&webhook, day("2025-03-01"));
        assert!(Arc::ptr_eq(&same_day, &webhook), "recorded today: sent as recorded");
    }
}
