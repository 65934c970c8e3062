//! Building a [`Proxy`] for a mode: directories, the cassette lock, the upstream client, the
//! store and its sync with the cassette, the redaction secret, the writer, the webhook side
//! (the receiver when recording, the recorded webhooks and a signing key when replaying), and
//! the warnings a start owes the user (`--no-redact`, stale recordings). The server calls
//! [`open`]; nothing here serves a request.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::contract::Contract;
use crate::error::Error;
use crate::privacy::redact::{self, Redactor};
use crate::privacy::rules;
use crate::serve::mode::{Mode, Recorder, Serving};
use crate::serve::proxy::Webhooks;
use crate::serve::proxy::{Checking, Proxy};
use crate::store::cassette::{Cassette, CassetteError};
use crate::store::db::Store;
use crate::store::writer::Writer;
use crate::upstream::{Poster, Upstream};
use crate::webhooks::delivery::Deliveries;
use crate::webhooks::receiver::Receiver;
use crate::webhooks::signer::Signer;

/// Opens everything `mode` needs. Replay requires the cassette directory to exist and never
/// builds an upstream client; the recording modes create the directory, lock it, sweep what an
/// interrupted recording left, and start the writer.
pub fn open(config: &Config, mode: Mode) -> Result<Proxy, Error> {
    // First: a `--spec` that cannot be read stops the start before anything is locked or logged.
    let checking = checking(config, mode)?;
    let cassette = Cassette::new(&config.cassette);
    // What recording needs, built together: a recording mode without both cannot be expressed.
    let recording = match mode {
        Mode::Replay => {
            cassette.require_exists()?;
            None
        }
        Mode::Record | Mode::ReplayRecordMissing => {
            std::fs::create_dir_all(cassette.root()).map_err(|source| CassetteError::Write {
                path: cassette.root().to_owned(),
                source,
            })?;
            let lock = cassette.lock()?;
            let leftovers = cassette.remove_leftovers()?;
            if leftovers > 0 {
                tracing::info!(
                    leftovers,
                    "removed temp files an interrupted recording left in the cassette"
                );
            }
            let upstream = Upstream::new(
                &config.upstream,
                config.upstream_ca.as_deref(),
                config.connect_timeout,
                config.response_timeout,
            )?;
            Some((upstream, lock))
        }
    };
    let store = Arc::new(Store::open(&config.store, cassette.root())?);
    // Recordings acknowledged just before a crash whose files may not have reached the disk.
    let completed = store.complete_journal(&cassette)?;
    if completed > 0 {
        tracing::info!(
            files = completed,
            "wrote out cassette files recorded just before plaid-vcr last stopped (kept in the store's journal)"
        );
    }
    let redactor = redactor(config, &cassette)?;
    let report = store.sync_cassette(&cassette)?;
    tracing::info!(
        cassette = %cassette.root().display(),
        interactions = store.len(),
        files = report.files,
        parsed = report.loaded,
        removed = report.removed,
        "cassette loaded"
    );
    warn_if_stale(config, &store)?;
    let serving = match recording {
        None => Serving::Replay,
        Some((upstream, lock)) => {
            let writer = Writer::start(cassette.clone(), store.clone())?;
            let recorder = Arc::new(Recorder::new(upstream, writer, lock));
            if mode == Mode::Record {
                Serving::Record(recorder)
            } else {
                Serving::RecordMissing(recorder)
            }
        }
    };
    let webhooks = webhooks(config, mode, &cassette)?;
    // Said once the start has succeeded: a failed start is one line on stderr.
    if let Some(checking) = &checking {
        tracing::info!(
            spec = checking.contract.version(),
            "checking traffic against Plaid's spec"
        );
    }
    Ok(Proxy::new(serving, cassette, store, redactor, config.clone())
        .with_webhooks(webhooks)
        .with_checking(checking))
}

/// The live check against Plaid's spec: on while recording unless `validate = false`, on for
/// replayed answers too with `validate = true` (`--validate`); the spec `--spec` names, else
/// the one built in.
fn checking(config: &Config, mode: Mode) -> Result<Option<Checking>, Error> {
    let on = config.validate.unwrap_or(mode != Mode::Replay);
    if !on {
        return Ok(None);
    }
    let contract = match &config.spec {
        Some(path) => Contract::from_file(path)?,
        None => Contract::builtin(),
    };
    Ok(Some(Checking {
        contract: Arc::new(contract),
        hits: config.validate == Some(true),
    }))
}

/// The webhook side of `mode`: the receiver when recording with `--webhook-public-url`, the
/// recorded webhooks and a fresh signing key when replaying.
fn webhooks(config: &Config, mode: Mode, cassette: &Cassette) -> Result<Webhooks, Error> {
    // Reaching the app's webhook URL: a plain client with its own, shorter timeouts (an app
    // that does not answer in 10 s will not), trusting the same extra CA as upstream.
    let poster = || {
        Poster::new(
            config.upstream_ca.as_deref(),
            config.connect_timeout.min(Duration::from_secs(5)),
            Duration::from_secs(10),
        )
    };
    let receiver = match (mode, &config.webhook_public_url) {
        (Mode::Record | Mode::ReplayRecordMissing, Some(url)) => {
            tracing::info!("recording webhooks: webhook URLs in requests are rewritten to this receiver");
            Some(Receiver::new(url, poster()?, cassette.root().to_owned()))
        }
        _ => None,
    };
    let deliveries = match mode {
        Mode::Record => None,
        Mode::Replay | Mode::ReplayRecordMissing => {
            let mut deliveries = Deliveries::load(
                cassette.root(),
                Signer::generate()?,
                poster()?,
                config.webhook_target.clone(),
            )?;
            if config.shift_dates {
                deliveries = deliveries.shifting_dates_to(config.shift_day());
            }
            if deliveries.any() {
                tracing::info!(kid = deliveries.kid(), "replaying webhooks, signed with this key id");
            }
            Some(Arc::new(deliveries))
        }
    };
    Ok(Webhooks { receiver, deliveries })
}

fn redactor(config: &Config, cassette: &Cassette) -> Result<Redactor, Error> {
    if config.no_redact {
        tracing::warn!(
            "--no-redact: tokens and personal data will be written to {} as received; do not commit these files \
             (plaid-vcr scan reports them, plaid-vcr redact fixes them)",
            cassette.root().display()
        );
        return Ok(Redactor::raw());
    }
    Ok(Redactor::new(
        rules::compile(&config.redact.rules)?,
        config.redact.request_pii,
        &redact::load_secret(&config.store)?,
    ))
}

fn warn_if_stale(config: &Config, store: &Store) -> Result<(), Error> {
    let Some(max_age) = config.max_age else { return Ok(()) };
    let recordings = store.recorded()?;
    let stale = crate::serve::summary::stale(&recordings, Some(max_age), SystemTime::now());
    if let Some(oldest) = stale.iter().map(|r| r.recorded_at.as_str()).min() {
        tracing::warn!(
            stale = stale.len(),
            oldest,
            max_age = %humantime::format_duration(max_age),
            "recordings are older than max_age; re-record them into a new directory and compare with \
             plaid-vcr diff OLD NEW (replay --strict fails on this)"
        );
    }
    Ok(())
}
