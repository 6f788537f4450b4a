//! `--processes N`: one run spread over N bench processes, because each process has its own
//! open-file limit (20,000 on the project's machines, so a run of 38,000 clients needs two).
//!
//! The parent starts N copies of itself with the same flags plus `--part I/N` (client i
//! belongs to part i mod N, so the senders spread too) and `--epoch-ns`, the run's clock origin
//! on CLOCK_MONOTONIC, which every process on the machine reads alike: a token stamped in one
//! process is timed correctly in another. Each part connects its clients, writes
//! `connected OK FAILED` on its stdout and waits; once every part has, the parent writes
//! `go START_NS` to all of them, so that they warm up and measure over the same window. Each
//! part writes its result as JSON (with its latency and connect histograms as value/count
//! pairs), and the parent merges them into one [`Report`], counting losses across all of them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::Value;

use super::config::BenchConfig;
use super::cpu::{self, Usage};
use super::report::{thousands, Report};
use super::shared::{latency_histogram, monotonic_ns, Received};

/// In a part: a parent that is stopped (SIGTERM, SIGKILL) takes its parts with it, rather
/// than leave them holding their connections.
pub fn end_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_PDEATHSIG only sets which signal this process gets when its parent exits.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
}

/// In a part: tells the parent how many clients connected, then waits for the start time (on
/// the run's clock) it answers with.
pub fn report_connected_and_wait(connected: u64, failed: u64) -> Result<u64, String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "connected {connected} {failed}")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    line.trim()
        .strip_prefix("go ")
        .and_then(|ns| ns.parse().ok())
        .ok_or_else(|| "the parent process went away".into())
}

/// A part's histogram, from the pairs [`super::report::histogram_json`] wrote.
fn histogram_from(value: &Value) -> Histogram<u64> {
    let mut histogram = latency_histogram();
    for pair in value.as_array().into_iter().flatten() {
        if let (Some(v), Some(n)) = (pair[0].as_u64(), pair[1].as_u64()) {
            let _ = histogram.record_n(v, n);
        }
    }
    histogram
}

/// The parts, killed if the parent gives up before they finish.
struct Parts(Vec<Child>);

impl Drop for Parts {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Flags a part must not inherit: the parent's own outputs and the split itself.
const PARENT_ONLY: [&str; 3] = ["--processes", "--json", "--histogram"];

/// The parent's command line without [`PARENT_ONLY`] flags (`--flag value` or `--flag=value`).
fn part_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if PARENT_ONLY.contains(&arg.as_str()) {
            skip_value = true;
        } else if !PARENT_ONLY.iter().any(|flag| arg.starts_with(&format!("{flag}="))) {
            out.push(arg.clone());
        }
    }
    out
}

/// Runs `config` as `config.processes` parts. `args` is this process's command line after the
/// program name.
pub fn run(config: BenchConfig, args: &[String]) -> Result<Report, String> {
    config.prepare()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let epoch_ns = monotonic_ns();
    let dir = std::env::temp_dir();
    let n = config.processes;
    let json_paths: Vec<_> =
        (0..n).map(|i| dir.join(format!("wschat-bench-{}-part{i}.json", std::process::id()))).collect();
    let mut parts = Parts(Vec::new());
    for (i, path) in json_paths.iter().enumerate() {
        let child = Command::new(&exe)
            .args(part_args(args))
            .args(["--part", &format!("{i}/{n}"), "--epoch-ns", &epoch_ns.to_string(), "--json"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a bench process: {e}"))?;
        parts.0.push(child);
    }
    eprintln!("wschat-bench: {n} processes connecting {} clients", thousands(config.clients as u64));
    let connecting = Instant::now();
    let mut connected = 0;
    for (i, child) in parts.0.iter_mut().enumerate() {
        let stdout = child.stdout.as_mut().expect("piped");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let counts: Vec<u64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
        match (line.starts_with("connected "), counts.as_slice()) {
            (true, [ok, _failed]) => connected += ok,
            // The part said why on its stderr, which is ours.
            _ => return Err(format!("bench process {i} of {n} stopped before sending")),
        }
    }
    let connect_time = connecting.elapsed();
    let server_start = cpu::Mark::now(&config.server_pid, 0).server();
    let started = Instant::now();
    // A moment ahead, so that every part has the word before the start.
    let start_ns = monotonic_ns().saturating_sub(epoch_ns) + 50_000_000;
    for child in &mut parts.0 {
        let stdin = child.stdin.as_mut().expect("piped");
        let _ = writeln!(stdin, "go {start_ns}").and_then(|()| stdin.flush());
    }
    eprintln!(
        "wschat-bench: {} connected in {:.1} s; sending for {:?} after {:?} of warm-up",
        thousands(connected),
        connect_time.as_secs_f64(),
        config.duration,
        config.warmup
    );
    for (i, child) in parts.0.iter_mut().enumerate() {
        let status = child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("bench process {i} of {n} failed ({status})"));
        }
    }
    let wall = started.elapsed();
    let server_end = cpu::Mark::now(&config.server_pid, 0).server();
    let mut results = Vec::new();
    for path in &json_paths {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let _ = std::fs::remove_file(path);
        results.push(serde_json::from_str::<Value>(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    Ok(merge(config, &results, connect_time, wall, server_start.zip(server_end)))
}

/// One report from the parts' results.
fn merge(
    config: BenchConfig,
    results: &[Value],
    connect_time: Duration,
    wall: Duration,
    server_cpu: Option<(Duration, Duration)>,
) -> Report {
    let sum = |field: &str| results.iter().filter_map(|r| r[field].as_u64()).sum::<u64>();
    let mut latency = latency_histogram();
    let mut connect = latency_histogram();
    for result in results {
        let _ = latency.add(histogram_from(&result["latency_histogram"]));
        let _ = connect.add(histogram_from(&result["connect_histogram"]));
    }
    let bench_cpu = Duration::from_secs_f64(results.iter().filter_map(|r| r["bench_cpu_s"].as_f64()).sum());
    let deliveries = sum("window_deliveries");
    let per_delivery = |cpu: Duration| (deliveries > 0).then(|| cpu.as_nanos() as f64 / deliveries as f64);
    let cores = cpu::usable_cores(config.threads * config.processes);
    let connected = sum("connected");
    let sent = sum("sent");
    Report {
        connected,
        connect_failures: sum("connect_failures"),
        connect,
        connect_time,
        sent,
        delivered: sum("deliveries"),
        expected: sent * config.receivers(connected),
        delivered_total: sum("deliveries_total"),
        latency,
        churn_cycles: sum("churn_cycles"),
        churn_failures: sum("churn_failures"),
        first_failure: results.iter().find_map(|r| r["first_failure"].as_str().map(str::to_string)),
        cpu: Usage {
            bench_ns_per_delivery: per_delivery(bench_cpu),
            server_ns_per_delivery: server_cpu.and_then(|(a, b)| per_delivery(b.saturating_sub(a))),
            // Across bench processes only the sum is read.
            server_ns_per_delivery_each: Vec::new(),
            bench_core_use: bench_cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9) / cores.max(1) as f64,
            bench_cpu,
            deliveries,
        },
        received: Received { wire_bytes: sum("wire_bytes"), message_bytes: sum("message_bytes") },
        handshakes: sum("handshakes"),
        handshakes_deflate: sum("handshakes_deflate"),
        config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::histogram_json;

    #[test]
    fn a_part_inherits_every_flag_but_the_parents_outputs_and_the_split() {
        let args: Vec<String> =
            "ws://h/ --clients 10 --processes 2 --json out.json --histogram=h.txt --rate 5 --json=x"
                .split(' ')
                .map(String::from)
                .collect();
        assert_eq!(part_args(&args), ["ws://h/", "--clients", "10", "--rate", "5"]);
    }

    #[test]
    fn histograms_survive_the_trip_through_json() {
        let mut histogram = latency_histogram();
        for v in [1_000u64, 1_000, 250_000, 9_000_000] {
            histogram.record(v).unwrap();
        }
        let value: Value = serde_json::from_str(&histogram_json(&histogram)).unwrap();
        let back = histogram_from(&value);
        assert_eq!((back.len(), back.max(), back.value_at_quantile(0.5)), (4, histogram.max(), 1_000));
    }
}
