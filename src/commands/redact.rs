//! `plaid-vcr redact DIR`: brings a cassette written before a rule existed (or with
//! `--no-redact`) up to today's rules, in place. Every interaction and webhook file goes
//! through the same [`Redactor`] recording uses; files whose request changed are re-keyed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use super::Output;
use crate::config::Config;
use crate::error::Error;
use crate::privacy::redact;
use crate::privacy::rules;

use crate::privacy::redact::Redactor;
use crate::privacy::rules::{Side, WEBHOOK_ENDPOINT};
use crate::store::cassette::{Cassette, CassetteError, Rewrite};
use crate::webhooks::webhook;

/// Redacts every interaction and webhook file of `cassette` in place (`plaid-vcr redact`):
/// interactions are re-keyed as their requests change, and the webhook files that follow them
/// are renamed with them. Returns the files that changed.
pub fn redact_cassette(cassette: &Cassette, redactor: &Redactor) -> Result<Vec<Rewrite>, CassetteError> {
    let mut rewrites = cassette.rewrite(|i| {
        redactor.redact_stored(
            &i.endpoint,
            &mut i.request.body,
            &mut i.response.body,
            &mut i.unredacted,
        )
    })?;
    let rekeyed: HashMap<String, String> = rewrites.iter().filter_map(|r| r.rekeyed.clone()).collect();
    let webhooks = webhook::rewrite_files(cassette.root(), |w| {
        let mut changed = redactor.redact(WEBHOOK_ENDPOINT, Side::Response, &mut w.webhook.body);
        for link in [&mut w.after, &mut w.registered_by] {
            if let Some(new) = link.as_ref().and_then(|old| rekeyed.get(old)) {
                *link = Some(new.clone());
                changed += 1;
            }
        }
        if !redactor.is_raw() && w.unredacted {
            w.unredacted = false;
            changed += 1;
        }
        changed
    })?;
    rewrites.extend(webhooks);
    Ok(rewrites)
}

/// `plaid-vcr redact DIR`: the config's rules, the store's redaction secret; one line per
/// file that changed, then a count.
pub fn run(dir: &Path, config: &Config) -> Result<Output, Error> {
    let cassette = Cassette::new(dir);
    cassette.require_exists()?;
    let redactor = Redactor::new(
        rules::compile(&config.redact.rules)?,
        config.redact.request_pii,
        &redact::load_secret(&config.store)?,
    );
    let rewrites = redact_cassette(&cassette, &redactor)?;
    let mut out = String::new();
    for r in &rewrites {
        let (from, changed) = (dir.join(&r.from), r.changed);
        if r.from == r.to {
            let _ = writeln!(out, "redacted {} ({changed} values)", from.display());
        } else {
            let to = dir.join(&r.to);
            let _ = writeln!(
                out,
                "redacted {} -> {} ({changed} values, key changed)",
                from.display(),
                to.display()
            );
        }
    }
    let total = cassette.list()?.len() + webhook::list(dir)?.len();
    let _ = writeln!(out, "{} of {total} files changed in {}", rewrites.len(), dir.display());
    Ok(Output::done(out))
}
