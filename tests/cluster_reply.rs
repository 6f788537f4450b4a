//! Cluster mode against a hostile Redis (issue 23): a fake Redis on loopback answers the
//! broker's first command with an endless reply, and the server must keep serving its own
//! clients, drop the link naming the bound the reply passed, and do the same on every
//! reconnect. No `redis-server` needed: the fake is a `TcpListener` in a thread.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{http_exchange, TestServer, WAIT};

/// A `GET /` slower than this fails the test. A correctness bound, not a timing goal (those
/// are measured in release builds, see docs/RELIABILITY.md): before the fix one answer took 5
/// to 10 s, while the loop re-parsed the unfinished reply after every read.
const PAGE_WITHIN: Duration = Duration::from_secs(2);
/// How long the fake streams one reply at most, if the server never drops the link.
const STREAM_FOR: Duration = Duration::from_secs(10);
/// Command links the fake must have seen dropped: the first, and two reconnects.
const DROPS: usize = 3;

/// What happened to one command link the fake served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The server closed it while the reply streamed; this many bytes were written.
    Dropped(usize),
    /// The fake gave up after [`STREAM_FOR`], or was stopped.
    GaveUp,
}

/// A fake Redis whose command link answers with `head` and then `item` again and again, and
/// whose subscription link says nothing.
struct FakeRedis {
    addr: SocketAddr,
    ended: Arc<Mutex<Vec<Ended>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRedis {
    fn start(head: &'static [u8], item: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Redis");
        let addr = listener.local_addr().unwrap();
        let ended: Arc<Mutex<Vec<Ended>>> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let (ended_in, stop_in) = (ended.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_in.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (ended, stop) = (ended_in.clone(), stop_in.clone());
                thread::spawn(move || serve(stream, head, item, &ended, &stop));
            }
        });
        Self { addr, ended, stop }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn ended(&self) -> Vec<Ended> {
        self.ended.lock().unwrap().clone()
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection from the broker: the command link (it starts with SELECT) gets the endless
/// reply, the subscription link (SUBSCRIBE) silence, until the server closes it.
fn serve(mut stream: TcpStream, head: &[u8], item: &[u8], ended: &Mutex<Vec<Ended>>, stop: &AtomicBool) {
    let deadline = Instant::now() + STREAM_FOR;
    // Short timeouts: every blocked call comes back to look at the deadline and the flag.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let live = || Instant::now() < deadline && !stop.load(Ordering::SeqCst);
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let is_command_link = loop {
        if !live() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => continue,
        }
        let has = |word: &[u8]| seen.windows(word.len()).any(|w| w == word);
        if has(b"SELECT") {
            break true;
        }
        if has(b"SUBSCRIBE") {
            break false;
        }
    };
    if !is_command_link {
        // Silent until the server closes it.
        while live() {
            if let Ok(0) = stream.read(&mut buf) {
                return;
            }
        }
        return;
    }
    let block = item.repeat((64 << 10) / item.len());
    let mut sent = 0;
    let mut pending = head;
    let (mut at, mut in_head) = (0, true);
    let end = loop {
        if !live() {
            break Ended::GaveUp;
        }
        let bytes = if in_head { &pending[at..] } else { &block[at..] };
        match stream.write(bytes) {
            Ok(0) => break Ended::Dropped(sent),
            Ok(n) => {
                sent += n;
                at += n;
                if in_head && at == pending.len() {
                    (pending, at, in_head) = (&[], 0, false);
                } else if !in_head && at == block.len() {
                    at = 0;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            // Reset or broken pipe: the server closed the link.
            Err(_) => break Ended::Dropped(sent),
        }
    };
    ended.lock().unwrap().push(end);
}

/// Asks for the page again and again until `done`, each answer within [`PAGE_WITHIN`]; returns
/// how many were asked for.
fn pages_answer_until(server: &TestServer, done: impl Fn() -> bool) -> usize {
    let deadline = Instant::now() + WAIT + STREAM_FOR;
    let mut pages = 0;
    loop {
        let asked = Instant::now();
        let response = http_exchange(server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let took = asked.elapsed();
        assert!(response.starts_with("HTTP/1.1 200"), "no page (after {took:?}): {response:.80}");
        assert!(took < PAGE_WITHIN, "GET / took {took:?} while Redis streamed its reply");
        pages += 1;
        if done() {
            return pages;
        }
        assert!(Instant::now() < deadline, "the fake Redis was not dropped {DROPS} times");
    }
}

/// The server refuses the reply on the fake's command link, once per connection, while pages
/// keep coming; returns the server's log lines that name the refusal.
fn refused_on_every_connect(head: &'static [u8], item: &'static [u8], why: &str) -> Vec<String> {
    let fake = FakeRedis::start(head, item);
    // -v: a retry's failure is logged at debug (only an outage's first one warns).
    let server = TestServer::start(&["--redis", &fake.url(), "-v"]);
    pages_answer_until(&server, || fake.ended().len() >= DROPS);
    let ended = fake.ended();
    assert!(ended.iter().all(|e| matches!(e, Ended::Dropped(sent) if *sent >= head.len())), "{ended:?}");
    // The fake sees the connection end before the server's log line about it may be read.
    let refused = || server.log().into_iter().filter(|l| l.contains(why)).collect::<Vec<String>>();
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused().len() < DROPS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let refusals = refused();
    assert!(refusals.len() >= DROPS, "each connection refused and logged: {refusals:#?}");
    refusals
}

#[test]
fn an_endless_reply_is_refused_at_its_header_on_every_connect() {
    // Issue 23: sixty million items declared, then `:1` for ever.
    let refusals = refused_on_every_connect(
        b"*60000000\r\n",
        b":1\r\n",
        "reply refused: an array of 60000000 items declared, taking it past the bound of 1000000 items on one reply",
    );
    // The first failure of an outage warns, the retries are quieter.
    assert!(refusals[0].contains("WARN") && refusals[0].contains("reconnecting"), "{}", refusals[0]);
}

#[test]
fn a_reply_whose_items_keep_coming_is_refused_at_the_item_bound_on_every_connect() {
    // Every length within the bound, the total past it: refused after about 3 MB of pairs,
    // read a megabyte a turn.
    refused_on_every_connect(
        b"*500000\r\n",
        b"*2\r\n:1\r\n:1\r\n",
        "reply refused: an array of 2 items declared, taking it past the bound of 1000000 items on one reply",
    );
}
