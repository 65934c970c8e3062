//! `sandbox-token`: get a sandbox access token through plaid-vcr in one command.
//!
//! Starts a record-mode proxy in-process on a free loopback port and sends Plaid's sandbox flow
//! through it, `/sandbox/public_token/create` then `/item/public_token/exchange`, with the
//! credentials plaid-vcr was given (`PLAID_CLIENT_ID`/`PLAID_SECRET`). Both interactions land in
//! the cassette, redacted like any other recording. The raw token is returned to the caller
//! only, never stored or logged.

use serde_json::{json, Value};

use crate::config::{Config, Secret};
use crate::error::Error;
use crate::privacy::pseudonym::{Kind, Pseudonymizer};
use crate::serve::mode::Mode;
use crate::serve::server::Server;

/// A problem running the sandbox flow.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox-token needs Plaid credentials: set PLAID_CLIENT_ID and PLAID_SECRET (your sandbox keys)")]
    NoCredentials,
    #[error("{endpoint} failed: HTTP {status} {code}: {message}")]
    Plaid {
        endpoint: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{endpoint} failed: {reason}")]
    Transport { endpoint: &'static str, reason: String },
    #[error("{endpoint} answered without a {field}; check that --upstream points at Plaid's sandbox")]
    NoToken {
        endpoint: &'static str,
        field: &'static str,
    },
    /// Starting or stopping the in-process proxy failed.
    #[error(transparent)]
    Proxy(#[from] Error),
}

impl SandboxError {
    /// The process exit code: 2, like every error (see [`Error::exit_code`]).
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// What the flow produced.
#[derive(Debug)]
pub struct SandboxToken {
    /// The real access token: what Plaid accepts. Show it to the user, never store it.
    pub access_token: Secret,
    /// Its pseudonym: what the cassette holds, and what replay hands out.
    pub pseudonym: String,
}

/// Runs create → exchange for `institution` with `products` through a record-mode proxy.
pub async fn sandbox_token(
    config: &Config,
    institution: &str,
    products: &[String],
) -> Result<SandboxToken, SandboxError> {
    if config.client_id.is_none() || config.secret.is_none() {
        return Err(SandboxError::NoCredentials);
    }
    let mut config = config.clone();
    config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::bind(&config, Mode::Record).await?.spawn();
    let base = server.base_url();
    let flow = async {
        let create = json!({"institution_id": institution, "initial_products": products});
        let created = post(&base, "sandbox/public_token/create", &create).await?;
        let public_token = token_in(&created, "sandbox/public_token/create", "public_token")?;
        let exchanged = post(
            &base,
            "item/public_token/exchange",
            &json!({ "public_token": public_token }),
        )
        .await?;
        let access_token = token_in(&exchanged, "item/public_token/exchange", "access_token")?;
        Ok::<_, SandboxError>(access_token)
    };
    let result = flow.await;
    server.stop().await?;
    let access_token = result?;
    // Token pseudonyms are unkeyed, so any key gives the one the cassette holds.
    let pseudonym = Pseudonymizer::new(b"").pseudonymize(Kind::Token, &access_token);
    Ok(SandboxToken {
        access_token: Secret::new(access_token),
        pseudonym,
    })
}

/// The non-empty string `field` of an answer; an empty token printed as if it worked would
/// send the user off recording with nothing.
fn token_in(answer: &Value, endpoint: &'static str, field: &'static str) -> Result<String, SandboxError> {
    match answer.get(field).and_then(Value::as_str) {
        Some(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err(SandboxError::NoToken { endpoint, field }),
    }
}

/// POSTs `body` without credentials (the proxy adds the configured ones) and returns the JSON
/// answer, or Plaid's error.
async fn post(base: &str, endpoint: &'static str, body: &Value) -> Result<Value, SandboxError> {
    let (status, value) = super::post_json(&format!("{base}/{endpoint}"), body)
        .await
        .map_err(|reason| SandboxError::Transport { endpoint, reason })?;
    if !status.is_success() {
        let text = |k: &str| value[k].as_str().unwrap_or("").to_owned();
        return Err(SandboxError::Plaid {
            endpoint,
            status: status.as_u16(),
            code: text("error_code"),
            message: text("error_message"),
        });
    }
    Ok(value)
}
/// What `sandbox-token` prints: the real token (shown here only), its stored pseudonym, and
/// how to record with it.
pub fn render(token: &SandboxToken, config: &Config) -> String {
    use std::fmt::Write as _;
    let (real, cassette) = (token.access_token.expose(), config.cassette.display());
    let mut out = String::new();
    let _ = writeln!(out, "access token:          {real}");
    let _ = writeln!(out, "as stored (pseudonym): {}", token.pseudonym);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "The real token is shown here only: plaid-vcr never stores or logs it. Record with it:"
    );
    let _ = writeln!(out, "  plaid-vcr record --cassette {cassette} &");
    let _ = writeln!(
        out,
        "  curl -X POST http://{}/plaid-compatible/identity/get -H 'Content-Type: application/json' \\",
        config.listen
    );
    let _ = writeln!(out, "       -d '{{\"access_token\": \"{real}\"}}'");
    let _ = writeln!(
        out,
        "When replaying, tests may send either the real token or the pseudonym."
    );
    out
}
