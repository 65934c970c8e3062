//! plaid-vcr: a recording/replaying proxy in front of the Plaid API.
//!
//! A Plaid client pointed at `http://127.0.0.1:8080/plaid-compatible` talks to a [`Server`].
//! In [`Mode::Record`] each request is forwarded to Plaid over TLS and the answer is stored,
//! redacted, in a sled store and as one JSON file per interaction in a cassette directory; in
//! [`Mode::Replay`] the same requests are answered from the cassette without any network.
//!
//! The library is the whole product; the `plaid-vcr` binary only parses arguments, starts a
//! [`Server`] or runs one of the [`commands`], and maps errors to exit codes.
//!
//! Where things live, in the order a request meets them (each folder's header says what it
//! owns and what it may use; a folder only uses the ones below it):
//! - `serve/`: the listener, connections and the per-request pipeline, dispatched on the [`Mode`];
//! - `webhooks/`: webhooks received while recording and delivered while replaying, beside the
//!   request path;
//! - `store/`: the cassette files, the sled working store, the matching key, the miss explanation;
//! - `privacy/`: what may be keyed or written: redaction rules, pseudonyms, `scan`'s verdict;
//! - [`commands`]: what reads or rewrites a cassette without serving it (`ls`, `check`, `scan`,
//!   `redact`, `diff`, `sandbox-token`);
//! - beside them: [`config`], the [`Error`] of a command, the Plaid-shaped errors a client gets,
//!   the upstream TLS client, and the binary's [`log`] format.
//!
//! Rust tests can replay a cassette in-process, the way `httpmock` or `wiremock` are used:
//! start a [`ReplayServer`] on a free port, point the code under test at its base URL, and
//! drop it (or [`ReplayServer::stop`] it to read the session summary).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let server = plaid_vcr::ReplayServer::start("cassettes/demo").await.unwrap();
//! assert!(server.base_url().starts_with("http://127.0.0.1:"));
//!
//! // Any HTTP client works; here a raw request, as a Plaid client would send it.
//! let body = r#"{"access_token":"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"}"#;
//! let request = format!(
//!     "POST /plaid-compatible/identity/get HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
//!      PLAID-CLIENT-ID: id\r\nPLAID-SECRET: secret\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
//!     body.len()
//! );
//! let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
//! stream.write_all(request.as_bytes()).await.unwrap();
//! let mut response = String::new();
//! stream.read_to_string(&mut response).await.unwrap();
//! assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
//! assert!(response.contains("\"accounts\""));
//!
//! let summary = server.stop().await.unwrap();
//! assert_eq!((summary.hits, summary.misses.len()), (1, 0));
//! # });
//! ```

mod body;
pub mod commands;
pub mod config;
mod contract;
mod dates;
mod error;
mod faults;
pub mod log;
mod plaid_error;
mod privacy;
mod serve;
mod store;
pub mod testing;
mod upstream;
mod webhooks;

pub use config::Config;
pub use error::Error;
pub use serve::mode::Mode;
pub use serve::server::{ReplayServer, RunningServer, Server};
pub use serve::summary::Summary;
pub use store::cassette::{Cassette, CassetteError};
pub use store::interaction::Interaction;
