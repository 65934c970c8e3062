//! The real binary: the first stdout line, health, signals, exit codes and config precedence.

use crate::support::*;

#[tokio::test]
async fn the_binary_prints_its_address_serves_health_and_exits_0_on_sigterm() {
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.cassette()).unwrap();
    let cassette = dirs.cassette().display().to_string();
    let mut binary = Binary::start(&serve_args("replay", &dirs, None, &[]), &[], dirs.root.path());
    let line = binary.first_line.trim_end().to_string();
    assert!(line.starts_with("plaid-vcr listening on http://127.0.0.1:"), "{line:?}");
    assert!(
        line.ends_with(&format!("(mode replay, cassette {cassette})")),
        "{line:?}"
    );
    let base = binary.base_url();
    let health = send("GET", &base.replace("/plaid-compatible", "/healthz"), &[], "").await;
    assert_eq!(health.status, 200);
    let miss = send(
        "POST",
        &format!("{base}/identity/get"),
        &CLIENT_HEADERS,
        r#"{"access_token":"access-sandbox-zzz"}"#,
    )
    .await;
    assert_eq!(miss.status, 404);
    assert_eq!(binary.signal_and_wait("TERM"), Some(0), "stderr: {}", binary.stderr());
    let logs = binary.stderr();
    assert!(
        logs.contains("outcome=\"miss\"") || logs.contains("outcome=miss"),
        "one line per request: {logs}"
    );
    assert!(
        logs.contains("endpoint=\"identity/get\"") || logs.contains("endpoint=identity/get"),
        "{logs}"
    );
    assert!(!logs.contains("access-sandbox-zzz"), "tokens never logged: {logs}");
    assert!(!logs.contains("0123456789abcdef"), "credentials never logged: {logs}");
}

#[test]
fn flags_beat_environment_which_beats_the_config_file() {
    let dirs = Dirs::new();
    for name in ["from-file", "from-env", "from-flag"] {
        std::fs::create_dir_all(dirs.root.path().join(name)).unwrap();
    }
    std::fs::write(
        dirs.root.path().join("plaid-vcr.toml"),
        "cassette = \"from-file\"\nstore = \"st\"\n",
    )
    .unwrap();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (&[], &[], "from-file"),
        (&[], &[("PLAID_VCR_CASSETTE", "from-env")], "from-env"),
        (
            &["--cassette", "from-flag"],
            &[("PLAID_VCR_CASSETTE", "from-env")],
            "from-flag",
        ),
    ];
    for (flags, envs, expected) in cases {
        let mut args = vec!["replay", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let mut binary = Binary::start(&args, envs, dirs.root.path());
        assert!(
            binary.first_line.contains(&format!("cassette {expected})")),
            "{:?} {}",
            binary.first_line,
            binary.stderr()
        );
        assert_eq!(binary.signal_and_wait("INT"), Some(0));
    }
}

#[test]
fn startup_errors_are_one_lowercase_line_with_exit_code_2() {
    let dirs = Dirs::new();
    let (code, stdout, stderr) = run_binary(
        &["replay", "--cassette", "does/not/exist", "--listen", "127.0.0.1:0"],
        dirs.root.path(),
    );
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("plaid-vcr: cassette directory does/not/exist does not exist"),
        "{stderr}"
    );

    std::fs::write(dirs.root.path().join("bad.toml"), "listen = 5\n").unwrap();
    let (code, _, stderr) = run_binary(&["replay", "--config", "bad.toml"], dirs.root.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.toml") && stderr.contains("listen"), "{stderr}");

    let (code, _, stderr) = run_binary(&["replay", "--listen", "not-an-address"], dirs.root.path());
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = run_binary(&["frobnicate"], dirs.root.path());
    assert_eq!(code, 2);
}

#[test]
fn help_lists_the_commands_and_every_serving_flag_the_docs_document() {
    let dirs = Dirs::new();
    let (code, stdout, _) = run_binary(&["--help"], dirs.root.path());
    assert_eq!(code, 0);
    for command in [
        "record",
        "replay",
        "redact",
        "scan",
        "ls",
        "check",
        "validate",
        "sandbox-token",
    ] {
        assert!(stdout.contains(command), "{command} missing from --help:\n{stdout}");
    }
    let (_, help, _) = run_binary(&["replay", "--help"], dirs.root.path());
    // Every row of the options table in docs/configuration.md: its flag and its variable.
    let page = include_str!("../../docs/configuration.md");
    let table = &page[page.find("Options of `record` and `replay`").unwrap()..];
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("| `--"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(rows.len() >= 20, "{rows:?}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // "`--max-age D`" or "`--strict` (replay)": the flag is the first word inside backticks.
        let flag = cells[1].split('`').nth(1).unwrap().split(' ').next().unwrap();
        let variable = cells[2].trim_matches('`');
        assert!(help.contains(flag), "{flag} missing from replay --help:\n{help}");
        assert!(
            help.contains(variable),
            "{variable} missing from replay --help:\n{help}"
        );
    }
}
