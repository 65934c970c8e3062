//! Building a [`Proxy`] for a mode: directories, the cassette lock, the upstream client, the
//! store and its sync with the cassette, the redaction secret, the writer, and the warnings a
//! start owes the user (`--no-redact`, stale recordings). The server calls [`open`]; nothing
//! here serves a request.

use std::sync::Arc;
use std::time::SystemTime;

use crate::cassette::{Cassette, CassetteError};
use crate::config::Config;
use crate::error::Error;
use crate::mode::{Mode, Recorder, Serving};
use crate::proxy::Proxy;
use crate::redact::{self, Redactor};
use crate::rules;
use crate::store::Store;
use crate::upstream::Upstream;
use crate::writer::Writer;

/// Opens everything `mode` needs. Replay requires the cassette directory to exist and never
/// builds an upstream client; the recording modes create the directory, lock it, sweep what an
/// interrupted recording left, and start the writer.
pub fn open(config: &Config, mode: Mode) -> Result<Proxy, Error> {
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
    Ok(Proxy::new(serving, cassette, store, redactor, config.clone()))
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
    let stale = crate::session::stale(&recordings, Some(max_age), SystemTime::now());
    if let Some(oldest) = stale.iter().map(|r| r.recorded_at.as_str()).min() {
        tracing::warn!(
            stale = stale.len(),
            oldest,
            max_age = %humantime::format_duration(max_age),
            "recordings are older than max_age; re-record them (replay --strict fails on this)"
        );
    }
    Ok(())
}
