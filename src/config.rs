//! The server's command line: every flag, its default and its `--help` text, as clap parses
//! them.
//!
//! Every limit the server enforces has a flag here, with a sensible default: the chat's
//! counts default to the chat's own defaults, sizes and durations are read by [`crate::units`]
//! (`64KiB`, `10s`). Whether the flags make sense together, and what they become once checked
//! (every value derived from them included), is [`crate::settings`]'s job: settings depend on
//! the flags, never the reverse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use log::LevelFilter;

use crate::units::{parse_duration, parse_size};

/// A WebSocket chat server: one thread, one poll loop, encode-once broadcast.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "wschat-server",
    version,
    about = "A WebSocket chat server: one thread, one poll loop, encode-once broadcast",
    long_about = None,
    after_help = concat!(
        crate::units_help!(),
        "\n\nExit status: 0 after a clean shutdown, 1 when the server cannot run (address in use), \
         2 for a bad command line."
    )
)]
pub struct Config {
    /// Address to listen on: 127.0.0.1:9001, :9001 or 9001 (loopback), 0.0.0.0:9001 (every
    /// interface), [::1]:9001, localhost:9001. Port 0 picks a free port; the log says which.
    #[arg(default_value = "127.0.0.1:9001", value_parser = parse_listen_addr)]
    pub addr: SocketAddr,

    /// Pending TCP connections the kernel queues before the server accepts them (capped by
    /// net.core.somaxconn); too small a queue turns connection bursts into multi-second retries.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub backlog: u32,

    /// Most clients at once (handshaking or open); past it new clients get HTTP 503.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_connections: usize,

    /// Most clients at once from one IP address (HTTP 503 past it); 0 = no limit. Behind a
    /// reverse proxy on the same host every client shares the proxy's address: set 0 there.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_connections_per_ip: usize,

    /// Largest incoming message (all fragments together); larger ones are closed with 1009.
    #[arg(long, default_value = "64KiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_message_size: usize,

    /// Most bytes queued for one client; a reader that falls further behind is disconnected (1008).
    #[arg(long, default_value = "1MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_outbound: usize,

    /// Rooms with more members than this get no join/leave/nick announcements (only the
    /// client concerned is told), so a huge room is not flooded with N-squared notices.
    #[arg(long, default_value_t = crate::chat::DEFAULT_ANNOUNCE_LIMIT, value_name = "N")]
    pub announce_limit: usize,

    /// Messages kept per room and sent to whoever joins it (text and /me, not private or
    /// binary); a reconnecting client gets what it missed from them. 0 turns history off.
    #[arg(long, default_value_t = crate::chat::DEFAULT_HISTORY, value_name = "N")]
    pub history: usize,

    /// Empty rooms whose history is kept (so their members can come back to it); past this,
    /// the room emptied longest ago is forgotten.
    #[arg(long, default_value_t = crate::chat::DEFAULT_HISTORY_ROOMS, value_name = "N")]
    pub history_rooms: usize,

    /// Most memory all rooms' histories may take together; past it, empty rooms are forgotten
    /// first (emptied longest ago first), then the room being written to drops its oldest
    /// messages.
    #[arg(long, default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    pub history_memory: usize,

    /// How long after sending it a member may still /edit a message.
    #[arg(long, default_value = "15m", value_parser = parse_duration, value_name = "DURATION")]
    pub edit_window: Duration,

    /// Time allowed from TCP accept to a complete WebSocket handshake.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub handshake_timeout: Duration,

    /// A client silent this long is closed (1001); it is pinged halfway through the silence.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Time allowed for a closing handshake (or a rejected request's reply) to finish.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub close_timeout: Duration,

    /// On SIGINT/SIGTERM, time allowed for clients to receive close 1001 before exit.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,

    /// Per-connection read buffer; small keeps idle connections cheap, large reads big messages in fewer syscalls.
    #[arg(long, default_value = "256B", value_parser = parse_size, value_name = "SIZE")]
    pub read_buffer_size: usize,

    /// permessage-deflate for clients that offer it (browsers do): `on` or `off`. Accepted only
    /// without context takeover, so each broadcast is compressed once for all its recipients and
    /// no connection keeps a compression state.
    #[arg(long, default_value = "on", value_parser = parse_on_off, value_name = "on|off", action = clap::ArgAction::Set)]
    pub deflate: bool,

    /// Messages shorter than this go uncompressed even to clients that negotiated
    /// permessage-deflate (compressing them saves too little to pay).
    #[arg(long, default_value = "128", value_parser = parse_size, value_name = "SIZE")]
    pub deflate_min_size: usize,

    /// Frames (data, continuation, ping and pong) one client may send per second, bursts of a second's worth included; past it, close 1008. 0 = no limit.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_messages_per_sec: u32,

    /// Web origins (besides the server's own) whose pages may open a WebSocket, comma-separated, e.g. https://chat.example.com; * allows any.
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Serve TLS only (https:// and wss://) with this certificate chain (PEM, leaf first); needs --tls-key. SIGHUP re-reads both files.
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve Prometheus metrics at http://ADDR/metrics, on a listener of their own (keep it private: 127.0.0.1:9100, or an internal address). Off by default.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    pub metrics: Option<SocketAddr>,

    /// Serve the HTTP API (docs/API.md) at http://ADDR/api/, on a listener of its own (keep it
    /// private, like --metrics). Needs --api-key-file. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr, requires = "api_key_file")]
    pub api: Option<SocketAddr>,

    /// The keys API requests may carry (Authorization: Bearer KEY): one per line, at least 16
    /// characters; blank lines and lines starting with # are ignored. SIGHUP re-reads it.
    #[arg(long, value_name = "FILE", requires = "api")]
    pub api_key_file: Option<PathBuf>,

    /// Verify connection tokens (JWT, HS256) with the secret in FILE: the file's bytes without
    /// one trailing newline, used as they are, not decoded; at least 32 bytes (`head -c 48
    /// /dev/urandom | base64 > FILE` makes one; `wschat-token` signs with it).
    /// Clients present a token as ?token=JWT or Authorization: Bearer JWT; its `sub` is their
    /// nick. SIGHUP re-reads the key files.
    #[arg(long, value_name = "FILE")]
    pub jwt_secret: Option<PathBuf>,

    /// Verify connection tokens with the PEM public key in FILE (RS256, ES256 or EdDSA, by the
    /// key's type). May be given with --jwt-secret.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Accept only tokens whose `aud` is AUD.
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,

    /// Accept only tokens whose `iss` is ISS.
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,

    /// Refuse (HTTP 401) every WebSocket without a valid token. Without it, clients without a
    /// token are guests (guest-N, no /nick).
    #[arg(long)]
    pub require_auth: bool,

    /// Keep every room's history, epoch and sequence in DIR (an embedded database,
    /// DIR/history.redb), so clients resume across a restart. Off by default: history is
    /// then in memory only, and a restart starts new epochs.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// With --data-dir: messages kept per room on disk (at least --history), for clients
    /// scrolling back with /history past what memory holds.
    #[arg(long, default_value_t = crate::store::DEFAULT_RETAIN, value_name = "N", requires = "data_dir")]
    pub retain: usize,

    /// Join the cluster this Redis holds: several wschat processes (on one machine or many)
    /// become one chat, sharing rooms, history and ids through it. URL:
    /// redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Without it the server is a chat on its own.
    #[arg(long, value_name = "URL", value_parser = crate::cluster::RedisUrl::parse, conflicts_with = "data_dir")]
    pub redis: Option<crate::cluster::RedisUrl>,

    /// With --redis: how long after its last heartbeat a process that died still counts as
    /// alive; its members leave /who and their nicks become free after this.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub presence_ttl: Duration,

    /// With --redis: how long a busy room's lone message may wait for the next one, so that
    /// they go to Redis in one call (only when another sender's call left less than this ago;
    /// a quiet room's message never waits). 0 sends every turn's messages at once.
    #[arg(long, default_value = "5ms", value_parser = parse_duration, value_name = "DURATION")]
    pub redis_linger: Duration,

    /// Let several processes listen on the same address (SO_REUSEPORT): the kernel spreads
    /// new connections across them. With --redis, one process per core uses every core.
    #[arg(long)]
    pub reuse_port: bool,

    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with_all = ["quiet", "log_level"])]
    pub verbose: u8,

    /// Less logging (-q warnings and errors only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "log_level")]
    pub quiet: u8,

    /// Exact log level.
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level())]
    pub log_level: Option<LevelFilter>,
}

impl Config {
    /// The log level the flags ask for (default info).
    pub fn log_level(&self) -> LevelFilter {
        if let Some(level) = self.log_level {
            return level;
        }
        match (self.verbose, self.quiet) {
            (0, 0) => LevelFilter::Info,
            (1, _) => LevelFilter::Debug,
            (v, _) if v >= 2 => LevelFilter::Trace,
            (_, 1) => LevelFilter::Warn,
            _ => LevelFilter::Error,
        }
    }

    /// The default flags, on the given address (for tests and embedding).
    pub fn with_addr(addr: SocketAddr) -> Self {
        let mut config = Self::parse_from(["wschat-server"]);
        config.addr = addr;
        config
    }
}

/// Parses a listening address the way people type one: `127.0.0.1:9001`, `[::1]:9001`,
/// `localhost:9001`, or just a port (`9001`, `:9001`) on loopback.
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::{Ipv4Addr, ToSocketAddrs};
    let text = text.trim();
    let example = "try 127.0.0.1:9001, :9001 or 0.0.0.0:9001";
    if let Ok(port) = text.strip_prefix(':').unwrap_or(text).parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("{text:?} names no address ({example})")),
        Err(_) => Err(format!("not an address: {text:?} ({example})")),
    }
}

/// The `--log-level` parser: the levels by name, listed in the error for any other.
/// `on` or `off` (what the README and `--help` say), as a switch.
fn parse_on_off(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{text:?}: say on or off")),
    }
}

fn parse_log_level() -> impl clap::builder::TypedValueParser<Value = LevelFilter> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(["off", "error", "warn", "info", "debug", "trace"])
        .map(|level| level.parse::<LevelFilter>().expect("one of the listed levels"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let config = Config::with_addr("127.0.0.1:0".parse().unwrap());
        assert_eq!(config.max_message_size, 64 << 10);
        assert_eq!(config.max_outbound, 1 << 20);
        assert_eq!(config.handshake_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.log_level(), LevelFilter::Info);
    }

    #[test]
    fn addresses_the_way_people_type_them() {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(parse_listen_addr("9001"), Ok(loopback(9001)));
        assert_eq!(parse_listen_addr(":9001"), Ok(loopback(9001)));
        assert_eq!(parse_listen_addr("127.0.0.1:0"), Ok(loopback(0)));
        assert_eq!(parse_listen_addr("[::1]:9001"), Ok("[::1]:9001".parse().unwrap()));
        assert!(parse_listen_addr("localhost:9001").is_ok_and(|a| a.ip().is_loopback() && a.port() == 9001));
        let error = parse_listen_addr("nowhere").unwrap_err();
        assert!(error.contains("try 127.0.0.1:9001"), "{error}");
    }

    #[test]
    fn a_wrong_log_level_lists_the_right_ones() {
        let error = Config::try_parse_from(["wschat-server", "--log-level", "loud"]).unwrap_err().to_string();
        assert!(error.contains("off, error, warn, info, debug, trace"), "{error}");
    }

    #[test]
    fn redis_urls_are_checked_and_exclude_a_local_store() {
        let parse = |args: &[&str]| Config::try_parse_from([&["wschat-server"], args].concat());
        let config = parse(&["--redis", "redis://10.0.0.5:7000/2"]).unwrap();
        let url = config.redis.expect("--redis");
        assert_eq!((url.host.as_str(), url.port, url.db), ("10.0.0.5", 7000, 2));
        let error = parse(&["--redis", "localhost:6379"]).unwrap_err().to_string();
        assert!(error.contains("not a redis:// URL"), "{error}");
        // History lives in Redis then: a local store beside it would be a second truth.
        assert!(parse(&["--redis", "redis://h", "--data-dir", "/tmp/x"]).is_err());
    }

    #[test]
    fn deflate_takes_on_or_off() {
        let parse =
            |args: &[&str]| Config::try_parse_from([&["wschat-server"], args].concat()).map(|c| c.deflate);
        assert!(parse(&[]).unwrap(), "on by default");
        assert!(!parse(&["--deflate", "off"]).unwrap());
        assert!(parse(&["--deflate=on"]).unwrap());
        assert!(parse(&["--deflate", "maybe"]).unwrap_err().to_string().contains("say on or off"));
    }

    #[test]
    fn verbosity_flags() {
        let parse = |args: &[&str]| Config::parse_from([&["wschat-server"], args].concat()).log_level();
        assert_eq!(parse(&["-v"]), LevelFilter::Debug);
        assert_eq!(parse(&["-vv"]), LevelFilter::Trace);
        assert_eq!(parse(&["-q"]), LevelFilter::Warn);
        assert_eq!(parse(&["--log-level", "off"]), LevelFilter::Off);
    }
}
