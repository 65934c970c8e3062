//! The real `plaid-vcr` binary as a user runs it: started in a temp directory, its listening
//! line read for the port, signalled, and its output kept for the test's assertions.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Dirs, FakePlaid};

/// The `plaid-vcr` binary as a command in `cwd` with a clean environment: no `PLAID_VCR_*`
/// variable, `RUST_LOG` or Plaid keys of the developer's can change what a test sees. A test's
/// own variables are added after, so they win.
pub fn plaid_vcr_command(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plaid-vcr"));
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PLAID_VCR_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_LOG")
        .env_remove("PLAID_CLIENT_ID")
        .env_remove("PLAID_SECRET");
    command
}

/// The real `plaid-vcr` binary, started with `args`; reads the first stdout line.
pub struct Binary {
    pub child: Child,
    pub first_line: String,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it; joined once the process has exited.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Binary {
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], envs: &[(&str, &str)], cwd: &Path) -> Binary {
        let mut command = plaid_vcr_command(cwd);
        command.args(args);
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("binary starts");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let captured = Arc::new(Mutex::new(String::new()));
        let sink = captured.clone();
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the child never blocks on a full pipe.
            let mut rest = String::new();
            while reader.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
                rest.clear();
            }
        });
        let first_line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        Binary {
            child,
            first_line,
            stderr: captured,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// The base URL from the first stdout line.
    pub fn base_url(&self) -> String {
        let start = self
            .first_line
            .find("http://")
            .unwrap_or_else(|| panic!("no URL in {:?}; stderr: {}", self.first_line, self.stderr()));
        let rest = &self.first_line[start..];
        let end = rest.find(' ').unwrap_or(rest.len());
        format!("{}/plaid-compatible", &rest[..end])
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits (bounded) for the exit code.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.wait()
    }

    /// Waits up to 20 s for exit; kills the process if it does not exit.
    pub fn wait(&mut self) -> Option<i32> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The process closed stderr by exiting: the reader ends with its last lines.
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().unwrap();
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("plaid-vcr did not exit in 20 s; stderr: {}", self.stderr());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Arguments to run the binary as `command` (record, replay, sandbox-token) on 127.0.0.1:0
/// with the test's cassette and store, and the fake as upstream if given; `extra` follow.
pub fn serve_args(command: &str, dirs: &Dirs, fake: Option<&FakePlaid>, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![command.into()];
    // sandbox-token always listens on a free loopback port of its own.
    if command != "sandbox-token" {
        args.extend(["--listen".into(), "127.0.0.1:0".into()]);
    }
    args.extend(["--cassette".into(), dirs.cassette().display().to_string()]);
    args.extend(["--store".into(), dirs.store().display().to_string()]);
    if let Some(fake) = fake {
        args.extend([
            "--upstream".into(),
            fake.url(),
            "--upstream-ca".into(),
            fake.ca_file.display().to_string(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Runs the binary to completion (bounded: 30 s) and returns (exit code, stdout, stderr).
pub fn run_binary<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S], cwd: &Path) -> (i32, String, String) {
    run_binary_with(args, &[], cwd)
}

/// [`run_binary`] with environment variables of the test's own.
pub fn run_binary_with<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    args: &[S],
    envs: &[(&str, &str)],
    cwd: &Path,
) -> (i32, String, String) {
    let mut command = plaid_vcr_command(cwd);
    command.args(args).envs(envs.iter().copied());
    let mut child = command.spawn().unwrap();
    // Read both pipes while waiting, so a large output can never block the child.
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return (
                status.code().unwrap_or(-1),
                stdout.join().unwrap(),
                stderr.join().unwrap(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("plaid-vcr {args:?} did not finish in 30 s");
}
