//! Webhooks: what Plaid sends the app, beside the request path rather than through it.
//!
//! Owns the [`webhook`] file format in a cassette (`webhooks/`) and the webhook URL fields of
//! requests, the [`receiver`] that takes Plaid's webhooks while recording, the [`delivery`] of
//! recorded webhooks while replaying, the [`signer`] that signs them as Plaid does, and the
//! [`known`] webhooks of Plaid's spec a test can fire on demand.
//!
//! Uses `store/` (cassette files, keys), `privacy/` (a webhook is redacted like an answer), and
//! the shared `upstream` client and `body`. Never used by `store/` or `privacy/`; the proxy in
//! `serve/` tells it when an answer went out.

pub mod delivery;
pub mod known;
pub mod receiver;
pub mod signer;
pub mod webhook;
