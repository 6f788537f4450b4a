//! The README documents every flag the binary accepts.

use std::process::Command;

#[test]
fn every_flag_in_help_is_in_the_readme_flag_table() {
    let help = Command::new(env!("CARGO_BIN_EXE_wschat-server")).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-'))
        .filter(|flag| !["--help", "--version", "--verbose", "--quiet"].contains(flag))
        .collect();
    assert!(flags.len() >= 10, "parsed too few flags from --help: {flags:?}");
    for flag in flags {
        assert!(readme.contains(&format!("`{flag} ")), "README's flag table lacks {flag}");
    }
}
