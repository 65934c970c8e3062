//! plaid-vcr: a recording/replaying proxy in front of the Plaid API.
//!
//! A Plaid client pointed at `http://127.0.0.1:8080/plaid-compatible` talks to a [`Server`].
//! In [`Mode::Record`] each request is forwarded to Plaid over TLS and the answer is stored,
//! redacted, in a sled store and as one JSON file per interaction in a cassette directory; in
//! [`Mode::Replay`] the same requests are answered from the cassette without any network.
//!
//! The library is the whole product; the `plaid-vcr` binary only parses arguments, starts a
//! [`Server`] and maps errors to exit codes. Tests drive the library directly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), plaid_vcr::Error> {
//! use plaid_vcr::{Config, Mode, Server};
//! let config = Config {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     cassette: "cassettes/demo".into(),
//!     ..Config::default()
//! };
//! let server = Server::bind(&config, Mode::Replay).await?.spawn();
//! println!("point your Plaid client at {}", server.base_url());
//! server.stop().await?;
//! # Ok(()) }
//! ```

pub mod cassette;
pub mod cli;
pub mod config;
pub mod detect;
pub mod diff;
pub mod error;
pub mod interaction;
pub mod key;
pub mod proxy;
pub mod pseudonym;
pub mod redact;
pub mod scan;
pub mod server;
pub mod session;
pub mod store;
pub mod upstream;

pub use config::Config;
pub use error::Error;
pub use proxy::Mode;
pub use server::{RunningServer, Server};
