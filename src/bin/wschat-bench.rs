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
    match bench::run(config) {
        Ok(report) => {
            print!("{}", report.summary());
            if let Some(path) = histogram_path {
                if let Err(e) = std::fs::write(&path, report.percentile_distribution()) {
                    eprintln!("wschat-bench: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if let Some(path) = json_path {
                if let Err(e) = std::fs::write(&path, report.json()) {
                    eprintln!("wschat-bench: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
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
