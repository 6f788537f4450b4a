//! The chat driven through its public API against a broker that
//! answers late (a FIFO of requests answered by a `LocalBroker` when the model says so, like
//! Redis with latency), with the hub's reading rule (a client is read only while it neither
//! waits on the chat nor has a room message or event of its own in flight), clients leaving at
//! any time (their ids reused, as slab keys are), and the link coming back (`Notice::Up`) or the
//! presence being written again (`Notice::Reclaim`), its claims asked a share at a time
//! (`Chat::reclaim_some`, as the hub does each turn).
//!
//! Checked: the chat's invariants after every step, and once everything asked has been
//! answered, that no connected client still waits (nobody is held for ever) and every connected
//! client is in the chat.

use std::collections::VecDeque;

use wschat::broker::{Broker, LocalBroker, Notice, Origin, Request};
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
            Request::Say { origin, .. } => *origin == Origin::Member(client),
            Request::Binary { origin, .. } => *origin == client,
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
            // As the hub's turn: a relink's next share of members (a small one here, so that
            // members leave and rename while others are still queued).
            10..=11 if m.chat.is_reclaiming() => {
                let share = 1 + rng.below(2);
                trace.push(format!("reclaim {share}"));
                m.chat.reclaim_some(share);
                m.take();
            }
            _ => {}
        }
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.chat.check_invariants())) {
            return Err(format!("invariant broken: {e:?}\n{}", trace.join("\n")));
        }
    }
    for _ in 0..100 {
        m.chat.reclaim_some(usize::MAX);
        m.take();
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
/// (`Notice::Reclaim`, or `Notice::Up`), the relink's share claims the member's current
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
    // The hub's next turn takes the relink's share.
    chat.reclaim_some(wschat::broker::RECLAIMS_PER_TURN);
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

/// Everything asked of the broker since the last call, answered at once by `broker`, its
/// notices back to the chat, until nothing more is asked.
fn settle(chat: &mut Chat, broker: &mut LocalBroker) {
    loop {
        let mut requests = Vec::new();
        chat.take_requests(&mut requests);
        if requests.is_empty() {
            return;
        }
        for request in requests {
            broker.request(request);
        }
        let (mut notices, mut out) = (Vec::new(), Vec::new());
        broker.take_notices(&mut notices);
        for notice in notices {
            chat.on_notice(notice, &mut out);
        }
    }
}

/// A relink of a large process: `Notice::Up` asks nothing at once; each turn's share claims
/// the next members' nicks (a claim, a seat and a room count each, never more than the share),
/// in client order, skipping members who left or renamed meanwhile (and a new connection in a
/// departed member's slot, which claimed its own nick); a link lost midway drops the queue, and
/// the next relink starts over from the first member.
#[test]
fn a_relink_claims_every_nick_again_a_share_a_turn_in_order() {
    const MEMBERS: usize = 2_500;
    const SHARE: usize = 100;
    let (mut chat, mut broker) = (Chat::default(), LocalBroker::new());
    let mut out = Vec::new();
    chat.on_notice(Notice::Up, &mut out);
    for client in 0..MEMBERS {
        let nick = format!("m{client}");
        chat.connect(client, Join { nick: Some(&nick), ..Join::default() }, &mut out);
        settle(&mut chat, &mut broker);
    }
    assert_eq!(chat.len(), MEMBERS);

    // One turn's share of requests, the claims and seats it holds by client, answered at once.
    let turn = |chat: &mut Chat, broker: &mut LocalBroker| {
        chat.reclaim_some(SHARE);
        let mut requests = Vec::new();
        chat.take_requests(&mut requests);
        assert!(requests.len() <= 3 * SHARE, "{} requests in one turn", requests.len());
        let claimed: Vec<ClientId> = requests
            .iter()
            .filter_map(|r| match r {
                Request::Claim { client, nick: Some(nick), .. } => {
                    assert_eq!(**nick, *format!("m{client}"), "the member's own nick");
                    Some(*client)
                }
                _ => None,
            })
            .collect();
        let seats = requests.iter().filter(|r| matches!(r, Request::Seat { .. })).count();
        assert!(claimed.len() <= SHARE && seats <= SHARE, "{} claims, {seats} seats", claimed.len());
        for request in requests {
            broker.request(request);
        }
        let mut notices = Vec::new();
        broker.take_notices(&mut notices);
        for notice in notices {
            chat.on_notice(notice, &mut Vec::new());
        }
        settle(chat, broker);
        claimed
    };

    // The link is lost and comes back: nothing is claimed until the turns take their shares.
    chat.on_notice(Notice::Down, &mut out);
    settle(&mut chat, &mut broker);
    chat.on_notice(Notice::Up, &mut out);
    let mut asked = Vec::new();
    chat.take_requests(&mut asked);
    assert!(!asked.iter().any(|r| matches!(r, Request::Claim { .. } | Request::Seat { .. })), "{asked:?}");
    for request in asked {
        broker.request(request);
    }
    broker.take_notices(&mut Vec::new());
    assert!(chat.is_reclaiming());
    let first = turn(&mut chat, &mut broker);
    assert_eq!(first, (0..SHARE).collect::<Vec<_>>(), "the first share, in client order");

    // Lost again midway: the queue is dropped, and the next relink starts from the first member.
    chat.on_notice(Notice::Down, &mut out);
    settle(&mut chat, &mut broker);
    assert!(!chat.is_reclaiming(), "nothing is claimed for a link that is gone");
    chat.on_notice(Notice::Up, &mut out);
    settle(&mut chat, &mut broker);

    // Meanwhile: one member leaves, one renames, and one leaves and a new connection takes its
    // slot under a nick of its own.
    let (gone, renamed, reused) = (MEMBERS - 3, MEMBERS - 2, MEMBERS - 1);
    chat.disconnect(gone, "bye", &mut out);
    chat.text(renamed, "/nick renamed", 1, &mut out);
    chat.disconnect(reused, "bye", &mut out);
    chat.connect(reused, Join { nick: Some("newcomer"), ..Join::default() }, &mut out);
    let mut asked = Vec::new();
    chat.take_requests(&mut asked);
    let own_claims = asked.iter().filter(|r| matches!(r, Request::Claim { .. })).count();
    assert_eq!(own_claims, 2, "the rename and the newcomer claim their own nicks: {asked:?}");
    for request in asked {
        broker.request(request);
    }
    let mut notices = Vec::new();
    broker.take_notices(&mut notices);
    for notice in notices {
        chat.on_notice(notice, &mut out);
    }
    settle(&mut chat, &mut broker);
    assert_eq!((chat.nick(renamed), chat.nick(reused)), (Some("renamed"), Some("newcomer")));

    let (mut claimed, mut turns) = (Vec::new(), 0);
    while chat.is_reclaiming() {
        claimed.extend(turn(&mut chat, &mut broker));
        turns += 1;
        assert!(turns <= MEMBERS, "the relink never ends");
    }
    assert_eq!(claimed, (0..MEMBERS - 3).collect::<Vec<_>>(), "every member still here, once, in order");
    assert_eq!(turns, (MEMBERS - 3).div_ceil(SHARE), "a share a turn");
    chat.check_invariants();
}
