//! The chat driven through its public API against a broker that
//! answers late (a FIFO of requests answered by a `LocalBroker` when the model says so, like
//! Redis with latency), with the hub's reading rule (a client is read only while it neither
//! waits on the chat nor has a room message or event of its own in flight), clients leaving at
//! any time (their ids reused, as slab keys are), and the link coming back (`Notice::Up`) or the
//! presence being written again (`Notice::Reclaim`).
//!
//! Checked: the chat's invariants after every step, and once everything asked has been
//! answered, that no connected client still waits (nobody is held for ever) and every connected
//! client is in the chat.

use std::collections::VecDeque;

use wschat::broker::{Broker, LocalBroker, Notice, Request};
use wschat::chat::{Chat, ClientId, Effect, Join};

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

struct Model {
    chat: Chat,
    queue: VecDeque<Request>,
    inner: LocalBroker,
    connected: Vec<bool>,
    closed: Vec<ClientId>,
}

const CLIENTS: usize = 5;
const LINES: [&str; 14] = [
    "hi",
    "/me waves",
    "/join r1",
    "/join r2",
    "/join lobby",
    "/nick dan",
    "/nick eve",
    "/nick Ann",
    "/who",
    "/rooms",
    "/msg ann psst",
    "/msg nobody psst",
    "/quit",
    "",
];

impl Model {
    fn in_flight(&self, client: ClientId) -> bool {
        self.queue.iter().any(|r| match r {
            Request::Say { origin, .. } | Request::Binary { origin, .. } => *origin == client,
            Request::Announce { origin, .. } => *origin == Some(client),
            _ => false,
        })
    }

    fn readable(&self, client: ClientId) -> bool {
        self.connected[client] && !self.chat.is_waiting(client) && !self.in_flight(client)
    }

    fn effects(&mut self, out: Vec<Effect>) {
        for effect in out {
            match effect {
                Effect::Close { client, .. }
                | Effect::Refuse { client, .. }
                | Effect::Kick { client, .. } => self.closed.push(client),
                _ => {}
            }
        }
        self.take();
        while let Some(client) = self.closed.pop() {
            self.leave(client);
        }
    }

    fn take(&mut self) {
        let mut requests = Vec::new();
        self.chat.take_requests(&mut requests);
        self.queue.extend(requests);
    }

    fn leave(&mut self, client: ClientId) {
        if !self.connected[client] {
            return;
        }
        self.connected[client] = false;
        // As the hub: `Broker::forget` (nothing in flight here is dropped: Redis has it).
        let mut out = Vec::new();
        self.chat.disconnect(client, "gone", &mut out);
        self.effects(out);
    }

    fn answer(&mut self, count: usize) {
        for _ in 0..count.min(self.queue.len()) {
            let request = self.queue.pop_front().unwrap();
            self.inner.request(request);
            let mut notices = Vec::new();
            self.inner.take_notices(&mut notices);
            for notice in notices {
                self.notice(notice);
            }
        }
    }

    fn notice(&mut self, notice: Notice) {
        let mut out = Vec::new();
        self.chat.on_notice(notice, &mut out);
        self.effects(out);
    }
}

fn run(seed: u64, steps: usize) -> Result<(), String> {
    let mut rng = Rng(seed);
    let mut m = Model {
        chat: Chat::default(),
        queue: VecDeque::new(),
        inner: LocalBroker::new(),
        connected: vec![false; CLIENTS],
        closed: Vec::new(),
    };
    m.notice(Notice::Up);
    let mut trace = Vec::new();
    for _ in 0..steps {
        let client = rng.below(CLIENTS);
        match rng.below(12) {
            0..=1 if !m.connected[client] => {
                let nick = ["ann", "bob", "Ann", "dan"][rng.below(4)];
                let room = [None, Some("r1")][rng.below(2)];
                trace.push(format!("connect {client} {nick} {room:?}"));
                m.connected[client] = true;
                let mut out = Vec::new();
                m.chat.connect(client, Join { nick: Some(nick), room, ..Join::default() }, &mut out);
                m.effects(out);
            }
            2 if m.connected[client] => {
                trace.push(format!("drop {client}"));
                m.leave(client);
            }
            3..=6 if m.readable(client) => {
                let line = LINES[rng.below(LINES.len())];
                trace.push(format!("{client}> {line}"));
                let mut out = Vec::new();
                m.chat.text(client, line, 1, &mut out);
                m.effects(out);
            }
            7..=9 => {
                let count = rng.below(4);
                trace.push(format!("answer {count}"));
                m.answer(count);
            }
            10 if rng.below(8) == 0 => {
                trace.push("up".into());
                m.notice(Notice::Up);
            }
            11 if rng.below(8) == 0 => {
                trace.push("reclaim".into());
                m.notice(Notice::Reclaim);
            }
            11 if rng.below(8) == 0 => {
                trace.push("down".into());
                m.notice(Notice::Down);
            }
            _ => {}
        }
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.chat.check_invariants())) {
            return Err(format!("invariant broken: {e:?}\n{}", trace.join("\n")));
        }
    }
    for _ in 0..100 {
        m.answer(usize::MAX);
        if m.queue.is_empty() {
            break;
        }
    }
    for client in 0..CLIENTS {
        if !m.connected[client] {
            continue;
        }
        if m.chat.is_waiting(client) {
            return Err(format!("client {client} waits for ever\n{}", trace.join("\n")));
        }
        if m.chat.nick(client).is_none() {
            return Err(format!("client {client} never entered the chat\n{}", trace.join("\n")));
        }
    }
    Ok(())
}

#[test]
fn nobody_is_held_for_ever_and_the_chat_stays_consistent() {
    let seeds: u64 = std::env::var("REVIEW_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let mut failures = Vec::new();
    for seed in 1..=seeds {
        if let Err(e) = run(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, 120) {
            failures.push((seed, e));
        }
    }
    if let Some((seed, shortest)) = failures.iter().min_by_key(|(_, e)| e.len()) {
        panic!("{} of {seeds} runs failed; shortest (seed {seed}):\n{shortest}", failures.len());
    }
}

/// `/nick` is claimed through the broker; if the presence is written again meanwhile
/// (`Notice::Reclaim`, or `Notice::Up`), `reclaim_everything` claims the member's current
/// nick with `Purpose::Keep` in the same `claims` slot, so the rename's answer no longer
/// matches and is dropped: the client is never told anything about its `/nick`, and the new
/// nick, granted by the broker, is never released (in Redis: held under `PID:CLIENT` for as
/// long as the process lives).
#[test]
fn a_rename_in_flight_when_the_presence_is_written_again_is_still_answered() {
    use wschat::chat::{Audience, Body};
    let mut chat = Chat::default();
    let mut broker = LocalBroker::new();
    let mut told = Vec::new();
    let mut released = Vec::new();
    let exchange = |chat: &mut Chat,
                    broker: &mut LocalBroker,
                    out: Vec<Effect>,
                    told: &mut Vec<String>,
                    released: &mut Vec<String>| {
        let mut pending = out;
        loop {
            for effect in pending.drain(..) {
                if let Effect::Send { to: Audience::Client(0) | Audience::Room(_), body: Body::Event(e) } =
                    effect
                {
                    if let Some(text) = e.render(wschat::chat::Mode::Text) {
                        told.push(text);
                    }
                }
            }
            let mut requests = Vec::new();
            chat.take_requests(&mut requests);
            if requests.is_empty() {
                return;
            }
            for request in requests {
                if let Request::Release { nick, .. } = &request {
                    released.push(nick.to_string());
                }
                broker.request(request);
            }
            let mut notices = Vec::new();
            broker.take_notices(&mut notices);
            for notice in notices {
                chat.on_notice(notice, &mut pending);
            }
        }
    };
    let mut out = Vec::new();
    chat.on_notice(Notice::Up, &mut out);
    chat.connect(0, Join { nick: Some("ann"), ..Join::default() }, &mut out);
    exchange(&mut chat, &mut broker, out, &mut told, &mut released);
    assert_eq!(chat.nick(0), Some("ann"));
    told.clear();

    // `/nick dan` is asked of the broker; before it answers, the presence is written again.
    let mut out = Vec::new();
    chat.text(0, "/nick dan", 1, &mut out);
    let mut rename = Vec::new();
    chat.take_requests(&mut rename);
    chat.on_notice(Notice::Reclaim, &mut out);
    let mut reclaim = Vec::new();
    chat.take_requests(&mut reclaim);
    // The broker answers both, in order.
    let mut notices = Vec::new();
    for request in rename.into_iter().chain(reclaim) {
        broker.request(request);
    }
    broker.take_notices(&mut notices);
    for notice in notices {
        chat.on_notice(notice, &mut out);
    }
    exchange(&mut chat, &mut broker, out, &mut told, &mut released);
    assert!(
        chat.nick(0) == Some("dan") || told.iter().any(|t| t.contains("dan")),
        "/nick dan was never answered (nick {:?}, told {told:?}, released {released:?})",
        chat.nick(0)
    );
}
