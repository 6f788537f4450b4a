//! `--shootout`: the measure of the websocket-shootout benchmark (hashrocket's
//! `websocket-bench broadcast`): the largest number of clients for which a broadcast's p95
//! round time stays under a limit (500 ms), clients added in steps (1,000).
//!
//! At each step the clients are topped up to the step's count (connections are kept from one
//! step to the next), then `--senders` clients (4) take turns broadcasting `--samples` messages
//! (100): each sender sends its next sample once its previous one has reached every client, so
//! 4 broadcasts are in flight at a time. A sample's time runs from its sending to its arrival
//! at the *last* client, the moment the whole room has it. The steps stop at the first whose
//! p95 passes the limit, whose samples do not all arrive, or at `--clients`.
//!
//! This file runs the steps (on the workers and progress lines of [`mod@super::run`]) and shows
//! their outcome, [`Shootout`]; what the workers share with it while a step is sampled is
//! [`super::samples::Samples`].

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::BenchConfig;
use super::cpu;
use super::report::{duration_ns, per_delivery, thousands};
use super::run::{connect, cpu_mark, spawn_workers, Progress};
use super::samples::Samples;
use super::shared::Shared;

/// A time that was never reached (samples that did not all arrive): shown as `-`.
const NEVER: u64 = u64::MAX;

/// A step's time as the table shows it.
fn time(ns: u64) -> String {
    if ns == NEVER {
        "-".to_string()
    } else {
        duration_ns(ns)
    }
}

/// One step's outcome.
#[derive(Debug, Clone)]
pub struct Step {
    pub clients: u64,
    /// Samples that reached every client, of how many were sent.
    pub completed: usize,
    pub samples: usize,
    pub p50_ns: u64,
    pub p95_ns: u64,
    pub max_ns: u64,
    /// CPU per delivery while sampling, the bench's and (with `--server-pid`) the server's.
    pub cpu: cpu::Usage,
}

impl Step {
    /// A step of `clients` clients from the times of its samples that reached every client
    /// (`times`, sorted), of `total` sent: one whose samples did not all arrive has no p50, p95
    /// or max.
    fn new(clients: u64, times: &[u64], total: usize, cpu: cpu::Usage) -> Self {
        let at = |q: f64| match times.len() {
            0 => NEVER,
            n if n < total => NEVER,
            n => times[((q * n as f64).ceil() as usize).clamp(1, n) - 1],
        };
        Step {
            clients,
            completed: times.len(),
            samples: total,
            p50_ns: at(0.5),
            p95_ns: at(0.95),
            max_ns: times.last().copied().filter(|_| times.len() == total).unwrap_or(NEVER),
            cpu,
        }
    }

    fn passed(&self, limit: Duration) -> bool {
        self.completed == self.samples && self.p95_ns < limit.as_nanos() as u64
    }
}

/// Why the steps stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A step's p95 passed the limit (or some of its samples never arrived).
    Latency,
    /// Every step up to `--clients` stayed under the limit.
    Ceiling,
    /// Clients could not connect (the reason is shown).
    Connect(String),
}

/// The outcome of a shootout.
pub struct Shootout {
    pub config: BenchConfig,
    pub steps: Vec<Step>,
    pub stop: Stop,
}

impl Shootout {
    /// The largest client count whose step passed (0 if none did).
    pub fn max_clients(&self) -> u64 {
        let limit = self.config.shootout_limit;
        self.steps.iter().filter(|s| s.passed(limit)).map(|s| s.clients).max().unwrap_or(0)
    }

    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut out = format!(
            "wschat-bench {} shootout: step={} senders={} samples={} size={} limit p95 < {}\n",
            c.url,
            thousands(c.step as u64),
            c.senders,
            c.samples,
            c.size,
            duration_ns(c.shootout_limit.as_nanos() as u64)
        );
        let _ = writeln!(
            out,
            "{:>9} {:>10} {:>10} {:>10} {:>9} {:>12} {:>10} {:>12}",
            "clients", "p50", "p95", "max", "samples", "bench/deliv", "bench core", "server/deliv"
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{:>9} {:>10} {:>10} {:>10} {:>9} {:>12} {:>9.0}% {:>12}",
                thousands(s.clients),
                time(s.p50_ns),
                time(s.p95_ns),
                time(s.max_ns),
                format!("{}/{}", s.completed, s.samples),
                per_delivery(s.cpu.bench_ns_per_delivery),
                s.cpu.bench_core_use * 100.0,
                per_delivery(s.cpu.server_ns_per_delivery),
            );
        }
        let why = match &self.stop {
            Stop::Latency => "the next step passed the limit".to_string(),
            Stop::Ceiling => {
                format!("every step up to --clients {} stayed under it", thousands(c.clients as u64))
            }
            Stop::Connect(why) => format!("clients could not connect: {why}"),
        };
        let _ = writeln!(out, "max_clients: {} ({why})", thousands(self.max_clients()));
        out
    }

    pub fn json(&self) -> String {
        let ms = |ns: u64| (ns != NEVER).then(|| ns as f64 / 1e6);
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "clients": s.clients, "completed": s.completed, "samples": s.samples,
                    "p50_ms": ms(s.p50_ns), "p95_ms": ms(s.p95_ns), "max_ms": ms(s.max_ns),
                    "bench_cpu_ns_per_delivery": s.cpu.bench_ns_per_delivery,
                    "server_cpu_ns_per_delivery": s.cpu.server_ns_per_delivery,
                    "bench_core_use": s.cpu.bench_core_use,
                })
            })
            .collect();
        let stop = match &self.stop {
            Stop::Latency => "latency",
            Stop::Ceiling => "ceiling",
            Stop::Connect(_) => "connect",
        };
        let c = &self.config;
        let value = serde_json::json!({
            "url": c.url.as_str(), "shootout": true, "step": c.step, "senders": c.senders, "samples": c.samples,
            "size": c.size, "limit_ms": c.shootout_limit.as_secs_f64() * 1e3,
            "max_clients": self.max_clients(), "stopped_by": stop, "steps": steps,
        });
        format!("{value}\n")
    }
}

/// Runs the steps.
pub fn run(config: BenchConfig) -> Result<Shootout, String> {
    config.prepare()?;
    let shared = Arc::new(Shared::for_shootout(Samples::new(config.senders, config.samples)));
    let workers = spawn_workers(&config, &shared)?;
    let mut progress = Progress::new(shared.clone());
    // Senders wait for a step; traffic may flow from the start.
    shared.traffic_start_ns.store(shared.now_ns().max(1), Ordering::Release);
    let mut steps = Vec::new();
    let mut target = config.step.min(config.clients);
    let stop = loop {
        shared.open_limit.store(target, Ordering::Release);
        let connected = connect(&config, &shared, &mut progress, target as u64);
        if connected < target as u64 {
            let why = shared.failure().unwrap_or_else(|| format!("not within {:?}", config.connect_timeout));
            break Stop::Connect(format!(
                "{} of {} connected; {why}",
                thousands(connected),
                thousands(target as u64)
            ));
        }
        let step = sample(&config, &shared, &mut progress, steps.len() as u64 + 1, connected);
        let passed = step.passed(config.shootout_limit);
        steps.push(step);
        if !passed {
            break Stop::Latency;
        }
        if target >= config.clients {
            break Stop::Ceiling;
        }
        target = (target + config.step).min(config.clients);
    };
    shared.stop.store(true, Ordering::Release);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(Shootout { config, steps, stop })
}

/// Times step `number`'s samples among its `connected` clients, and says how it went on stderr.
fn sample(
    config: &BenchConfig,
    shared: &Shared,
    progress: &mut Progress,
    number: u64,
    connected: u64,
) -> Step {
    let samples = shared.samples.as_ref().expect("a shootout's samples");
    let sampling = cpu_mark(config, shared);
    samples.begin(number, config.receivers(connected));
    // Generous: a step that takes this long is far past any sensible limit.
    let deadline = Instant::now() + (config.shootout_limit * 20).max(Duration::from_secs(10));
    while samples.completed() < samples.total() && Instant::now() < deadline {
        progress.tick("sampling");
    }
    samples.pause();
    let cpu = cpu::Usage::between(&sampling, &cpu_mark(config, shared), cpu::usable_cores(config.threads));
    let step = Step::new(connected, &samples.times(), samples.total(), cpu);
    eprintln!(
        "step {number}: {} clients, p95 {} ({}/{} samples)",
        thousands(connected),
        time(step.p95_ns),
        step.completed,
        step.samples
    );
    step
}
