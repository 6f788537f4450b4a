//! The chat itself: who is connected under which nick, who sits in which room, and who receives
//! what. Plain Rust with no sockets: the event loop reports what clients did (connected, sent
//! text, sent binary, left) and gets back [`Effect`]s saying what to send to whom. Everything
//! here is unit-tested by calling these methods directly.
//!
//! What it tells clients is an [`Event`] (`event.rs`), rendered once per broadcast for each
//! [`Mode`]: a [`ServerLine`] for text clients (forms defined once in `line.rs` for the server
//! and the terminal client alike), a JSON object for `wschat.json` clients. Every room keeps
//! its last messages and numbers them (`history.rs`), so a client joining a room, or coming
//! back after a dropped connection, is sent what it has not seen.

pub mod bans;
pub mod command;
pub mod event;
pub mod history;
pub mod line;
pub mod names;
mod presence;
mod shared;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

use bytes::Bytes;

use command::{parse_line, Command, Line};
use names::{fold, validate_nick, validate_room, MAX_NAME_CHARS};

pub use bans::{Ban, BanKey, Bans};
pub use event::{Event, Mode, RoomMessage, HELP, JSON_SUBPROTOCOL};
pub use history::{History, MessageId, Stored};
pub use line::{ServerLine, NOTICE_PREFIX};

use crate::auth::Identity;
use crate::logline::quoted;

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
}

/// A change to the history that a durable store must record (see `crate::store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Journal {
    /// A room message was taken; messages before `oldest_kept` are no longer kept.
    Message { room: Rc<str>, display: Rc<str>, epoch: Rc<str>, message: Rc<Stored>, oldest_kept: u64 },
    /// An empty room's history was dropped (see [`ChatLimits::history_rooms`]).
    RoomDropped { room: Rc<str> },
    /// A moderator banned someone.
    Banned { key: BanKey, ban: Ban },
    /// A ban was lifted, or ended.
    Unbanned { key: BanKey },
}

/// The chat's limits (from the server's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Rooms larger than this get no join/leave/nick announcements (`--announce-limit`).
    pub announce_limit: usize,
    /// Messages kept per room (`--history`); 0 keeps none.
    pub history: usize,
    /// Empty rooms whose history is kept (`--history-rooms`); past it, the room emptied the
    /// longest ago is forgotten.
    pub history_rooms: usize,
    /// What all rooms' histories may cost together (`--history-memory`, see
    /// [`Stored::cost`]); past it, empty rooms are forgotten (emptied longest ago first), then
    /// the room being written to drops its oldest messages.
    pub history_bytes: usize,
    /// Most bytes of history one join replays (half of `--max-outbound`, so a replay never
    /// makes its reader look too slow); the newest messages that fit are sent.
    pub replay_bytes: usize,
    /// Nicks come from sign-in tokens (the server has JWT keys): a token's `sub` is its
    /// holder's nick, everyone else is a guest, and nobody chooses a nick.
    pub token_nicks: bool,
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            announce_limit: DEFAULT_ANNOUNCE_LIMIT,
            history: DEFAULT_HISTORY,
            history_rooms: DEFAULT_HISTORY_ROOMS,
            history_bytes: DEFAULT_HISTORY_BYTES,
            replay_bytes: DEFAULT_REPLAY_BYTES,
            token_nicks: false,
        }
    }
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
    /// knows) with [`Chat::ban_address`].
    BanAddress {
        client: ClientId,
        ban: Ban,
    },
    /// The connection's nick is settled (cluster mode, see [`Chat::is_waiting`]): read its
    /// input again.
    Resume {
        client: ClientId,
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
    /// What its token lets it into (private rooms, moderation); None for a guest.
    access: Option<Rc<Access>>,
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

struct Room {
    /// The name as first spelled by whoever created the room.
    display: Rc<str>,
    /// Members by mode ([`Mode`] as index): a broadcast is rendered once per mode that has
    /// members, and each list is walked without looking at the members themselves.
    members: [Vec<ClientId>; 2],
    history: History,
    /// Whether the room is shared through Redis, and how far its history mirror is loaded.
    sync: shared::Sync,
    /// When the room last became empty (a stamp from [`Chat::next_stamp`]), while it is.
    emptied: Option<u64>,
}

impl Room {
    fn len(&self) -> usize {
        self.members[0].len() + self.members[1].len()
    }
}

/// Default for [`ChatLimits::announce_limit`].
pub const DEFAULT_ANNOUNCE_LIMIT: usize = 100;
/// Default for [`ChatLimits::history`].
pub const DEFAULT_HISTORY: usize = 100;
/// Default for [`ChatLimits::history_rooms`].
pub const DEFAULT_HISTORY_ROOMS: usize = 1000;
/// Default for [`ChatLimits::history_bytes`]: 64 MiB.
pub const DEFAULT_HISTORY_BYTES: usize = 64 << 20;
/// Default for [`ChatLimits::replay_bytes`]: half the default `--max-outbound`.
pub const DEFAULT_REPLAY_BYTES: usize = 512 << 10;
/// What a replayed message adds to its text, nick and room name on the wire, at most (the JSON
/// object's names and punctuation, the id, the timestamp, the frame header).
const REPLAY_FRAMING: usize = 128;

/// The whole chat state.
pub struct Chat {
    /// Indexed by client id: ids are the event loop's slab keys, so they are dense.
    members: Vec<Option<Member>>,
    member_count: usize,
    /// The owner of each nick, keyed by a hash of its folded form ([`fold`]): no string is
    /// stored twice, so a member costs no allocation beyond its nick. Two folded forms with one
    /// hash (a 2^-64 chance, keyed per process) would make the second nick count as taken.
    nicks: HashMap<u64, ClientId>,
    /// Further connections holding a nick beside its entry in `nicks`: one signed-in user on
    /// several devices. Empty unless tokens are in use.
    shared_nicks: HashMap<u64, Vec<ClientId>>,
    nick_hasher: RandomState,
    /// Case-folded room name to room. A room exists while it has members (the lobby always),
    /// and after that while it has history, up to `limits.history_rooms` empty rooms.
    rooms: HashMap<Rc<str>, Room>,
    /// Empty rooms in the order they emptied, with their stamps; an entry whose room has been
    /// joined again since (another stamp, or none) is stale and skipped.
    emptied: VecDeque<(u64, Rc<str>)>,
    empty_rooms: usize,
    next_stamp: u64,
    next_guest: u64,
    /// What every room's history costs together (see [`ChatLimits::history_bytes`]).
    history_cost: usize,
    /// In a room of N, N joins would cost N squared notices and drown the conversation, so
    /// large rooms are not told of joins, leaves and nick changes.
    limits: ChatLimits,
    /// History changes not yet taken by a store; None when nothing is stored.
    journal: Option<Vec<Journal>>,
    /// Who may not connect, until when (`/ban`).
    bans: Bans,
    /// Redis is reachable (`--redis`, see `crate::cluster`): rooms with members are shared.
    cluster_up: bool,
    /// Redis was reachable once and then lost: members are told when it is back.
    cluster_lost: bool,
    /// What the chat asks of the cluster, for the broker to take.
    requests: Vec<crate::cluster::Request>,
    /// Nick claims in flight and presence updates (cluster mode).
    presence: presence::Presence,
}

impl Default for Chat {
    fn default() -> Self {
        Self::with_limits(ChatLimits::default())
    }
}

fn notice(text: impl Into<String>) -> Body {
    Body::Event(Event::notice(text))
}

fn error(text: impl Into<String>) -> Body {
    Body::Event(Event::error(text))
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
            nicks: HashMap::new(),
            shared_nicks: HashMap::new(),
            nick_hasher: RandomState::new(),
            rooms: HashMap::new(),
            emptied: VecDeque::new(),
            empty_rooms: 0,
            next_stamp: 0,
            next_guest: 0,
            history_cost: 0,
            limits,
            journal: None,
            bans: Bans::default(),
            cluster_up: false,
            cluster_lost: false,
            requests: Vec::new(),
            presence: presence::Presence::default(),
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

    /// Puts back a room's history read from a store, before any client connects.
    pub fn restore_room(
        &mut self,
        key: &str,
        display: &str,
        epoch: &str,
        next_seq: u64,
        messages: Vec<Stored>,
    ) {
        let mut history = History::new(Rc::from(epoch), next_seq, self.limits.history);
        for message in messages {
            history.restore(message);
        }
        let key: Rc<str> = Rc::from(key);
        let stamp = self.next_stamp();
        self.history_cost += history.cost();
        let room = Room {
            display: Rc::from(display),
            members: Default::default(),
            history,
            sync: shared::Sync::Alone,
            emptied: Some(stamp),
        };
        if let Some(old) = self.rooms.insert(key.clone(), room) {
            self.history_cost -= old.history.cost();
        } else if &*key != LOBBY {
            self.emptied.push_back((stamp, key));
            self.empty_rooms += 1;
        }
        self.evict_empty_rooms();
        while self.history_cost > self.limits.history_bytes && self.evict_oldest_empty_room() {}
    }

    /// Tells a room about a member's join, leave or nick change. A room over the announcement
    /// limit is not told; `actor` (the member it is about, when still in the room) still is.
    /// While the cluster is up, the room hears it through Redis, with every other process's
    /// members (see `shared.rs`).
    fn announce(&mut self, room: &Rc<str>, actor: Option<ClientId>, event: Event, out: &mut Vec<Effect>) {
        let small = self.rooms.get(room).map_or(0, Room::len) <= self.limits.announce_limit;
        if self.cluster_up && small {
            return self.publish_event(room, &event);
        }
        let text = Body::Event(event);
        let to = if small {
            Audience::Room(room.clone())
        } else if let Some(actor) = actor {
            Audience::Client(actor)
        } else {
            return;
        };
        out.push(Effect::Send { to, body: text });
    }

    /// Drops the capacity left by members who have gone (the server calls this when its last
    /// connection closes after a crowd).
    pub fn release_memory(&mut self) {
        while self.members.last().is_some_and(Option::is_none) {
            self.members.pop();
        }
        self.members.shrink_to_fit();
        self.nicks.shrink_to_fit();
        for room in self.rooms.values_mut() {
            room.members.iter_mut().for_each(Vec::shrink_to_fit);
        }
        self.rooms.shrink_to_fit();
        self.emptied.shrink_to_fit();
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

    /// The nick index's key for `nick`: equal for nicks that are the same name.
    fn nick_key(&self, nick: &str) -> u64 {
        self.nick_hasher.hash_one(fold(nick))
    }

    /// Records `nick` as taken by `client`.
    fn index_nick(&mut self, nick: &str, client: ClientId) {
        self.nicks.insert(self.nick_key(nick), client);
    }

    /// The client holding `nick` (or a nick that is the same name).
    fn find_nick(&self, nick: &str) -> Option<ClientId> {
        let owner = *self.nicks.get(&self.nick_key(nick))?;
        // Confirm: a hash collision must not deliver a private message to someone else.
        self.nick(owner).filter(|held| fold(held) == fold(nick)).map(|_| owner)
    }

    /// Every connection holding the nick `owner` holds (one, or a user's several devices).
    fn holders(&self, owner: ClientId) -> Vec<ClientId> {
        let mut all = vec![owner];
        if let Some(nick) = self.nick(owner) {
            all.extend(self.shared_nicks.get(&self.nick_key(nick)).into_iter().flatten());
        }
        all
    }

    /// Drops `client`'s hold on `nick`; the nick stays taken while another connection of the
    /// same user holds it.
    fn unindex_nick(&mut self, nick: &str, client: ClientId) {
        let key = self.nick_key(nick);
        let others = self.shared_nicks.get_mut(&key);
        match others {
            Some(others) => {
                if self.nicks.get(&key) == Some(&client) {
                    if let Some(next) = others.pop() {
                        self.nicks.insert(key, next);
                    }
                } else {
                    others.retain(|c| *c != client);
                }
                if others.is_empty() {
                    self.shared_nicks.remove(&key);
                }
            }
            None => {
                self.nicks.remove(&key);
            }
        }
    }

    /// The members of a room (by case-folded key) that receive in `mode`; empty if there is
    /// no such room.
    pub fn room_members(&self, room: &str, mode: Mode) -> &[ClientId] {
        self.rooms.get(room).map_or(&[], |r| r.members[mode as usize].as_slice())
    }

    /// How `client` receives text, if it is in the chat.
    pub fn mode(&self, client: ClientId) -> Option<Mode> {
        self.member(client).map(|m| m.mode).or_else(|| self.waiting_mode(client))
    }

    /// A client joined: give it a nick (the one it asked for, if valid and free), put it in
    /// the room it asked for (or the lobby), welcome it, send it the room's history (all of
    /// it, or what came after its `since`) and announce it.
    pub fn connect(&mut self, client: ClientId, join: Join, out: &mut Vec<Effect>) {
        if self.member(client).is_some() || self.is_waiting(client) {
            return;
        }
        let to_client = Audience::Client(client);
        let signed = join.identity.is_some();
        let asked = match (join.identity, self.limits.token_nicks) {
            (Some(identity), _) => Some(identity.sub.as_str()),
            (None, true) => {
                if let Some(nick) = join.nick {
                    let why = "guests cannot choose a nick; sign in with a token";
                    out.push(Effect::Send {
                        to: to_client.clone(),
                        body: notice(format!("nick {} refused: {why}", quoted(nick))),
                    });
                }
                None
            }
            (None, false) => join.nick,
        };
        let nick: Rc<str> = match asked.map(|n| (n, self.check_nick_free(n, None))) {
            Some((nick, Ok(()))) => Rc::from(nick),
            Some((sub, Err(_))) if signed && self.held_by_same_user(sub) && self.cluster_up => {
                return self.claim_for_join(client, Rc::from(sub), true, join);
            }
            Some((sub, Err(_))) if signed && self.held_by_same_user(sub) => {
                // The same user on another device: the nick is shared.
                let key = self.nick_key(sub);
                self.shared_nicks.entry(key).or_default().push(client);
                self.join_as(client, Rc::from(sub), true, join, out);
                return;
            }
            Some((sub, Err(why))) if signed => {
                let reason = format!("nick {} unavailable: {why}", quoted(sub));
                out.push(Effect::Refuse { client, reason });
                return;
            }
            Some((nick, Err(why))) => {
                out.push(Effect::Send {
                    to: to_client.clone(),
                    body: notice(format!("nick {} refused: {why}", quoted(nick))),
                });
                self.fresh_guest_nick()
            }
            None => self.fresh_guest_nick(),
        };
        if self.cluster_up {
            // Used once Redis says no other process holds it (see `presence.rs`).
            let asked = asked.is_some_and(|asked| *asked == *nick);
            return self.claim_for_join(client, nick, asked, join);
        }
        self.index_nick(&nick, client);
        self.join_as(client, nick, signed, join, out);
    }

    /// Whether `sub`'s nick is held by connections signed in as that same user.
    fn held_by_same_user(&self, sub: &str) -> bool {
        self.nicks
            .get(&self.nick_key(sub))
            .and_then(|owner| self.member(*owner))
            .is_some_and(|m| m.signed && *m.nick == *sub)
    }

    /// Seats a client whose nick is settled (and indexed) in its room, then welcomes it.
    fn join_as(&mut self, client: ClientId, nick: Rc<str>, signed: bool, join: Join, out: &mut Vec<Effect>) {
        let to_client = Audience::Client(client);
        let access = join.identity.map(|identity| Rc::new(Access::of(identity)));
        let wanted_room = match join.room.map(|room| (room, validate_room(room))) {
            Some((room, Ok(()))) if !may_enter(access.as_deref(), &fold(room)) => {
                out.push(Effect::Send { to: to_client.clone(), body: error(NO_SUCH_ROOM) });
                LOBBY
            }
            Some((room, Ok(()))) => room,
            Some((room, Err(why))) => {
                out.push(Effect::Send {
                    to: to_client.clone(),
                    body: error(format!("room name {} refused: {}", quoted(room), why.0)),
                });
                LOBBY
            }
            None => LOBBY,
        };
        let mode = join.mode.unwrap_or(Mode::Text);
        let (key, seat) = self.add_to_room(client, wanted_room, mode);
        self.insert_member(
            client,
            Member { nick: nick.clone(), room: key.clone(), seat, mode, signed, access },
        );
        self.seat(client, &key, &nick);
        let display = self.display(&key);
        out.push(Effect::Send {
            to: to_client,
            body: Event::Welcome { nick: nick.clone(), room: display.clone() }.into(),
        });
        let since = join.since.and_then(MessageId::parse);
        self.replay(client, &key, since.as_ref(), out);
        self.announce(&key, Some(client), Event::Joined { room: display, nick }, out);
    }

    /// Sends `client` the history of room `key`: what came after `since` if that can be told
    /// exactly, else everything kept; then the `replayed` summary.
    fn replay(&mut self, client: ClientId, key: &str, since: Option<&MessageId>, out: &mut Vec<Effect>) {
        if self.wait_for_history(client, key, since) {
            return;
        }
        let Some(room) = self.rooms.get(key) else { return };
        let mut replay = room.history.after(since);
        // The newest messages that fit the replay budget; a cut is a gap like any other.
        let mut bytes = 0;
        let fit = replay
            .messages
            .iter()
            .rev()
            .take_while(|m| {
                bytes += m.text.len() + m.from.len() + room.display.len() + REPLAY_FRAMING;
                bytes <= self.limits.replay_bytes
            })
            .count();
        if fit < replay.messages.len() {
            replay.messages.drain(..replay.messages.len() - fit);
            replay.recovered = false;
        }
        let to = Audience::Client(client);
        if !replay.messages.is_empty() {
            out.push(Effect::Send {
                to: to.clone(),
                body: Event::ReplayStart { room: room.display.clone() }.into(),
            });
        }
        for message in &replay.messages {
            let message = RoomMessage {
                room: room.display.clone(),
                epoch: room.history.epoch().clone(),
                message: Rc::clone(message),
                replay: true,
            };
            out.push(Effect::Send { to: to.clone(), body: Event::Message(message).into() });
        }
        out.push(Effect::Send {
            to,
            body: Event::Replayed {
                room: room.display.clone(),
                recovered: replay.recovered,
                count: replay.messages.len(),
                last: Some(room.history.resume_point().to_string()),
            }
            .into(),
        });
    }

    /// A client left (connection closed for any reason): drop it and tell its room.
    pub fn disconnect(&mut self, client: ClientId, reason: &str, out: &mut Vec<Effect>) {
        self.forget_claims(client);
        let Some(member) = self.remove_member(client) else { return };
        self.unindex_nick(&member.nick, client);
        self.release_nick(client, &member.nick);
        self.unseat(client, &member.room);
        let display = self.display(&member.room);
        self.remove_from_room(&member.room, member.mode, member.seat);
        // Members on other processes hear it even when none is left here.
        if self.cluster_up || self.rooms.get(&member.room).is_some_and(|r| r.len() > 0) {
            let reason = (!reason.is_empty()).then(|| reason.to_string());
            let event = Event::Left { room: display, nick: member.nick, reason, moved_to: None };
            self.announce(&member.room, None, event, out);
        }
    }

    /// A client sent a binary message: relay it verbatim to its room, sender included, just
    /// after a line saying who sent it (a binary frame has no room for a sender).
    pub fn binary(&mut self, client: ClientId, data: Bytes, out: &mut Vec<Effect>) {
        if let Some(member) = self.member(client) {
            let from = Event::BinaryFrom {
                room: self.display(&member.room),
                from: member.nick.clone(),
                bytes: data.len(),
            };
            if self.cluster_up {
                return self.publish_binary(&member.room.clone(), &from, data);
            }
            out.push(Effect::Send { to: Audience::Room(member.room.clone()), body: from.into() });
            out.push(Effect::Send { to: Audience::Room(member.room.clone()), body: Body::Binary(data) });
        }
    }

    /// A client sent a text message at `now_ms` (milliseconds since the Unix epoch): chat
    /// text or a command.
    pub fn text(&mut self, client: ClientId, text: &str, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(member) = self.member(client) else { return };
        let reply = |body| Effect::Send { to: Audience::Client(client), body };
        match parse_line(text) {
            Line::Say(said) => self.say(client, said, false, now_ms, out),
            Line::Invalid(why) => out.push(reply(error(why))),
            Line::Blank => {}
            Line::Command(Command::Me(action)) => self.say(client, action, true, now_ms, out),
            Line::Command(Command::Help) => out.push(reply(notice(HELP))),
            Line::Command(Command::Who) if self.cluster_up => self.ask_who(client, member.room.clone()),
            Line::Command(Command::Rooms) if self.cluster_up => self.ask_rooms(client),
            Line::Command(Command::Msg { to, text }) if self.cluster_up => {
                self.send_private(client, to, text, now_ms)
            }
            Line::Command(Command::Who) => {
                let members = self.all_members(&member.room);
                let nicks = members.iter().filter_map(|&c| self.member(c).map(|m| m.nick.clone())).collect();
                out.push(reply(self.who_answer(&member.room, nicks)));
            }
            Line::Command(Command::Rooms) => {
                let rooms = self
                    .rooms
                    .iter()
                    .filter(|(key, r)| r.len() > 0 || &***key == LOBBY)
                    .filter(|(key, _)| may_enter(member.access.as_deref(), key))
                    .map(|(_, r)| (r.display.clone(), r.len()));
                out.push(reply(rooms_answer(rooms.collect())));
            }
            Line::Command(Command::Msg { to, text }) => match self.find_nick(to) {
                Some(target) => {
                    let from = member.nick.clone();
                    let to = self.member(target).map_or_else(|| Rc::from(to), |m| m.nick.clone());
                    let private = |outgoing| {
                        Body::Event(Event::Private {
                            from: from.clone(),
                            to: to.clone(),
                            text: text.to_string(),
                            ts: now_ms,
                            outgoing,
                        })
                    };
                    let holders = self.holders(target);
                    for holder in &holders {
                        out.push(Effect::Send { to: Audience::Client(*holder), body: private(false) });
                    }
                    if !holders.contains(&client) {
                        out.push(reply(private(true)));
                    }
                }
                None => out.push(reply(error(format!("no such nick: {}", command::cut(to, MAX_NAME_CHARS))))),
            },
            Line::Command(Command::Kick { nick, reason }) => {
                self.moderate(client, nick, None, reason, now_ms, out)
            }
            Line::Command(Command::Ban { nick, duration, reason }) => {
                self.moderate(client, nick, Some(duration), reason, now_ms, out)
            }
            Line::Command(Command::Token(token)) => {
                out.push(Effect::Renew { client, token: crate::auth::Token(token.to_string()) })
            }
            Line::Command(Command::Unban(nick)) => {
                if !self.is_admin(client) {
                    return out.push(reply(error("only moderators can /unban")));
                }
                let keys = self.bans.remove_nick(nick);
                if self.cluster_up {
                    let unbans = keys.iter().map(|key| crate::cluster::Request::Unban { key: key.clone() });
                    self.requests.extend(unbans);
                }
                let text = match keys.is_empty() {
                    true => format!("no ban for {}", command::cut(nick, MAX_NAME_CHARS)),
                    false => format!("{} may come back", command::cut(nick, MAX_NAME_CHARS)),
                };
                if let Some(journal) = &mut self.journal {
                    journal.extend(keys.into_iter().map(|key| Journal::Unbanned { key }));
                }
                out.push(reply(notice(text)));
            }
            Line::Command(Command::Bans) => {
                if !self.is_admin(client) {
                    return out.push(reply(error("only moderators can list /bans")));
                }
                let ended = self.bans.expire(now_ms);
                if let Some(journal) = &mut self.journal {
                    journal.extend(ended.into_iter().map(|key| Journal::Unbanned { key }));
                }
                let list: Vec<String> = self
                    .bans
                    .active(now_ms)
                    .iter()
                    .map(|(key, ban)| {
                        let whom = match key {
                            BanKey::User(_) => ban.nick.clone(),
                            BanKey::Address(address) => format!("{} (guest, address {address})", ban.nick),
                        };
                        let left = ban.refusal(now_ms);
                        let left = left.trim_start_matches("you are banned from this chat for ");
                        format!("{whom}, by {}, {left}", ban.by)
                    })
                    .collect();
                let text = match list.is_empty() {
                    true => "no bans".to_string(),
                    false => format!("bans:\n{}", list.join("\n")),
                };
                out.push(reply(notice(text)));
            }
            Line::Command(Command::Nick(wanted)) => self.change_nick(client, wanted, out),
            Line::Command(Command::Join(room)) => self.join(client, room, out),
            Line::Command(Command::Quit(reason)) => {
                let reason = reason.unwrap_or("").to_string();
                let departure =
                    if reason.is_empty() { "quit".to_string() } else { format!("quit: {reason}") };
                self.disconnect(client, &departure, out);
                out.push(Effect::Close { client, reason });
            }
        }
    }

    /// A room message: numbered, kept in the room's history (and journaled), sent to the room.
    fn say(&mut self, client: ClientId, text: &str, action: bool, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(member) = self.members.get(client).and_then(Option::as_ref) else { return };
        let (key, nick) = (member.room.clone(), member.nick.clone());
        if self.cluster_up {
            // Numbered and kept by Redis; delivered when it comes back (see `shared.rs`).
            return self.publish_message(&key, &nick, text, action, now_ms);
        }
        self.keep_and_send(&key, nick, text, action, now_ms, out);
    }

    /// Numbers and keeps a room message here (journaled for a store), and sends it to the room.
    fn keep_and_send(
        &mut self,
        key: &Rc<str>,
        nick: Rc<str>,
        text: &str,
        action: bool,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let key = key.clone();
        let Some(room) = self.rooms.get_mut(&key) else { return };
        let before = room.history.cost();
        let message = room.history.push(now_ms, nick, text, action);
        self.history_cost = self.history_cost + room.history.cost() - before;
        self.fit_history_budget(&key);
        let Some(room) = self.rooms.get(&key) else { return };
        if let Some(journal) = &mut self.journal {
            journal.push(Journal::Message {
                room: key.clone(),
                display: room.display.clone(),
                epoch: room.history.epoch().clone(),
                message: message.clone(),
                oldest_kept: room.history.oldest_kept(),
            });
        }
        let event = Event::Message(RoomMessage {
            room: room.display.clone(),
            epoch: room.history.epoch().clone(),
            message,
            replay: false,
        });
        out.push(Effect::Send { to: Audience::Room(key), body: event.into() });
    }

    /// Brings all histories back under `--history-memory` after room `key` grew: empty rooms
    /// go first (emptied longest ago first), then `key`'s own oldest messages (never its
    /// newest, which is being sent).
    fn fit_history_budget(&mut self, key: &str) {
        while self.history_cost > self.limits.history_bytes {
            if self.evict_oldest_empty_room() {
                continue;
            }
            match self.rooms.get_mut(key) {
                Some(room) if room.history.len() > 1 => self.history_cost -= room.history.trim_oldest(),
                _ => break,
            }
        }
    }

    /// A signed-in client renewed its session with a new token of the same user: what it may do
    /// is now what that token says (a room it may no longer enter, it leaves for the lobby).
    pub fn renew(&mut self, client: ClientId, identity: &Identity, out: &mut Vec<Effect>) {
        let access = Rc::new(Access::of(identity));
        let Some(member) = self.member_mut(client) else { return };
        member.access = Some(access.clone());
        let room = member.room.clone();
        if !may_enter(Some(&access), &room) {
            self.join(client, LOBBY, out);
        }
    }

    /// Whether `client` signed in with a token.
    pub fn is_signed(&self, client: ClientId) -> bool {
        self.member(client).is_some_and(|m| m.signed)
    }

    fn is_admin(&self, client: ClientId) -> bool {
        self.member(client).and_then(|m| m.access.as_deref()).is_some_and(|a| a.admin)
    }

    /// `/kick` (no duration) and `/ban`: every connection of the user is closed with 4000 and
    /// a reason its room hears; a ban also refuses the user (a guest: its address) until it
    /// ends. A user who is not connected can still be banned, by nick.
    fn moderate(
        &mut self,
        client: ClientId,
        nick: &str,
        duration: Option<std::time::Duration>,
        reason: Option<&str>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let reply = |body| Effect::Send { to: Audience::Client(client), body };
        let verb = if duration.is_some() { "/ban" } else { "/kick" };
        if !self.is_admin(client) {
            return out.push(reply(error(format!("only moderators can {verb}"))));
        }
        let by = self.nick(client).unwrap_or("?").to_string();
        if self.cluster_up {
            // The nick may be held on any process: Redis finds its holders (`presence.rs`).
            if let Err(why) = validate_nick(nick) {
                return out.push(reply(error(format!("cannot {verb} {}: {}", quoted(nick), why.0))));
            }
            let direct = match sanction(&by, nick, duration, reason, now_ms) {
                (closing, None) => crate::cluster::Direct::Kick(closing),
                (closing, Some(ban)) => {
                    let ban = crate::cluster::presence::ban_json(&BanKey::User(fold(nick)), &ban);
                    crate::cluster::Direct::Ban { closing, ban }
                }
            };
            return self.send_moderation(client, nick, direct);
        }
        let target = self.find_nick(nick);
        let holders = target.map(|t| self.holders(t)).unwrap_or_default();
        let name = target
            .and_then(|t| self.nick(t))
            .map_or_else(|| command::cut(nick, MAX_NAME_CHARS).to_string(), str::to_string);
        if holders.is_empty() && duration.is_none() {
            return out.push(reply(error(format!("no such nick: {name}"))));
        }
        if holders.is_empty() && is_guest_nick(&name) {
            return out.push(reply(error(guest_not_connected(&name))));
        }
        if let Err(why) = validate_nick(&name) {
            return out.push(reply(error(format!("cannot ban {}: {}", quoted(&name), why.0))));
        }
        let signed = target.and_then(|t| self.member(t)).is_none_or(|m| m.signed);
        let (closing, ban) = sanction(&by, &name, duration, reason, now_ms);
        let told = sanctioned(&name, ban.is_some(), signed);
        if let Some(ban) = ban {
            if signed {
                self.record_ban(BanKey::User(fold(&name)), ban);
            } else {
                out.extend(holders.iter().map(|&client| Effect::BanAddress { client, ban: ban.clone() }));
            }
        }
        out.extend(holders.into_iter().map(|client| Effect::Kick { client, reason: closing.clone() }));
        out.push(reply(notice(told)));
    }

    fn record_ban(&mut self, key: BanKey, ban: Ban) {
        if self.cluster_up {
            self.requests.push(crate::cluster::Request::Ban { key: key.clone(), ban: ban.clone() });
        }
        if let Some(journal) = &mut self.journal {
            journal.push(Journal::Banned { key: key.clone(), ban: ban.clone() });
        }
        self.bans.insert(key, ban);
    }

    /// Bans a guest's address (see [`Effect::BanAddress`]).
    pub fn ban_address(&mut self, address: std::net::IpAddr, ban: Ban) {
        self.record_ban(BanKey::Address(address), ban);
    }

    /// Puts back a ban read from a store.
    pub fn restore_ban(&mut self, key: BanKey, ban: Ban) {
        self.bans.insert(key, ban);
    }

    /// The bans in force, for the handshake to consult.
    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    fn change_nick(&mut self, client: ClientId, wanted: &str, out: &mut Vec<Effect>) {
        if self.limits.token_nicks {
            let why = "nicks come from sign-in tokens on this server";
            out.push(Effect::Send {
                to: Audience::Client(client),
                body: error(format!("/nick is not available: {why}")),
            });
            return;
        }
        if let Err(why) = self.check_nick_free(wanted, Some(client)) {
            out.push(Effect::Send {
                to: Audience::Client(client),
                body: error(format!("nick {} refused: {why}", quoted(wanted))),
            });
            return;
        }
        if self.cluster_up {
            return self.claim_for_rename(client, wanted);
        }
        self.rename(client, Rc::from(wanted), out);
    }

    /// Gives a member a nick already checked (and, in cluster mode, claimed), and tells the room.
    fn rename(&mut self, client: ClientId, new: Rc<str>, out: &mut Vec<Effect>) {
        let Some(member) = self.member_mut(client) else { return };
        let old = std::mem::replace(&mut member.nick, new.clone());
        let room = member.room.clone();
        self.nicks.remove(&self.nick_key(&old));
        self.index_nick(&new, client);
        // The same name in another case is the same claim in Redis: releasing the old would
        // release the new.
        if fold(&old) != fold(&new) {
            self.release_nick(client, &old);
        }
        self.seat(client, &room, &new);
        let event = Event::NickChanged { room: self.display(&room), old, new };
        self.announce(&room, Some(client), event, out);
    }

    fn join(&mut self, client: ClientId, wanted: &str, out: &mut Vec<Effect>) {
        let reply = |body| Effect::Send { to: Audience::Client(client), body };
        if let Err(why) = validate_room(wanted) {
            out.push(reply(error(format!("room name {} refused: {}", quoted(wanted), why.0))));
            return;
        }
        let Some(member) = self.member(client) else { return };
        if !may_enter(member.access.as_deref(), &fold(wanted)) {
            out.push(reply(error(NO_SUCH_ROOM)));
            return;
        }
        if *member.room == *fold(wanted) {
            out.push(reply(notice(format!("you are already in {}", self.display(&member.room)))));
            return;
        }
        let (nick, old_room, old_seat, mode) =
            (member.nick.clone(), member.room.clone(), member.seat, member.mode);
        let old_display = self.display(&old_room);
        // Seated in the new room before leaving the old one: an old room that empties may
        // evict an empty room's history, and it must not be the room being joined.
        let (new_room, seat) = self.add_to_room(client, wanted, mode);
        self.remove_from_room(&old_room, mode, old_seat);
        self.unseat(client, &old_room);
        self.seat(client, &new_room, &nick);
        if let Some(member) = self.member_mut(client) {
            member.room = new_room.clone();
            member.seat = seat;
        }
        let new_display = self.display(&new_room);
        if self.cluster_up || self.rooms.get(&old_room).is_some_and(|r| r.len() > 0) {
            // Where a member went is not said when it is a private room.
            let moved_to = (!is_private(&new_room)).then(|| new_display.clone());
            let event = Event::Left { room: old_display, nick: nick.clone(), reason: None, moved_to };
            self.announce(&old_room, None, event, out);
        }
        self.replay(client, &new_room, None, out);
        self.announce(&new_room, Some(client), Event::Joined { room: new_display, nick }, out);
    }

    /// Every member of room `key` here, in both modes.
    fn all_members(&self, key: &str) -> Vec<ClientId> {
        Mode::ALL.iter().flat_map(|&mode| self.room_members(key, mode)).copied().collect()
    }

    /// The `/who` answer for room `key`, from its members' nicks (here, or across the cluster).
    fn who_answer(&self, key: &str, mut nicks: Vec<Rc<str>>) -> Body {
        let count = nicks.len();
        let shown = first_sorted(&mut nicks, |n| n).to_vec();
        Event::Who { room: self.display(key), count, nicks: shown }.into()
    }

    /// A history of its own for a room: a new epoch, from sequence 1.
    fn fresh_history(&self) -> History {
        History::new(history::new_epoch(), 1, self.limits.history)
    }

    /// Gives room `key` another history, keeping what all histories cost up to date.
    fn replace_history(&mut self, key: &str, history: History) {
        if let Some(room) = self.rooms.get_mut(key) {
            let old = std::mem::replace(&mut room.history, history);
            self.history_cost = self.history_cost + room.history.cost() - old.cost();
        }
    }

    /// The name of room `key` as shown.
    fn display(&self, key: &str) -> Rc<str> {
        self.rooms.get(key).map_or_else(|| Rc::from(key), |r| r.display.clone())
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
            let holds = self.nicks.get(&key) == Some(id)
                || (member.signed && self.shared_nicks.get(&key).is_some_and(|others| others.contains(id)));
            assert!(holds, "nick indexes its holder");
            let room = self.rooms.get(&member.room).expect("member's room exists");
            let list = &room.members[member.mode as usize];
            assert_eq!(list.iter().filter(|c| *c == id).count(), 1, "listed once in its room");
            assert_eq!(list.get(member.seat as usize), Some(id), "seated where it is listed");
        }
        let listed: usize = self.rooms.values().map(Room::len).sum();
        assert_eq!(listed, self.member_count, "room lists hold exactly the members");
        let mut empty = 0;
        for (key, room) in &self.rooms {
            assert_eq!(room.emptied.is_some(), room.len() == 0, "{key}: emptied stamp iff empty");
            if room.len() == 0 && &**key != LOBBY {
                assert!(room.history.last_id().is_some(), "empty room {key} kept without history");
                empty += 1;
            }
        }
        assert_eq!(empty, self.empty_rooms, "empty rooms counted");
        let cost: usize = self.rooms.values().map(|r| r.history.cost()).sum();
        assert_eq!(cost, self.history_cost, "history cost kept up to date");
        assert!(self.empty_rooms <= self.limits.history_rooms, "at most --history-rooms empty rooms kept");
    }

    /// Ok if `nick` is valid and not held by anyone but `except`.
    fn check_nick_free(&self, nick: &str, except: Option<ClientId>) -> Result<(), &'static str> {
        validate_nick(nick).map_err(|e| e.0)?;
        match self.nicks.get(&self.nick_key(nick)) {
            Some(owner) if Some(*owner) != except => Err("already in use"),
            _ => Ok(()),
        }
    }

    fn fresh_guest_nick(&mut self) -> Rc<str> {
        loop {
            self.next_guest += 1;
            let nick = format!("guest-{}", self.next_guest);
            if !self.nicks.contains_key(&self.nick_key(&nick)) {
                return Rc::from(nick);
            }
        }
    }

    fn next_stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Seats `client` in room `name` (created if new, with a fresh history); returns the
    /// room's key and the seat.
    fn add_to_room(&mut self, client: ClientId, name: &str, mode: Mode) -> (Rc<str>, u32) {
        let folded = fold(name);
        let key = match self.rooms.get_key_value(folded.as_str()) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Rc<str> = Rc::from(folded);
                let history = self.fresh_history();
                let stamp = self.next_stamp();
                let room = Room {
                    display: Rc::from(name),
                    members: Default::default(),
                    history,
                    sync: shared::Sync::Alone,
                    emptied: Some(stamp),
                };
                self.rooms.insert(key.clone(), room);
                // Counted as empty until seated below, like any room being rejoined.
                self.empty_rooms += usize::from(&*key != LOBBY);
                key
            }
        };
        let room = self.rooms.get_mut(&key).expect("room just found or made");
        let was_empty = room.emptied.take().is_some();
        if was_empty && &*key != LOBBY {
            self.empty_rooms -= 1;
        }
        let members = &mut room.members[mode as usize];
        members.push(client);
        let seat = (members.len() - 1) as u32;
        self.count_changed(&key);
        if was_empty {
            self.follow(&key);
        }
        (key, seat)
    }

    /// Frees a seat: the list's last member moves into it, so leaving costs the same in a room
    /// of ten or of ten thousand.
    fn remove_from_room(&mut self, key: &str, mode: Mode, seat: u32) {
        if let Some(key) = self.rooms.get_key_value(key).map(|(k, _)| k.clone()) {
            self.count_changed(&key);
        }
        let Some(room) = self.rooms.get_mut(key) else { return };
        let members = &mut room.members[mode as usize];
        let seat = seat as usize;
        if seat < members.len() {
            members.swap_remove(seat);
            if let Some(&moved) = members.get(seat) {
                if let Some(Some(member)) = self.members.get_mut(moved) {
                    member.seat = seat as u32;
                }
            }
        }
        if room.len() > 0 {
            return;
        }
        // An empty room is kept for its history (so its members can come back to it), unless
        // it never had a message; the lobby always stays.
        let stamp = self.next_stamp();
        let Some(room) = self.rooms.get_mut(key) else { return };
        room.emptied = Some(stamp);
        if self.unfollow(key) || key == LOBBY {
            return;
        }
        let Some(room) = self.rooms.get(key) else { return };
        if room.history.last_id().is_none() || self.limits.history == 0 {
            let had_messages = room.history.last_id().is_some();
            if let Some(room) = self.rooms.remove(key) {
                self.history_cost -= room.history.cost();
            }
            if let (true, Some(journal)) = (had_messages, &mut self.journal) {
                journal.push(Journal::RoomDropped { room: Rc::from(key) });
            }
            return;
        }
        let key: Rc<str> = self.rooms.get_key_value(key).map(|(k, _)| k.clone()).expect("room exists");
        self.emptied.push_back((stamp, key));
        self.empty_rooms += 1;
        self.evict_empty_rooms();
    }

    /// Forgets the empty rooms that emptied longest ago while more than `history_rooms` are
    /// kept.
    fn evict_empty_rooms(&mut self) {
        while self.empty_rooms > self.limits.history_rooms && self.evict_oldest_empty_room() {}
        self.compact_emptied();
    }

    /// Forgets the empty room (not the lobby) emptied longest ago; false if there is none.
    fn evict_oldest_empty_room(&mut self) -> bool {
        while let Some((stamp, key)) = self.emptied.pop_front() {
            if !self.rooms.get(&key).is_some_and(|r| r.emptied == Some(stamp) && r.len() == 0) {
                continue; // stale: joined again since
            }
            if let Some(room) = self.rooms.remove(&key) {
                self.history_cost -= room.history.cost();
            }
            self.empty_rooms -= 1;
            if let Some(journal) = &mut self.journal {
                journal.push(Journal::RoomDropped { room: key });
            }
            return true;
        }
        false
    }

    fn compact_emptied(&mut self) {
        // Stale entries (rooms joined again since) are dropped once they outnumber the rest.
        if self.emptied.len() > 2 * self.empty_rooms + 64 {
            let rooms = &self.rooms;
            self.emptied.retain(|(stamp, key)| rooms.get(key).is_some_and(|r| r.emptied == Some(*stamp)));
        }
    }
}

/// What a moderator `by` does to `nick` with `/kick` (no duration) or `/ban`: the reason its
/// connections are closed with, and the ban, if any.
fn sanction(
    by: &str,
    nick: &str,
    duration: Option<std::time::Duration>,
    reason: Option<&str>,
    now_ms: u64,
) -> (String, Option<Ban>) {
    let why = reason.map_or(String::new(), |r| format!(": {r}"));
    match duration {
        None => (format!("kicked by {by}{why}"), None),
        Some(duration) => {
            let ban = Ban {
                nick: nick.to_string(),
                until_ms: now_ms.saturating_add(duration.as_millis() as u64),
                reason: reason.unwrap_or_default().to_string(),
                by: by.to_string(),
            };
            (format!("banned by {by}{why}"), Some(ban))
        }
    }
}

/// Names a `/who` or `/rooms` reply lists; the rest are counted. A 10,000-member lobby would
/// otherwise cost a 330 KB reply to anyone who asks.
pub const MAX_LISTED: usize = 100;

/// What a moderator is told once `name` is kicked, or banned (a signed-in user by name, a
/// guest by address).
fn sanctioned(name: &str, banned: bool, signed: bool) -> String {
    match (banned, signed) {
        (false, _) => format!("{name} was kicked"),
        (true, true) => format!("{name} is banned"),
        (true, false) => format!("{name} is banned (a guest: by address)"),
    }
}

/// Whether `nick` is a guest nick (guests are banned by address, so only while connected).
fn is_guest_nick(nick: &str) -> bool {
    fold(nick).starts_with(&fold("guest-"))
}

/// Why a guest who is not connected cannot be banned: its address is gone with it.
fn guest_not_connected(name: &str) -> String {
    format!("{name} is not connected; a guest is banned by the address it connects from")
}

/// The `/rooms` answer, from (name, members) of the rooms the asker may see.
pub(super) fn rooms_answer(mut rooms: Vec<(Rc<str>, usize)>) -> Body {
    let count = rooms.len();
    let shown = first_sorted(&mut rooms, |(name, _)| name).to_vec();
    Event::Rooms { count, rooms: shown }.into()
}

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
