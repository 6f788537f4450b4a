//! Unit tests of the chat rules, with no sockets: effects are resolved to per-client inboxes
//! exactly as the event loop resolves them.

use super::api::{ApiAnswer, ApiCall, Ticket};
use super::history::Kind;
use super::notices::{CLUSTER_BACK, CLUSTER_LOST};
use super::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// A chat plus what each client has received so far, with the in-process broker answering
/// every request (one process), or none: then the test plays Redis itself, taking the chat's
/// requests with [`Harness::requests`] and answering with [`Harness::cluster`].
struct Harness {
    chat: Chat,
    inbox: BTreeMap<ClientId, Vec<Body>>,
    closed: Vec<(ClientId, String)>,
    /// Answers to API calls, in order.
    answers: Vec<(Ticket, ApiAnswer)>,
    broker: Option<LocalBroker>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::with_chat(Chat::default())
    }
}

impl Harness {
    fn with_chat(chat: Chat) -> Self {
        let (inbox, closed, answers) = (BTreeMap::new(), Vec::new(), Vec::new());
        Self { chat, inbox, closed, answers, broker: Some(LocalBroker::new()) }
    }
    /// A chat whose broker the test plays.
    fn redis() -> Self {
        Self { broker: None, ..Self::default() }
    }
    /// Carries out effects as the event loop does, then lets the in-process broker (if any)
    /// answer what the chat asked, until it asks nothing more.
    fn apply(&mut self, mut effects: Vec<Effect>) {
        loop {
            self.deliver(effects);
            let Some(broker) = &mut self.broker else { return };
            let mut requests = Vec::new();
            self.chat.take_requests(&mut requests);
            if requests.is_empty() {
                return;
            }
            requests.into_iter().for_each(|request| broker.request(request));
            let mut notices = Vec::new();
            broker.take_notices(&mut notices);
            effects = Vec::new();
            // Each notice's effects before the next, as the hub carries them out.
            for notice in notices {
                let mut out = Vec::new();
                self.chat.on_notice(notice, &mut out);
                self.deliver(out);
            }
        }
    }
    fn deliver(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to: Audience::Client(c), body } => self.inbox.entry(c).or_default().push(body),
                Effect::Send { to: Audience::Room(room), body } => self.deliver_to_room(&room, None, body),
                Effect::Send { to: Audience::RoomExcept(room, except), body } => {
                    self.deliver_to_room(&room, Some(except), body)
                }
                Effect::Close { client, reason } => self.closed.push((client, reason)),
                Effect::Refuse { client, reason } => self.closed.push((client, format!("refused: {reason}"))),
                Effect::Kick { client, reason } => {
                    let mut out = Vec::new();
                    self.chat.disconnect(client, &reason, &mut out);
                    self.deliver(out);
                    self.closed.push((client, reason));
                }
                Effect::BanAddress { client, ban, closing } => {
                    // The address the event loop knows; the broker's answer closes the guest.
                    self.chat.ban_address(client, [10, 0, 0, client as u8].into(), ban, closing);
                    self.apply(Vec::new());
                }
                Effect::Renew { .. } | Effect::ReadEarlier { .. } => {}
                Effect::Answer { ticket, answer } => self.answers.push((ticket, answer)),
            }
        }
    }
    /// A room's members here, `except` one, receive `body`.
    fn deliver_to_room(&mut self, room: &str, except: Option<ClientId>, body: Body) {
        let members: Vec<ClientId> = Mode::ALL
            .iter()
            .flat_map(|&m| self.chat.room_members(room, m).iter().map(|&c| c as ClientId))
            .collect();
        for c in members.into_iter().filter(|c| Some(*c) != except) {
            self.inbox.entry(c).or_default().push(body.clone());
        }
    }
    /// Connects `c` as `nick` in JSON mode.
    fn connect_json(&mut self, c: ClientId, nick: &str) {
        let mut out = Vec::new();
        self.chat.connect(c, Join { nick: Some(nick), mode: Some(Mode::Json), ..Join::default() }, &mut out);
        self.apply(out);
    }
    fn connect(&mut self, c: ClientId, nick: Option<&str>) {
        let mut out = Vec::new();
        self.chat.connect(c, Join { nick, ..Join::default() }, &mut out);
        self.apply(out);
    }
    fn say(&mut self, c: ClientId, text: &str) {
        let mut out = Vec::new();
        self.chat.text(c, text, 1_764_000_000_000, &mut out);
        self.apply(out);
    }
    /// An application's call; its answer, if it came within the call.
    fn api(&mut self, ticket: Ticket, call: ApiCall) -> Option<ApiAnswer> {
        let mut out = Vec::new();
        self.chat.api(ticket, call, 1_764_000_000_000, &mut out);
        self.apply(out);
        let at = self.answers.iter().position(|(t, _)| *t == ticket)?;
        Some(self.answers.remove(at).1)
    }
    fn leave(&mut self, c: ClientId) {
        let mut out = Vec::new();
        self.chat.disconnect(c, "", &mut out);
        self.apply(out);
    }
    /// What `c` received since the last call, in its mode.
    fn take(&mut self, c: ClientId) -> Vec<String> {
        let mode = self.chat.mode(c).unwrap_or(Mode::Text);
        self.inbox
            .remove(&c)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| match b {
                Body::Event(e) => e.render(mode),
                Body::Binary(b) => Some(format!("<binary {} bytes>", b.len())),
            })
            .collect()
    }
    fn clear(&mut self) {
        self.inbox.clear();
    }
    fn cluster(&mut self, notice: Notice) {
        let mut out = Vec::new();
        self.chat.on_notice(notice, &mut out);
        self.apply(out);
    }
    fn requests(&mut self) -> Vec<Request> {
        let mut requests = Vec::new();
        self.chat.take_requests(&mut requests);
        requests
    }
    /// The nick (None: a guest nick) and serial of the claim `c` has just made (the requests
    /// are taken).
    fn claim_of(&mut self, c: ClientId) -> (Option<Rc<str>>, u64) {
        let requests = self.requests();
        let claim = requests.iter().find_map(|r| match r {
            Request::Claim { client, nick, serial, .. } if *client == c => Some((nick.clone(), *serial)),
            _ => None,
        });
        claim.unwrap_or_else(|| panic!("no claim for {c}: {requests:?}"))
    }
    /// Joins `c` as `nick` in a cluster: its claim is granted.
    fn join_cluster(&mut self, c: ClientId, nick: &str) {
        self.connect(c, Some(nick));
        let (_, serial) = self.claim_of(c);
        self.cluster(Notice::Claimed {
            client: c,
            nick: Rc::from(nick),
            held_by: None,
            serial,
            markers: Vec::new(),
        });
    }
}

use crate::broker::{Broker, LocalBroker};

fn stored(seq: u64, from: &str, text: &str) -> Stored {
    Stored {
        author: 0,
        edited: false,
        seq,
        ts: 5,
        from: Rc::from(from),
        text: text.into(),
        kind: Kind::Line,
        mentions: Box::new([]),
    }
}

fn loaded(room: &str, epoch: &str, top: u64, messages: Vec<Stored>) -> Notice {
    let (room, display, epoch) = (Rc::from(room), Rc::from(room), Rc::from(epoch));
    Notice::Loaded { room, display, epoch, top, messages: Some(messages) }
}

fn shared(room: &str, epoch: &str, message: Stored) -> Notice {
    Notice::Message { room: Rc::from(room), epoch: Rc::from(epoch), message, origin: None }
}

fn follows(requests: &[Request], key: &str) -> bool {
    requests.iter().any(|r| matches!(r, Request::Follow { room, .. } if &**room == key))
}

#[test]
fn in_a_cluster_a_joiner_waits_for_its_nick_and_room_and_messages_come_back_from_redis() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.connect(1, Some("alice"));
    assert!(h.chat.is_waiting(1), "not in the chat before its nick is claimed");
    assert!(h.take(1).is_empty());
    let (nick, serial) = h.claim_of(1);
    h.cluster(Notice::Claimed { client: 1, nick: nick.unwrap(), held_by: None, serial, markers: Vec::new() });
    assert_eq!(
        h.take(1),
        ["*** welcome, you are alice in lobby; type /help for commands"],
        "the replay waits for the history"
    );
    assert!(h.chat.is_waiting(1), "its input waits for its room too");
    let requests = h.requests();
    assert!(follows(&requests, "lobby"), "{requests:?}");
    h.cluster(loaded("lobby", "e1", 2, vec![stored(1, "bob", "one"), stored(2, "bob", "two")]));
    assert!(!h.chat.is_waiting(1), "its input is read again");
    assert_eq!(
        h.take(1),
        ["*** recent messages in lobby:", "bob: one", "bob: two", "*** end of recent messages"]
    );
    // Its own join is announced through Redis, and arrives like anyone's.
    let joined = match h.requests().as_slice() {
        [.., Request::Announce { event, origin: Some(1), .. }] => event.clone(),
        other => panic!("no announcement of the join: {other:?}"),
    };
    h.cluster(Notice::Event { room: Rc::from("lobby"), event: joined, origin: Some(1) });
    assert_eq!(h.take(1), ["*** alice joined lobby"]);
    // Said, not shown: it comes back numbered by Redis.
    h.say(1, "hi");
    assert!(h.take(1).is_empty());
    assert!(matches!(h.requests().as_slice(), [Request::Say { origin: Origin::Member(1), .. }]));
    h.cluster(shared("lobby", "e1", stored(3, "alice", "hi")));
    assert_eq!(h.take(1), ["alice: hi"]);
    h.cluster(shared("lobby", "e1", stored(3, "alice", "hi")));
    assert!(h.take(1).is_empty(), "a copy already kept is dropped");
    // A gap: the copy is reloaded and the member replayed what it missed.
    h.cluster(shared("lobby", "e1", stored(5, "bob", "five")));
    assert!(h.take(1).is_empty());
    assert!(matches!(h.requests().as_slice(), [Request::Reload { .. }]));
    h.cluster(loaded("lobby", "e1", 5, (1..=5).map(|n| stored(n, "bob", &format!("m{n}"))).collect()));
    assert_eq!(
        h.take(1),
        ["*** recent messages in lobby:", "bob: m4", "bob: m5", "*** end of recent messages"]
    );
    h.chat.check_invariants();
}

#[test]
fn in_a_cluster_a_stale_history_load_does_not_share_a_room_nobody_follows() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.join_cluster(1, "alice");
    h.cluster(loaded("lobby", "e1", 0, vec![]));
    h.say(1, "/join dev");
    h.requests();
    // The lobby emptied here and was unfollowed; an answer to an older load arrives late.
    h.cluster(loaded("lobby", "e1", 7, vec![stored(7, "bob", "late")]));
    h.cluster(shared("lobby", "e1", stored(8, "bob", "later")));
    assert!(h.requests().is_empty(), "nothing is asked for a room this process does not follow");
    h.join_cluster(2, "carol");
    let requests = h.requests();
    assert!(follows(&requests, "lobby"), "a joiner makes the lobby followed again: {requests:?}");
    h.take(2);
    h.cluster(loaded("lobby", "e1", 8, vec![stored(7, "bob", "late"), stored(8, "bob", "later")]));
    assert_eq!(
        h.take(2),
        ["*** recent messages in lobby:", "bob: late", "bob: later", "*** end of recent messages"]
    );
    h.chat.check_invariants();
}

#[test]
fn in_a_cluster_a_nick_held_elsewhere_leaves_the_joiner_a_guest_numbered_by_the_broker() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.connect(1, Some("alice"));
    let (_, serial) = h.claim_of(1);
    h.cluster(Notice::Claimed {
        client: 1,
        nick: Rc::from("alice"),
        held_by: Some("G alice".into()),
        serial,
        markers: Vec::new(),
    });
    assert_eq!(h.take(1), [r#"*** nick "alice" refused: already in use"#]);
    let (nick, serial) = h.claim_of(1);
    assert_eq!(nick, None, "a guest nick is the broker's to number");
    assert!(h.chat.is_waiting(1));
    h.cluster(Notice::Claimed {
        client: 1,
        nick: Rc::from("guest-7"),
        held_by: None,
        serial,
        markers: Vec::new(),
    });
    assert_eq!(h.take(1), ["*** welcome, you are guest-7 in lobby; type /help for commands"]);
    // A stale answer for a slot that was reused changes nothing.
    h.cluster(Notice::Claimed {
        client: 1,
        nick: Rc::from("alice"),
        held_by: None,
        serial,
        markers: Vec::new(),
    });
    assert_eq!(h.chat.nick(1), Some("guest-7"));
}

#[test]
fn in_a_cluster_a_connection_that_leaves_while_its_claim_is_in_flight_never_joins() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.connect(1, Some("ann"));
    let (_, serial) = h.claim_of(1);
    h.leave(1);
    assert!(!h.chat.is_waiting(1));
    assert!(
        matches!(h.requests().as_slice(), [Request::Release { client: 1, .. }]),
        "what it may hold is let go"
    );
    h.cluster(Notice::Claimed {
        client: 1,
        nick: Rc::from("ann"),
        held_by: None,
        serial,
        markers: Vec::new(),
    });
    assert_eq!(h.chat.nick(1), None, "no ghost in its slot");
    // Whoever gets the slot next joins as itself.
    h.join_cluster(1, "bob");
    assert_eq!(h.chat.nick(1), Some("bob"));
    h.chat.check_invariants();
}

#[test]
fn in_a_cluster_a_nick_changed_only_in_case_keeps_its_claim() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.join_cluster(1, "bob");
    h.requests();
    h.say(1, "/nick Bob");
    let (_, serial) = h.claim_of(1);
    h.cluster(Notice::Claimed {
        client: 1,
        nick: Rc::from("Bob"),
        held_by: None,
        serial,
        markers: Vec::new(),
    });
    assert_eq!(h.chat.nick(1), Some("Bob"));
    let requests = h.requests();
    assert!(
        !requests.iter().any(|r| matches!(r, Request::Release { .. })),
        "the claim is the same: {requests:?}"
    );
}

#[test]
fn in_a_cluster_a_slot_reused_while_its_room_loads_is_replayed_once_and_let_go() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.join_cluster(2, "cat");
    h.join_cluster(1, "ann");
    h.leave(1);
    h.join_cluster(1, "bob");
    h.requests();
    h.clear();
    assert!(h.chat.is_waiting(1) && h.chat.is_waiting(2), "both wait for the lobby's history");
    h.cluster(loaded("lobby", "e1", 1, vec![stored(1, "zed", "hi")]));
    assert!(!h.chat.is_waiting(1) && !h.chat.is_waiting(2), "and neither waits once it is here");
    let replay = ["*** recent messages in lobby:", "zed: hi", "*** end of recent messages"];
    assert_eq!(h.take(1), replay, "one replay for the slot's new holder");
    let joins: Vec<String> = h
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::Announce { event: Event::Joined { nick, .. }, .. } => Some(nick.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(joins, ["cat", "bob"], "ann, gone, is not announced in bob's place");
    h.chat.check_invariants();
}

#[test]
fn in_a_cluster_a_departed_waiter_does_not_let_go_of_the_next_connection_in_its_slot() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.join_cluster(2, "cat");
    h.join_cluster(1, "ann");
    h.leave(1);
    // The slot's next connection joins another room, which loads too.
    let mut out = Vec::new();
    h.chat.connect(1, Join { nick: Some("bob"), room: Some("dev"), ..Join::default() }, &mut out);
    h.apply(out);
    let (_, serial) = h.claim_of(1);
    h.cluster(Notice::Claimed {
        client: 1,
        nick: Rc::from("bob"),
        held_by: None,
        serial,
        markers: Vec::new(),
    });
    h.cluster(loaded("lobby", "e1", 0, vec![]));
    assert!(h.chat.is_waiting(1), "bob still waits for dev, not for ann's lobby");
    h.cluster(loaded("dev", "e1", 0, vec![]));
    assert!(!h.chat.is_waiting(1));
    h.chat.check_invariants();
}

#[test]
fn when_redis_goes_away_rooms_carry_on_alone_under_a_new_epoch() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.join_cluster(1, "alice");
    h.join_cluster(2, "bob");
    h.cluster(loaded("lobby", "e1", 0, vec![]));
    h.requests();
    h.clear();
    // The Redis broker answers as the in-process one while Redis is away.
    h.broker = Some(LocalBroker::new());
    h.cluster(Notice::Down);
    assert_eq!(h.take(1), [format!("*** {CLUSTER_LOST}")]);
    h.take(2);
    h.say(1, "still here");
    assert_eq!(h.take(2), ["alice: still here"], "delivered on this process");
    let epoch = h.chat.rooms.get("lobby").unwrap().history.epoch().clone();
    assert_ne!(&*epoch, "e1", "never ids of the shared epoch");
    // Back: the room is followed and replayed, and every member's nick claimed again on the
    // hub's next turn.
    h.broker = None;
    h.cluster(Notice::Up);
    assert_eq!(h.take(2), [format!("*** {CLUSTER_BACK}")]);
    assert!(follows(&h.requests(), "lobby"));
    h.chat.reclaim_some(crate::broker::RECLAIMS_PER_TURN);
    let requests = h.requests();
    assert_eq!(requests.iter().filter(|r| matches!(r, Request::Claim { .. })).count(), 2, "{requests:?}");
    assert!(!h.chat.is_reclaiming());
    h.chat.check_invariants();
}

fn three_in_lobby() -> Harness {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.connect(2, Some("bob"));
    h.connect(3, Some("carol"));
    h.clear();
    h
}

#[test]
fn connect_assigns_guest_nicks_welcomes_and_announces() {
    let mut h = Harness::default();
    h.connect(10, None);
    h.connect(11, None);
    assert_eq!(h.chat.nick(10), Some("guest-1"));
    assert_eq!(h.chat.nick(11), Some("guest-2"));
    let first = h.take(10);
    assert!(first[0].starts_with("*** welcome, you are guest-1 in lobby"), "{first:?}");
    assert_eq!(&first[1..], ["*** guest-1 joined lobby", "*** guest-2 joined lobby"]);
}

#[test]
fn requested_nick_is_used_or_refused_with_a_notice() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.connect(2, Some("ALICE"));
    h.connect(3, Some("bad nick"));
    assert_eq!(h.chat.nick(2), Some("guest-1"));
    assert_eq!(h.chat.nick(3), Some("guest-2"));
    assert!(h.take(2)[0].contains("refused: already in use"));
    assert!(h.take(3)[0].contains("refused: must not contain spaces"));
}

#[test]
fn guest_numbering_skips_nicks_taken_by_hand() {
    let mut h = Harness::default();
    h.connect(1, Some("guest-1"));
    h.connect(2, None);
    assert_eq!(h.chat.nick(2), Some("guest-2"));
}

#[test]
fn chat_text_reaches_whole_room_sender_included() {
    let mut h = three_in_lobby();
    h.say(2, "hello all");
    for c in [1, 2, 3] {
        assert_eq!(h.take(c), ["bob: hello all"]);
    }
    h.say(1, "//not a command");
    assert_eq!(h.take(3), ["alice: /not a command"]);
}

#[test]
fn binary_is_relayed_verbatim_to_the_room_after_a_line_naming_its_sender() {
    let mut h = three_in_lobby();
    h.clear();
    let mut out = Vec::new();
    h.chat.binary(1, Bytes::from_static(&[0, 159, 255]), &mut out);
    assert!(out.is_empty(), "published, not delivered: it comes back from the broker to everyone");
    h.apply(out);
    let nick = h.chat.nick(1).unwrap().to_string();
    let from = Event::BinaryFrom { room: Rc::from("lobby"), from: Rc::from(nick), bytes: 3 };
    for c in [1, 2, 3] {
        assert_eq!(h.take(c), [from.render(Mode::Text).unwrap(), "<binary 3 bytes>".to_string()]);
    }
}

#[test]
fn nick_change_is_announced_and_enforces_uniqueness() {
    let mut h = three_in_lobby();
    h.say(1, "/nick Alyx");
    assert_eq!(h.take(3), ["*** alice is now known as Alyx"]);
    h.clear();
    h.say(2, "/nick alyx");
    assert_eq!(h.take(2), ["*** error: nick \"alyx\" refused: already in use"]);
    assert!(h.take(3).is_empty(), "a refused change is not announced");
    // Changing only the case of your own nick is allowed, and the old nick becomes free.
    h.say(1, "/nick ALYX");
    assert_eq!(h.chat.nick(1), Some("ALYX"));
    h.say(2, "/nick alice");
    assert_eq!(h.chat.nick(2), Some("alice"));
    h.say(3, "/nick x:y");
    assert!(h.take(3).last().is_some_and(|t| t.contains("must not contain ':'")));
}

#[test]
fn join_moves_between_rooms_with_announcements() {
    let mut h = three_in_lobby();
    h.say(1, "/join Dev");
    assert_eq!(h.take(1), ["*** alice joined Dev"]);
    assert_eq!(h.take(2), ["*** alice left lobby (joined Dev)"]);
    h.say(2, "/join dev");
    assert_eq!(h.take(1), ["*** bob joined Dev"], "room names are case-insensitive, first spelling kept");
    h.clear();
    h.say(3, "lobby only");
    assert_eq!(h.take(3), ["carol: lobby only"]);
    assert!(h.take(1).is_empty() && h.take(2).is_empty(), "rooms are isolated");
    h.say(1, "dev only");
    assert_eq!(h.take(2), ["alice: dev only"]);
    assert!(h.take(3).is_empty());
    h.clear();
    h.say(1, "/join dev");
    assert_eq!(h.take(1), ["*** you are already in Dev"]);
    h.say(1, "/join two words");
    assert!(matches!(h.take(1).as_slice(), [e] if e.starts_with("*** error: usage: /join")));
}

#[test]
fn rooms_and_who_list_sorted_with_counts_and_empty_rooms_vanish() {
    let mut h = three_in_lobby();
    h.say(1, "/join zoo");
    h.say(2, "/join Attic");
    h.clear();
    h.say(3, "/rooms");
    assert_eq!(h.take(3), ["*** rooms: Attic (1), lobby (1), zoo (1)"]);
    h.say(2, "/join zoo");
    h.clear();
    h.say(3, "/rooms");
    assert_eq!(h.take(3), ["*** rooms: lobby (1), zoo (2)"]);
    h.say(1, "/who");
    assert_eq!(h.take(1), ["*** in zoo (2): alice, bob"]);
}

#[test]
fn me_and_private_messages() {
    let mut h = three_in_lobby();
    h.say(1, "/me waves");
    assert_eq!(h.take(3), ["* alice waves"]);
    h.clear();
    h.say(1, "/msg BOB psst, hi");
    assert_eq!(h.take(2), ["[PM from alice] psst, hi"]);
    assert_eq!(h.take(1), ["[PM to bob] psst, hi"]);
    assert!(h.take(3).is_empty(), "private means private");
    h.say(1, "/msg nobody hi");
    assert_eq!(h.take(1), ["*** error: no such nick: nobody"]);
}

#[test]
fn unknown_commands_answer_only_the_sender() {
    let mut h = three_in_lobby();
    h.say(1, "/dance");
    assert_eq!(h.take(1), ["*** error: unknown command /dance; type /help for the list"]);
    assert!(h.take(2).is_empty());
    h.say(1, "/help");
    let help = h.take(1);
    assert!(help[0].lines().all(|l| l.starts_with(NOTICE_PREFIX)) && help[0].contains("/msg NICK TEXT"));
}

#[test]
fn quit_announces_and_asks_for_a_normal_close() {
    let mut h = three_in_lobby();
    h.say(2, "/quit off to lunch");
    assert_eq!(h.closed, [(2, "off to lunch".to_string())]);
    assert_eq!(h.take(1), ["*** bob left lobby (quit: off to lunch)"]);
    assert!(h.take(2).is_empty(), "the leaver is out of the room first");
    assert_eq!(h.chat.nick(2), None);
    h.connect(4, Some("bob"));
    assert_eq!(h.chat.nick(4), Some("bob"), "the nick is free again");
}

#[test]
fn disconnect_frees_everything_and_is_idempotent() {
    let mut h = three_in_lobby();
    h.say(3, "/join solo");
    h.leave(3);
    h.leave(3);
    assert_eq!(h.chat.len(), 2);
    h.clear();
    h.say(1, "/rooms");
    assert_eq!(h.take(1), ["*** rooms: lobby (2)"]);
    h.leave(1);
    h.leave(2);
    assert!(h.chat.is_empty());
    assert!(h.chat.room_members(LOBBY, Mode::Text).is_empty());
}

#[test]
fn messages_from_unknown_clients_are_ignored() {
    let mut h = Harness::default();
    let mut out = Vec::new();
    h.chat.text(99, "hello", 0, &mut out);
    h.chat.binary(99, Bytes::new(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn big_rooms_are_not_flooded_with_announcements() {
    let mut h = Harness { chat: Chat::with_announce_limit(2), ..Harness::default() };
    h.connect(1, Some("a"));
    h.connect(2, Some("b"));
    assert_eq!(h.take(1).last().map(String::as_str), Some("*** b joined lobby"), "at the limit: announced");
    h.connect(3, Some("c"));
    assert!(h.take(1).is_empty(), "over the limit: the others are not told");
    assert_eq!(h.take(3).last().map(String::as_str), Some("*** c joined lobby"), "the joiner still is");
    h.say(3, "/nick cc");
    assert!(h.take(1).is_empty());
    assert_eq!(h.take(3), ["*** c is now known as cc"]);
    h.clear();
    h.say(1, "/join quiet");
    assert_eq!(h.take(1), ["*** a joined quiet"]);
    assert_eq!(h.take(2), ["*** a left lobby (joined quiet)"], "the lobby is back at the limit");
    h.say(2, "chat still reaches everyone");
    assert_eq!(h.take(3), ["*** a left lobby (joined quiet)", "b: chat still reaches everyone"]);
    h.clear();
    h.connect(4, Some("d"));
    assert!(h.take(2).is_empty(), "over the limit again");
    h.leave(4);
    assert_eq!(h.take(2), ["*** d left lobby"], "announced once the room is back at the limit");
    // Moving between rooms with /join follows the same rule (the soak's churn found /join
    // announcing to every member of both rooms, whatever their size).
    h.connect(5, Some("e"));
    h.say(2, "/join quiet"); // quiet: a, b (at the limit)
    h.clear();
    h.say(5, "/join quiet"); // quiet: a, b, e (over)
    assert_eq!(h.take(5), ["*** e joined quiet"], "the joiner is told");
    assert!(h.take(1).is_empty() && h.take(2).is_empty(), "a room over the limit is not");
    assert_eq!(h.take(3), ["*** e left lobby (joined quiet)"], "the lobby, at the limit, is");
    h.say(3, "/join quiet"); // quiet: a, b, e, cc
    h.clear();
    h.say(5, "/join lobby"); // quiet: a, b, cc (still over)
    assert!(h.take(1).is_empty(), "nor is a room left that is over the limit");
    let told = h.take(5);
    assert_eq!(told.first().map(String::as_str), Some("*** recent messages in lobby:"), "{told:?}");
    assert_eq!(told.last().map(String::as_str), Some("*** e joined lobby"));
}

#[test]
fn who_and_rooms_list_the_first_hundred_and_count_the_rest() {
    let mut h = Harness::default();
    for client in 0..250 {
        h.connect(client, Some(&format!("n{client:03}")));
    }
    for client in 0..150 {
        h.say(client, &format!("/join room{client:03}"));
    }
    h.clear();
    h.say(249, "/who");
    let who = h.take(249).remove(0);
    let expected: Vec<String> = (150..250).map(|c| format!("n{c:03}")).collect();
    assert_eq!(who, format!("*** in lobby (100): {}", expected.join(", ")));
    h.say(0, "/join lobby");
    h.clear();
    h.say(249, "/who");
    let who = h.take(249).remove(0);
    assert!(who.starts_with("*** in lobby (101): n000, n150, n151,"), "{who}");
    assert!(who.ends_with(", and 1 more"), "{who}");
    h.say(249, "/rooms");
    let rooms = h.take(249).remove(0);
    assert!(rooms.starts_with("*** rooms: lobby (101), room001 (1), room002 (1),"), "{rooms}");
    assert!(rooms.ends_with("room099 (1), and 50 more"), "{rooms}");
}

#[test]
fn refused_names_are_echoed_short() {
    let mut h = three_in_lobby();
    let huge = "\u{200b}".repeat(20_000);
    for line in [format!("/nick {huge}"), format!("/join {huge}"), format!("/msg {huge} hi")] {
        h.say(1, &line);
        let reply = h.take(1).remove(0);
        assert!(reply.starts_with("*** error: ") && reply.len() < 600, "{} bytes", reply.len());
    }
}

#[test]
fn blank_lines_go_nowhere_and_spaces_before_a_command_are_ignored() {
    let mut h = three_in_lobby();
    for blank in ["", " ", "\t \t"] {
        h.say(1, blank);
    }
    assert!(h.take(1).is_empty() && h.take(2).is_empty(), "nothing sent, no error either");
    h.say(1, "   /WHO");
    assert_eq!(h.take(1), ["*** in lobby (3): alice, bob, carol"]);
    h.say(1, "  indented text");
    assert_eq!(h.take(2), ["alice:   indented text"], "chat text keeps its spacing");
}

#[test]
fn help_lists_help_and_rooms_are_named_as_first_spelled() {
    let mut h = three_in_lobby();
    h.say(1, "/help");
    assert!(h.take(1)[0].contains("\n*** /help "), "/help lists itself");
    h.say(1, "/join Rust");
    h.clear();
    h.say(1, "/join rust");
    assert_eq!(h.take(1), ["*** you are already in Rust"]);
}

#[test]
fn an_emptied_room_keeps_its_history_until_too_many_rooms_are_empty() {
    let limits = ChatLimits { history_rooms: 2, ..ChatLimits::default() };
    let mut h = Harness { chat: Chat::with_limits(limits), ..Harness::default() };
    h.chat.keep_journal();
    h.connect(1, Some("alice"));
    for room in ["r1", "r2", "r3"] {
        h.say(1, &format!("/join {room}"));
        h.say(1, &format!("said in {room}"));
    }
    h.say(1, "/join quiet");
    h.say(1, "/join lobby"); // quiet had no message: gone; r1..r3 emptied, r1 first
    h.chat.check_invariants();
    h.clear();
    h.say(1, "/rooms");
    assert_eq!(h.take(1), ["*** rooms: lobby (1)"], "/rooms lists rooms with members");
    h.say(1, "/join r1");
    assert!(!h.take(1).contains(&"alice: said in r1".to_string()), "r1 was forgotten (emptied first)");
    h.say(1, "/join r3");
    assert_eq!(
        h.take(1)[..3],
        ["*** recent messages in r3:", "alice: said in r3", "*** end of recent messages"],
        "r3 kept its history"
    );
    h.chat.check_invariants();
    let mut journal = Vec::new();
    h.chat.take_journal(&mut journal);
    let said: Vec<&str> = journal
        .iter()
        .filter_map(|j| match j {
            Journal::Message { message, .. } => Some(&*message.text),
            _ => None,
        })
        .collect();
    assert_eq!(said, ["said in r1", "said in r2", "said in r3"]);
    assert!(journal.contains(&Journal::RoomDropped { room: Rc::from(fold("r1")) }), "{journal:?}");
}

#[test]
fn each_member_is_told_in_its_own_mode() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.connect_json(2, "bob");
    h.clear();
    h.say(1, "hi");
    assert_eq!(h.take(1), ["alice: hi"]);
    let json = h.take(2);
    assert!(json[0].starts_with(r#"{"type":"message","room":"lobby","id":""#), "{json:?}");
    assert_eq!(h.chat.room_members(LOBBY, Mode::Text), [1]);
    assert_eq!(h.chat.room_members(LOBBY, Mode::Json), [2]);
    h.leave(1);
    h.chat.check_invariants();
}

#[test]
fn history_off_keeps_nothing_and_drops_empty_rooms() {
    let limits = ChatLimits { history: 0, ..ChatLimits::default() };
    let mut h = Harness { chat: Chat::with_limits(limits), ..Harness::default() };
    h.connect(1, Some("alice"));
    h.say(1, "/join dev");
    h.say(1, "hello");
    h.say(1, "/join lobby");
    h.clear();
    h.say(1, "/join dev");
    assert_eq!(h.take(1), ["*** alice joined dev"], "no replay, no markers");
    h.chat.check_invariants();
}

#[test]
fn joining_a_kept_room_never_evicts_that_room() {
    let limits = ChatLimits { history_rooms: 2, ..ChatLimits::default() };
    let mut h = Harness { chat: Chat::with_limits(limits), ..Harness::default() };
    h.connect(1, Some("alice"));
    for room in ["r2", "r3", "r4"] {
        h.say(1, &format!("/join {room}"));
        h.say(1, &format!("said in {room}"));
    }
    // r2 and r3 are kept empty (r2 emptied first); leaving r4 empties a third room.
    h.clear();
    h.say(1, "/join r2");
    let told = h.take(1);
    assert!(told.contains(&"alice: said in r2".to_string()), "r2 kept its history: {told:?}");
    h.chat.check_invariants();
}

#[test]
fn histories_stay_within_their_memory_budget() {
    let line = "x".repeat(1000);
    let one = history::MESSAGE_OVERHEAD + line.len() + "alice".len();
    let limits = ChatLimits { history_bytes: 5 * one, ..ChatLimits::default() };
    let mut h = Harness { chat: Chat::with_limits(limits), ..Harness::default() };
    h.connect(1, Some("alice"));
    h.say(1, "/join old");
    for _ in 0..3 {
        h.say(1, &line);
    }
    h.say(1, "/join busy"); // "old" is empty now, with 3 kept messages
    for _ in 0..3 {
        h.say(1, &line);
    }
    assert!(h.chat.history_size().1 <= 5 * one, "{:?}", h.chat.history_size());
    h.chat.check_invariants();
    h.say(1, "/rooms");
    h.clear();
    h.say(1, "/join old");
    assert!(!h.take(1).iter().any(|l| l.starts_with("alice: x")), "the empty room went first");
    // With no empty room left to forget, the room being written to drops its oldest.
    h.say(1, "/join busy");
    h.say(1, "/join old");
    h.say(1, "/join busy");
    for _ in 0..10 {
        h.say(1, &line);
    }
    let (kept, cost) = h.chat.history_size();
    assert!(cost <= 5 * one && kept >= 4, "{kept} kept, {cost} bytes");
    h.chat.check_invariants();
}

#[test]
fn a_replay_fits_in_half_the_readers_queue_newest_first() {
    let limits = ChatLimits { replay_bytes: 3 * (1000 + 128 + 10), ..ChatLimits::default() };
    let mut h = Harness { chat: Chat::with_limits(limits), ..Harness::default() };
    h.connect(1, Some("alice"));
    for i in 0..5 {
        h.say(1, &format!("{i}{}", "y".repeat(999)));
    }
    h.connect_json(2, "bob");
    let told = h.take(2);
    let replayed: Vec<&String> = told.iter().filter(|l| l.contains(r#""replay":true"#)).collect();
    // Each costs its 1,000 bytes, nick, room and framing: three fit.
    assert_eq!(replayed.len(), 3, "{told:?}");
    assert!(replayed[0].contains(r#""text":"2y"#) && replayed[2].contains(r#""text":"4y"#));
    let summary = told.iter().find(|l| l.contains(r#""type":"replayed""#)).unwrap();
    assert!(summary.contains(r#""recovered":false"#) && summary.contains(r#""count":3"#), "{summary}");
}

#[test]
fn an_empty_history_still_gives_a_point_to_resume_from() {
    let mut h = Harness::default();
    h.connect_json(1, "bob");
    let told = h.take(1);
    let summary = told.iter().find(|l| l.contains(r#""type":"replayed""#)).unwrap();
    let last = summary.split(r#""last":""#).nth(1).unwrap().split('"').next().unwrap().to_string();
    assert!(last.ends_with(":0"), "{summary}");
    h.leave(1);
    let mut out = Vec::new();
    let join = Join { nick: Some("bob"), since: Some(&last), mode: Some(Mode::Json), ..Join::default() };
    h.chat.connect(1, join, &mut out);
    h.apply(out);
    assert!(h.take(1).iter().any(|l| l.contains(r#""recovered":true"#)), "nothing was missed");
}

#[test]
fn with_history_off_an_emptied_room_is_dropped_from_the_store_too() {
    let limits = ChatLimits { history: 0, ..ChatLimits::default() };
    let mut h = Harness { chat: Chat::with_limits(limits), ..Harness::default() };
    h.chat.keep_journal();
    h.connect(1, Some("alice"));
    h.say(1, "/join dev");
    h.say(1, "hello");
    h.say(1, "/join lobby");
    let mut journal = Vec::new();
    h.chat.take_journal(&mut journal);
    assert_eq!(journal.last(), Some(&Journal::RoomDropped { room: Rc::from("dev") }));
}

fn signed_in(sub: &str) -> Identity {
    Identity { sub: sub.into(), exp: u64::MAX, rooms: Vec::new(), admin: false }
}

fn token_chat() -> Harness {
    Harness {
        chat: Chat::with_limits(ChatLimits { token_nicks: true, ..ChatLimits::default() }),
        ..Harness::default()
    }
}

impl Harness {
    fn sign_in(&mut self, c: ClientId, identity: &Identity, nick: Option<&str>) {
        let mut out = Vec::new();
        self.chat.connect(c, Join { nick, identity: Some(identity), ..Join::default() }, &mut out);
        self.apply(out);
    }
}

#[test]
fn with_tokens_a_nick_is_the_tokens_sub_and_guests_choose_none() {
    let mut h = token_chat();
    h.sign_in(1, &signed_in("alice"), Some("someone-else"));
    assert_eq!(h.chat.nick(1), Some("alice"), "?nick= does not override the token");
    h.connect(2, Some("a1ice"));
    assert_eq!(h.chat.nick(2), Some("guest-1"));
    assert!(h.take(2)[0].contains("guests cannot choose a nick"));
    h.say(2, "/nick ALICE");
    assert!(h.take(2).iter().any(|l| l.contains("/nick is not available")));
    h.say(1, "/nick queen");
    assert!(h.take(1).iter().any(|l| l.contains("/nick is not available")));
    assert_eq!(h.chat.nick(1), Some("alice"));
    h.chat.check_invariants();
}

#[test]
fn one_user_on_two_devices_shares_the_nick_and_another_user_cannot_take_it() {
    let mut h = token_chat();
    h.sign_in(1, &signed_in("alice"), None);
    h.sign_in(2, &signed_in("alice"), None);
    assert_eq!((h.chat.nick(1), h.chat.nick(2)), (Some("alice"), Some("alice")));
    h.sign_in(3, &signed_in("ALICE"), None);
    assert_eq!(h.chat.nick(3), None, "a confusable of a held nick, from another user");
    assert!(h.closed.iter().any(|(c, why)| *c == 3 && why.starts_with("refused: nick")), "{:?}", h.closed);
    h.sign_in(4, &signed_in("bob"), None);
    h.clear();
    h.say(4, "/msg alice psst");
    assert_eq!(h.take(1), ["[PM from bob] psst"]);
    assert_eq!(h.take(2), ["[PM from bob] psst"], "every device gets it");
    h.chat.check_invariants();
    // The nick stays the user's while any of its connections remains.
    h.leave(1);
    h.sign_in(5, &signed_in("alice"), None);
    assert_eq!(h.chat.nick(5), Some("alice"));
    h.leave(2);
    h.leave(5);
    h.chat.check_invariants();
    h.sign_in(6, &signed_in("ALICE"), None);
    assert_eq!(h.chat.nick(6), Some("ALICE"), "free again once every connection is gone");
}

#[test]
fn an_application_sees_every_room_private_ones_included_and_who_sits_where_in_the_cluster() {
    let mut h = token_chat();
    h.sign_in(1, &Identity { rooms: vec!["+Ops".into()], ..signed_in("alice") }, None);
    h.sign_in(2, &signed_in("bob"), None);
    h.say(1, "/join +Ops");
    let rooms = vec![(Rc::from("+Ops"), 1), (Rc::from("lobby"), 1)];
    assert_eq!(h.api(7, ApiCall::Rooms), Some(ApiAnswer::Rooms { rooms, total: 2, members: 2 }));
    let members = vec![Rc::from("alice")];
    let presence = h.api(8, ApiCall::Presence { room: "+OPS".into() });
    assert_eq!(presence, Some(ApiAnswer::Presence { room: "+Ops".into(), members, total: 1 }));
    assert_eq!(h.api(9, ApiCall::Presence { room: "nowhere".into() }), Some(ApiAnswer::NoSuchRoom));
    // Other processes' members count too: a room with members only elsewhere exists.
    let mut out = Vec::new();
    let (asker, room, nicks) = (Asker::Api(10), Rc::from("attic"), vec![Rc::from("carol")]);
    h.chat.on_notice(Notice::Who { asker, room, nicks }, &mut out);
    h.deliver(out);
    let members = vec![Rc::from("carol")];
    assert_eq!(h.answers.pop(), Some((10, ApiAnswer::Presence { room: "attic".into(), members, total: 1 })));
}

#[test]
fn private_rooms_are_invisible_and_closed_to_all_but_their_members_and_admins() {
    let mut h = token_chat();
    let alice = Identity { rooms: vec!["+Ops".into()], ..signed_in("alice") };
    let admin = Identity { admin: true, ..signed_in("root") };
    h.sign_in(1, &alice, None);
    h.sign_in(2, &signed_in("bob"), None);
    h.sign_in(3, &admin, None);
    h.say(1, "/join +ops");
    h.clear();
    h.say(2, "/join +ops");
    assert_eq!(h.take(2), ["*** error: no such room"], "the same answer as for a room that does not exist");
    h.say(2, "/rooms");
    assert_eq!(h.take(2), ["*** rooms: lobby (2)"], "not listed");
    h.say(3, "/rooms");
    assert_eq!(h.take(3), ["*** rooms: +ops (1), lobby (2)"], "admins see it");
    h.say(3, "/join +OPS");
    assert!(h.take(3).contains(&"*** root joined +ops".to_string()));
    let mut out = Vec::new();
    h.chat.connect(4, Join { room: Some("+ops"), ..Join::default() }, &mut out);
    h.apply(out);
    let told = h.take(4);
    assert_eq!(told[0], "*** error: no such room");
    assert!(told[1].starts_with("*** welcome, you are guest-1 in lobby"), "{told:?}");
    h.chat.check_invariants();
}

#[test]
fn moderators_kick_and_ban_and_nobody_else_can() {
    let mut h = token_chat();
    let root = Identity { admin: true, ..signed_in("root") };
    h.sign_in(1, &root, None);
    h.sign_in(2, &signed_in("alice"), None);
    h.sign_in(3, &signed_in("alice"), None); // alice's second device
    h.connect(4, None); // guest-1
    h.clear();
    h.say(2, "/kick root");
    assert_eq!(h.take(2), ["*** error: only moderators can /kick"]);
    h.say(1, "/kick alice flooding");
    let kicked: Vec<&(ClientId, String)> = h.closed.iter().collect();
    assert_eq!(
        kicked,
        [&(2, "kicked by root: flooding".to_string()), &(3, "kicked by root: flooding".to_string())]
    );
    assert_eq!(
        h.take(1),
        [
            "*** alice left lobby (kicked by root: flooding)",
            "*** alice left lobby (kicked by root: flooding)",
            "*** alice was kicked"
        ],
        "the room hears each of alice's devices leave, then the moderator is told"
    );
    h.closed.clear();

    let now = 1_764_000_000_000;
    let mut out = Vec::new();
    h.chat.text(1, "/ban guest-1 10m spam", now, &mut out);
    assert!(out.iter().any(|e| matches!(e,
        Effect::BanAddress { client: 4, ban, closing } if ban.until_ms == now + 600_000 && closing == "banned by root: spam")));
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Kick { .. })),
        "closed once its ban is in force, not before"
    );
    h.apply(out);
    assert_eq!(h.closed, [(4, "banned by root: spam".to_string())], "closed once the broker has the ban");
    let mut out = Vec::new();
    h.chat.text(1, "/ban carol 1d", now, &mut out); // not connected: banned by nick all the same
    h.apply(out);
    assert!(h.chat.bans().check(Some("CAROL"), "10.1.1.1".parse().unwrap(), now + 1).is_some());
    assert!(h.chat.bans().check(None, "10.0.0.4".parse().unwrap(), now + 1).is_some());
    h.clear();
    let mut out = Vec::new();
    h.chat.text(1, "/bans", now + 60_000, &mut out);
    h.apply(out);
    assert_eq!(
        h.take(1),
        ["*** bans:\n*** carol, by root, 23h 59m more\n*** guest-1 (guest, address 10.0.0.4), by root, 9m 0s more: spam"]
    );
    h.say(1, "/unban carol");
    assert_eq!(h.take(1), ["*** carol may come back"]);
    assert!(h.chat.bans().check(Some("carol"), "10.1.1.1".parse().unwrap(), now + 1).is_none());
    h.say(1, "/unban nobody");
    assert_eq!(h.take(1), ["*** no ban for nobody"]);
}

#[test]
fn a_move_into_a_private_room_is_not_announced_by_name_and_renewal_resets_rights() {
    let mut h = token_chat();
    let olga = Identity { rooms: vec!["+ops".into()], ..signed_in("olga") };
    h.sign_in(1, &olga, None);
    h.connect(2, None);
    h.clear();
    h.say(1, "/join +ops");
    assert_eq!(h.take(2), ["*** olga left lobby"], "the private room is not named");
    // A renewed token without the room: olga is back in the lobby.
    let mut out = Vec::new();
    h.chat.renew(1, &signed_in("olga"), &mut out);
    h.apply(out);
    h.clear();
    h.say(1, "/who");
    assert!(h.take(1)[0].starts_with("*** in lobby"));
    h.chat.check_invariants();
    // A guest who is gone cannot be banned by nick.
    let root = Identity { admin: true, ..signed_in("root") };
    h.sign_in(3, &root, None);
    h.clear();
    h.say(3, "/ban guest-9 1h");
    assert!(h.take(3)[0].contains("guest-9 is not connected"));
}

#[test]
fn an_expired_session_is_refused_everything_but_the_way_back_until_renewed() {
    let mut h = token_chat();
    let ada = Identity { admin: true, rooms: vec!["+ops".into()], ..signed_in("ada") };
    h.sign_in(1, &ada, None);
    h.connect(2, None);
    h.say(1, "/join +ops");
    h.clear();
    let mut out = Vec::new();
    h.chat.expire(1, &mut out);
    h.apply(out);
    let told = h.take(1);
    assert_eq!(told[0], "*** your session expired; send /token NEWTOKEN");
    assert!(told.contains(&"*** ada joined lobby".to_string()), "out of the private room: {told:?}");
    h.clear();
    for line in ["hi", "/msg guest-1 psst", "/kick guest-1", "/nick eve", "/join +ops", "/rooms"] {
        h.say(1, line);
        assert_eq!(h.take(1), ["*** error: session expired: send /token NEWTOKEN"], "{line}");
        assert!(h.take(2).is_empty(), "{line} reached another");
    }
    assert!(h.chat.is_expired(1));
    let mut out = Vec::new();
    h.chat.renew(1, &signed_in("ada"), &mut out);
    h.apply(out);
    assert!(!h.chat.is_expired(1));
    h.clear();
    h.say(1, "back");
    assert_eq!(h.take(2), ["ada: back"]);
    h.chat.check_invariants();
}

#[test]
fn help_shows_each_client_the_commands_that_apply_to_it() {
    // Without sign-in keys: nicks are chosen, nobody has a session or moderates.
    let mut h = three_in_lobby();
    h.say(1, "/help");
    let guest = h.take(1).join("\n");
    assert!(guest.contains("/nick NAME") && guest.contains("/join ROOM"), "{guest}");
    assert!(!guest.contains("/token") && !guest.contains("moderators") && !guest.contains("/ban"), "{guest}");
    // With keys: no /nick (a nick is the token's); /token for the signed-in; moderation for admins.
    let mut h = token_chat();
    h.sign_in(1, &signed_in("ann"), None);
    h.sign_in(2, &Identity { admin: true, ..signed_in("root") }, None);
    h.connect(3, None);
    h.clear();
    let mut help = |client| {
        h.say(client, "/help");
        h.take(client).join("\n")
    };
    let (ann, root, guest) = (help(1), help(2), help(3));
    assert!(ann.contains("/token JWT") && !ann.contains("/nick") && !ann.contains("/kick"), "{ann}");
    assert!(root.contains("/token JWT") && root.contains("moderators:") && root.contains("/bans"), "{root}");
    assert!(!guest.contains("/token") && !guest.contains("/nick") && !guest.contains("/ban"), "{guest}");
}

#[test]
fn a_token_that_expires_while_the_join_waits_on_the_broker_joins_expired() {
    let mut h = Harness { broker: None, ..token_chat() };
    let ada = Identity { admin: true, rooms: vec!["+ops".into()], ..signed_in("ada") };
    let mut out = Vec::new();
    h.chat.connect(1, Join { room: Some("+ops"), identity: Some(&ada), ..Join::default() }, &mut out);
    h.apply(out);
    let (nick, serial) = h.claim_of(1);
    let mut out = Vec::new();
    h.chat.expire(1, &mut out);
    h.apply(out);
    assert_eq!(h.take(1), ["*** your session expired; send /token NEWTOKEN"], "told at once");
    h.cluster(Notice::Claimed { client: 1, nick: nick.unwrap(), held_by: None, serial, markers: Vec::new() });
    let joined = h.take(1).join("\n");
    assert!(joined.contains("*** welcome, you are ada in lobby"), "not in the private room: {joined}");
    assert!(h.chat.is_expired(1));
    h.say(1, "/bans");
    assert_eq!(h.take(1), ["*** error: session expired: send /token NEWTOKEN"], "no moderator rights");
}

// ----- the HTTP API's calls -----

fn publish(room: &str, text: &str) -> ApiCall {
    ApiCall::Publish { room: room.into(), text: text.into(), from: "deploybot".into() }
}

fn published_id(answer: Option<ApiAnswer>) -> MessageId {
    match answer {
        Some(ApiAnswer::Published { id }) => id,
        other => panic!("not published: {other:?}"),
    }
}

#[test]
fn an_application_publishes_into_a_room_its_members_see_it_set_apart_and_it_is_kept() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.connect_json(2, "bob");
    h.say(1, "before");
    h.clear();
    let id = published_id(h.api(7, publish("LOBBY", "deploy 1.4 done")));
    assert_eq!(id.seq, 2, "numbered like any message of the room");
    assert_eq!(h.take(1), ["[deploybot] deploy 1.4 done"], "not mistakable for a member's line");
    let json: serde_json::Value = serde_json::from_str(&h.take(2)[0]).unwrap();
    assert_eq!(
        (json["type"].as_str(), json["from"].as_str(), json["api"].as_bool()),
        (Some("message"), Some("deploybot"), Some(true))
    );
    assert_eq!(json["id"].as_str(), Some(id.to_string().as_str()));
    // A later joiner's replay has it, still set apart.
    h.connect(3, Some("carol"));
    let replay = h.take(3);
    assert!(replay.contains(&"[deploybot] deploy 1.4 done".to_string()), "{replay:?}");
    h.chat.check_invariants();
}

#[test]
fn a_room_without_members_is_published_into_kept_and_left_unfollowed() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    let first = published_id(h.api(7, publish("Attic", "one")));
    let second = published_id(h.api(8, publish("attic", "two")));
    assert_eq!((first.seq, second.seq, first.epoch == second.epoch), (1, 2, true));
    h.chat.check_invariants();
    assert!(!h.chat.is_followed("attic"), "followed only while the message was on its way");
    let history = h.api(9, ApiCall::History { room: "ATTIC".into(), since: None, limit: 100 });
    let Some(ApiAnswer::History { room, messages, recovered: false, .. }) = history else {
        panic!("{history:?}")
    };
    assert_eq!(&*room, "Attic", "the name as first spelled");
    let texts: Vec<&str> = messages.iter().map(|m| &*m.text).collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(messages.iter().all(|m| m.kind == Kind::Api));
    // A member who comes is replayed both.
    h.say(1, "/join attic");
    let seen = h.take(1);
    assert!(
        seen.contains(&"[deploybot] one".to_string()) && seen.contains(&"[deploybot] two".to_string()),
        "{seen:?}"
    );
    h.chat.check_invariants();
}

#[test]
fn history_follows_the_resume_rules_and_keeps_the_newest() {
    let mut h = three_in_lobby();
    for i in 1..=5 {
        h.say(1, &format!("m{i}"));
    }
    let Some(ApiAnswer::History { epoch, .. }) =
        h.api(1, ApiCall::History { room: "lobby".into(), since: None, limit: 100 })
    else {
        panic!()
    };
    let since = MessageId { epoch: epoch.to_string(), seq: 2 };
    let answer = h.api(2, ApiCall::History { room: "lobby".into(), since: Some(since.clone()), limit: 100 });
    let Some(ApiAnswer::History { messages, recovered, .. }) = answer else { panic!() };
    assert_eq!((messages.iter().map(|m| m.seq).collect::<Vec<_>>(), recovered), (vec![3, 4, 5], true));
    let answer = h.api(3, ApiCall::History { room: "lobby".into(), since: Some(since), limit: 2 });
    let Some(ApiAnswer::History { messages, recovered, .. }) = answer else { panic!() };
    assert_eq!(
        (messages.iter().map(|m| m.seq).collect::<Vec<_>>(), recovered),
        (vec![4, 5], false),
        "cut: not all of it"
    );
    let stale = MessageId { epoch: "other".into(), seq: 2 };
    let answer = h.api(4, ApiCall::History { room: "lobby".into(), since: Some(stale), limit: 100 });
    assert!(
        matches!(answer, Some(ApiAnswer::History { recovered: false, ref messages, .. }) if messages.len() == 5)
    );
    assert_eq!(
        h.api(5, ApiCall::History { room: "nowhere".into(), since: None, limit: 1 }),
        Some(ApiAnswer::NoSuchRoom)
    );
}

#[test]
fn an_application_sends_kicks_bans_and_unbans_like_a_moderator() {
    let mut h = token_chat();
    h.sign_in(1, &signed_in("alice"), None);
    h.sign_in(2, &signed_in("alice"), None);
    h.connect(3, None);
    let guest = h.chat.nick(3).unwrap().to_string();
    h.clear();
    let send = ApiCall::Send { nick: "ALICE".into(), text: "your build is green".into(), from: "ci".into() };
    assert_eq!(h.api(1, send), Some(ApiAnswer::Reached { reached: 2 }), "both of her connections");
    assert_eq!(h.take(1), ["[PM from app ci] your build is green"]);
    assert_eq!(h.take(2), ["[PM from app ci] your build is green"]);
    let nobody = ApiCall::Send { nick: "zed".into(), text: "x".into(), from: "ci".into() };
    assert_eq!(h.api(2, nobody), Some(ApiAnswer::NotFound("no such nick: zed".into())));
    let kick = ApiCall::Kick { nick: guest.clone(), reason: Some("spam".into()) };
    assert_eq!(h.api(3, kick), Some(ApiAnswer::Reached { reached: 1 }));
    assert!(h.closed.contains(&(3, "kicked by server: spam".to_string())), "{:?}", h.closed);
    assert!(h.take(1).contains(&format!("*** {guest} left lobby (kicked by server: spam)")));
    let kick = ApiCall::Kick { nick: guest.clone(), reason: None };
    assert_eq!(h.api(4, kick), Some(ApiAnswer::NotFound(format!("no such nick: {guest}"))));
    // A ban by name holds whether or not the user is connected.
    let ban = ApiCall::Ban { nick: "alice".into(), duration: Duration::from_secs(600), reason: None };
    let Some(ApiAnswer::Banned { nick, kicked: 2, until_ms }) = h.api(5, ban) else { panic!() };
    assert_eq!((nick.as_str(), until_ms), ("alice", 1_764_000_000_000 + 600_000));
    assert!(h.chat.nick(1).is_none() && h.chat.nick(2).is_none(), "both closed");
    let ban =
        ApiCall::Ban { nick: "zed".into(), duration: Duration::from_secs(60), reason: Some("r".into()) };
    assert!(matches!(h.api(6, ban), Some(ApiAnswer::Banned { kicked: 0, .. })));
    let Some(ApiAnswer::Bans(bans)) = h.api(7, ApiCall::Bans) else { panic!() };
    let listed: Vec<(&str, &str, &str)> = bans.iter().map(|b| (&*b.nick, &*b.reason, &*b.by)).collect();
    assert_eq!(listed, [("zed", "r", "server"), ("alice", "", "server")], "soonest to end first");
    let ban = ApiCall::Ban { nick: "guest-9".into(), duration: Duration::from_secs(60), reason: None };
    assert!(matches!(h.api(8, ban), Some(ApiAnswer::NotFound(why)) if why.contains("not connected")));
    assert_eq!(h.api(9, ApiCall::Unban { nick: "Alice".into() }), Some(ApiAnswer::Unbanned { count: 1 }));
    assert_eq!(
        h.api(10, ApiCall::Unban { nick: "alice".into() }),
        Some(ApiAnswer::NotFound("no ban for alice".into()))
    );
    h.chat.check_invariants();
}

#[test]
fn in_a_cluster_a_publish_follows_the_room_until_redis_numbers_it() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.requests();
    assert_eq!(h.api(1, publish("attic", "hi")), None, "answered when Redis has numbered it");
    let requests = h.requests();
    assert!(follows(&requests, "attic"), "{requests:?}");
    assert!(
        matches!(requests.last(), Some(Request::Say { origin: Origin::Api(1), message, .. }) if message.kind == Kind::Api)
    );
    h.chat.check_invariants();
    let published = Notice::Published { ticket: 1, room: Rc::from("attic"), epoch: Rc::from("e1"), seq: 9 };
    h.cluster(published);
    assert_eq!(
        h.answers.pop(),
        Some((1, ApiAnswer::Published { id: MessageId { epoch: "e1".into(), seq: 9 } }))
    );
    assert!(h.requests().iter().any(|r| matches!(r, Request::Unfollow { room } if &**room == "attic")));
    h.chat.check_invariants();
    // Its history is asked of Redis (not followed here), and comes back as Redis keeps it.
    assert_eq!(h.api(2, ApiCall::History { room: "attic".into(), since: None, limit: 10 }), None);
    assert!(matches!(h.requests().as_slice(), [Request::History { asker: Asker::Api(2), .. }]));
    let kept = Kept::There {
        display: Rc::from("Attic"),
        epoch: Rc::from("e1"),
        top: 9,
        messages: vec![stored(8, "a", "x"), stored(9, "deploybot", "hi")],
    };
    h.cluster(Notice::History { asker: Asker::Api(2), room: Rc::from("attic"), kept });
    let Some((2, ApiAnswer::History { messages, .. })) = h.answers.pop() else { panic!() };
    assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [8, 9]);
    h.api(3, ApiCall::History { room: "cellar".into(), since: None, limit: 10 });
    h.cluster(Notice::History { asker: Asker::Api(3), room: Rc::from("cellar"), kept: Kept::Nowhere });
    assert_eq!(h.answers.pop(), Some((3, ApiAnswer::NoSuchRoom)));
}

// ----- signals -----

#[test]
fn typing_reaches_the_room_s_other_json_members_at_most_every_two_seconds() {
    let mut h = Harness::default();
    let mut out = Vec::new();
    for (c, nick) in [(1, "alice"), (2, "bob")] {
        h.chat.connect(c, Join { nick: Some(nick), mode: Some(Mode::Json), ..Join::default() }, &mut out);
    }
    h.apply(out);
    h.connect(3, Some("carol"));
    h.clear();
    let typing = |h: &mut Harness, c: ClientId, at: u64| {
        let mut out = Vec::new();
        h.chat.text(c, "/typing", 1_764_000_000_000 + at, &mut out);
        h.apply(out);
    };
    typing(&mut h, 1, 0);
    assert_eq!(h.take(2), [r#"{"type":"typing","room":"lobby","nick":"alice"}"#]);
    assert!(h.take(1).is_empty(), "not to the typist");
    assert!(h.take(3).is_empty(), "a text client is told nothing");
    typing(&mut h, 1, 1999);
    assert!(h.take(2).is_empty(), "a second within two seconds is dropped");
    typing(&mut h, 2, 1999);
    assert_eq!(
        h.take(1),
        [r#"{"type":"typing","room":"lobby","nick":"bob"}"#],
        "each member has its own rate"
    );
    typing(&mut h, 1, 2000);
    assert_eq!(h.take(2).len(), 1, "two seconds later, again");
    h.say(1, "/typing now");
    assert_eq!(h.take(1), [r#"{"type":"error","text":"usage: /typing"}"#]);
}

// ----- mentions -----

#[test]
fn a_message_names_its_mentions_and_a_named_member_elsewhere_is_told() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.connect_json(2, "bob");
    h.connect(3, Some("Carol"));
    h.say(3, "/join dev");
    h.clear();
    h.say(1, "hi @BOB and @carol! (mail zed@example.com, @zed)");
    assert_eq!(h.take(1), ["alice: hi @BOB and @carol! (mail zed@example.com, @zed)"], "text mode: the line");
    let json: serde_json::Value = serde_json::from_str(&h.take(2)[0]).unwrap();
    assert_eq!(
        json["mentions"],
        serde_json::json!(["bob", "Carol"]),
        "members only, as they hold their nicks"
    );
    assert_eq!(
        h.take(3),
        ["*** alice mentioned you in lobby: hi @BOB and @carol! (mail zed@example.com, @zed)"],
        "named in another room: told"
    );
    // Kept with the message: a joiner's replay has them too.
    h.connect_json(4, "dave");
    let replayed = h.take(4);
    assert!(replayed.iter().any(|m| m.contains(r#""mentions":["bob","Carol"]"#)), "{replayed:?}");
    h.say(1, "no names here");
    let json: serde_json::Value = serde_json::from_str(&h.take(2)[0]).unwrap();
    assert!(json.get("mentions").is_none(), "{json}");
}

#[test]
fn in_a_cluster_names_held_elsewhere_are_asked_first_and_told_through_the_broker() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.join_cluster(1, "alice");
    h.cluster(loaded("lobby", "e1", 0, Vec::new()));
    h.requests();
    h.clear();
    h.say(1, "@Dave look");
    assert!(h.chat.is_waiting(1), "its input waits for the answer");
    let requests = h.requests();
    let [Request::Holders { asker, nicks }] = requests.as_slice() else { panic!("{requests:?}") };
    assert_eq!(nicks.as_slice(), [Rc::from("Dave")]);
    h.cluster(Notice::Holders { asker: asker.clone(), held: vec![Rc::from("dave")] });
    assert!(!h.chat.is_waiting(1));
    let requests = h.requests();
    let [Request::Say { message, origin: Origin::Member(1), .. }] = requests.as_slice() else {
        panic!("{requests:?}")
    };
    assert_eq!(&*message.mentions, [Rc::from("dave")]);
    // Back numbered, from this process's member: Dave, elsewhere, is told through the broker.
    let numbered = Stored { author: 0, edited: false, seq: 1, ..message.clone() };
    h.cluster(Notice::Message {
        room: Rc::from("lobby"),
        epoch: Rc::from("e1"),
        message: numbered.clone(),
        origin: Some(1),
    });
    let requests = h.requests();
    assert!(
        matches!(requests.as_slice(), [Request::Direct { asker: Asker::Nobody, nick, direct: Direct::Mention { id, .. } }] if &**nick == "dave" && id == "e1:1"),
        "{requests:?}"
    );
    // The same message from another process's member tells nobody from here.
    let other = Stored { author: 0, edited: false, seq: 2, ..numbered };
    h.cluster(Notice::Message {
        room: Rc::from("lobby"),
        epoch: Rc::from("e1"),
        message: other,
        origin: None,
    });
    assert!(h.requests().is_empty());
}

// ----- earlier messages -----

#[test]
fn history_pages_back_through_what_the_room_keeps() {
    let mut h = Harness::with_chat(Chat::with_limits(ChatLimits { history: 5, ..ChatLimits::default() }));
    h.connect(1, Some("alice"));
    for i in 1..=7 {
        h.say(1, &format!("m{i}"));
    }
    h.connect_json(2, "bob");
    let replay = h.take(2);
    let epoch = replay
        .iter()
        .find_map(|m| m.split("\"last\":\"").nth(1))
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    h.clear();
    h.say(2, &format!("/history {epoch}:6 2"));
    let page: Vec<serde_json::Value> = h.take(2).iter().map(|t| serde_json::from_str(t).unwrap()).collect();
    let texts: Vec<&str> = page.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["m4", "m5"]);
    assert!(page[..2].iter().all(|m| m["older"] == true && m.get("replay").is_none()));
    assert_eq!(
        page[2],
        serde_json::json!({"type": "history", "room": "lobby", "count": 2, "more": true, "first": format!("{epoch}:4")})
    );
    h.say(2, &format!("/history {epoch}:4"));
    let page: Vec<serde_json::Value> = h.take(2).iter().map(|t| serde_json::from_str(t).unwrap()).collect();
    assert_eq!(page.last().unwrap()["more"], false, "m3 is the oldest kept (--history 5)");
    assert_eq!(page.last().unwrap()["count"], 1);
    h.say(1, &format!("/history {epoch}:3"));
    assert_eq!(h.take(1), ["*** no earlier messages in lobby"]);
    h.say(1, &format!("/history {epoch}:5 5"));
    assert_eq!(
        h.take(1),
        ["*** earlier messages in lobby:", "alice: m3", "alice: m4", "*** end of earlier messages"]
    );
    h.say(1, "/history other:5");
    assert_eq!(h.take(1), ["*** error: no message other:5 in lobby"]);
    h.say(1, &format!("/history {epoch}:99"));
    assert_eq!(h.take(1), [format!("*** error: no message {epoch}:99 in lobby")]);
    h.say(1, "/history");
    assert!(h.take(1)[0].starts_with("*** error: usage: /history ID [N]"));
    h.say(1, &format!("/history {epoch}:5 201"));
    assert!(h.take(1)[0].starts_with("*** error: usage: /history ID [N]"));
}

// ----- read markers -----

/// The id of the last JSON object in `frames` that has one.
fn last_id(frames: &[String]) -> String {
    let value = frames
        .iter()
        .rev()
        .find_map(|m| serde_json::from_str::<serde_json::Value>(m).ok().filter(|v| v["id"].is_string()));
    value.expect("a frame with an id")["id"].as_str().unwrap().to_string()
}

#[test]
fn a_user_s_read_marker_reaches_its_other_devices_and_outlives_them() {
    let mut h = token_chat();
    h.sign_in(1, &signed_in("alice"), None);
    let mut out = Vec::new();
    let identity = signed_in("alice");
    let join = Join { identity: Some(&identity), mode: Some(Mode::Json), ..Join::default() };
    h.chat.connect(2, join, &mut out);
    h.apply(out);
    h.say(1, "one");
    h.say(1, "two");
    let id = last_id(&h.take(2));
    h.clear();
    h.say(1, &format!("/read {id}"));
    assert!(h.take(1).is_empty(), "nothing back to the reader");
    assert_eq!(h.take(2), [format!(r#"{{"type":"read","room":"lobby","id":"{id}"}}"#)]);
    h.leave(1);
    h.leave(2);
    // Back later: the replay says where she read up to.
    let mut out = Vec::new();
    h.chat.connect(
        3,
        Join { identity: Some(&identity), mode: Some(Mode::Json), ..Join::default() },
        &mut out,
    );
    h.apply(out);
    let replayed = h.take(3).into_iter().find(|m| m.contains(r#""type":"replayed""#)).unwrap();
    assert!(replayed.contains(&format!(r#""read":"{id}""#)), "{replayed}");
    h.say(3, "/read nonsense");
    assert_eq!(h.take(3), [r#"{"type":"error","text":"usage: /read ID (a message id of lobby)"}"#]);
}

#[test]
fn a_guest_s_read_marker_lasts_as_long_as_its_connection() {
    let mut h = Harness::default();
    h.connect_json(1, "bob");
    h.say(1, "hi");
    let id = last_id(&h.take(1));
    h.say(1, &format!("/read {id}"));
    h.say(1, "/join dev");
    h.say(1, "/join lobby");
    let replayed = h.take(1).into_iter().rfind(|m| m.contains(r#""type":"replayed""#)).unwrap();
    assert!(replayed.contains(&format!(r#""read":"{id}""#)), "{replayed}");
    h.leave(1);
    h.connect_json(1, "bob");
    let replayed = h.take(1).into_iter().find(|m| m.contains(r#""type":"replayed""#)).unwrap();
    assert!(replayed.contains(r#""read":null"#), "a new connection, no marker: {replayed}");
}

#[test]
fn in_a_cluster_a_user_s_markers_come_with_its_claim_before_its_replay() {
    let mut h = Harness { broker: None, ..token_chat() };
    h.cluster(Notice::Up);
    let identity = signed_in("alice");
    let mut out = Vec::new();
    h.chat.connect(
        1,
        Join { identity: Some(&identity), mode: Some(Mode::Json), ..Join::default() },
        &mut out,
    );
    h.apply(out);
    let (_, serial) = h.claim_of(1);
    let markers = vec![("lobby".to_string(), "e1:2".to_string())];
    h.cluster(Notice::Claimed { client: 1, nick: Rc::from("alice"), held_by: None, serial, markers });
    h.cluster(loaded("lobby", "e1", 3, vec![stored(1, "b", "x"), stored(2, "b", "y"), stored(3, "b", "z")]));
    let replayed = h.take(1).into_iter().find(|m| m.contains(r#""type":"replayed""#)).unwrap();
    assert!(replayed.contains(r#""read":"e1:2""#), "{replayed}");
}

// ----- edits and deletes -----

#[test]
fn edits_and_deletes_change_the_room_as_it_stands_and_reach_a_resuming_client() {
    let mut h = token_chat();
    h.sign_in(1, &signed_in("alice"), None);
    h.sign_in(2, &signed_in("bob"), None);
    h.say(1, "helo");
    h.say(1, "oops");
    h.say(2, "bob's");
    let mut out = Vec::new();
    let watcher = signed_in("carol");
    h.chat.connect(3, Join { identity: Some(&watcher), mode: Some(Mode::Json), ..Join::default() }, &mut out);
    h.apply(out);
    let replay = h.take(3);
    let id_of = |text: &str| {
        let line = replay.iter().find(|m| m.contains(&format!(r#""text":"{text}""#))).unwrap();
        line.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().to_string()
    };
    let (helo, oops, bobs) = (id_of("helo"), id_of("oops"), id_of("bob's"));
    let last_seen = bobs.clone();
    h.clear();
    h.say(1, &format!("/edit {helo} hello"));
    assert_eq!(h.take(2), ["*** alice edited a message: hello"]);
    let edited: serde_json::Value = serde_json::from_str(&h.take(3)[0]).unwrap();
    assert_eq!(
        (edited["type"].as_str(), edited["target"].as_str(), edited["text"].as_str()),
        (Some("edited"), Some(helo.as_str()), Some("hello"))
    );
    h.say(1, &format!("/delete {oops}"));
    assert_eq!(h.take(2), ["*** alice deleted a message"]);
    let deleted: serde_json::Value = serde_json::from_str(&h.take(3)[0]).unwrap();
    assert_eq!(
        (deleted["type"].as_str(), deleted["target"].as_str()),
        (Some("deleted"), Some(oops.as_str()))
    );
    assert!(deleted.get("text").is_none(), "{deleted}");
    assert_eq!(
        h.take(1),
        ["*** alice edited a message: hello", "*** alice deleted a message"],
        "the author too"
    );
    // Refused: another's message, an unknown one, past the window.
    h.say(1, &format!("/edit {bobs} mine now"));
    assert_eq!(h.take(1), ["*** error: that message is not yours"]);
    h.say(1, &format!("/delete {bobs}"));
    assert_eq!(h.take(1), ["*** error: that message is not yours"]);
    h.say(1, &format!("/edit {oops} back"));
    assert_eq!(h.take(1), [format!("*** error: no message {oops} in lobby")]);
    let mut out = Vec::new();
    h.chat.text(1, &format!("/edit {helo} late"), 1_764_000_000_000 + 15 * 60_000 + 1, &mut out);
    h.apply(out);
    assert_eq!(h.take(1), ["*** error: too late to edit that message (after 15 minutes)"]);
    // A joiner sees the room as it stands; a client resuming from before gets the changes.
    h.connect(4, Some("dave"));
    let joined = h.take(4);
    assert!(
        joined.contains(&"alice: hello".to_string()) && !joined.iter().any(|l| l.contains("oops")),
        "{joined:?}"
    );
    assert!(
        !joined.iter().any(|l| l.contains("edited a message") || l.contains("deleted a message")),
        "{joined:?}"
    );
    let mut out = Vec::new();
    let since = MessageId::parse(&last_seen).unwrap().to_string();
    h.chat.connect(
        5,
        Join { identity: Some(&watcher), mode: Some(Mode::Json), since: Some(&since), ..Join::default() },
        &mut out,
    );
    h.apply(out);
    let resumed = h.take(5);
    assert!(
        resumed.iter().any(|m| m.contains(r#""type":"edited""#))
            && resumed.iter().any(|m| m.contains(r#""type":"deleted""#)),
        "{resumed:?}"
    );
    h.chat.check_invariants();
}

#[test]
fn a_moderator_deletes_anyone_s_message() {
    let mut h = token_chat();
    h.sign_in(1, &signed_in("alice"), None);
    h.sign_in(2, &Identity { admin: true, ..signed_in("root") }, None);
    let mut out = Vec::new();
    h.chat.connect(
        3,
        Join { nick: None, mode: Some(Mode::Json), identity: Some(&signed_in("carol")), ..Join::default() },
        &mut out,
    );
    h.apply(out);
    h.say(1, "spam");
    let said = h.take(3).into_iter().rfind(|m| m.contains("spam")).unwrap();
    let id = said.split("\"id\":\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    h.say(2, &format!("/delete {id}"));
    assert!(h.take(1).contains(&"*** root deleted a message".to_string()));
}

#[test]
fn a_member_deletes_at_most_once_a_second() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.say(1, "a");
    h.say(1, "b");
    h.connect_json(2, "bob");
    let ids: Vec<String> = h
        .take(2)
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(m).ok())
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect();
    h.clear();
    let delete = |h: &mut Harness, id: &str, at: u64| {
        let mut out = Vec::new();
        h.chat.text(1, &format!("/delete {id}"), 1_764_000_000_000 + at, &mut out);
        h.apply(out);
        h.take(1)
    };
    assert_eq!(delete(&mut h, &ids[0], 0), ["*** alice deleted a message"]);
    assert_eq!(delete(&mut h, &ids[1], 999), ["*** error: one /delete a second: try again in a moment"]);
    assert_eq!(delete(&mut h, &ids[1], 1000), ["*** alice deleted a message"]);
}

#[test]
fn a_nick_held_later_by_someone_else_cannot_change_what_the_first_holder_said() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.connect_json(2, "watcher");
    h.say(1, "I agree with the proposal");
    let id = last_id(&h.take(2));
    h.leave(1);
    h.connect(3, Some("alice"));
    h.clear();
    h.say(3, &format!("/edit {id} I oppose the proposal"));
    assert_eq!(h.take(3), ["*** error: that message is not yours"]);
    h.say(3, &format!("/delete {id}"));
    assert_eq!(h.take(3), ["*** error: that message is not yours"]);
}

#[test]
fn a_deleted_message_takes_its_edits_with_it() {
    let mut h = Harness::default();
    h.connect(1, Some("alice"));
    h.connect_json(2, "watcher");
    h.say(1, "my password is hunter1");
    let said = last_id(&h.take(2));
    h.say(1, &format!("/edit {said} my password is hunter2"));
    h.say(1, &format!("/delete {said}"));
    h.clear();
    // A client resuming from before it all, and the API's history: nothing of either text.
    let since = format!("{}:0", said.split(':').next().unwrap());
    let mut out = Vec::new();
    h.chat.connect(
        3,
        Join { nick: Some("late"), mode: Some(Mode::Json), since: Some(&since), ..Join::default() },
        &mut out,
    );
    h.apply(out);
    let seen = h.take(3).join("\n");
    assert!(!seen.contains("hunter"), "{seen}");
    let Some(api::ApiAnswer::History { messages, .. }) =
        h.api(1, ApiCall::History { room: "lobby".into(), since: MessageId::parse(&since), limit: 100 })
    else {
        panic!()
    };
    assert!(messages.iter().all(|m| !m.text.contains("hunter")));
}

#[test]
fn a_mention_does_not_reveal_a_private_room_to_one_who_may_not_enter_it() {
    let mut h = token_chat();
    h.sign_in(1, &Identity { rooms: vec!["+ops".into()], ..signed_in("alice") }, None);
    h.sign_in(2, &signed_in("bob"), None);
    h.say(1, "/join +ops");
    h.clear();
    h.say(1, "@bob the secret plan");
    assert!(h.take(2).is_empty(), "bob may not enter +ops: not told of it");
}

#[test]
fn no_edit_or_delete_while_a_relinked_room_loads() {
    let mut h = Harness::redis();
    h.cluster(Notice::Up);
    h.join_cluster(1, "alice");
    h.cluster(loaded("lobby", "e1", 1, vec![stored(1, "alice", "mine")]));
    h.requests();
    h.cluster(Notice::Down);
    h.cluster(Notice::Up);
    h.clear();
    h.say(1, "/delete e1:1");
    assert_eq!(h.take(1), ["*** error: the room is being loaded: try again in a moment"]);
}
