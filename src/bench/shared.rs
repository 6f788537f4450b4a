//! What the bench's threads have in common, below everything that runs them: the state the
//! workers share with the coordinating thread ([`Shared`]: counters, the measured window, stop
//! flags), what each worker is asked to do ([`Plan`], its [`Slot`]s and [`Pace`]), the run's
//! clock ([`monotonic_ns`]) and the latency histograms every figure is kept in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::handshake::Offers;
use super::samples::Samples;
use super::text::TextSize;
use crate::tls::client::ClientTls;

/// State shared by the workers and the coordinating thread.
pub struct Shared {
    /// The run's clock origin, in CLOCK_MONOTONIC nanoseconds: the same clock in every process
    /// of a `--processes` run, so a token's send time means the same to every receiver.
    pub epoch_ns: u64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Messages sent, and deliveries seen, inside the measured window: the report's figures,
    /// and what the drain waits for.
    pub sent_counted: AtomicU64,
    pub delivered_counted: AtomicU64,
    /// Nanoseconds since `epoch` at which counted traffic starts; 0 until traffic may start.
    pub traffic_start_ns: AtomicU64,
    pub measure_from_ns: AtomicU64,
    pub measure_until_ns: AtomicU64,
    pub stop_sending: AtomicBool,
    pub stop: AtomicBool,
    /// Churned connections that closed cleanly (`--churn`).
    pub churn_cycles: AtomicU64,
    /// While churning: closes that timed out, reconnections that failed, and open
    /// connections the server ended.
    pub churn_failures: AtomicU64,
    /// Latencies of the last progress interval, merged in by workers, taken by the reporter.
    pub interval: Mutex<Histogram<u64>>,
    /// Why the first connection that failed did, to tell the user.
    pub first_failure: Mutex<Option<String>>,
    /// Clients (by [`Slot::index`]) that may be opened so far: all of them, but for a
    /// shootout, which adds them step by step.
    pub open_limit: AtomicUsize,
    /// A shootout's samples.
    pub samples: Option<Samples>,
    /// Bytes read from the sockets, and of the data messages in them after inflating (see
    /// [`Tally`](super::client::Tally)).
    pub wire_bytes: AtomicU64,
    pub message_bytes: AtomicU64,
    /// Handshakes completed, and those that agreed on `permessage-deflate`.
    pub handshakes: AtomicU64,
    pub handshakes_deflate: AtomicU64,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            epoch_ns: monotonic_ns(),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            sent_counted: AtomicU64::new(0),
            delivered_counted: AtomicU64::new(0),
            traffic_start_ns: AtomicU64::new(0),
            measure_from_ns: AtomicU64::new(u64::MAX),
            measure_until_ns: AtomicU64::new(u64::MAX),
            stop_sending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            churn_cycles: AtomicU64::new(0),
            churn_failures: AtomicU64::new(0),
            interval: Mutex::new(latency_histogram()),
            first_failure: Mutex::new(None),
            open_limit: AtomicUsize::new(usize::MAX),
            samples: None,
            wire_bytes: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            handshakes_deflate: AtomicU64::new(0),
        }
    }

    /// For `--shootout`: no client opens before the first step.
    pub fn for_shootout(samples: Samples) -> Self {
        Self { open_limit: AtomicUsize::new(0), samples: Some(samples), ..Self::new() }
    }

    pub fn now_ns(&self) -> u64 {
        monotonic_ns().saturating_sub(self.epoch_ns)
    }

    /// A run whose clock starts at `epoch_ns` (a `--processes` parent's).
    pub fn with_epoch(epoch_ns: u64) -> Self {
        Self { epoch_ns, ..Self::new() }
    }

    /// Records why a connection failed, if none did before.
    pub fn note_failure(&self, why: String) {
        if let Ok(mut first) = self.first_failure.lock() {
            first.get_or_insert(why);
        }
    }

    /// Why the first connection that failed did.
    pub fn failure(&self) -> Option<String> {
        self.first_failure.lock().ok().and_then(|first| first.clone())
    }

    /// The bytes received so far.
    pub fn received(&self) -> Received {
        Received {
            wire_bytes: self.wire_bytes.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether a message sent at `sent_ns` falls in the measured window.
    pub fn counted(&self, sent_ns: u64) -> bool {
        sent_ns >= self.measure_from_ns.load(Ordering::Relaxed)
            && sent_ns < self.measure_until_ns.load(Ordering::Relaxed)
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes received: read from the sockets, and of the data messages in them after inflating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    pub wire_bytes: u64,
    pub message_bytes: u64,
}

impl Received {
    /// What was received since `earlier`.
    pub fn since(&self, earlier: &Received) -> Received {
        Received {
            wire_bytes: self.wire_bytes.saturating_sub(earlier.wire_bytes),
            message_bytes: self.message_bytes.saturating_sub(earlier.message_bytes),
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: what `Instant` reads on Linux, but as a number that means the
/// same in every process on the machine.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Latencies in nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// How a worker's senders send.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each sender keeps at most this many of its messages unacknowledged (not yet received
    /// back by itself).
    Window(u64),
    /// Each sender sends one message every this many nanoseconds.
    Interval(u64),
    /// No sending at all (`--idle`).
    Idle,
    /// `--shootout`: each sender sends a step's samples one at a time, the next once the last
    /// reached every client.
    Shootout,
}

/// What one worker is asked to do.
pub struct Plan {
    pub addr: SocketAddr,
    /// For `wss://`: the TLS session settings.
    pub tls: Option<ClientTls>,
    pub host: String,
    pub path: String,
    /// This worker's clients, in the order they are opened.
    pub clients: Vec<Slot>,
    pub connect_concurrency: usize,
    pub size: usize,
    /// `--text-size`: chat-like text of a random length in this range instead of `size` bytes.
    pub text: Option<TextSize>,
    /// What every connection offers in its handshake.
    pub offers: Offers,
    /// Inflate every compressed frame, rather than reuse the inflation of the same bytes
    /// (see [`payload`](super::payload)).
    pub inflate_every_frame: bool,
    pub pace: Pace,
    /// Senders across all threads, to stagger their start evenly over one interval.
    pub total_senders: u32,
    /// Mean connection lifetime once traffic starts (`--churn`): each connection closes
    /// cleanly after a random 0.5 to 1.5 times this, and its client connects again at once.
    pub churn: Option<Duration>,
}

/// One client of a plan.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// The client's number across all threads (client i goes to thread i mod threads).
    pub index: usize,
    /// Global sender id if this client sends.
    pub sender: Option<u32>,
    /// The local address to connect from (`--source-addrs`); the system's choice if None.
    pub source: Option<std::net::IpAddr>,
    /// Text sent as soon as each of its handshakes completes (`--room`'s `/join`).
    pub first_message: Option<Vec<u8>>,
}
