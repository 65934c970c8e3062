//! The command line: clap types only, no behaviour.
//!
//! Every serving option is `Option` here so that [`plaid_vcr::config`] can tell "not given" from a
//! value and layer flags > `PLAID_VCR_*` environment (read by clap) > config file > defaults.
//! Each argument struct turns into the library's [`Layer`]; the library never sees clap types.
// The doc comments here are `--help` text: `[redact]` names a config section, and URLs are
// printed as they are; neither is a rustdoc link.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::bare_urls)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Args, Parser, Subcommand};

use plaid_vcr::config::Layer;
pub use plaid_vcr::config::SequenceEnd;

/// Record the Plaid API over TLS, replay it offline byte for byte.
///
/// Point your Plaid client at http://127.0.0.1:8080/plaid-compatible instead of
/// https://sandbox.plaid.com. `record` forwards every request to Plaid and writes the answers
/// into a cassette directory you commit; `replay` answers from that cassette without any network.
#[derive(Debug, Parser)]
#[command(name = "plaid-vcr", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Forward every request upstream and record each 2xx/4xx answer (overwriting earlier ones)
    Record(RecordArgs),
    /// Answer from the cassette only, never opening a connection; unrecorded requests get an error
    Replay(ReplayArgs),
    /// Redact an existing cassette directory in place (atomic per file, idempotent)
    Redact(RedactArgs),
    /// Look for leaks in cassette files: exit 0 clean, 1 findings, 2 error
    Scan(ScanArgs),
    /// List a cassette's interactions: endpoint, key, step, status, recorded at, size
    Ls(LsArgs),
    /// Validate a cassette for CI (parses, keys, duplicates, orphans, leaks): exit 0, 1 or 2
    Check(CheckArgs),
    /// Check recorded requests, answers and webhooks against Plaid's OpenAPI spec: exit 0 valid,
    /// 1 findings, 2 error
    Validate(ValidateArgs),
    /// Compare two cassettes of the same flow by response schema (did Plaid change?): exit 0
    /// nothing breaking, 1 breaking drift, 2 error
    Diff(DiffArgs),
    /// Create a sandbox item through plaid-vcr (recording the two calls) and print its access
    /// token and the pseudonym the cassette stores; uses PLAID_CLIENT_ID and PLAID_SECRET
    SandboxToken(SandboxTokenArgs),
    /// Webhooks on demand, through a running plaid-vcr (replaying)
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

/// `plaid-vcr webhook ...`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Send the app a signed webhook of Plaid's spec (its verification through
    /// /webhook_verification_key/get passes), to the URL the session registered or --to URL
    Fire(WebhookFireArgs),
}

/// Options of `webhook fire`.
#[derive(Debug, Clone, Args)]
pub struct WebhookFireArgs {
    /// The webhook type, e.g. TRANSACTIONS
    #[arg(long = "type", value_name = "TYPE")]
    pub webhook_type: String,
    /// The webhook code, e.g. SYNC_UPDATES_AVAILABLE
    #[arg(long = "code", value_name = "CODE")]
    pub webhook_code: String,
    /// The item it is about
    #[arg(long, value_name = "ID")]
    pub item_id: Option<String>,
    /// The session whose registered URL it goes to (the default session's if absent)
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
    /// A field over the spec's example, KEY=VALUE (VALUE as JSON where it is JSON); repeatable
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
    /// Send it here instead of the URL the session registered
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// plaid-vcr's address
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080",
        env = "PLAID_VCR_URL"
    )]
    pub vcr: String,
}

/// Options of `sandbox-token`.
#[derive(Debug, Clone, Args)]
pub struct SandboxTokenArgs {
    /// Sandbox institution (ins_109508 is First Platypus Bank)
    #[arg(long, value_name = "ID", default_value = "ins_109508")]
    pub institution: String,

    /// Products to initialize the item with, comma-separated
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "identity,auth")]
    pub products: Vec<String>,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// The options every command that talks to Plaid has: where to record, where Plaid is, the
/// store and config, logging, and the upstream timeouts.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Cassette directory to record into / replay from [default: cassettes/default]
    #[arg(long, value_name = "DIR", env = "PLAID_VCR_CASSETTE")]
    pub cassette: Option<PathBuf>,

    /// Plaid base URL requests are forwarded to when recording [default: https://sandbox.plaid.com]
    #[arg(long, value_name = "URL", env = "PLAID_VCR_UPSTREAM")]
    pub upstream: Option<String>,

    /// PEM file with extra CA certificates to trust for upstream (a private CA or test proxy)
    #[arg(long, value_name = "PEM", env = "PLAID_VCR_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,

    /// Working store directory (sled database, lock, redaction secret), never committed [default: .plaid-vcr]
    #[arg(long, value_name = "DIR", env = "PLAID_VCR_STORE")]
    pub store: Option<PathBuf>,

    /// Config file [default: ./plaid-vcr.toml if it exists]
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log level for plaid-vcr's own logs (error, warn, info, debug, trace); overrides RUST_LOG
    /// [default: info]
    #[arg(long, value_name = "LEVEL", env = "PLAID_VCR_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Time allowed for the TCP connect to upstream when recording, e.g. 10s [default: 10s]
    #[arg(long, value_name = "DURATION", env = "PLAID_VCR_CONNECT_TIMEOUT", value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// Time allowed for each whole upstream exchange when recording (connect, TLS, answer),
    /// e.g. 60s [default: 60s]
    #[arg(long, value_name = "DURATION", env = "PLAID_VCR_RESPONSE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub response_timeout: Option<Duration>,
}

impl CommonArgs {
    /// The settings these flags give.
    pub fn layer(&self) -> Layer {
        Layer {
            cassette: self.cassette.clone(),
            upstream: self.upstream.clone(),
            upstream_ca: self.upstream_ca.clone(),
            store: self.store.clone(),
            config: self.config.clone(),
            log_level: self.log_level.clone(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            ..Layer::default()
        }
    }
}

/// Options of `diff`.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The older cassette directory
    #[arg(value_name = "OLD_DIR")]
    pub old: PathBuf,

    /// The newer cassette directory, recorded by the same flow
    #[arg(value_name = "NEW_DIR")]
    pub new: PathBuf,

    /// Output format: text grouped by endpoint, or one JSON object listing every change
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Options of `ls`.
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Cassette directory to list
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// List one session's recordings only (those under DIR/sessions/NAME/)
    #[arg(long, value_name = "NAME")]
    pub session: Option<String>,
}

/// Options of `redact`.
#[derive(Debug, Clone, Args)]
pub struct RedactArgs {
    /// Cassette directory to redact
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Store directory whose redact.key (the redaction secret) keys personal-data pseudonyms,
    /// unless PLAID_VCR_REDACT_KEY is set [default: .plaid-vcr]
    #[arg(long, value_name = "DIR", env = "PLAID_VCR_STORE")]
    pub store: Option<PathBuf>,

    /// Config file with [redact] rules [default: ./plaid-vcr.toml if it exists]
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Output format of `scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// Lines for people, then a summary line
    #[default]
    Text,
    /// One JSON object, for tools
    Json,
}

impl Format {
    /// Whether the command should answer in JSON.
    pub fn is_json(self) -> bool {
        self == Format::Json
    }
}

/// Options of `scan`.
#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Cassette directory to scan
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Config file with [redact] rules and the [scan] allowlist [default: ./plaid-vcr.toml if it exists]
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Options of `validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Cassette directories to validate [default: the configured cassette, cassettes/default]
    #[arg(value_name = "CASSETTE")]
    pub dirs: Vec<PathBuf>,

    /// A plaid-openapi spec file (YAML or JSON) instead of the one built in (2020-09-14_1.697.4)
    /// [default: the config's `spec`]
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_SPEC")]
    pub spec: Option<PathBuf>,

    /// Output format: text lines, or one JSON object with every finding
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Config file naming the cassette and the spec [default: ./plaid-vcr.toml if it exists]
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Options of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Cassette directory to check
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Output format: text lines, or one JSON object with files and problems
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Config file with [redact] rules and the [scan] allowlist [default: ./plaid-vcr.toml if it exists]
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Options shared by `record` and `replay`. Defaults are listed in config.example.toml.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", env = "PLAID_VCR_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Largest request body accepted, in bytes [default: 1048576]
    #[arg(long, value_name = "BYTES", env = "PLAID_VCR_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Store tokens and personal data as received, for debugging only: warns at start and
    /// marks every file it writes ("unredacted": true), which `scan` reports
    #[arg(long, env = "PLAID_VCR_NO_REDACT", value_parser = FalseyValueParser::new())]
    pub no_redact: bool,

    /// Record the n-th identical request as its own step and replay the steps in order
    /// (polling flows); without it each request has one answer
    #[arg(long, env = "PLAID_VCR_SEQUENCES", value_parser = FalseyValueParser::new())]
    pub sequences: bool,

    /// Replay: move every date of an answer by the days between its recording and --today, by
    /// Plaid's schema (dates of birth and other facts about the past stay); a request whose
    /// dates are relative to today still matches. A Plaid-VCR-Today header does this per request
    #[arg(long, env = "PLAID_VCR_SHIFT_DATES", value_parser = FalseyValueParser::new())]
    pub shift_dates: bool,

    /// With --shift-dates, the day to shift to, YYYY-MM-DD [default: today, UTC]
    #[arg(long, value_name = "YYYY-MM-DD", env = "PLAID_VCR_TODAY", value_parser = parse_today)]
    pub today: Option<time::Date>,

    /// With --sequences, what replay answers after the last recorded step [default: repeat-last]
    #[arg(long, value_enum, value_name = "WHAT", env = "PLAID_VCR_SEQUENCE_EXHAUSTED")]
    pub sequence_exhausted: Option<SequenceEnd>,

    /// Warn at start about recordings older than this, e.g. 30d (replay --strict then fails)
    #[arg(long, value_name = "DURATION", env = "PLAID_VCR_MAX_AGE", value_parser = humantime::parse_duration)]
    pub max_age: Option<Duration>,

    /// At shutdown, also write the session summary as JSON to FILE
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_REPORT")]
    pub report: Option<PathBuf>,

    /// At shutdown, also write JUnit XML to FILE: a test case per session, failed by its misses
    /// (and under --strict by its unused recordings, failed webhook deliveries and requests that
    /// break Plaid's spec)
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_JUNIT")]
    pub junit: Option<PathBuf>,

    /// Time a client gets to send a request head and body, and may stay idle between requests,
    /// before its connection is closed (a late body gets 408), e.g. 30s [default: 30s]
    #[arg(long, value_name = "DURATION", env = "PLAID_VCR_CLIENT_TIMEOUT", value_parser = humantime::parse_duration)]
    pub client_timeout: Option<Duration>,

    /// Most client connections open at once; past it the longest-idle one is closed to make
    /// room [default: 1024]
    #[arg(long, value_name = "N", env = "PLAID_VCR_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Time in-flight requests get to finish after SIGINT/SIGTERM [default: 10s]
    #[arg(long, value_name = "DURATION", env = "PLAID_VCR_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Recording: the base URL at which upstream reaches plaid-vcr's webhook receiver
    /// (/plaid-vcr/webhooks/ on this listener; a tunnel for real Plaid). Webhook URLs in
    /// requests are rewritten to it and the webhooks recorded; without it they pass through
    #[arg(long, value_name = "URL", env = "PLAID_VCR_WEBHOOK_PUBLIC_URL")]
    pub webhook_public_url: Option<String>,

    /// Replay: deliver recorded webhooks to URL instead of the URL the app registered
    #[arg(long, value_name = "URL", env = "PLAID_VCR_WEBHOOK_TARGET")]
    pub webhook_target: Option<String>,

    /// Check replayed requests and answers against Plaid's spec too (recording always checks
    /// what goes to Plaid and comes back); findings go to the log, the summary and the
    /// Plaid-VCR-Violations header
    #[arg(long, env = "PLAID_VCR_VALIDATE", value_parser = FalseyValueParser::new(), conflicts_with = "no_validate")]
    pub validate: bool,

    /// Check nothing against Plaid's spec, not even while recording
    #[arg(long)]
    pub no_validate: bool,

    /// A plaid-openapi spec file (YAML or JSON) to check against instead of the one built in
    #[arg(long, value_name = "FILE", env = "PLAID_VCR_SPEC")]
    pub spec: Option<PathBuf>,
}

impl ServeArgs {
    /// The settings these flags give.
    pub fn layer(&self) -> Layer {
        Layer {
            listen: self.listen,
            max_body_bytes: self.max_body_bytes,
            shutdown_timeout: self.shutdown_timeout,
            client_timeout: self.client_timeout,
            max_connections: self.max_connections,
            no_redact: self.no_redact,
            sequences: self.sequences,
            shift_dates: self.shift_dates,
            today: self.today,
            sequence_exhausted: self.sequence_exhausted,
            max_age: self.max_age,
            webhook_public_url: self.webhook_public_url.clone(),
            webhook_target: self.webhook_target.clone(),
            validate: match (self.validate, self.no_validate) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            spec: self.spec.clone(),
            ..self.common.layer()
        }
    }
}

/// Options of `record`.
#[derive(Debug, Clone, Default, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Exit 1 at shutdown if a request the app sent broke Plaid's spec
    #[arg(long, env = "PLAID_VCR_STRICT", value_parser = FalseyValueParser::new())]
    pub strict: bool,
}

/// Options of `replay`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Answer hits from the cassette and forward misses upstream, recording them ("new episodes")
    #[arg(long, env = "PLAID_VCR_RECORD_MISSING", value_parser = FalseyValueParser::new())]
    pub record_missing: bool,

    /// Exit 1 at shutdown if any request had no recording, broke Plaid's spec (when checked),
    /// or (with max_age) a recording is too old
    #[arg(long, env = "PLAID_VCR_STRICT", value_parser = FalseyValueParser::new())]
    pub strict: bool,

    /// Exit 1 at shutdown if any recording in the cassette was never used
    #[arg(long, env = "PLAID_VCR_FAIL_ON_UNUSED", value_parser = FalseyValueParser::new())]
    pub fail_on_unused: bool,
}

/// `--today`: a calendar day, YYYY-MM-DD.
fn parse_today(text: &str) -> Result<time::Date, String> {
    plaid_vcr::config::parse_today(text)
}
