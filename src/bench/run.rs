//! A timed run in one process (the default, and each part of a `--processes` run): the worker
//! threads are spawned with their plans, then this thread takes the run through its phases,
//! connect, warm-up and measured sending, drain, and makes the [`Report`] from what the
//! workers counted. `Progress` prints a line a second on stderr meanwhile. The shootout
//! steps through the same spawning, connecting and progress lines.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::{BenchConfig, SourceAddrs, Target};
use super::cpu;
use super::handshake::Offers;
use super::processes;
use super::report::{duration_ns, thousands, Report};
use super::shared::{latency_histogram, Pace, Plan, Received, Shared, Slot};
use super::worker::{self, Outcome};

/// The worker threads of a run, each ending with what it measured.
pub(super) type Workers = Vec<JoinHandle<io::Result<Outcome>>>;

/// Starts `--threads` workers; client i goes to thread i % threads, and the first `--senders`
/// clients send.
pub(super) fn spawn_workers(config: &BenchConfig, shared: &Arc<Shared>) -> Result<Workers, String> {
    let Target { addr, host, path, tls } = config.target()?;
    let mine = config.my_clients();
    let threads = config.threads.min(mine.len()).max(1);
    let mut workers = Vec::new();
    for t in 0..threads {
        let plan = Plan {
            addr,
            tls: tls.clone(),
            host: host.clone(),
            path: path.clone(),
            clients: mine.iter().skip(t).step_by(threads).map(|&i| slot(config, i)).collect(),
            connect_concurrency: config.connect_concurrency.div_ceil(threads),
            size: config.size,
            text: config.text_size,
            offers: Offers { deflate: config.deflate, json_mode: config.json_mode },
            inflate_every_frame: config.inflate_every_frame,
            pace: pace(config),
            total_senders: config.senders as u32,
            churn: config.churn,
        };
        let shared = shared.clone();
        workers.push(std::thread::spawn(move || worker::run(plan, shared)));
    }
    Ok(workers)
}

/// How the senders send: `--shootout`, `--idle`, `--rate` (shared out among the senders) or
/// `--window`.
fn pace(config: &BenchConfig) -> Pace {
    match (config.idle, config.rate) {
        _ if config.shootout => Pace::Shootout,
        (true, _) => Pace::Idle,
        (false, Some(rate)) => Pace::Interval(1_000_000_000 * config.senders.max(1) as u64 / rate),
        (false, None) => Pace::Window(config.window),
    }
}

/// Client `i` (by global index) as its worker's plan holds it.
fn slot(config: &BenchConfig, i: usize) -> Slot {
    Slot {
        index: i,
        sender: (i < config.senders && !config.idle).then_some(i as u32),
        source: config.source_addrs.as_ref().map(|SourceAddrs(addrs)| addrs[i % addrs.len()]),
        first_message: config.room.as_ref().map(|room| match config.rooms {
            1 => format!("/join {room}").into_bytes(),
            n => format!("/join {room}-{}", i % n).into_bytes(),
        }),
    }
}

/// Waits until `clients` clients have connected or failed (bounded by `--connect-timeout`);
/// returns how many are connected.
pub(super) fn connect(config: &BenchConfig, shared: &Shared, progress: &mut Progress, clients: u64) -> u64 {
    let deadline = Instant::now() + config.connect_timeout;
    while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < clients
        && Instant::now() < deadline
    {
        progress.tick("connecting");
    }
    shared.connected.load(Ordering::Relaxed)
}

/// The CPU times of the bench and of the `--server-pid` processes now, with the deliveries so
/// far: one end of a stretch whose CPU per delivery is reported.
pub(super) fn cpu_mark(config: &BenchConfig, shared: &Shared) -> cpu::Mark {
    cpu::Mark::now(&config.server_pid, shared.delivered.load(Ordering::Relaxed))
}

/// Warm-up from `start_ns` (on the run's clock), then the measured window: the workers send,
/// this thread reports progress.
fn send(config: &BenchConfig, shared: &Shared, progress: &mut Progress, start_ns: u64) {
    while shared.now_ns() < start_ns {
        std::thread::sleep(Duration::from_nanos(start_ns - shared.now_ns()).min(Duration::from_millis(10)));
    }
    let from_ns = start_ns + config.warmup.as_nanos() as u64;
    let until_ns = from_ns + config.duration.as_nanos() as u64;
    shared.measure_from_ns.store(from_ns, Ordering::Relaxed);
    shared.measure_until_ns.store(until_ns, Ordering::Relaxed);
    shared.traffic_start_ns.store(start_ns.max(1), Ordering::Release);
    let end = Instant::now() + config.warmup + config.duration;
    while Instant::now() < end {
        progress.tick(if config.idle { "holding" } else { "sending" });
    }
    shared.stop_sending.store(true, Ordering::Release);
}

/// Waits for the counted messages to arrive: all of them when every client receives every
/// message, else until a second passes without a delivery; never more than 5 s.
fn drain(config: &BenchConfig, shared: &Shared, progress: &mut Progress, connected: u64) {
    let receivers = config.receivers(connected);
    let all_arrived = || {
        // One process of several cannot tell: other processes' senders count their own sends.
        config.counts_losses()
            && config.part.is_none()
            && shared.delivered_counted.load(Ordering::Relaxed)
                >= shared.sent_counted.load(Ordering::Relaxed) * receivers
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut last, mut last_progress) = (u64::MAX, Instant::now());
    while Instant::now() < deadline && !all_arrived() {
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered != last {
            (last, last_progress) = (delivered, Instant::now());
        } else if last_progress.elapsed() >= Duration::from_secs(1) {
            break; // nothing more is coming
        }
        progress.tick("draining");
    }
}

/// Runs the benchmark, printing a progress line to stderr every second.
pub fn run(config: BenchConfig) -> Result<Report, String> {
    config.prepare()?;
    if config.part.is_some() {
        processes::end_with_parent();
    }
    let shared = Arc::new(config.epoch_ns.map_or_else(Shared::new, Shared::with_epoch));
    let workers = spawn_workers(&config, &shared)?;
    let mut progress = Progress::new(shared.clone());
    progress.quiet = config.part.is_some();
    let connecting = Instant::now();
    let connected = connect(&config, &shared, &mut progress, config.my_clients().len() as u64);
    let connect_time = connecting.elapsed();
    if connected == 0 {
        // Nothing to measure: say why at once instead of running to a table of zeros.
        shared.stop.store(true, Ordering::Release);
        let why =
            shared.failure().unwrap_or_else(|| format!("no connection within {:?}", config.connect_timeout));
        return Err(format!("no connection to {}: {why}", config.url));
    }
    let start_ns = match config.part {
        None => shared.now_ns(),
        Some(_) => processes::report_connected_and_wait(connected, shared.failed.load(Ordering::Relaxed))?,
    };
    warn_if_deflate_declined(&config, &shared);
    let traffic_start = cpu_mark(&config, &shared);
    let received_before = shared.received();
    send(&config, &shared, &mut progress, start_ns);
    drain(&config, &shared, &mut progress, connected);
    let traffic_end = cpu_mark(&config, &shared);
    let received = shared.received().since(&received_before);
    shared.stop.store(true, Ordering::Release);
    let cpu = cpu::Usage::between(&traffic_start, &traffic_end, cpu::usable_cores(config.threads));
    let mut report = collect(config, &shared, workers, connected, connect_time, cpu)?;
    report.received = received;
    Ok(report)
}

/// `--deflate` that some connections did not get: said at once, before the load runs.
fn warn_if_deflate_declined(config: &BenchConfig, shared: &Shared) {
    let handshakes = shared.handshakes.load(Ordering::Relaxed);
    let agreed = shared.handshakes_deflate.load(Ordering::Relaxed);
    if config.deflate && agreed < handshakes && config.part.is_none() {
        eprintln!(
            "wschat-bench: warning: --deflate: the server declined permessage-deflate on {} of {} \
             connections; their messages come uncompressed",
            thousands(handshakes - agreed),
            thousands(handshakes)
        );
    }
}

/// The report, once the workers have stopped: their histograms merged, and the counters read
/// once they are final.
fn collect(
    config: BenchConfig,
    shared: &Shared,
    workers: Workers,
    connected: u64,
    connect_time: Duration,
    cpu: cpu::Usage,
) -> Result<Report, String> {
    let mut report = Report {
        connected,
        connect_failures: shared.failed.load(Ordering::Relaxed),
        connect: latency_histogram(),
        connect_time,
        sent: 0,
        delivered: 0,
        expected: 0,
        delivered_total: shared.delivered.load(Ordering::Relaxed),
        latency: latency_histogram(),
        churn_cycles: shared.churn_cycles.load(Ordering::Relaxed),
        churn_failures: shared.churn_failures.load(Ordering::Relaxed),
        first_failure: shared.failure(),
        cpu,
        received: Received::default(),
        handshakes: shared.handshakes.load(Ordering::Relaxed),
        handshakes_deflate: shared.handshakes_deflate.load(Ordering::Relaxed),
        config,
    };
    for worker in workers {
        let outcome = worker.join().map_err(|_| "a bench thread panicked".to_string())?;
        let outcome = outcome.map_err(|e: io::Error| format!("bench thread failed: {e}"))?;
        let _ = report.connect.add(&outcome.connect);
        let _ = report.latency.add(&outcome.latency);
    }
    // Read once every worker has stopped, so the figures are final.
    report.sent = shared.sent_counted.load(Ordering::Relaxed);
    report.delivered = shared.delivered_counted.load(Ordering::Relaxed);
    report.expected = report.sent * report.config.receivers(connected);
    Ok(report)
}

/// Prints one progress line a second on stderr.
pub(super) struct Progress {
    shared: Arc<Shared>,
    started: Instant,
    last: Instant,
    last_sent: u64,
    last_delivered: u64,
    /// A part of a `--processes` run: its parent speaks for it.
    quiet: bool,
}

impl Progress {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            started: Instant::now(),
            last: Instant::now(),
            last_sent: 0,
            last_delivered: 0,
            quiet: false,
        }
    }

    /// Sleeps up to 100 ms and prints a line if a second has passed.
    pub(super) fn tick(&mut self, phase: &str) {
        std::thread::sleep(Duration::from_millis(100));
        let elapsed = self.last.elapsed();
        if elapsed < Duration::from_secs(1) || self.quiet {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let sent = self.shared.sent.load(Ordering::Relaxed);
        let delivered = self.shared.delivered.load(Ordering::Relaxed);
        let p99 = self.shared.interval.lock().map_or(None, |mut h| {
            let p99 = (!h.is_empty()).then(|| h.value_at_quantile(0.99));
            h.reset();
            p99
        });
        // Nothing is measured during the warm-up: say so rather than show zeros.
        let measuring = self.shared.now_ns() >= self.shared.measure_from_ns.load(Ordering::Relaxed);
        let phase = if phase == "sending" && !measuring { "warming up" } else { phase };
        eprintln!(
            "[{:>4.0}s] {phase:<10} connected {:>7} failed {:>5}  sent/s {:>11}  delivered/s {:>12}  p99 {:>9}",
            self.started.elapsed().as_secs_f64(),
            thousands(self.shared.connected.load(Ordering::Relaxed)),
            thousands(self.shared.failed.load(Ordering::Relaxed)),
            thousands(((sent - self.last_sent) as f64 / secs) as u64),
            thousands(((delivered - self.last_delivered) as f64 / secs) as u64),
            p99.map_or("-".to_string(), duration_ns)
        );
        self.last = Instant::now();
        self.last_sent = sent;
        self.last_delivered = delivered;
    }
}
