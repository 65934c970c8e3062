//! The `plaid-vcr` binary: parse arguments, run the command, map errors to exit codes.
//!
//! The only place that prints to stdout or exits the process. Exit codes: 0 ok, 1 the
//! command's answer is "no" (scan found leaks), 2 usage, configuration or I/O error.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use clap::Parser;
use plaid_vcr::cli::{CheckArgs, Cli, Command, DiffArgs, Format, RedactArgs, SandboxTokenArgs, ScanArgs, ServeArgs};
use plaid_vcr::config::Layer;
use plaid_vcr::redact::{self, Redactor};
use plaid_vcr::sandbox::SandboxError;
use plaid_vcr::{cassette::Cassette, drift, inspect, rules, scan, webhook, Config, Error, Mode, Server};

/// What a command can fail with: the library's errors, or the sandbox flow's.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Lib(#[from] Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Record(args) => serve(Mode::Record, args, false, false),
        Command::Replay(args) => {
            let mode = if args.record_missing {
                Mode::ReplayRecordMissing
            } else {
                Mode::Replay
            };
            serve(mode, &args.serve, args.strict, args.fail_on_unused)
        }
        Command::Redact(args) => redact_dir(args),
        Command::Scan(args) => scan_dir(args),
        Command::Ls(args) => list_dir(&args.dir),
        Command::Check(args) => check_dir(args),
        Command::Diff(args) => diff_dirs(args),
        Command::SandboxToken(args) => sandbox_token(args),
    };
    match result {
        Ok(code) => code,
        // A closed stdout (`plaid-vcr scan DIR | head`) is the reader's choice, not an error.
        Err(Failure::Lib(Error::Io { source, .. })) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("plaid-vcr: {e}");
            ExitCode::from(match &e {
                Failure::Lib(e) => e.exit_code(),
                Failure::Sandbox(e) => e.exit_code(),
            })
        }
    }
}

/// Writes a command's output to stdout in one go.
fn print(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Error::io("write to standard output", None))
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::io("start the async runtime", None))
}

fn serve(mode: Mode, args: &ServeArgs, strict: bool, fail_on_unused: bool) -> Result<ExitCode, Failure> {
    let config = Config::resolve(&args.layer()).map_err(Error::from)?;
    let log = init_logging(args.common.log_level.is_some(), &config)?;
    let served = runtime()?.block_on(async {
        // Handlers first: once the "listening" line is out, a script may signal at once, and
        // the signal must mean a clean shutdown, not the default death.
        let shutdown = shutdown_signal()?;
        let server = Server::bind(&config, mode).await?;
        print(&format!(
            "plaid-vcr listening on http://{} (mode {mode}, cassette {})\n",
            server.local_addr(),
            config.cassette.display()
        ))?;
        server.run(shutdown).await
    });
    // Every log line is out before the summary (or the error) is printed after it.
    drop(log);
    let summary = served?;
    eprint!("{}", summary.render());
    if let Some(path) = &args.report {
        std::fs::write(path, summary.to_json() + "\n").map_err(Error::io("write the report", Some(path)))?;
    }
    let failures = summary.failures(strict, fail_on_unused);
    for failure in &failures {
        eprintln!("plaid-vcr: failing: {failure}");
    }
    Ok(verdict(failures.is_empty()))
}

fn redact_dir(args: &RedactArgs) -> Result<ExitCode, Failure> {
    let config = Config::resolve(&Layer {
        store: args.store.clone(),
        config: args.config.clone(),
        ..Layer::default()
    })
    .map_err(Error::from)?;
    let cassette = Cassette::new(&args.dir);
    cassette.require_exists().map_err(Error::from)?;
    let redactor = Redactor::new(
        rules::compile(&config.redact.rules).map_err(Error::from)?,
        config.redact.request_pii,
        &redact::load_secret(&config.store).map_err(Error::from)?,
    );
    let rewrites = redact::redact_cassette(&cassette, &redactor).map_err(Error::from)?;
    let mut out = String::new();
    for r in &rewrites {
        let (from, changed) = (args.dir.join(&r.from), r.changed);
        if r.from == r.to {
            let _ = writeln!(out, "redacted {} ({changed} values)", from.display());
        } else {
            let to = args.dir.join(&r.to);
            let _ = writeln!(
                out,
                "redacted {} -> {} ({changed} values, key changed)",
                from.display(),
                to.display()
            );
        }
    }
    let total = cassette.list().map_err(Error::from)?.len() + webhook::list(&args.dir).map_err(Error::from)?.len();
    let _ = writeln!(
        out,
        "{} of {total} files changed in {}",
        rewrites.len(),
        args.dir.display()
    );
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn diff_dirs(args: &DiffArgs) -> Result<ExitCode, Failure> {
    let report = drift::diff(&args.old, &args.new).map_err(Error::from)?;
    let text = match args.format {
        Format::Text => drift::render_text(&report),
        Format::Json => {
            serde_json::to_string_pretty(&report).expect("a drift report is strings and numbers: it always serializes")
                + "\n"
        }
    };
    print(&text)?;
    Ok(verdict(report.breaking == 0))
}

fn sandbox_token(args: &SandboxTokenArgs) -> Result<ExitCode, Failure> {
    let config = Config::resolve(&args.common.layer()).map_err(Error::from)?;
    let _log = init_logging(args.common.log_level.is_some(), &config)?;
    let token = runtime()?.block_on(plaid_vcr::sandbox::sandbox_token(
        &config,
        &args.institution,
        &args.products,
    ))?;
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
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn list_dir(dir: &std::path::Path) -> Result<ExitCode, Failure> {
    print(&inspect::ls(dir).map_err(Error::from)?)?;
    Ok(ExitCode::SUCCESS)
}

fn check_dir(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let config = Config::resolve(&Layer {
        config: args.config.clone(),
        ..Layer::default()
    })
    .map_err(Error::from)?;
    let rules = rules::compile(&config.redact.rules).map_err(Error::from)?;
    let problems = inspect::check(&args.dir, &rules, &config.scan).map_err(Error::from)?;
    let files = Cassette::new(&args.dir).list_all().map_err(Error::from)?.len();
    let text = match args.format {
        Format::Text => inspect::render_check(&args.dir, &problems, files),
        Format::Json => {
            let report = serde_json::json!({ "files": files, "problems": problems });
            serde_json::to_string_pretty(&report).expect("a check report is strings and numbers: it always serializes")
                + "\n"
        }
    };
    print(&text)?;
    Ok(verdict(problems.is_empty()))
}

fn scan_dir(args: &ScanArgs) -> Result<ExitCode, Failure> {
    let config = Config::resolve(&Layer {
        config: args.config.clone(),
        ..Layer::default()
    })
    .map_err(Error::from)?;
    let rules = rules::compile(&config.redact.rules).map_err(Error::from)?;
    let report = scan::scan_dir(&args.dir, &rules, &config.scan).map_err(Error::from)?;
    let text = match args.format {
        Format::Text => scan::render_text(&args.dir, &report),
        Format::Json => {
            serde_json::to_string_pretty(&report).expect("a scan report is strings and numbers: it always serializes")
                + "\n"
        }
    };
    print(&text)?;
    Ok(verdict(report.findings.is_empty()))
}

/// The exit code of a command whose answer can be "no": 0 when clean, 1 otherwise.
fn verdict(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `--log-level` (or `PLAID_VCR_LOG_LEVEL`) wins; otherwise `RUST_LOG`; otherwise the config
/// file's `log_level`. A bare level applies to plaid-vcr's own logs, others stay at warn.
///
/// Lines are batched to stderr ([`plaid_vcr::logbuf`]): a request's log line costs a copy into
/// a buffer, not a write syscall; off a terminal they are formatted by
/// [`plaid_vcr::logline::LineFormat`]. The returned guard writes out what is buffered when dropped,
/// so it lives until the command's output is done.
fn init_logging(level_given: bool, config: &Config) -> Result<plaid_vcr::logbuf::Flusher, Error> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(rust_log) if !level_given && !rust_log.is_empty() => rust_log,
        _ => format!("warn,plaid_vcr={}", config.log_level),
    };
    let (writer, flusher) =
        plaid_vcr::logbuf::buffered(std::io::stderr()).map_err(Error::io("start the log writer thread", None))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(writer);
    if std::io::stderr().is_terminal() {
        // A person is reading: colours, and the default formatter's cost does not matter.
        builder.with_ansi(true).init();
    } else {
        // CI and log files: the same text, formatted for a fraction of the cost.
        builder
            .with_ansi(false)
            .event_format(plaid_vcr::logline::LineFormat)
            .init();
    }
    Ok(flusher)
}

/// A future that completes on SIGINT or SIGTERM; the handlers are installed when this
/// returns, not when the future is first polled.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, Error> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let install = Error::io("install the SIGINT/SIGTERM handlers", None);
        let (mut interrupt, mut terminate) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => return Err(install(e)),
        };
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
