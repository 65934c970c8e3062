//! The failure of a whole command ([`Error`]), which the command line maps to an exit code.
//!
//! Each inner boundary (config, store, cassette, upstream, rules, signer) has its own enum in
//! its own module; this file only gathers them. What an HTTP client is answered with is
//! [`crate::plaid_error`]'s.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::privacy::redact::RedactError;
use crate::privacy::rules::RuleError;
use crate::store::cassette::CassetteError;
use crate::store::db::StoreError;
use crate::upstream::UpstreamError;

/// A failure of a whole command, mapped to an exit code by `main`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Redact(#[from] RedactError),
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error(transparent)]
    Contract(#[from] crate::contract::ContractError),
    #[error(transparent)]
    Signer(#[from] crate::webhooks::signer::SignerError),
    #[error("cannot reach plaid-vcr at {url}: {reason}; start it (plaid-vcr replay) or pass --vcr URL")]
    Unreachable { url: String, reason: String },
    #[error("{message}")]
    Usage { message: String },
    #[error("cannot listen on {addr}: {source}; pass --listen 127.0.0.1:0 to pick a free port")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// An I/O failure, saying what was being done and, where there is one, to which path.
    #[error("cannot {doing}{}: {source}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Io {
        doing: &'static str,
        path: Option<PathBuf>,
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error: 2 for usage, configuration and I/O problems.
    ///
    /// Exit code 1 is reserved for a command whose answer is "no" (leaks found, strict misses),
    /// which is not an error and never passes through here.
    pub fn exit_code(&self) -> u8 {
        2
    }

    /// A mapper for `map_err`: an I/O failure while `doing` something (to `path`, if any).
    pub fn io(doing: &'static str, path: Option<&std::path::Path>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.map(std::path::Path::to_owned);
        move |source| Error::Io { doing, path, source }
    }
}
