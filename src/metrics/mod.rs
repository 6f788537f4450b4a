//! What the server counts for operators, scraped from `--metrics ADDR` in the Prometheus text
//! format.
//!
//! Counting costs the loop an integer increment: [`Counters`] are plain `u64`s the hub and the
//! loop add to as things happen, and gauges ([`Gauges`]) are computed only when a scrape asks
//! (one pass over the connections). Nothing is shared, locked or atomic: the loop is the only
//! thread, and the scrape is answered by that same loop.
//!
//! - `exposition.rs` turns a counters-and-gauges snapshot into the text format, with the
//!   `prometheus-client` crate's encoder (names, types, help, escaping, histogram buckets);
//! - `endpoint.rs` is the second listener and its few short HTTP connections;
//! - `side.rs` is what it shares with the API's listener: a listener beside the chat's, its
//!   connections' tokens and slots, accepting with eviction and back-off;
//! - `slots.rs` decides which of those connections are kept: a deadline for the request head,
//!   and the oldest idle one evicted when a newcomer finds every slot taken.

pub mod endpoint;
mod exposition;
pub mod side;
pub mod slots;

pub use endpoint::MetricsEndpoint;
pub use exposition::render;

use std::time::Duration;

/// Why the server turned a connection away or ended it, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `--max-connections` reached: 503.
    ServerFull,
    /// `--max-connections-per-ip` reached: 503.
    AddressFull,
    /// A browser page from another site: 403.
    Origin,
    /// Any other refused request (400, 404, 405, 426, 431, 505).
    BadRequest,
    /// No complete handshake within `--handshake-timeout`.
    HandshakeTimeout,
    /// The TLS handshake or a TLS record failed (or plain HTTP came to the TLS port).
    Tls,
    /// No valid token where one is required, or an invalid one: 401.
    Unauthorized,
    /// Banned by a moderator: 403.
    Banned,
    /// Closed with 1008 for passing `--max-messages-per-sec`.
    RateLimited,
}

impl Verdict {
    /// The handshake refusals, in the order of [`Counters::refused`], with their label.
    pub const REFUSALS: [(Verdict, &'static str); 8] = [
        (Verdict::ServerFull, "server_full"),
        (Verdict::AddressFull, "address_full"),
        (Verdict::Origin, "origin"),
        (Verdict::BadRequest, "bad_request"),
        (Verdict::HandshakeTimeout, "handshake_timeout"),
        (Verdict::Tls, "tls_error"),
        (Verdict::Unauthorized, "unauthorized"),
        (Verdict::Banned, "banned"),
    ];

    fn refusal_index(self) -> Option<usize> {
        Self::REFUSALS.iter().position(|(v, _)| *v == self)
    }
}

/// The kinds of data message, for counts by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text = 0,
    Binary = 1,
}

/// Upper bounds of the loop-turn duration buckets, in seconds.
pub const TURN_BUCKETS: [f64; 10] =
    [0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5];

/// How long loop turns took (the work after each wait, not the wait).
#[derive(Debug, Clone, Default)]
pub struct TurnTimes {
    /// Turns at or under each bound of [`TURN_BUCKETS`] (not cumulative).
    pub buckets: [u64; TURN_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl TurnTimes {
    pub fn record(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        self.count += 1;
        self.sum_seconds += seconds;
        if let Some(i) = TURN_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i] += 1;
        }
    }
}

/// Everything counted since the server started.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Connections refused, by [`Verdict::REFUSALS`].
    pub refused: [u64; Verdict::REFUSALS.len()],
    /// Data messages received from clients, by [`Kind`].
    pub messages_received: [u64; 2],
    /// Data frames queued to clients (each recipient of a broadcast counts), by [`Kind`].
    pub deliveries: [u64; 2],
    /// Bytes read from clients (after TLS decryption).
    pub bytes_in: u64,
    /// Bytes written to clients (before TLS encryption); kept by fan-out, which does every
    /// write, and copied in for a scrape.
    pub bytes_out: u64,
    /// permessage-deflate: messages compressed (once per broadcast and window size, however
    /// many recipients share the frame), and their payload bytes before and after; kept by
    /// fan-out, copied in for a scrape.
    pub compressions: u64,
    pub compressed_from_bytes: u64,
    pub compressed_to_bytes: u64,
    /// Readers cut off with 1008 for falling `--max-outbound` behind.
    pub slow_readers_cut_off: u64,
    /// Clients closed with 1008 for passing `--max-messages-per-sec`.
    pub rate_limited: u64,
    /// Durable history transactions (`--data-dir`); kept by the write barrier, copied in for a
    /// scrape.
    pub history_commits: u64,
    /// With `--redis`: how many times what waits on Redis passed the bound past which no
    /// client is read.
    pub cluster_saturations: Option<u64>,
    /// With `--api`: the HTTP API's replies, as (endpoint, status, count); kept by the API's
    /// endpoint, copied in for a scrape.
    pub api_requests: Option<Vec<(&'static str, u16, u64)>>,
    pub turns: TurnTimes,
}

impl Counters {
    /// Counts how a connection was turned away or ended, if the server did so.
    pub fn count_verdict(&mut self, verdict: Verdict) {
        match verdict.refusal_index() {
            Some(i) => self.refused[i] += 1,
            None => self.rate_limited += 1,
        }
    }
}

/// What a scrape computes from the current state.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Connections reading their request head (TLS handshake included).
    pub handshaking: u64,
    /// Open WebSockets on the chat.
    pub chat: u64,
    /// Open WebSockets on `/echo`.
    pub echo: u64,
    /// Closing, or sending a last reply.
    pub closing: u64,
    pub rooms: u64,
    pub members: u64,
    /// Messages kept in history, and their cost in bytes.
    pub history_messages: u64,
    pub history_bytes: u64,
    /// Bytes queued for clients, not yet written.
    pub outbox_bytes: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// With `--redis`: whether Redis links this process to the others now.
    pub cluster_linked: Option<bool>,
    /// Bans held (`/ban`, and those read from Redis or the store).
    pub bans: u64,
}
