//! Criterion benchmarks of the broadcast path, from the whole server down to its parts, so a
//! regression shows where it happens:
//!
//! - `event_loop/N`: the real server loop in a background thread, N loopback clients draining
//!   their sockets (one bench worker thread), one sender; deliveries per second.
//! - `encode_once/N`: frame one message, queue it to N outboxes, flush them to sinks.
//! - `chat_fanout/N`: the chat rules turning one line into effects and resolving the room.
//!
//! `cargo bench` runs them; `cargo test` / `cargo clippy --all-targets` compile them.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tungstenite::Message;
use wschat::bench::wire::Token;
use wschat::bench::worker::{self, Pace, Plan, Shared, Slot};
use wschat::chat::{Audience, Chat, Effect, Join, Mode};
use wschat::frame::{self, Opcode};
use wschat::outbox::Outbox;
use wschat::{Server, Settings};

const SIZES: [usize; 3] = [10, 100, 1000];

/// Messages the sender may have ahead of the slowest receiver, keeping queues far below the cap.
const AHEAD: u64 = 32;

fn event_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_loop");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in SIZES {
        // The server is single-threaded by design (not Send): build it on its own thread.
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut settings = Settings::with_addr("127.0.0.1:0".parse().unwrap());
            settings.max_connections_per_ip = 0; // every client is on 127.0.0.1
            let server: Server = Server::bind(settings).expect("bind");
            addr_tx.send(server.local_addr()).unwrap();
            server.run()
        });
        let addr = addr_rx.recv().unwrap();

        // N receivers in one drainer thread; everything they receive is counted.
        let shared = Arc::new(Shared::new());
        shared.measure_from_ns.store(0, Ordering::Relaxed);
        let plan = Plan {
            addr,
            tls: None,
            host: addr.to_string(),
            path: "/".into(),
            clients: vec![Slot::default(); n],
            connect_concurrency: 64,
            size: 64,
            text: None,
            offers: Default::default(),
            inflate_every_frame: false,
            pace: Pace::Idle,
            total_senders: 0,
            churn: None,
        };
        let drainer = shared.clone();
        std::thread::spawn(move || worker::run(plan, drainer));
        while shared.connected.load(Ordering::Relaxed) < n as u64 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (mut sender, _) =
            tungstenite::client(format!("ws://{addr}/"), TcpStream::connect(addr).unwrap()).unwrap();
        sender.get_mut().set_nodelay(true).unwrap();

        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let start_count = shared.delivered.load(Ordering::Relaxed);
                let start = Instant::now();
                let mut payload = Vec::with_capacity(64);
                for seq in 0..iters {
                    while seq > AHEAD
                        && shared.delivered.load(Ordering::Relaxed) - start_count < (seq - AHEAD) * n as u64
                    {
                        drain(&mut sender);
                    }
                    payload.clear();
                    Token { sender: 0, seq, sent_ns: shared.now_ns() }.write(&mut payload);
                    payload.resize(64, b'x');
                    sender.write(Message::text(String::from_utf8(payload.clone()).unwrap())).unwrap();
                    sender.flush().unwrap();
                }
                while shared.delivered.load(Ordering::Relaxed) - start_count < iters * n as u64 {
                    drain(&mut sender);
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// Reads whatever the sender itself has received (it is in the room too), so its own copies
/// do not back up into the server's outbound limit.
fn drain(sender: &mut tungstenite::WebSocket<TcpStream>) {
    sender.get_mut().set_nonblocking(true).unwrap();
    while sender.read().is_ok() {}
    sender.get_mut().set_nonblocking(false).unwrap();
}

fn encode_once(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_once");
    let payload = b"alice: hello, everyone in this room; this is a 64 byte chat line";
    for n in SIZES {
        let mut outboxes: Vec<Outbox> = (0..n).map(|_| Outbox::new()).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let encoded = frame::encode(Opcode::Text, payload);
                for outbox in outboxes.iter_mut() {
                    outbox.push(encoded.clone());
                }
                for outbox in outboxes.iter_mut() {
                    outbox.flush_to(&mut Sink).unwrap();
                }
            })
        });
    }
    group.finish();
}

/// A socket stand-in that accepts everything, vectored.
struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn chat_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("chat_fanout");
    for n in SIZES {
        let mut chat = Chat::new();
        let mut effects = Vec::new();
        for id in 0..n {
            chat.connect(id, Join::default(), &mut effects);
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                effects.clear();
                chat.text(0, "hello, everyone", 1_764_000_000_000, &mut effects);
                let mut recipients = 0;
                for effect in &effects {
                    if let Effect::Send { to: Audience::Room(room), .. } = effect {
                        recipients += chat.room_members(room, Mode::Text).len();
                    }
                }
                assert_eq!(recipients, n);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode_once, chat_fanout, event_loop);
criterion_main!(benches);
