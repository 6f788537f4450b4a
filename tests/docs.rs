//! The README documents every flag of every binary, and each binary's `--help` describes it.

use std::process::Command;

/// The long flags a binary's `--help` lists, without `--help` and `--version`.
fn flags_in_help(binary: &str, at_least: usize) -> Vec<String> {
    let help = Command::new(binary).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let flags: Vec<String> = help
        .split_whitespace()
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-').to_string())
        .filter(|flag| flag != "--help" && flag != "--version")
        .collect();
    assert!(flags.len() >= at_least, "parsed too few flags from {binary} --help: {flags:?}");
    flags
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn every_server_flag_is_in_the_readme_flag_table() {
    let readme = readme();
    for flag in flags_in_help(env!("CARGO_BIN_EXE_wschat-server"), 10) {
        assert!(readme.contains(&format!("`{flag}")), "README's server flag table lacks {flag}");
    }
}

#[test]
fn every_bench_flag_is_in_the_readme_flag_table() {
    let readme = readme();
    for flag in flags_in_help(env!("CARGO_BIN_EXE_wschat-bench"), 10) {
        assert!(readme.contains(&format!("`{flag}")), "README's bench flag table lacks {flag}");
    }
}

#[test]
fn every_client_flag_is_in_the_readme_flag_table() {
    let readme = readme();
    for flag in flags_in_help(env!("CARGO_BIN_EXE_wschat-client"), 6) {
        assert!(readme.contains(&format!("`{flag}")), "README's client flag table lacks {flag}");
    }
}

#[test]
fn each_binary_describes_itself() {
    for (binary, about) in [
        (env!("CARGO_BIN_EXE_wschat-server"), "A WebSocket chat server"),
        (env!("CARGO_BIN_EXE_wschat-client"), "Terminal chat client for wschat"),
        (env!("CARGO_BIN_EXE_wschat-bench"), "Load generator for WebSocket broadcast servers"),
    ] {
        let help = Command::new(binary).arg("--help").output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        assert!(help.starts_with(about), "{binary} --help: {help}");
    }
}

#[test]
fn a_wrong_value_is_a_usage_error_with_an_example() {
    let server = env!("CARGO_BIN_EXE_wschat-server");
    let out = Command::new(server).arg("nowhere:port").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("try 127.0.0.1:9001"));
    let out = Command::new(server).args(["--log-level", "loud"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("off, error, warn, info, debug, trace"));
}

#[test]
fn the_readmes_commands_name_the_binaries_where_the_build_puts_them() {
    // A bare `wschat-client ...` fails on a fresh clone ("No such file or directory"): every
    // command line in a shell block runs the binaries from target/release/ (or via cargo).
    let readme = readme();
    let mut in_shell = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_shell = line == "```sh";
            continue;
        }
        if !in_shell {
            continue;
        }
        for word in line.split_whitespace().take_while(|w| !w.starts_with('#')) {
            if let Some(binary) =
                ["wschat-server", "wschat-client", "wschat-bench"].iter().find(|b| word == **b)
            {
                panic!("README runs `{binary}` by bare name: {line}");
            }
        }
    }
}

/// Sizes and durations are read alike by every binary, and a form that would be a guess is
/// refused as a usage error (exit 2) naming what to write; every `--help` lists the forms.
#[test]
fn every_binary_refuses_ambiguous_units_and_lists_the_forms() {
    let run = |binary: &str, args: &[&str]| {
        let out = std::process::Command::new(binary).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let server = env!("CARGO_BIN_EXE_wschat-server");
    let (code, stderr, _) = run(server, &["--max-message-size", "64kb"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("write 64KiB"), "{stderr}");
    let (code, stderr, _) = run(server, &["--idle-timeout", "10"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs a unit"), "{stderr}");
    let (code, stderr, _) =
        run(env!("CARGO_BIN_EXE_wschat-client"), &["127.0.0.1", "--connect-timeout", "10"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("needs a unit"), "{stderr}");
    let (code, stderr, _) = run(env!("CARGO_BIN_EXE_wschat-bench"), &["127.0.0.1", "--duration", "10"]);
    assert_eq!(code, Some(2), "{stderr}");
    for binary in [
        server,
        env!("CARGO_BIN_EXE_wschat-client"),
        env!("CARGO_BIN_EXE_wschat-bench"),
        env!("CARGO_BIN_EXE_wschat-token"),
    ] {
        let (_, _, help) = run(binary, &["--help"]);
        assert!(
            help.contains("Sizes: a number of bytes") && help.contains("Durations: a number with ms"),
            "{binary}: {help}"
        );
    }
}
