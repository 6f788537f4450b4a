//! `wschat-bench`: a load generator for WebSocket broadcast servers.
//!
//! It opens `--clients` connections (at most `--connect-concurrency` handshakes at once), then
//! `--senders` of them send `--size`-byte text messages for `--duration` after `--warmup`, either
//! at a fixed aggregate `--rate` or as fast as a per-sender `--window` of unacknowledged messages
//! allows (a sender's message is acknowledged when the sender receives it back, so window mode
//! needs a server that delivers to the sender too, as wschat and the reference peers do).
//! Every message carries a token (sender, sequence, send time) that receivers find anywhere in
//! a text frame, so the same run measures wschat (`NICK: ` prefix) and plain broadcast servers.
//!
//! Only messages sent after the warm-up and before the end count; after the end the bench waits
//! (bounded) for their deliveries, then reports deliveries, expected deliveries, losses,
//! deliveries per second, end-to-end latency percentiles and CPU per delivery ([`cpu`]).
//!
//! Two other ways to run: [`shootout`] steps the client count up to the websocket-shootout
//! measure, and [`processes`] spreads one run over several processes, for more clients than
//! one process may open files.

pub mod client;
pub mod cpu;
pub mod processes;
pub mod samples;
pub mod shared;
pub mod shootout;
pub mod wire;
pub mod worker;

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::builder::ArgPredicate;
use clap::Parser;
use hdrhistogram::Histogram;

use crate::config::parse_duration;
use crate::tls::client::ClientTls;
use shared::{latency_histogram, Pace, Plan, Shared, Slot};

/// Load generator for WebSocket broadcast servers: throughput and latency percentiles.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "wschat-bench",
    version,
    about = "Load generator for WebSocket broadcast servers: throughput and latency percentiles",
    long_about = None,
    after_help = "Exit status: 0 after a run, 1 when no connection could be made (the reason is shown) \
                  or a result file cannot be written, 2 for a bad command line."
)]
pub struct BenchConfig {
    /// Server URL: ws://127.0.0.1:9001/, or wss://HOST:PORT/ for a TLS server.
    pub url: String,

    /// For wss://: also trust the CA certificates in this PEM file (a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Connections to open.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub clients: usize,

    /// Handshakes in flight at once, across all threads.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub connect_concurrency: usize,

    /// How many of the clients send (the first ones); 4 with --shootout.
    #[arg(
        long,
        default_value_t = 1,
        default_value_if("shootout", ArgPredicate::IsPresent, "4"),
        value_name = "N"
    )]
    pub senders: usize,

    /// Size of each message in bytes (at least the 43-byte token).
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub size: usize,

    /// Measured sending time.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,

    /// Sending time before measuring starts (not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,

    /// Aggregate messages per second across all senders (fixed rate); overrides --window.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<u64>,

    /// Unacknowledged messages each sender may have outstanding (as fast as possible).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub window: u64,

    /// Whether a sender receives its own messages (true for wschat and the reference peers).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub self_delivery: bool,

    /// Client threads, each with its own poll loop.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,

    /// wschat only: every client sends `/join ROOM` as its first message, so a load can run in
    /// a room of its own beside another (the flood scenario of `scripts/soak.py` does).
    #[arg(long, value_name = "ROOM")]
    pub room: Option<String>,

    /// With --room: spread the clients over this many rooms, ROOM-0 to ROOM-(N-1), client i in
    /// ROOM-(i mod N). Losses are not counted then (a message reaches only its room).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub rooms: usize,

    /// Connection churn: once traffic starts, every connection closes cleanly after a random
    /// 0.5 to 1.5 times this and its client connects again at once (senders keep sending).
    /// Needs --rate or --idle; losses are not counted (receivers come and go).
    #[arg(long, value_parser = parse_duration, value_name = "MEAN_LIFETIME")]
    pub churn: Option<Duration>,

    /// Only hold the connections open for --duration (for memory per connection).
    #[arg(long)]
    pub idle: bool,

    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,

    /// Also write the latency distribution to FILE in HdrHistogram's percentile-distribution
    /// text format, in milliseconds (what HdrHistogram's plotter and scripts/plot_latency.py read).
    #[arg(long, value_name = "FILE")]
    pub histogram: Option<std::path::PathBuf>,

    /// The server's process id: the report then gives its CPU time per delivery beside the
    /// bench's own (read from /proc, so the server must run on this machine). Several,
    /// comma-separated (the processes of a cluster, and its Redis): their sum, and each.
    #[arg(long, value_name = "PID[,PID...]", value_delimiter = ',')]
    pub server_pid: Vec<u32>,

    /// Spread the connections over this range of local source addresses, FIRST-LAST (such as
    /// 127.0.0.1-127.0.0.8; one address is a range of one): each source address has its own
    /// ~28,000 ephemeral ports (net.ipv4.ip_local_port_range), so a range lets one run open
    /// more connections to one server address than that. Client i uses address i mod N.
    #[arg(long, value_parser = parse_source_addrs, value_name = "FIRST-LAST")]
    pub source_addrs: Option<SourceAddrs>,

    /// The websocket-shootout measure instead of a timed run: add clients in --step steps up to
    /// --clients; at each step the --senders broadcast --samples messages, each sender's next
    /// once its last reached every client; report each step's p50/p95/max time to the last
    /// client, and max_clients, the most clients whose p95 stayed under --shootout-limit.
    #[arg(long, conflicts_with_all = ["rate", "churn", "idle"])]
    pub shootout: bool,

    /// --shootout: clients added per step.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub step: usize,

    /// --shootout: broadcasts timed per step, shared out among the senders.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub samples: usize,

    /// --shootout: a step passes while its p95 is under this.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub shootout_limit: Duration,

    /// Spread the clients over N bench processes, each with its own open-file limit (and
    /// --threads threads), on one clock; their results are merged into one report. Client i
    /// goes to process i mod N.
    #[arg(long, default_value_t = 1, value_name = "N", conflicts_with = "shootout")]
    pub processes: usize,

    /// Set by a --processes parent: this process runs part I of N of the clients, and waits
    /// for the parent's word to start sending.
    #[arg(long, hide = true, value_parser = parse_part, value_name = "I/N")]
    pub part: Option<Part>,

    /// Set by a --processes parent: the run's clock origin (CLOCK_MONOTONIC nanoseconds).
    #[arg(long, hide = true, value_name = "NS")]
    pub epoch_ns: Option<u64>,

    /// Time allowed for all connections to open.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,
}

/// Which share of the clients one process of a `--processes` run opens: client i belongs to
/// part `i % count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: usize,
    pub count: usize,
}

fn parse_part(text: &str) -> Result<Part, String> {
    let (index, count) = text.split_once('/').ok_or("expected I/N")?;
    let (index, count) = (index.parse().map_err(|_| "bad I")?, count.parse().map_err(|_| "bad N")?);
    if index >= count {
        return Err("I must be below N".into());
    }
    Ok(Part { index, count })
}

/// A range of local addresses to connect from (`--source-addrs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<IpAddr>);

/// Most addresses a `--source-addrs` range may name (a /16's worth).
const MAX_SOURCE_ADDRS: u128 = 65_536;

/// `FIRST-LAST` or a single address, both of one family, FIRST no later than LAST.
fn parse_source_addrs(text: &str) -> Result<SourceAddrs, String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let parse =
        |part: &str| part.trim().parse::<IpAddr>().map_err(|_| format!("{part:?} is not an IP address"));
    let (first, last) = (parse(first)?, parse(last)?);
    let (from, to) = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
        _ => return Err("both ends of the range must be IPv4, or both IPv6".into()),
    };
    if from > to {
        return Err(format!("{first} comes after {last}"));
    }
    if to - from >= MAX_SOURCE_ADDRS {
        return Err(format!("at most {MAX_SOURCE_ADDRS} addresses"));
    }
    let addrs = (from..=to)
        .map(|n| match first {
            IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(n)),
        })
        .collect();
    Ok(SourceAddrs(addrs))
}

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
}

impl BenchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.clients == 0 || self.threads == 0 || self.connect_concurrency == 0 {
            return Err("--clients, --threads and --connect-concurrency must be at least 1".into());
        }
        if self.senders > self.clients {
            return Err("--senders cannot exceed --clients".into());
        }
        if self.size < wire::TOKEN_LEN {
            return Err(format!("--size must be at least {} bytes (the token)", wire::TOKEN_LEN));
        }
        if self.rate.is_none() && self.window == 0 {
            return Err("--window must be at least 1".into());
        }
        if self.rate.is_none() && !self.self_delivery && !self.idle && self.senders > 0 {
            return Err("window mode needs --self-delivery true; use --rate otherwise".into());
        }
        if self.rooms == 0 || (self.rooms > 1 && self.room.is_none()) {
            return Err("--rooms must be at least 1, and more than 1 needs --room".into());
        }
        if self.churn.is_some_and(|mean| mean.is_zero()) {
            return Err("--churn must be longer than 0s".into());
        }
        if self.churn.is_some() && self.rate.is_none() && !self.idle {
            return Err(
                "--churn needs --rate or --idle (a window would stall on messages lost to a close)".into()
            );
        }
        if self.shootout && (self.step == 0 || self.samples == 0 || self.senders == 0) {
            return Err("--shootout needs --step, --samples and --senders of at least 1".into());
        }
        if self.shootout && self.step < self.senders {
            // The senders are the first clients: all of them must be in the first step.
            return Err("--shootout needs --step at least --senders".into());
        }
        if self.shootout && self.rooms > 1 {
            return Err("--shootout times broadcasts to every client: not with --rooms".into());
        }
        if self.processes == 0 || self.processes > self.clients {
            return Err("--processes must be between 1 and --clients".into());
        }
        if self.rate == Some(0) {
            return Err("--rate must be at least 1".into());
        }
        Ok(())
    }

    /// Whether every client receives every message, so that losses can be counted: not with
    /// churn (receivers come and go) or several rooms.
    pub fn counts_losses(&self) -> bool {
        self.churn.is_none() && self.rooms == 1
    }

    /// The clients this process opens, by global index: all of them, or its part's share.
    pub fn my_clients(&self) -> Vec<usize> {
        match self.part {
            None => (0..self.clients).collect(),
            Some(Part { index, count }) => (index..self.clients).step_by(count).collect(),
        }
    }

    /// The server's address, `Host` header, path and (for `wss://`) TLS settings.
    fn target(&self) -> Result<Target, String> {
        let (secure, rest) = match (self.url.strip_prefix("ws://"), self.url.strip_prefix("wss://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err("the URL must start with ws:// or wss://".into()),
        };
        let (host, path) = rest.find('/').map_or((rest, "/"), |at| (&rest[..at], &rest[at..]));
        let has_port = host.rsplit_once(':').is_some_and(|(_, port)| !port.contains(']'));
        let with_port =
            if has_port { host.to_string() } else { format!("{host}:{}", if secure { 443 } else { 80 }) };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or(format!("no address for {host}"))?;
        let tls = match secure {
            true => {
                let config = crate::tls::client::config(self.ca_file.as_deref())?;
                let name = host.rsplit_once(':').filter(|_| has_port).map_or(host, |(name, _)| name);
                Some(ClientTls::new(config, name.trim_start_matches('[').trim_end_matches(']'))?)
            }
            false => None,
        };
        Ok(Target { addr, host: host.to_string(), path: path.to_string(), tls })
    }
}

/// Where the bench connects.
struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    tls: Option<ClientTls>,
}

/// Starts `--threads` workers; client i goes to thread i % threads, and the first `--senders`
/// clients send.
fn spawn_workers(
    config: &BenchConfig,
    shared: &Arc<Shared>,
) -> Result<Vec<std::thread::JoinHandle<io::Result<worker::Outcome>>>, String> {
    let Target { addr, host, path, tls } = config.target()?;
    let pace = match (config.idle, config.rate) {
        _ if config.shootout => Pace::Shootout,
        (true, _) => Pace::Idle,
        (false, Some(rate)) => Pace::Interval(1_000_000_000 * config.senders.max(1) as u64 / rate),
        (false, None) => Pace::Window(config.window),
    };
    let mine = config.my_clients();
    let threads = config.threads.min(mine.len()).max(1);
    let mut handles = Vec::new();
    for t in 0..threads {
        let clients = mine
            .iter()
            .skip(t)
            .step_by(threads)
            .map(|&i| Slot {
                index: i,
                sender: (i < config.senders && !config.idle).then_some(i as u32),
                source: config.source_addrs.as_ref().map(|SourceAddrs(addrs)| addrs[i % addrs.len()]),
                first_message: config.room.as_ref().map(|room| match config.rooms {
                    1 => format!("/join {room}").into_bytes(),
                    n => format!("/join {room}-{}", i % n).into_bytes(),
                }),
            })
            .collect();
        let plan = Plan {
            addr,
            tls: tls.clone(),
            host: host.clone(),
            path: path.clone(),
            clients,
            connect_concurrency: config.connect_concurrency.div_ceil(threads),
            size: config.size,
            pace,
            total_senders: config.senders as u32,
            churn: config.churn,
        };
        let shared = shared.clone();
        handles.push(std::thread::spawn(move || worker::run(plan, shared)));
    }
    Ok(handles)
}

/// Waits for every client to connect or fail (bounded by `--connect-timeout`); returns how many
/// connected.
fn connect(config: &BenchConfig, shared: &Shared, progress: &mut Progress) -> u64 {
    let deadline = Instant::now() + config.connect_timeout;
    let mine = config.my_clients().len() as u64;
    while shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < mine
        && Instant::now() < deadline
    {
        progress.tick("connecting");
    }
    shared.connected.load(Ordering::Relaxed)
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

/// How many clients receive each message.
fn receivers(config: &BenchConfig, connected: u64) -> u64 {
    if config.self_delivery {
        connected
    } else {
        connected.saturating_sub(1)
    }
}

/// Waits for the counted messages to arrive: all of them when every client receives every
/// message, else until a second passes without a delivery; never more than 5 s.
fn drain(config: &BenchConfig, shared: &Shared, progress: &mut Progress, connected: u64) {
    let receivers = receivers(config, connected);
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

/// Checks the flags and `--server-pid`, and raises the open-file limit to what this process's
/// clients need (or says which limit will stop them): before any run, of any kind.
fn prepare(config: &BenchConfig) -> Result<(), String> {
    config.validate()?;
    for &pid in &config.server_pid {
        cpu::of_process(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?;
    }
    if config.processes > 1 {
        return Ok(()); // each part raises its own
    }
    let wanted = config.my_clients().len() as u64 + crate::fdlimit::FILES_BESIDES_CONNECTIONS;
    if let Err(why) = crate::fdlimit::ensure(wanted) {
        eprintln!("wschat-bench: warning: --clients {}: {why}", config.clients);
    }
    Ok(())
}

/// Runs the benchmark, printing a progress line to stderr every second.
pub fn run(config: BenchConfig) -> Result<Report, String> {
    prepare(&config)?;
    if config.part.is_some() {
        processes::end_with_parent();
    }
    let shared = Arc::new(config.epoch_ns.map_or_else(Shared::new, Shared::with_epoch));
    let handles = spawn_workers(&config, &shared)?;
    let mut progress = Progress::new(shared.clone());
    progress.quiet = config.part.is_some();
    let connecting = Instant::now();
    let connected = connect(&config, &shared, &mut progress);
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
    let traffic_start = cpu::Mark::now(&config.server_pid, shared.delivered.load(Ordering::Relaxed));
    send(&config, &shared, &mut progress, start_ns);
    drain(&config, &shared, &mut progress, connected);
    let traffic_end = cpu::Mark::now(&config.server_pid, shared.delivered.load(Ordering::Relaxed));
    shared.stop.store(true, Ordering::Release);
    let cores = cpu::usable_cores(config.threads);

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
        cpu: cpu::Usage::between(&traffic_start, &traffic_end, cores),
        config,
    };
    for handle in handles {
        let outcome = handle.join().map_err(|_| "a bench thread panicked".to_string())?;
        let outcome = outcome.map_err(|e: io::Error| format!("bench thread failed: {e}"))?;
        let _ = report.connect.add(&outcome.connect);
        let _ = report.latency.add(&outcome.latency);
    }
    // Read once every worker has stopped, so the figures are final.
    report.sent = shared.sent_counted.load(Ordering::Relaxed);
    report.delivered = shared.delivered_counted.load(Ordering::Relaxed);
    report.expected = report.sent * receivers(&report.config, connected);
    Ok(report)
}

/// Prints one progress line a second on stderr.
struct Progress {
    shared: Arc<Shared>,
    started: Instant,
    last: Instant,
    last_sent: u64,
    last_delivered: u64,
    /// A part of a `--processes` run: its parent speaks for it.
    quiet: bool,
}

impl Progress {
    fn new(shared: Arc<Shared>) -> Self {
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
    fn tick(&mut self, phase: &str) {
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

    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let pace = match c.rate {
            Some(rate) => format!("rate={rate}/s"),
            None => format!("window={}", c.window),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "wschat-bench {} clients={} senders={} size={} {pace} duration={:?} warmup={:?} threads={}",
            c.url, c.clients, c.senders, c.size, c.duration, c.warmup, c.threads
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
        if !c.idle {
            let (expected, lost) = match c.counts_losses() {
                true => (thousands(self.expected), thousands(self.lost())),
                false => ("n/a".to_string(), "n/a".to_string()),
            };
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
            let _ = writeln!(
                out,
                "cpu per delivery: bench={} ({:.0}% of its core{}) server={}",
                per_delivery(self.cpu.bench_ns_per_delivery),
                self.cpu.bench_core_use * 100.0,
                if c.threads > 1 { "s" } else { "" },
                match c.server_pid.len() {
                    0 => "- (give --server-pid)".to_string(),
                    1 => per_delivery(self.cpu.server_ns_per_delivery),
                    _ => format!(
                        "{} (each: {})",
                        per_delivery(self.cpu.server_ns_per_delivery),
                        self.cpu
                            .server_ns_per_delivery_each
                            .iter()
                            .map(|&ns| per_delivery(ns))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            );
            if self.cpu.bench_core_use > BUSY_BENCH {
                let _ = writeln!(
                    out,
                    "warning: the bench used {:.0}% of its core{}: it may have been the limit, not the server \
                     (give it more --threads and cores)",
                    self.cpu.bench_core_use * 100.0,
                    if c.threads > 1 { "s" } else { "" },
                );
            }
        }
        out
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
                "\"bench_cpu_s\":{:.6},\"window_deliveries\":{}{}}}\n"
            ),
            c.url,
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
            match c.part {
                // What the parent of a --processes run merges.
                Some(_) => format!(
                    ",\"latency_histogram\":{},\"connect_histogram\":{},\"first_failure\":{}",
                    processes::histogram_json(&self.latency),
                    processes::histogram_json(&self.connect),
                    serde_json::Value::from(self.first_failure.clone())
                ),
                None => String::new(),
            }
        )
    }
}

/// CPU per delivery as the summaries show it: `-` when there is none.
fn per_delivery(ns: Option<f64>) -> String {
    ns.map_or("-".to_string(), |ns| duration_ns(ns.round() as u64))
}

/// A figure for the JSON output: one decimal, or null when there is none.
fn json_number(value: Option<f64>) -> String {
    value.map_or("null".to_string(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_address_ranges_parse_and_bad_ones_say_why() {
        let addrs = |text| {
            parse_source_addrs(text).map(|SourceAddrs(a)| a.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(addrs("127.0.0.1-127.0.0.3").unwrap(), ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
        assert_eq!(addrs("127.0.0.255-127.0.1.0").unwrap(), ["127.0.0.255", "127.0.1.0"]);
        assert_eq!(addrs("127.0.0.9").unwrap(), ["127.0.0.9"]);
        assert_eq!(addrs("::1-::2").unwrap(), ["::1", "::2"]);
        assert!(addrs("127.0.0.3-127.0.0.1").unwrap_err().contains("comes after"));
        assert!(addrs("127.0.0.1-::1").unwrap_err().contains("both"));
        assert!(addrs("10.0.0.0-10.2.0.0").unwrap_err().contains("at most"));
        assert!(addrs("localhost").unwrap_err().contains("not an IP"));
    }

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
