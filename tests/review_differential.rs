//! Review of the broker seam: one process must behave exactly as before (same lines, same
//! order). A seeded random script of connects, lines, commands, binary frames and departures is
//! played against this build's server and against a server binary built from the commit before
//! the seam (`WSCHAT_OLD_BIN`, e.g. built from `git archive 661f374`), in text mode (no ids nor
//! timestamps on the wire), and every client's transcript is compared.
//!
//! Skipped unless `WSCHAT_OLD_BIN` is set. `REVIEW_SEEDS` (default 20) and `REVIEW_STEPS`
//! (default 60) size the run.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{Client, TestServer};
use tungstenite::Message;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SLOTS: usize = 6;
const NICKS: [&str; 5] = ["ann", "bob", "cat", "Ann", "guest-2"];
const LINES: [&str; 19] = [
    "hi",
    "hello there",
    "/me waves",
    "/join r1",
    "/join r2",
    "/join R1",
    "/join lobby",
    "/nick dan",
    "/nick bob",
    "/nick ANN",
    "/who",
    "/rooms",
    "/msg ann psst",
    "/msg bob psst",
    "/msg nobody psst",
    "/quit bye",
    "/nick guest-1",
    "/bogus",
    "",
];

fn drain(ws: &mut Client, slot: usize, log: &mut Vec<String>) -> bool {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => log.push(format!("{slot}< {}", normalize(&t))),
            Ok(Message::Binary(b)) => log.push(format!("{slot}< <binary {}>", b.len())),
            Ok(Message::Close(frame)) => {
                log.push(format!("{slot}< <close {frame:?}>"));
                return false;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                return true
            }
            Err(e) => {
                log.push(format!("{slot}< <gone {e}>"));
                return false;
            }
        }
    }
}

/// JSON mode's ids, epochs and timestamps differ from run to run: blanked.
fn normalize(text: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else { return text.to_string() };
    if let Some(object) = value.as_object_mut() {
        for field in ["id", "ts", "last"] {
            if object.contains_key(field) {
                object.insert(field.to_string(), serde_json::Value::from("*"));
            }
        }
    }
    value.to_string()
}

fn connect(server: &TestServer, path: &str, json: bool) -> Client {
    use tungstenite::client::IntoClientRequest;
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut request = server.url(path).into_client_request().unwrap();
    if json {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", tungstenite::http::HeaderValue::from_static("wschat.json"));
    }
    let (ws, _) = tungstenite::client(request, stream.try_clone().unwrap()).expect("handshake");
    stream.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    ws
}

fn play(binary: &str, seed: u64, steps: usize, flags: &[&str]) -> Vec<String> {
    let server = TestServer::start_with(Command::new(binary), flags);
    let mut rng = Rng(seed);
    let mut clients: Vec<Option<Client>> = (0..SLOTS).map(|_| None).collect();
    let mut log = Vec::new();
    for _ in 0..steps {
        let slot = rng.below(SLOTS);
        let action = rng.below(10);
        match (&mut clients[slot], action) {
            (None, _) => {
                let nick = NICKS[rng.below(NICKS.len())];
                let path = match rng.below(4) {
                    0 => "/".to_string(),
                    1 => format!("/?nick={nick}&room=r1"),
                    _ => format!("/?nick={nick}"),
                };
                let json = std::env::var_os("REVIEW_JSON").is_some() && rng.below(2) == 0;
                log.push(format!("{slot}> connect {path} json={json}"));
                clients[slot] = Some(connect(&server, &path, json));
            }
            (Some(_), 0) => {
                log.push(format!("{slot}> drop"));
                clients[slot] = None;
            }
            (Some(ws), 1) => {
                log.push(format!("{slot}> binary"));
                let _ = ws.send(Message::binary(vec![1u8, 2, 3]));
            }
            (Some(ws), _) => {
                let line = LINES[rng.below(LINES.len())];
                log.push(format!("{slot}> {line}"));
                let _ = ws.send(Message::text(line));
            }
        }
        std::thread::sleep(Duration::from_millis(15));
        for (i, ws) in clients.iter_mut().enumerate() {
            if let Some(c) = ws {
                if !drain(c, i, &mut log) {
                    *ws = None;
                }
            }
        }
    }
    log
}

#[test]
fn one_process_says_what_it_said_before_the_seam() {
    let Ok(old) = std::env::var("WSCHAT_OLD_BIN") else {
        eprintln!("SKIPPED: WSCHAT_OLD_BIN is not set");
        return;
    };
    let new = env!("CARGO_BIN_EXE_wschat-server");
    let seeds: u64 = std::env::var("REVIEW_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let steps: usize = std::env::var("REVIEW_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let flags = std::env::var("REVIEW_FLAGS")
        .unwrap_or_else(|_| "--history 3 --announce-limit 3 --history-rooms 1".to_string());
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let mut failures = Vec::new();
    for seed in 1..=seeds {
        let offset: u64 = std::env::var("REVIEW_SEED_BASE").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let seed = (seed + offset).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        // Per client slot: what it received, in order (the interleaving with the script's
        // actions depends on timing, not on the server).
        let per_slot = |log: Vec<String>| -> Vec<String> {
            let mut lines: Vec<String> = Vec::new();
            for slot in 0..SLOTS {
                let mine = format!("{slot}");
                lines.extend(log.iter().filter(|l| l.starts_with(&mine)).cloned());
            }
            lines
        };
        let (a, b) = (per_slot(play(&old, seed, steps, &flags)), per_slot(play(new, seed, steps, &flags)));
        if a != b {
            let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            let from = at.saturating_sub(8);
            failures.push(format!(
                "seed {seed}: first difference at line {at}\n--- before the seam\n{}\n--- now\n{}",
                a[from..(at + 6).min(a.len())].join("\n"),
                b[from..(at + 6).min(b.len())].join("\n"),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} scripts differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The same script with `--data-dir`, the server restarted half-way: the history it restores
/// (and what it forgot, over `--history-rooms`) is replayed the same way.
#[test]
fn one_process_restores_what_it_restored_before_the_seam() {
    let Ok(old) = std::env::var("WSCHAT_OLD_BIN") else {
        eprintln!("SKIPPED: WSCHAT_OLD_BIN is not set");
        return;
    };
    let new = env!("CARGO_BIN_EXE_wschat-server").to_string();
    let steps: usize = std::env::var("REVIEW_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let mut transcripts = Vec::new();
    for (name, binary) in [("old", old.as_str()), ("new", new.as_str())] {
        let dir = common::TempDir::new(&format!("review-store-{name}"));
        let data = dir.0.join("data");
        let flags = [
            "--history",
            "3",
            "--history-rooms",
            "1",
            "--history-memory",
            "2000",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        let mut log = play(binary, 77, steps, &flags);
        log.push("--- restarted".into());
        log.extend(play(binary, 78, steps, &flags));
        transcripts.push(log);
    }
    assert_eq!(transcripts[0], transcripts[1]);
}
