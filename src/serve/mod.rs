//! Serving: a client's request from the socket to its answer.
//!
//! Owns the listener and its connections ([`server`], [`connections`]), the per-request
//! pipeline ([`request`] → [`proxy`] → [`outcome`]), the exact replay [`cache`], the [`mode`]s
//! and what a running proxy is built from ([`startup`]), the named [`session`]s many tests share
//! one proxy with, and the run's [`summary`] (and its [`junit`] form), with the contract [`violations`] it met.
//!
//! May use every folder below it: `webhooks/` (receiving and delivering), `store/` (finding and
//! writing recordings), `privacy/` (redacting before anything is keyed or stored), `contract/` (checking
//! traffic against Plaid's spec), and the
//! shared `config`, `error`, `upstream` and `body`. Never writes a file itself (every write goes
//! through `store/`), and never logs a body, a credential or a token.

pub mod cache;
pub mod connections;
pub mod junit;
pub mod mode;
pub mod outcome;
pub mod proxy;
pub mod request;
pub mod server;
pub mod session;
pub mod startup;
pub mod summary;
pub mod violations;
