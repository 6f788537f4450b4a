//! The command line: [`BenchConfig`], the clap struct behind every flag, with the checks that
//! reject flags that make no sense together ([`BenchConfig::validate`]) and what the run
//! derives from them: which clients this process opens, how many receive each message,
//! whether losses can be counted, where to connect (`Target`), and the preparation every
//! kind of run starts with ([`BenchConfig::prepare`]).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::ArgPredicate;
use clap::Parser;

use super::text::TextSize;
use super::{cpu, wire};
use crate::server_url::ServerUrl;
use crate::tls::client::ClientTls;
use crate::units::parse_duration;

/// Load generator for WebSocket broadcast servers: throughput and latency percentiles.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "wschat-bench",
    version,
    about = "Load generator for WebSocket broadcast servers: throughput and latency percentiles",
    long_about = None,
    after_help = concat!(
        crate::units_help!(),
        "\n\nExit status: 0 after a run, 1 when no connection could be made (the reason is shown) \
         or a result file cannot be written, 2 for a bad command line."
    )
)]
pub struct BenchConfig {
    /// Server: ws://127.0.0.1:9001/, wss://HOST:PORT/ for a TLS server, 127.0.0.1:9001, or a
    /// bare HOST (an address without a scheme means ws://, and port 9001 if it names none).
    #[arg(value_parser = ServerUrl::parse)]
    pub url: ServerUrl,

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

    /// Chat-like text instead of the `x`s of --size: each message a line of English words
    /// (common words, in sentences) of a random length from MIN to MAX bytes, the token
    /// included, or of exactly N bytes. What deflate makes of it is what it makes of a chat.
    #[arg(long, value_parser = TextSize::parse, value_name = "MIN..MAX")]
    pub text_size: Option<TextSize>,

    /// Offer permessage-deflate (RFC 7692, no context takeover either way) on every
    /// connection, and inflate the compressed messages received before reading them (the
    /// bench's own messages go uncompressed). A server that declines is not an error: its
    /// messages come uncompressed, as they would to a browser, and the run warns and says on
    /// how many connections it was negotiated. An answer that was not offered fails the
    /// connection.
    #[arg(long)]
    pub deflate: bool,

    /// With --deflate: inflate every compressed frame. By default each thread keeps its recent
    /// inflations (up to 2,048 messages of at most 8 KiB) and reads a frame whose compressed bytes equal a kept one's from it (a
    /// broadcast compressed once reaches all its recipients as the same bytes), so that
    /// inflating does not make the bench the limit; this shows what a client pays instead.
    #[arg(long)]
    pub inflate_every_frame: bool,

    /// wschat only: offer the `wschat.json` subprotocol, so that every message arrives as a
    /// JSON object (JSON mode, what the browser client gets). A server that does not select it
    /// fails the connection.
    #[arg(long)]
    pub json_mode: bool,

    /// Measured sending time.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,

    /// Sending time before measuring starts (not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,

    /// Aggregate messages per second across all senders (fixed rate); overrides --window.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<u64>,

    /// Messages each sender may have in flight, sending as fast as that allows: sent and not yet
    /// received back by the sender itself. wschat writes each broadcast to the newest client
    /// first and to the senders (the first clients) last, so there a message stays in the
    /// window for its whole fan-out; a load generator whose window ends when its last client
    /// to connect receives a message has about twice as many in flight at the same N (its
    /// --window N compares with this one's 2N: docs/BENCHMARKS.md, issue 25).
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

    /// Also write the result as JSON to this file (its directory must exist: checked before
    /// the run, not after it).
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,

    /// The server echoes each message to its sender only, as wschat's `/echo` does: each
    /// message is expected once, back at its sender, rather than at every client. On by itself
    /// when the URL's path is `/echo`.
    #[arg(long)]
    pub echo: bool,

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
        if self.text_size.is_some_and(|text| text.min < wire::TOKEN_LEN) {
            return Err(format!("--text-size must be at least {} bytes (the token)", wire::TOKEN_LEN));
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
        if self.shootout && self.echoes() {
            return Err("--shootout times broadcasts to every client: not on an echo endpoint".into());
        }
        for (flag, path) in [("--json", &self.json), ("--histogram", &self.histogram)] {
            let Some(path) = path else { continue };
            let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(format!(
                    "{flag} {}: no directory {} to write it in",
                    path.display(),
                    dir.display()
                ));
            }
        }
        Ok(())
    }

    /// Whether the server echoes rather than broadcasts (`--echo`, or a URL ending in `/echo`).
    pub fn echoes(&self) -> bool {
        self.echo || self.url.path.split(['?', '#']).next() == Some("/echo")
    }

    /// Whether every client receives every message, so that losses can be counted: not with
    /// churn (receivers come and go) or several rooms.
    pub fn counts_losses(&self) -> bool {
        self.churn.is_none() && self.rooms == 1
    }

    /// How many clients receive each message, of `connected`: one, its sender, on an echo
    /// endpoint.
    pub fn receivers(&self, connected: u64) -> u64 {
        if self.echoes() {
            connected.min(1)
        } else if self.self_delivery {
            connected
        } else {
            connected.saturating_sub(1)
        }
    }

    /// The clients this process opens, by global index: all of them, or its part's share.
    pub fn my_clients(&self) -> Vec<usize> {
        match self.part {
            None => (0..self.clients).collect(),
            Some(Part { index, count }) => (index..self.clients).step_by(count).collect(),
        }
    }

    /// Checks the flags and `--server-pid`, and raises the open-file limit to what this
    /// process's clients need (or says which limit will stop them): before any run, of any kind.
    pub fn prepare(&self) -> Result<(), String> {
        self.validate()?;
        for &pid in &self.server_pid {
            cpu::of_process(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?;
        }
        if self.processes > 1 {
            return Ok(()); // each part raises its own
        }
        let wanted = self.my_clients().len() as u64 + crate::fdlimit::FILES_BESIDES_CONNECTIONS;
        if let Err(why) = crate::fdlimit::ensure(wanted) {
            eprintln!("wschat-bench: warning: --clients {}: {why}", self.clients);
        }
        Ok(())
    }

    /// The server's address, `Host` header, path and (for `wss://`) TLS settings.
    pub(super) fn target(&self) -> Result<Target, String> {
        let ServerUrl { secure, host, port, authority, path, .. } = &self.url;
        let addr = (host.as_str(), *port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or(format!("no address for {host}"))?;
        let tls = match secure {
            true => Some(ClientTls::new(crate::tls::client::config(self.ca_file.as_deref())?, host)?),
            false => None,
        };
        Ok(Target { addr, host: authority.clone(), path: path.clone(), tls })
    }
}

/// Where the bench connects.
pub(super) struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub tls: Option<ClientTls>,
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
}
