//! `wschat-bench URL`: load a WebSocket broadcast server and report throughput and latency.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use wschat::bench::{self, BenchConfig};

fn main() -> ExitCode {
    let config = BenchConfig::parse();
    if let Err(message) = config.validate() {
        // Flags that make no sense together are a usage error (exit 2), like clap's own.
        BenchConfig::command().error(clap::error::ErrorKind::ValueValidation, message).exit();
    }
    let json_path = config.json.clone();
    let histogram_path = config.histogram.clone();
    if config.shootout {
        return shootout(config);
    }
    let part = config.part.is_some();
    let result = match config.processes {
        1 => bench::run(config),
        _ => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            bench::processes::run(config, &args)
        }
    };
    match result {
        Ok(report) => {
            // A part's stdout is its parent's channel; the parent prints the summary.
            if !part {
                print!("{}", report.summary());
            }
            if !write_result(histogram_path, || report.percentile_distribution())
                || !write_result(json_path, || report.json())
            {
                return ExitCode::FAILURE;
            }
            if report.connect_failures > 0 && report.connected == 0 {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wschat-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--shootout`: the table on stdout, the JSON to `--json`.
fn shootout(config: BenchConfig) -> ExitCode {
    let json_path = config.json.clone();
    let result = match bench::shootout::run(config) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("wschat-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", result.summary());
    if !write_result(json_path, || result.json()) {
        return ExitCode::FAILURE;
    }
    // No step at all means no connection: a failure, as for a timed run.
    if result.steps.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Writes a result file if one was asked for; false (and says why) if it cannot be written.
fn write_result(path: Option<std::path::PathBuf>, contents: impl FnOnce() -> String) -> bool {
    let Some(path) = path else { return true };
    match std::fs::write(&path, contents()) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("wschat-bench: cannot write {}: {e}", path.display());
            false
        }
    }
}
