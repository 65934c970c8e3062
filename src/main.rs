//! The `plaid-vcr` binary: parse arguments, run the command, map errors to exit codes.
//!
//! The only place that prints to stdout or exits the process. Exit codes: 0 ok, 1 the
//! command's answer is "no", 2 usage, configuration or I/O error.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use plaid_vcr::cli::{Cli, Command, ServeArgs};
use plaid_vcr::{Config, Error, Mode, Server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Record(args) => serve(Mode::Record, args),
        Command::Replay(args) if args.record_missing => serve(Mode::ReplayRecordMissing, &args.serve),
        Command::Replay(args) => serve(Mode::Replay, &args.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plaid-vcr: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn serve(mode: Mode, args: &ServeArgs) -> Result<(), Error> {
    let config = Config::resolve(args)?;
    init_logging(args, &config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
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
    })
}

/// `--log-level` (or `PLAID_VCR_LOG_LEVEL`) wins; otherwise `RUST_LOG`; otherwise the config
/// file's `log_level`. A bare level applies to plaid-vcr's own logs, others stay at warn.
fn init_logging(args: &ServeArgs, config: &Config) {
    let filter = match (&args.log_level, std::env::var("RUST_LOG")) {
        (None, Ok(rust_log)) if !rust_log.is_empty() => rust_log,
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
