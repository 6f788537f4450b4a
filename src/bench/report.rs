//! The outcome of a timed run and how it is shown: [`Report`], its human-readable summary,
//! its latency distribution in HdrHistogram's text format, and its JSON result (with, from a
//! part of a `--processes` run, the histograms its parent merges). Also the figures' text
//! forms that the shootout's table and the progress lines share: counts with thousands
//! separators ([`thousands`]), durations to three significant digits ([`duration_ns`]) and
//! CPU per delivery. Beside CPU per delivery, bytes received per delivery: on the wire, and
//! after inflating (`--deflate`).

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::config::BenchConfig;
use super::cpu;
use super::shared::Received;

/// The outcome of a run.
pub struct Report {
    pub config: BenchConfig,
    pub connected: u64,
    pub connect_failures: u64,
    pub connect: Histogram<u64>,
    /// From the start of the run until every client had connected (or failed).
    pub connect_time: Duration,
    pub sent: u64,
    pub delivered: u64,
    pub expected: u64,
    /// Every delivery seen, warm-up and drain included (for CPU time per delivery).
    pub delivered_total: u64,
    pub latency: Histogram<u64>,
    /// Churned connections that closed cleanly, and churn closes or reconnections that failed.
    pub churn_cycles: u64,
    pub churn_failures: u64,
    /// Why the first failed connection failed.
    pub first_failure: Option<String>,
    /// CPU per delivery, both sides, from traffic start to the end of the drain.
    pub cpu: cpu::Usage,
    /// Bytes received over the same stretch (divided by `cpu.deliveries` per delivery).
    pub received: Received,
    /// Handshakes completed (churn's reconnections included), and those that agreed on
    /// `permessage-deflate`.
    pub handshakes: u64,
    pub handshakes_deflate: u64,
}

/// A count with thousands separators: `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A duration in nanoseconds, in the unit that shows it with three significant digits:
/// `850 ns`, `12.3 us`, `1.23 ms`, `2.50 s`.
pub fn duration_ns(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => return format!("{ns} ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "us"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// The value at `quantile`, as [`duration_ns`] writes it (`-` when nothing was measured).
fn at(histogram: &Histogram<u64>, quantile: f64) -> String {
    if histogram.is_empty() {
        return "-".to_string();
    }
    duration_ns(histogram.value_at_quantile(quantile))
}

fn us(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Above this share of its cores, the bench may have measured itself.
const BUSY_BENCH: f64 = 0.9;

impl Report {
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    pub fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.config.duration.as_secs_f64()
    }

    /// Bytes read from the sockets per delivery, and bytes of messages after inflating per
    /// delivery (None without deliveries).
    pub fn bytes_per_delivery(&self) -> Option<(f64, f64)> {
        let deliveries = self.cpu.deliveries as f64;
        (deliveries > 0.0).then(|| {
            (self.received.wire_bytes as f64 / deliveries, self.received.message_bytes as f64 / deliveries)
        })
    }

    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        self.write_setup(&mut out);
        if !self.config.idle {
            self.write_traffic(&mut out);
            self.write_bytes(&mut out);
            self.write_cpu(&mut out);
        }
        out
    }

    /// The summary's first lines: what was run, how the connections went, churn.
    fn write_setup(&self, out: &mut String) {
        let c = &self.config;
        let pace = match c.rate {
            Some(rate) => format!("rate={rate}/s"),
            None => format!("window={}", c.window),
        };
        let size = match c.text_size {
            Some(text) => format!("text={text}"),
            None => format!("size={}", c.size),
        };
        let modes = [(c.json_mode, " json-mode"), (c.deflate, " deflate")];
        let modes: String = modes.iter().filter(|(on, _)| *on).map(|(_, name)| *name).collect();
        let _ = writeln!(
            out,
            "wschat-bench {} clients={} senders={} {size} {pace} duration={:?} warmup={:?} threads={}{modes}",
            c.url, c.clients, c.senders, c.duration, c.warmup, c.threads
        );
        let _ = writeln!(
            out,
            "connect: ok={} failed={} in {} p50={} p99={} max={}",
            thousands(self.connected),
            thousands(self.connect_failures),
            duration_ns(self.connect_time.as_nanos() as u64),
            at(&self.connect, 0.5),
            at(&self.connect, 0.99),
            at(&self.connect, 1.0)
        );
        if let Some(why) = &self.first_failure {
            let _ = writeln!(out, "first connect failure: {why}");
        }
        if let Some(mean) = c.churn {
            let _ = writeln!(
                out,
                "churn: mean lifetime={mean:?} cycles={} failures={}",
                self.churn_cycles, self.churn_failures
            );
        }
    }

    /// The summary's message counts and latency percentiles.
    fn write_traffic(&self, out: &mut String) {
        let (expected, lost) = match self.config.counts_losses() {
            true => (thousands(self.expected), thousands(self.lost())),
            false => ("n/a".to_string(), "n/a".to_string()),
        };
        if self.config.echoes() {
            let _ = writeln!(out, "echo: each message is expected once, back at its sender");
        }
        let _ = writeln!(
            out,
            "messages: sent={} deliveries={} expected={expected} lost={lost} deliveries/s={}",
            thousands(self.sent),
            thousands(self.delivered),
            thousands(self.deliveries_per_sec() as u64)
        );
        let _ = writeln!(
            out,
            "latency: p50={} p90={} p99={} p99.9={} max={}",
            at(&self.latency, 0.5),
            at(&self.latency, 0.9),
            at(&self.latency, 0.99),
            at(&self.latency, 0.999),
            at(&self.latency, 1.0)
        );
    }

    /// The summary's bytes per delivery and, with `--deflate`, on how many connections it was
    /// negotiated (a warning when not on all).
    fn write_bytes(&self, out: &mut String) {
        let Some((wire, message)) = self.bytes_per_delivery() else { return };
        let _ =
            write!(out, "received: {wire:.1} bytes on the wire per delivery, messages {message:.1} bytes");
        let _ = match self.config.deflate {
            true => writeln!(out, " after inflating ({:.2}x the wire)", message / wire.max(1e-9)),
            false => writeln!(out),
        };
        if !self.config.deflate {
            return;
        }
        let (agreed, all) = (self.handshakes_deflate, self.handshakes);
        let _ =
            writeln!(out, "deflate: negotiated on {} of {} connections", thousands(agreed), thousands(all));
        if agreed < all {
            let _ = writeln!(
                out,
                "warning: the server declined permessage-deflate on {} connections: their messages came uncompressed",
                thousands(all - agreed)
            );
        }
    }

    /// The summary's CPU per delivery, and a warning when the bench itself was busy enough to
    /// have been the limit.
    fn write_cpu(&self, out: &mut String) {
        let cores = if self.config.threads > 1 { "s" } else { "" };
        let _ = writeln!(
            out,
            "cpu per delivery: bench={} ({:.0}% of its core{cores}) server={}",
            per_delivery(self.cpu.bench_ns_per_delivery),
            self.cpu.bench_core_use * 100.0,
            self.server_per_delivery()
        );
        if self.cpu.bench_core_use > BUSY_BENCH {
            let _ = writeln!(
                out,
                "warning: the bench used {:.0}% of its core{cores}: it may have been the limit, not the server \
                 (give it more --threads and cores)",
                self.cpu.bench_core_use * 100.0,
            );
        }
    }

    /// The server's CPU per delivery: all its processes together, and each when there are
    /// several.
    fn server_per_delivery(&self) -> String {
        let together = per_delivery(self.cpu.server_ns_per_delivery);
        match self.config.server_pid.len() {
            0 => "- (give --server-pid)".to_string(),
            1 => together,
            _ => {
                let each = self.cpu.server_ns_per_delivery_each.iter().map(|&ns| per_delivery(ns));
                format!("{together} (each: {})", each.collect::<Vec<_>>().join(", "))
            }
        }
    }

    /// The latency distribution in HdrHistogram's percentile-distribution text format (the
    /// output of Java's `outputPercentileDistribution` with 5 ticks per half distance),
    /// values in milliseconds.
    pub fn percentile_distribution(&self) -> String {
        const MS: f64 = 1e6;
        let h = &self.latency;
        let mut out = format!(
            "{:>12} {:>14} {:>10} {:>14}\n\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0;
        for step in h.iter_quantiles(5) {
            total += step.count_since_last_iteration();
            let (value, quantile) = (step.value_iterated_to() as f64 / MS, step.quantile_iterated_to());
            if quantile < 1.0 {
                let _ =
                    writeln!(out, "{value:12.3} {quantile:2.12} {total:10} {:14.2}", 1.0 / (1.0 - quantile));
            } else {
                let _ = writeln!(out, "{value:12.3} {quantile:2.12} {total:10}");
            }
        }
        let _ =
            writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / MS, h.stdev() / MS);
        let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / MS, h.len());
        // Three significant digits (see latency_histogram): 2,048 sub-buckets per bucket.
        let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), 2048);
        out
    }

    /// The result as a JSON object, for scripts.
    pub fn json(&self) -> String {
        let c = &self.config;
        format!(
            concat!(
                "{{\"url\":{:?},\"clients\":{},\"senders\":{},\"size\":{},\"rate\":{},\"window\":{},",
                "\"duration_s\":{},\"warmup_s\":{},\"threads\":{},\"connected\":{},\"connect_failures\":{},",
                "\"connect_s\":{:.3},\"connect_p50_us\":{:.1},\"connect_p99_us\":{:.1},\"sent\":{},\"deliveries\":{},",
                "\"expected\":{},\"lost\":{},\"churn_cycles\":{},\"churn_failures\":{},\"deliveries_total\":{},\"deliveries_per_sec\":{:.1},\"latency_p50_us\":{:.1},",
                "\"latency_p90_us\":{:.1},\"latency_p99_us\":{:.1},\"latency_p999_us\":{:.1},\"latency_max_us\":{:.1},",
                "\"bench_cpu_ns_per_delivery\":{},\"server_cpu_ns_per_delivery\":{},",
                "\"server_cpu_ns_per_delivery_each\":[{}],\"bench_core_use\":{:.3},",
                "\"bench_cpu_s\":{:.6},\"window_deliveries\":{},\"text_size\":{},\"json_mode\":{},\"deflate\":{},",
                "\"handshakes\":{},\"handshakes_deflate\":{},\"wire_bytes\":{},\"message_bytes\":{},",
                "\"wire_bytes_per_delivery\":{},\"message_bytes_per_delivery\":{}{}}}\n"
            ),
            c.url.as_str(),
            c.clients,
            c.senders,
            c.size,
            c.rate.map_or("null".to_string(), |r| r.to_string()),
            c.window,
            c.duration.as_secs_f64(),
            c.warmup.as_secs_f64(),
            c.threads,
            self.connected,
            self.connect_failures,
            self.connect_time.as_secs_f64(),
            us(&self.connect, 0.5),
            us(&self.connect, 0.99),
            self.sent,
            self.delivered,
            if c.counts_losses() { self.expected.to_string() } else { "null".into() },
            if c.counts_losses() { self.lost().to_string() } else { "null".into() },
            self.churn_cycles,
            self.churn_failures,
            self.delivered_total,
            self.deliveries_per_sec(),
            us(&self.latency, 0.5),
            us(&self.latency, 0.9),
            us(&self.latency, 0.99),
            us(&self.latency, 0.999),
            us(&self.latency, 1.0),
            json_number(self.cpu.bench_ns_per_delivery),
            json_number(self.cpu.server_ns_per_delivery),
            self.cpu.server_ns_per_delivery_each.iter().map(|&ns| json_number(ns)).collect::<Vec<_>>().join(","),
            self.cpu.bench_core_use,
            self.cpu.bench_cpu.as_secs_f64(),
            self.cpu.deliveries,
            c.text_size.map_or("null".to_string(), |text| format!("\"{text}\"")),
            c.json_mode,
            c.deflate,
            self.handshakes,
            self.handshakes_deflate,
            self.received.wire_bytes,
            self.received.message_bytes,
            json_number(self.bytes_per_delivery().map(|(wire, _)| wire)),
            json_number(self.bytes_per_delivery().map(|(_, message)| message)),
            match c.part {
                // What the parent of a --processes run merges.
                Some(_) => format!(
                    ",\"latency_histogram\":{},\"connect_histogram\":{},\"first_failure\":{}",
                    histogram_json(&self.latency),
                    histogram_json(&self.connect),
                    serde_json::Value::from(self.first_failure.clone())
                ),
                None => String::new(),
            }
        )
    }
}

/// CPU per delivery as the summaries show it: `-` when there is none.
pub fn per_delivery(ns: Option<f64>) -> String {
    ns.map_or("-".to_string(), |ns| duration_ns(ns.round() as u64))
}

/// A histogram as `[[value, count], ...]`, for the parent of a `--processes` run to merge.
pub fn histogram_json(histogram: &Histogram<u64>) -> String {
    let pairs: Vec<[u64; 2]> =
        histogram.iter_recorded().map(|v| [v.value_iterated_to(), v.count_at_value()]).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

/// A figure for the JSON output: one decimal, or null when there is none.
fn json_number(value: Option<f64>) -> String {
    value.map_or("null".to_string(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(7_171_200), "7,171,200");
    }

    #[test]
    fn durations_keep_three_significant_digits() {
        assert_eq!(duration_ns(850), "850 ns");
        assert_eq!(duration_ns(12_345), "12.3 us");
        assert_eq!(duration_ns(276_000), "276 us");
        assert_eq!(duration_ns(1_234_567), "1.23 ms");
        assert_eq!(duration_ns(2_500_000_000), "2.50 s");
    }
}
