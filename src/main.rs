//! The `plaid-vcr` binary: parse arguments, run the command, map errors to exit codes.
//!
//! The only place that prints to stdout or exits the process. Exit codes: 0 ok, 1 the
//! command's answer is "no" (scan found leaks), 2 usage, configuration or I/O error.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use plaid_vcr::cli::{Cli, Command, Format, RedactArgs, SandboxTokenArgs, ScanArgs, ServeArgs};
use plaid_vcr::redact::{self, Redactor};
use plaid_vcr::{cassette::Cassette, inspect, scan, Config, Error, Mode, Server};

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
        Command::SandboxToken(args) => sandbox_token(args),
    };
    match result {
        Ok(code) => code,
        // A closed stdout (`plaid-vcr scan DIR | head`) is the reader's choice, not an error.
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plaid-vcr: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn serve(mode: Mode, args: &ServeArgs, strict: bool, fail_on_unused: bool) -> Result<ExitCode, Error> {
    let config = Config::resolve(args)?;
    init_logging(args.log_level.is_some(), &config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = runtime.block_on(async {
        let server = Server::bind(&config, mode).await?;
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "plaid-vcr listening on http://{} (mode {mode}, cassette {})",
            server.local_addr(),
            config.cassette.display()
        )?;
        stdout.flush()?;
        drop(stdout);
        server.run(shutdown_signal()).await
    })?;
    eprint!("{}", summary.render());
    if let Some(path) = &args.report {
        std::fs::write(path, summary.to_json() + "\n").map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot write report {}: {e}", path.display()),
            ))
        })?;
    }
    let failures = summary.failures(strict, fail_on_unused);
    for failure in &failures {
        eprintln!("plaid-vcr: failing: {failure}");
    }
    Ok(verdict(failures.is_empty()))
}

fn redact_dir(args: &RedactArgs) -> Result<ExitCode, Error> {
    let config = Config::resolve(&ServeArgs {
        store: args.store.clone(),
        config: args.config.clone(),
        ..Default::default()
    })?;
    let cassette = Cassette::new(&args.dir);
    cassette.require_exists()?;
    let redactor = Redactor::new(
        plaid_vcr::rules::compile(&config.redact.rules)?,
        config.redact.request_pii,
        &redact::load_key(&config.store)?,
    );
    let rewrites = cassette.rewrite(|interaction| redactor.redact_interaction(interaction))?;
    let mut stdout = std::io::stdout().lock();
    for r in &rewrites {
        if r.from == r.to {
            writeln!(
                stdout,
                "redacted {} ({} values)",
                args.dir.join(&r.from).display(),
                r.changed
            )?;
        } else {
            writeln!(
                stdout,
                "redacted {} -> {} ({} values, key changed)",
                args.dir.join(&r.from).display(),
                args.dir.join(&r.to).display(),
                r.changed
            )?;
        }
    }
    let total = cassette.list()?.len();
    writeln!(
        stdout,
        "{} of {total} files changed in {}",
        rewrites.len(),
        args.dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn sandbox_token(args: &SandboxTokenArgs) -> Result<ExitCode, Error> {
    let config = Config::resolve(&args.serve)?;
    init_logging(args.serve.log_level.is_some(), &config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let token = runtime.block_on(plaid_vcr::sandbox::sandbox_token(
        &config,
        &args.institution,
        &args.products,
    ))?;
    let cassette = config.cassette.display();
    let mut out = std::io::stdout().lock();
    writeln!(out, "access token:          {}", token.access_token.expose())?;
    writeln!(out, "as stored (pseudonym): {}", token.pseudonym)?;
    writeln!(out)?;
    writeln!(
        out,
        "The real token is shown here only: plaid-vcr never stores or logs it. Record with it:"
    )?;
    writeln!(out, "  plaid-vcr record --cassette {cassette} &")?;
    writeln!(
        out,
        "  curl -X POST http://{}/plaid-compatible/identity/get -H 'Content-Type: application/json' \\",
        config.listen
    )?;
    writeln!(
        out,
        "       -d '{{\"access_token\": \"{}\"}}'",
        token.access_token.expose()
    )?;
    writeln!(
        out,
        "When replaying, tests may send either the real token or the pseudonym."
    )?;
    Ok(ExitCode::SUCCESS)
}

fn list_dir(dir: &std::path::Path) -> Result<ExitCode, Error> {
    write!(std::io::stdout().lock(), "{}", inspect::ls(dir)?)?;
    Ok(ExitCode::SUCCESS)
}

fn check_dir(args: &ScanArgs) -> Result<ExitCode, Error> {
    let config = Config::resolve(&ServeArgs {
        config: args.config.clone(),
        ..Default::default()
    })?;
    let rules = plaid_vcr::rules::compile(&config.redact.rules)?;
    let problems = inspect::check(&args.dir, &rules, &config.scan)?;
    let files = Cassette::new(&args.dir).list_all()?.len();
    write!(
        std::io::stdout().lock(),
        "{}",
        inspect::render_check(&args.dir, &problems, files)
    )?;
    Ok(verdict(problems.is_empty()))
}

fn scan_dir(args: &ScanArgs) -> Result<ExitCode, Error> {
    let config = Config::resolve(&ServeArgs {
        config: args.config.clone(),
        ..Default::default()
    })?;
    let rules = plaid_vcr::rules::compile(&config.redact.rules)?;
    let report = scan::scan_dir(&args.dir, &rules, &config.scan)?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Text => write!(stdout, "{}", scan::render_text(&args.dir, &report))?,
        Format::Json => writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&report).expect("a scan report is strings and numbers: it always serializes")
        )?,
    }
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
fn init_logging(level_given: bool, config: &Config) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(rust_log) if !level_given && !rust_log.is_empty() => rust_log,
        _ => format!("warn,plaid_vcr={}", config.log_level),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
