//! One [`Config`] from flags, `PLAID_VCR_*` environment, the config file and defaults.
//!
//! Precedence: flags > environment > `--config FILE` (default `./plaid-vcr.toml` if present) >
//! defaults. The command line folds flags and environment into a [`Layer`] (clap reads the
//! variables); this module adds the file and the defaults. It knows nothing of clap's types. Relative paths in a config file are relative to that file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::faults::rules::RuleSpec as FaultRule;
use crate::privacy::redact::RedactConfig;
use crate::privacy::scan::ScanConfig;

/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "plaid-vcr.toml";

/// A problem with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {message}; see config.example.toml for every key")]
    Parse { path: PathBuf, message: String },
    #[error("{key} {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// The day `--shift-dates` moves dates to: `--today`, else today (UTC).
    pub fn shift_day(&self) -> time::Date {
        self.today.unwrap_or_else(|| time::OffsetDateTime::now_utc().date())
    }
}

/// A calendar day, YYYY-MM-DD (`--today`, `today`).
pub fn parse_today(text: &str) -> Result<time::Date, String> {
    crate::dates::parse_day(text)
        .filter(|_| text.len() == 10)
        .ok_or_else(|| format!("must be a day as YYYY-MM-DD, not {text:?}"))
}

/// A credential: compared and cloned like a string, but never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Environment variables holding the Plaid credentials plaid-vcr adds to requests that carry
/// none (the names Plaid's own quickstarts use).
pub const CLIENT_ID_ENV: &str = "PLAID_CLIENT_ID";
/// See [`CLIENT_ID_ENV`].
pub const SECRET_ENV: &str = "PLAID_SECRET";

/// What replay answers, with sequences, after the last recorded step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SequenceEnd {
    /// Keep answering the last step (a poll that stays "ready").
    #[default]
    RepeatLast,
    /// Answer a PLAID_VCR_SEQUENCE_EXHAUSTED error.
    Error,
}

/// Everything a serving command needs, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Plaid base URL (a path prefix is kept).
    pub upstream: String,
    /// Extra CA certificates (PEM) trusted for upstream.
    pub upstream_ca: Option<PathBuf>,
    /// Cassette directory.
    pub cassette: PathBuf,
    /// Working store directory.
    pub store: PathBuf,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream whole-answer timeout.
    pub response_timeout: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request head or body, and stay idle between
    /// requests, before its connection is closed.
    pub client_timeout: Duration,
    /// Most connections open at once; past it the longest-idle one is closed for a new one.
    pub max_connections: usize,
    /// Log level for plaid-vcr's own logs.
    pub log_level: String,
    /// `--no-redact`: store tokens and personal data as received (debugging only).
    pub no_redact: bool,
    /// Redaction rules and request-PII handling (`[redact]`).
    pub redact: RedactConfig,
    /// `scan`'s allowlist (`[scan]`).
    pub scan: ScanConfig,
    /// Record repeated identical requests as steps and replay them in order.
    pub sequences: bool,
    /// Replay: move answers' dates by the days since their recording (see docs/dates.md).
    pub shift_dates: bool,
    /// The day dates are shifted to; today (UTC) when the proxy starts if `None`.
    pub today: Option<time::Date>,
    /// What replay answers after the last step.
    pub sequence_exhausted: SequenceEnd,
    /// Recordings older than this are reported (and fail `--strict`).
    pub max_age: Option<Duration>,
    /// Plaid client id added to requests without one (`PLAID_CLIENT_ID`, `plaid_client_id`).
    pub client_id: Option<Secret>,
    /// Plaid secret added to requests without one (`PLAID_SECRET`, `plaid_secret`).
    pub secret: Option<Secret>,
    /// Base URL at which upstream reaches plaid-vcr's webhook receiver (recording modes).
    pub webhook_public_url: Option<String>,
    /// Where replayed webhooks go instead of the URL the app registered.
    pub webhook_target: Option<String>,
    /// Fault rules every session starts with (`[[faults]]`; see docs/failures.md).
    pub faults: Vec<FaultRule>,
    /// Check traffic against Plaid's spec as it passes; `None`: while recording, not replaying.
    pub validate: Option<bool>,
    /// A plaid-openapi file to check against instead of the spec built in.
    pub spec: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            upstream: "https://sandbox.plaid.com".into(),
            upstream_ca: None,
            cassette: PathBuf::from("cassettes/default"),
            store: PathBuf::from(".plaid-vcr"),
            max_body_bytes: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            client_timeout: Duration::from_secs(30),
            max_connections: 1024,
            log_level: "info".into(),
            no_redact: false,
            redact: RedactConfig::default(),
            scan: ScanConfig::default(),
            sequences: false,
            shift_dates: false,
            today: None,
            sequence_exhausted: SequenceEnd::RepeatLast,
            max_age: None,
            faults: Vec::new(),
            client_id: None,
            secret: None,
            webhook_public_url: None,
            webhook_target: None,
            validate: None,
            spec: None,
        }
    }
}

/// What the command line (flags and `PLAID_VCR_*` variables) says, before the config file
/// and the defaults: every setting optional, so "not given" differs from a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    pub cassette: Option<PathBuf>,
    pub upstream: Option<String>,
    pub upstream_ca: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub store: Option<PathBuf>,
    /// The config file; `./plaid-vcr.toml` is read if absent and the file exists.
    pub config: Option<PathBuf>,
    pub log_level: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub connect_timeout: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub shutdown_timeout: Option<Duration>,
    pub client_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub no_redact: bool,
    pub sequences: bool,
    pub shift_dates: bool,
    pub today: Option<time::Date>,
    pub sequence_exhausted: Option<SequenceEnd>,
    pub max_age: Option<Duration>,
    pub webhook_public_url: Option<String>,
    pub webhook_target: Option<String>,
    pub validate: Option<bool>,
    pub spec: Option<PathBuf>,
}

/// The config file's keys, all optional (see config.example.toml).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    upstream: Option<String>,
    upstream_ca: Option<PathBuf>,
    cassette: Option<PathBuf>,
    store: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    connect_timeout: Option<String>,
    response_timeout: Option<String>,
    shutdown_timeout: Option<String>,
    client_timeout: Option<String>,
    max_connections: Option<usize>,
    log_level: Option<String>,
    redact: Option<RedactConfig>,
    scan: Option<ScanConfig>,
    sequences: Option<bool>,
    shift_dates: Option<bool>,
    today: Option<String>,
    sequence_exhausted: Option<SequenceEnd>,
    max_age: Option<String>,
    plaid_client_id: Option<Secret>,
    plaid_secret: Option<Secret>,
    webhook_public_url: Option<String>,
    webhook_target: Option<String>,
    faults: Option<Vec<FaultRule>>,
    validate: Option<bool>,
    spec: Option<PathBuf>,
}

/// An absolute `http://` or `https://` URL without a query, or why not.
fn check_http_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { key, message };
    let uri: http::Uri = url.parse().map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(invalid(format!(
            "{url:?} must be an http:// or https:// URL with a host"
        )));
    }
    if uri.query().is_some() {
        return Err(invalid(format!("{url:?} must not have a query string")));
    }
    Ok(())
}

impl Config {
    /// Resolves the configuration from the command line's layer, the file and the defaults.
    pub fn resolve(args: &Layer) -> Result<Config, ConfigError> {
        let (file, base) = match &args.config {
            Some(path) => (read_file(path)?, parent(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                (read_file(Path::new(DEFAULT_CONFIG_FILE))?, PathBuf::new())
            }
            None => (FileConfig::default(), PathBuf::new()),
        };
        let defaults = Config::default();
        let from_file = |p: Option<PathBuf>| p.map(|p| base.join(p));
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or(defaults.listen),
            upstream: args.upstream.clone().or(file.upstream).unwrap_or(defaults.upstream),
            upstream_ca: args.upstream_ca.clone().or(from_file(file.upstream_ca)),
            cassette: args
                .cassette
                .clone()
                .or(from_file(file.cassette))
                .unwrap_or(defaults.cassette),
            store: args.store.clone().or(from_file(file.store)).unwrap_or(defaults.store),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(defaults.max_body_bytes),
            connect_timeout: pick_duration(args.connect_timeout, file.connect_timeout, "connect_timeout")?
                .unwrap_or(defaults.connect_timeout),
            response_timeout: pick_duration(args.response_timeout, file.response_timeout, "response_timeout")?
                .unwrap_or(defaults.response_timeout),
            shutdown_timeout: pick_duration(args.shutdown_timeout, file.shutdown_timeout, "shutdown_timeout")?
                .unwrap_or(defaults.shutdown_timeout),
            client_timeout: pick_duration(args.client_timeout, file.client_timeout, "client_timeout")?
                .unwrap_or(defaults.client_timeout),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections),
            log_level: args.log_level.clone().or(file.log_level).unwrap_or(defaults.log_level),
            no_redact: args.no_redact,
            redact: file.redact.unwrap_or_default(),
            scan: file.scan.unwrap_or_default(),
            sequences: args.sequences || file.sequences.unwrap_or(defaults.sequences),
            shift_dates: args.shift_dates || file.shift_dates.unwrap_or(defaults.shift_dates),
            today: match (args.today, file.today) {
                (Some(day), _) => Some(day),
                (None, Some(text)) => {
                    Some(parse_today(&text).map_err(|message| ConfigError::Invalid { key: "today", message })?)
                }
                (None, None) => None,
            },
            sequence_exhausted: args.sequence_exhausted.or(file.sequence_exhausted).unwrap_or_default(),
            max_age: pick_duration(args.max_age, file.max_age, "max_age")?,
            client_id: env_secret(CLIENT_ID_ENV).or(file.plaid_client_id),
            secret: env_secret(SECRET_ENV).or(file.plaid_secret),
            webhook_public_url: args.webhook_public_url.clone().or(file.webhook_public_url),
            webhook_target: args.webhook_target.clone().or(file.webhook_target),
            validate: args.validate.or(file.validate),
            spec: args.spec.clone().or(from_file(file.spec)),
            faults: file
                .faults
                .unwrap_or_default()
                .into_iter()
                .map(FaultRule::checked)
                .collect::<Result<_, _>>()
                .map_err(|e| ConfigError::Invalid {
                    key: "faults",
                    message: format!("has {e}"),
                })?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                message: "must be greater than 0".into(),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "max_connections",
                message: "must be greater than 0".into(),
            });
        }
        for (key, d) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("client_timeout", self.client_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0s".into(),
                });
            }
        }
        for (key, url) in [
            ("webhook_public_url", &self.webhook_public_url),
            ("webhook_target", &self.webhook_target),
        ] {
            if let Some(url) = url {
                check_http_url(key, url)?;
            }
        }
        if !["error", "warn", "info", "debug", "trace", "off"].contains(&self.log_level.as_str()) {
            return Err(ConfigError::Invalid {
                key: "log_level",
                message: format!(
                    "{:?} is not one of error, warn, info, debug, trace, off",
                    self.log_level
                ),
            });
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| {
        // toml's own Display is a multi-line excerpt; we keep one line that still points at
        // the offending key: its line number and text.
        let first = e.message().lines().next().unwrap_or("").to_owned();
        let message = match e.span() {
            Some(span) => {
                let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                format!("line {line_no} ({line}): {first}")
            }
            None => first,
        };
        ConfigError::Parse {
            path: path.to_owned(),
            message,
        }
    })
}

fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).map(Secret)
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_owned).unwrap_or_default()
}

fn pick_duration(
    flag: Option<Duration>,
    file: Option<String>,
    key: &'static str,
) -> Result<Option<Duration>, ConfigError> {
    if flag.is_some() {
        return Ok(flag);
    }
    file.map(|text| {
        humantime::parse_duration(&text).map_err(|e| ConfigError::Invalid {
            key,
            message: format!("{text:?} is not a duration like \"10s\" or \"2m\": {e}"),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn config_example_toml_lists_every_key_with_its_default() {
        let example = include_str!("../config.example.toml");
        let example = example
            .replace("# upstream_ca = ", "upstream_ca = ")
            .replace("# webhook_public_url = ", "webhook_public_url = ")
            .replace("# webhook_target = ", "webhook_target = ")
            .replace("# validate = ", "validate = ")
            .replace("# spec = ", "spec = ");
        let (_dir, path) = write_config(&example);
        let c = Config::resolve(&Layer {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        let base = parent(&path);
        let defaults = Config::default();
        let expected = Config {
            upstream_ca: Some(base.join("certs/private-ca.pem")),
            cassette: base.join(&defaults.cassette),
            store: base.join(&defaults.store),
            webhook_public_url: Some("https://my-tunnel.example.com".into()),
            webhook_target: Some("http://127.0.0.1:3000/plaid/webhook".into()),
            validate: Some(true),
            spec: Some(base.join("plaid-openapi/2020-09-14.yml")),
            ..defaults
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn config_example_fault_rules_parse_and_bad_ones_name_the_fault() {
        let example = include_str!("../config.example.toml");
        let faults = &example[example.find("# [[faults]]").unwrap()..];
        let uncommented: String = faults
            .lines()
            .map(|l| l.trim_start_matches("# ").to_owned() + "\n")
            .collect();
        let (_dir, path) = write_config(&uncommented);
        let layer = |path: &Path| Layer {
            config: Some(path.to_owned()),
            ..Default::default()
        };
        let c = Config::resolve(&layer(&path)).unwrap();
        assert_eq!(c.faults.len(), 1);
        assert_eq!(
            (c.faults[0].endpoint.as_deref(), c.faults[0].after, c.faults[0].times),
            (Some("transactions/sync"), 1, Some(2))
        );
        let (_dir, bad) = write_config("[[faults]]\nerror_code = \"ITEM_LOGIN_REQURED\"\n");
        let err = Config::resolve(&layer(&bad)).unwrap_err().to_string();
        assert!(err.contains("did you mean ITEM_LOGIN_REQUIRED"), "{err}");
    }

    #[test]
    fn config_example_rule_examples_parse_and_compile() {
        let example = include_str!("../config.example.toml");
        let mut in_rules = false;
        let uncommented: String = example
            .lines()
            .map(|line| {
                if line.starts_with("# rules = [") {
                    in_rules = true;
                }
                let out = if in_rules {
                    line.trim_start_matches('#').trim_start().to_owned()
                } else {
                    line.to_owned()
                };
                if line == "# ]" {
                    in_rules = false;
                }
                out + "\n"
            })
            .collect();
        let (_dir, path) = write_config(&uncommented);
        let c = Config::resolve(&Layer {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.redact.rules.len(), 3);
        let compiled = crate::privacy::rules::compile(&c.redact.rules).unwrap();
        assert_eq!(compiled.len(), 3 + crate::privacy::rules::builtin().len());
    }

    #[test]
    fn defaults_apply_without_flags_or_file() {
        let (_dir, path) = write_config("");
        let c = Config::resolve(&Layer {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn file_overrides_defaults_and_flags_override_file() {
        let (dir, path) = write_config("listen = \"127.0.0.1:9000\"\ncassette = \"cas\"\nconnect_timeout = \"3s\"\n");
        let args = Layer {
            config: Some(path.clone()),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.cassette, dir.path().join("cas"));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        let args = Layer {
            config: Some(path),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            connect_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn webhook_urls_must_be_http_urls_with_a_host() {
        for (key, bad) in [
            ("webhook_public_url", "my-tunnel.example.com"),
            ("webhook_target", "ftp://x/hook"),
            ("webhook_public_url", "https://x/?token=1"),
        ] {
            let (_d, path) = write_config(&format!("{key} = \"{bad}\"\n"));
            let err = Config::resolve(&Layer {
                config: Some(path),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(key) && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let (_d, path) = write_config("lisen = \"127.0.0.1:1\"\n");
        let err = Config::resolve(&Layer {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let (_d, path) = write_config("response_timeout = \"soon\"\n");
        let err = Config::resolve(&Layer {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("response_timeout"), "{err}");
        let err = Config::resolve(&Layer {
            config: Some("/nonexistent/x.toml".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }
}
