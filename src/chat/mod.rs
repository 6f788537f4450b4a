//! The chat itself: who is connected under which nick, who sits in which room, and who receives
//! what. Plain Rust with no sockets: the event loop reports what clients did (connected, sent
//! text, sent binary, left) and gets back [`Effect`]s saying what to send to whom. Everything
//! here is unit-tested by calling these methods directly.
//!
//! Whatever crosses processes goes through the broker seam (`broker.rs`): the chat asks with a
//! [`Request`] and is told with a [`Notice`], the same way with one process (the in-process
//! broker answers at once) or many (Redis answers later). A room message is *published* and
//! delivered when it comes back; a nick is *claimed* before it is used; `/who` and `/rooms`
//! add this process's members to what the broker says of the others. No rule here asks which
//! broker it has.
//!
//! The parts, one job each:
//! - `nicks.rs`: the nick index, claims, connecting and renaming;
//! - `rooms.rs`: rooms, their members and history budget, joins and replays;
//! - `following.rs`: rooms followed through the broker, their history loaded and kept;
//! - `commands.rs`: what a client's line means, one method per command;
//! - `moderation.rs`: `/kick`, `/ban`, `/unban`, `/bans`, and direct messages between processes;
//! - `signals.rs`: `/typing`, a room event that is not kept;
//! - `mentions.rs`: `@NICK` in a message, settled before it is said, and told to the named;
//! - `earlier.rs`: `/history`, a room's messages before those a client has;
//! - `edits.rs`: `/edit` and `/delete`, numbered in the room's sequence like messages;
//! - `read.rs`: `/read`, where a client (a signed-in user: on every device) has read up to;
//! - `notices.rs`: what the broker tells the chat, and which clients wait on it;
//! - `event.rs`, `event_json.rs`, `line.rs`: what clients are told, rendered once per
//!   [`Mode`] (a [`ServerLine`] for text clients, a JSON object for `wschat.json` clients);
//! - `limits.rs`: the chat's limits and their defaults;
//! - `history.rs`: every room keeps its last messages and numbers them, so a client joining a
//!   room, or coming back after a dropped connection, is sent what it has not seen.

pub mod api;
pub mod bans;
pub mod broker;
pub mod command;
mod commands;
mod earlier;
mod edits;
pub mod event;
mod event_json;
mod following;
pub mod history;
mod limits;
pub mod line;
mod mentions;
mod moderation;
pub mod names;
mod nick_index;
mod nicks;
mod notices;
mod read;
mod rooms;
mod signals;

use nick_index::{NickIndex, NickKey};
use rooms::Room;

pub use limits::*;

use std::collections::{HashMap, VecDeque};
use std::hash::RandomState;
use std::rc::Rc;

use bytes::Bytes;

use names::{fold, validate_nick};

pub use bans::{Ban, BanKey, Bans};
pub use broker::{Asker, Direct, Kept, MemberAsker, Notice, Origin, Request};
pub use event::{Event, HelpFor, Mode, RoomMessage, HELP, JSON_SUBPROTOCOL};
pub use history::{History, MessageId, Stored};
pub use line::{ServerLine, NOTICE_PREFIX};

use crate::auth::Identity;

/// Identifies one connected client; the event loop uses its connection's slab key.
pub type ClientId = usize;

/// The room every client starts in.
pub const LOBBY: &str = "lobby";

/// Who a message goes to. A room is resolved to its members when the effect is carried out, with
/// [`Chat::room_members`], so a broadcast never needs a recipient list of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Client(ClientId),
    /// A room, by its case-folded key.
    Room(Rc<str>),
    /// A room but one of its members (what a member does that it need not hear itself).
    RoomExcept(Rc<str>, ClientId),
}

/// A message body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Rendered per recipient mode (a text line, a JSON object).
    Event(Event),
    Binary(Bytes),
}

impl From<Event> for Body {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

/// What a client asked for when it connected (the upgrade URL's query and subprotocol).
#[derive(Debug, Clone, Copy, Default)]
pub struct Join<'a> {
    pub nick: Option<&'a str>,
    /// The room to join instead of the lobby (`room=`).
    pub room: Option<&'a str>,
    /// The last message id it saw in that room (`since=EPOCH:SEQ`).
    pub since: Option<&'a str>,
    pub mode: Option<Mode>,
    /// Who a verified token says the client is (see `crate::auth`).
    pub identity: Option<&'a Identity>,
    /// It presented a token that the server, having no sign-in keys, could not check.
    pub ignored_token: bool,
}

/// A change to the history that a durable store must record (see `crate::store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Journal {
    /// A room message was taken (a store keeps `--retain` of them per room).
    Message { room: Rc<str>, display: Rc<str>, epoch: Rc<str>, message: Rc<Stored> },
    /// An empty room's history was dropped (see [`ChatLimits::history_rooms`]).
    RoomDropped { room: Rc<str> },
    /// A signed-in user read room `room` up to message `id`.
    Read { user: Rc<str>, room: Rc<str>, id: String },
    /// A moderator banned someone.
    Banned { key: BanKey, ban: Ban },
    /// A ban was lifted, or ended.
    Unbanned { key: BanKey },
}

/// Something the event loop must do on the chat's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Send {
        to: Audience,
        body: Body,
    },
    /// Close this client's connection normally (1000) with this reason; it has left the chat.
    Close {
        client: ClientId,
        reason: String,
    },
    /// Close this client's connection as a policy violation (1008) with this reason; it never
    /// entered the chat.
    Refuse {
        client: ClientId,
        reason: String,
    },
    /// A moderator removed this client: close with 4000 and the reason (which its room hears).
    Kick {
        client: ClientId,
        reason: String,
    },
    /// `/token JWT`: the event loop checks the token and, if it is the same user's, extends the
    /// client's session.
    Renew {
        client: ClientId,
        token: crate::auth::Token,
    },
    /// A moderator banned this guest: ban its connection's address (which only the event loop
    /// knows) with [`Chat::ban_address`]; the connection is closed like a kick with `closing`
    /// once the ban is in force everywhere.
    BanAddress {
        client: ClientId,
        ban: Ban,
        closing: String,
    },
    /// `/history` past what memory holds: the event loop reads up to `count` messages of room
    /// `room` before sequence `before` from the store, and hands them to
    /// [`Chat::earlier_page`].
    ReadEarlier {
        client: ClientId,
        room: Rc<str>,
        epoch: Rc<str>,
        before: u64,
        count: usize,
    },
    /// The answer to an application's call ([`Chat::api`]).
    Answer {
        ticket: api::Ticket,
        answer: api::ApiAnswer,
    },
}

struct Member {
    nick: Rc<str>,
    room: Rc<str>,
    /// Where the member sits in its room's member list for its mode, so leaving is O(1).
    seat: u32,
    mode: Mode,
    /// Signed in: the nick is the `sub` of a verified token, and other connections with the
    /// same `sub` share it.
    signed: bool,
    /// What its token lets it into (private rooms, moderation); None for a guest, and for a
    /// member whose session expired.
    access: Option<Rc<Access>>,
    /// Its token expired and no new one came yet: it keeps nothing but the way back (`/token`,
    /// `/quit`), see [`Chat::expire`].
    expired: bool,
    /// Who it is as an author, for `/edit` and `/delete` (see [`Stored::author`]): 0 for a
    /// signed-in member (its nick is its token's, for good), else this connection's own number,
    /// which no later holder of the nick has.
    author: u64,
}

/// What a signed-in member may do beyond a guest, from its token.
#[derive(Debug, PartialEq, Eq)]
pub struct Access {
    /// Private rooms it may enter, by key (case-folded).
    rooms: Vec<String>,
    /// `role: "admin"`: a moderator, who may also enter every private room.
    pub admin: bool,
}

impl Access {
    fn of(identity: &Identity) -> Self {
        Self { rooms: identity.rooms.iter().map(|room| fold(room)).collect(), admin: identity.admin }
    }
}

/// A private room's name starts with `+`: only those its tokens list (and admins) see it.
fn is_private(key: &str) -> bool {
    key.starts_with('+')
}

/// Whether `access` lets its holder into room `key`.
fn may_enter(access: Option<&Access>, key: &str) -> bool {
    !is_private(key) || access.is_some_and(|a| a.admin || a.rooms.iter().any(|r| r == key))
}

/// What someone who may not enter a private room is told: the same as for a room that does
/// not exist, so its existence is not revealed.
const NO_SUCH_ROOM: &str = "no such room";

/// What a replayed message adds to its text, nick and room name on the wire, at most (the JSON
/// object's names and punctuation, the id, the timestamp, the frame header).
const REPLAY_FRAMING: usize = 128;

/// The whole chat state.
pub struct Chat {
    /// Indexed by client id: ids are the event loop's slab keys, so they are dense.
    members: Vec<Option<Member>>,
    member_count: usize,
    /// The owner of each nick (`nick_index.rs`): a member costs no allocation beyond its nick.
    nicks: NickIndex,
    /// Further connections holding a nick beside its entry in `nicks`: one signed-in user on
    /// several devices. Empty unless tokens are in use.
    shared_nicks: HashMap<NickKey, Vec<ClientId>>,
    /// Case-folded room name to room. A room exists while it has members (the lobby always),
    /// and after that while it has history, up to `limits.history_rooms` empty rooms.
    rooms: HashMap<Rc<str>, Room>,
    /// Empty rooms in the order they emptied, with their stamps; an entry whose room has been
    /// joined again since (another stamp, or none) is stale and skipped.
    emptied: VecDeque<(u64, Rc<str>)>,
    empty_rooms: usize,
    next_stamp: u64,
    /// What every room's history costs together (see [`ChatLimits::history_bytes`]).
    history_cost: usize,
    /// In a room of N, N joins would cost N squared notices and drown the conversation, so
    /// large rooms are not told of joins, leaves and nick changes.
    limits: ChatLimits,
    /// History changes not yet taken by a store; None when nothing is stored.
    journal: Option<Vec<Journal>>,
    /// Who may not connect, until when (`/ban`).
    bans: Bans,
    /// What the chat asks of the broker, for the event loop to hand over.
    requests: Vec<Request>,
    /// Claims in flight, questions awaiting answers, and the link's standing (`notices.rs`).
    waits: notices::Waits,
    /// Who signalled lately (`signals.rs`).
    signals: signals::Signals,
    /// The last author number given to a connection (see `Member::author`); it starts at a
    /// random point, so that numbers from different processes do not meet.
    last_author: u64,
    /// Where members have read up to (`read.rs`).
    markers: read::Markers,
}

impl Default for Chat {
    fn default() -> Self {
        Self::with_limits(ChatLimits::default())
    }
}

fn notice(text: impl Into<String>) -> Body {
    Body::Event(Event::notice(text))
}

/// What a client whose session expired is answered, to anything but `/token` and `/quit`.
pub const SESSION_EXPIRED: &str = "session expired: send /token NEWTOKEN";

fn error(text: impl Into<String>) -> Body {
    Body::Event(Event::error(text))
}

/// An effect sending `body` to `client` alone.
fn reply(client: ClientId, body: Body) -> Effect {
    Effect::Send { to: Audience::Client(client), body }
}

impl Chat {
    pub fn new() -> Self {
        Self::default()
    }

    /// A chat with these limits and default history.
    pub fn with_announce_limit(limit: usize) -> Self {
        Self::with_limits(ChatLimits { announce_limit: limit, ..ChatLimits::default() })
    }

    pub fn with_limits(limits: ChatLimits) -> Self {
        Self {
            members: Vec::new(),
            member_count: 0,
            nicks: NickIndex::default(),
            shared_nicks: HashMap::new(),
            rooms: HashMap::new(),
            emptied: VecDeque::new(),
            empty_rooms: 0,
            next_stamp: 0,
            history_cost: 0,
            limits,
            journal: None,
            bans: Bans::default(),
            requests: Vec::new(),
            waits: notices::Waits::default(),
            signals: signals::Signals::default(),
            last_author: std::hash::BuildHasher::hash_one(&RandomState::new(), std::time::SystemTime::now())
                >> 1,
            markers: read::Markers::default(),
        }
    }

    /// From now on, history changes are journaled for a store ([`Chat::take_journal`]).
    pub fn keep_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The history changes since the last call, oldest first.
    pub fn take_journal(&mut self, into: &mut Vec<Journal>) {
        if let Some(journal) = &mut self.journal {
            into.append(journal);
        }
    }

    /// What the chat asks of the broker since the last call, in order.
    pub fn take_requests(&mut self, into: &mut Vec<Request>) {
        self.flush_counts();
        into.append(&mut self.requests);
    }

    /// Whether the chat has asked the broker for something not yet taken.
    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty() || self.has_dirty_counts()
    }

    /// Drops the capacity left by members who have gone (the server calls this when its last
    /// connection closes after a crowd).
    pub fn release_memory(&mut self) {
        while self.members.last().is_some_and(Option::is_none) {
            self.members.pop();
        }
        self.members.shrink_to_fit();
        let members = &self.members;
        self.nicks.shrink_to_fit(|c| members.get(c)?.as_ref().map(|m| &*m.nick));
        for room in self.rooms.values_mut() {
            room.members.iter_mut().for_each(Vec::shrink_to_fit);
        }
        self.rooms.shrink_to_fit();
        self.emptied.shrink_to_fit();
        self.requests.shrink_to_fit();
        self.waits.release_memory();
    }

    /// Number of clients in the chat.
    pub fn len(&self) -> usize {
        self.member_count
    }

    pub fn is_empty(&self) -> bool {
        self.member_count == 0
    }

    /// Rooms with members now (the lobby always counts).
    pub fn room_count(&self) -> usize {
        self.rooms.len() - self.empty_rooms
    }

    /// Messages kept in all rooms' histories, and what they cost (see [`Stored::cost`]).
    pub fn history_size(&self) -> (usize, usize) {
        (self.rooms.values().map(|r| r.history.len()).sum(), self.history_cost)
    }

    /// The nick of a client, if it is in the chat.
    pub fn nick(&self, client: ClientId) -> Option<&str> {
        self.member(client).map(|m| &*m.nick)
    }

    fn member(&self, client: ClientId) -> Option<&Member> {
        self.members.get(client)?.as_ref()
    }

    fn member_mut(&mut self, client: ClientId) -> Option<&mut Member> {
        self.members.get_mut(client)?.as_mut()
    }

    fn insert_member(&mut self, client: ClientId, member: Member) {
        if self.members.len() <= client {
            self.members.resize_with(client + 1, || None);
        }
        if self.members[client].replace(member).is_none() {
            self.member_count += 1;
        }
    }

    fn remove_member(&mut self, client: ClientId) -> Option<Member> {
        let member = self.members.get_mut(client)?.take()?;
        self.member_count -= 1;
        Some(member)
    }

    /// The members of a room (by case-folded key) that receive in `mode`; empty if there is
    /// no such room.
    pub fn room_members(&self, room: &str, mode: Mode) -> &[u32] {
        self.rooms.get(room).map_or(&[], |r| r.members[mode as usize].as_slice())
    }

    /// How `client` receives text, if it is in the chat (or waiting to enter it).
    pub fn mode(&self, client: ClientId) -> Option<Mode> {
        self.member(client).map(|m| m.mode).or_else(|| self.waiting_mode(client))
    }

    /// Whether `client` signed in with a token.
    pub fn is_signed(&self, client: ClientId) -> bool {
        self.member(client).is_some_and(|m| m.signed)
    }

    /// Whether `client`'s session expired and was not renewed (see [`Chat::expire`]).
    pub fn is_expired(&self, client: ClientId) -> bool {
        self.member(client).is_some_and(|m| m.expired)
    }

    fn is_admin(&self, client: ClientId) -> bool {
        self.member(client).and_then(|m| m.access.as_deref()).is_some_and(|a| a.admin)
    }

    /// The bans in force, for the handshake to consult.
    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    /// Every member of room `key` here, in both modes.
    fn all_members(&self, key: &str) -> Vec<ClientId> {
        Mode::ALL.iter().flat_map(|&mode| self.room_members(key, mode)).map(|&c| c as ClientId).collect()
    }

    /// The name of room `key` as shown.
    fn display(&self, key: &str) -> Rc<str> {
        self.rooms.get(key).map_or_else(|| Rc::from(key), |r| r.display.clone())
    }

    fn next_stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Panics if the state is inconsistent: every member has a unique nick that indexes back to
    /// it and sits exactly once in an existing room, under its mode; an empty room other than
    /// the lobby is kept only for its history, and is counted. For property tests and fuzzing.
    pub fn check_invariants(&self) {
        let members: Vec<(ClientId, &Member)> =
            self.members.iter().enumerate().filter_map(|(id, m)| m.as_ref().map(|m| (id, m))).collect();
        assert_eq!(members.len(), self.member_count, "member count");
        let shared: usize = self.shared_nicks.values().map(Vec::len).sum();
        assert_eq!(self.nicks.len() + shared, self.member_count, "one nick index entry per member");
        for (id, member) in &members {
            assert!(validate_nick(&member.nick).is_ok() || member.nick.starts_with("guest-"), "valid nick");
            let key = self.nick_key(&member.nick);
            let holds = self.nicks.holds(key, *id)
                || (member.signed && self.shared_nicks.get(&key).is_some_and(|others| others.contains(id)));
            assert!(holds, "nick indexes its holder");
            let room = self.rooms.get(&member.room).expect("member's room exists");
            let list = &room.members[member.mode as usize];
            assert_eq!(list.iter().filter(|&&c| c as ClientId == *id).count(), 1, "listed once in its room");
            assert_eq!(
                list.get(member.seat as usize).map(|&c| c as ClientId),
                Some(*id),
                "seated where it is listed"
            );
        }
        let listed: usize = self.rooms.values().map(Room::len).sum();
        assert_eq!(listed, self.member_count, "room lists hold exactly the members");
        let mut empty = 0;
        for (key, room) in &self.rooms {
            assert_eq!(room.emptied.is_some(), room.is_idle(), "{key}: emptied stamp iff idle");
            if room.is_idle() && &**key != LOBBY {
                assert!(room.history.last_id().is_some(), "empty room {key} kept without history");
                empty += 1;
            }
        }
        assert_eq!(empty, self.empty_rooms, "empty rooms counted");
        let cost: usize = self.rooms.values().map(|r| r.history.cost()).sum();
        assert_eq!(cost, self.history_cost, "history cost kept up to date");
        assert!(self.empty_rooms <= self.limits.history_rooms, "at most --history-rooms empty rooms kept");
    }
}

/// Names a `/who` or `/rooms` reply lists; the rest are counted. A 10,000-member lobby would
/// otherwise cost a 330 KB reply to anyone who asks.
pub const MAX_LISTED: usize = 100;

/// The first [`MAX_LISTED`] items in case-insensitive order of `name`, without sorting (or
/// allocating for) the rest.
fn first_sorted<T>(items: &mut [T], name: impl Fn(&T) -> &str) -> &[T] {
    let order = |a: &T, b: &T| {
        let (a, b) = (name(a), name(b));
        a.chars().flat_map(char::to_lowercase).cmp(b.chars().flat_map(char::to_lowercase))
    };
    if items.len() > MAX_LISTED {
        items.select_nth_unstable_by(MAX_LISTED, order);
    }
    let len = items.len().min(MAX_LISTED);
    let shown = &mut items[..len];
    shown.sort_unstable_by(order);
    shown
}

#[cfg(test)]
mod tests;
