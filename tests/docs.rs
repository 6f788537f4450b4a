//! The README documents every flag of every binary.

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
