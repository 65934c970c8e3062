//! The `plaid-vcr` binary: parse arguments ([`cli`]), run the command, map errors to exit codes.
//!
//! The only place that prints to stdout or exits the process. Exit codes: 0 ok, 1 the
//! command's answer is "no" (scan found leaks), 2 usage, configuration or I/O error.

mod cli;

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, ServeArgs};
use plaid_vcr::commands::{self, sandbox::SandboxError, Output};
use plaid_vcr::config::Layer;
use plaid_vcr::{Config, Error, Mode, Server};

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
        Command::Record(args) => serve(Mode::Record, &args.serve, args.strict, false),
        Command::Replay(args) => {
            let mode = if args.record_missing {
                Mode::ReplayRecordMissing
            } else {
                Mode::Replay
            };
            serve(mode, &args.serve, args.strict, args.fail_on_unused)
        }
        Command::Redact(args) => file_config(args.config.clone(), args.store.clone())
            .and_then(|config| commands::redact::run(&args.dir, &config))
            .and_then(answer)
            .map_err(Failure::from),
        Command::Scan(args) => file_config(args.config.clone(), None)
            .and_then(|config| commands::scan::run(&args.dir, &config, args.format.is_json()))
            .and_then(answer)
            .map_err(Failure::from),
        Command::Ls(args) => commands::inspect::run_ls(&args.dir, args.session.as_deref())
            .and_then(answer)
            .map_err(Failure::from),
        Command::Check(args) => file_config(args.config.clone(), None)
            .and_then(|config| commands::inspect::run_check(&args.dir, &config, args.format.is_json()))
            .and_then(answer)
            .map_err(Failure::from),
        Command::Validate(args) => file_config(args.config.clone(), None)
            .and_then(|config| {
                let dirs = if args.dirs.is_empty() {
                    vec![config.cassette.clone()]
                } else {
                    args.dirs.clone()
                };
                let spec = args.spec.clone().or(config.spec);
                commands::validate::run(&dirs, spec.as_deref(), args.format.is_json())
            })
            .and_then(answer)
            .map_err(Failure::from),
        Command::Diff(args) => commands::diff::run(&args.old, &args.new, args.format.is_json())
            .and_then(answer)
            .map_err(Failure::from),
        Command::SandboxToken(args) => sandbox_token(args),
        Command::Webhook(cli::WebhookCommand::Fire(args)) => webhook_fire(args),
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

/// The configuration of a command that reads the config file (and the store, for the
/// redaction secret) but serves nothing.
fn file_config(config: Option<std::path::PathBuf>, store: Option<std::path::PathBuf>) -> Result<Config, Error> {
    Ok(Config::resolve(&Layer {
        config,
        store,
        ..Layer::default()
    })?)
}

/// Prints a command's output; its verdict is the exit code.
fn answer(output: Output) -> Result<ExitCode, Error> {
    print(&output.text)?;
    Ok(verdict(output.clean))
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
    if let Some(path) = &args.junit {
        std::fs::write(path, summary.to_junit(strict)).map_err(Error::io("write the JUnit report", Some(path)))?;
    }
    let failures = summary.failures(strict, fail_on_unused);
    for failure in &failures {
        eprintln!("plaid-vcr: failing: {failure}");
    }
    Ok(verdict(failures.is_empty()))
}

fn webhook_fire(args: &cli::WebhookFireArgs) -> Result<ExitCode, Failure> {
    let fire = commands::webhook::Fire {
        vcr: args.vcr.clone(),
        webhook_type: args.webhook_type.clone(),
        webhook_code: args.webhook_code.clone(),
        item_id: args.item_id.clone(),
        session: args.session.clone(),
        fields: args.fields.clone(),
        to: args.to.clone(),
    };
    let output = runtime()?.block_on(commands::webhook::fire(&fire))?;
    Ok(answer(output)?)
}

fn sandbox_token(args: &cli::SandboxTokenArgs) -> Result<ExitCode, Failure> {
    let config = Config::resolve(&args.common.layer()).map_err(Error::from)?;
    let _log = init_logging(args.common.log_level.is_some(), &config)?;
    let token = runtime()?.block_on(commands::sandbox::sandbox_token(
        &config,
        &args.institution,
        &args.products,
    ))?;
    print(&commands::sandbox::render(&token, &config))?;
    Ok(ExitCode::SUCCESS)
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
/// Lines are batched to stderr ([`plaid_vcr::log::buffer`]): a request's log line costs a copy into
/// a buffer, not a write syscall; off a terminal they are formatted by
/// [`plaid_vcr::log::line::LineFormat`]. The returned guard writes out what is buffered when dropped,
/// so it lives until the command's output is done.
fn init_logging(level_given: bool, config: &Config) -> Result<plaid_vcr::log::buffer::Flusher, Error> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(rust_log) if !level_given && !rust_log.is_empty() => rust_log,
        _ => format!("warn,plaid_vcr={}", config.log_level),
    };
    let (writer, flusher) =
        plaid_vcr::log::buffer::buffered(std::io::stderr()).map_err(Error::io("start the log writer thread", None))?;
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
            .event_format(plaid_vcr::log::line::LineFormat)
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
