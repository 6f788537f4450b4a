//! The chat itself: who is connected under which nick, who sits in which room, and who receives
//! what. Plain Rust with no sockets: the event loop reports what clients did (connected, sent
//! text, sent binary, left) and gets back [`Effect`]s saying what to send to whom. Everything
//! here is unit-tested by calling these methods directly.
//!
//! Every line it sends is a [`ServerLine`] (chat line, action, private message, notice or
//! error), whose forms `line.rs` defines once for the server and the terminal client alike.

pub mod command;
pub mod line;
pub mod names;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

use bytes::Bytes;

use command::{parse_line, Command, Line};
use names::{fold, validate_nick, validate_room, MAX_NAME_CHARS};

pub use line::{ServerLine, NOTICE_PREFIX};

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
    Text(String),
    Binary(Bytes),
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
}

struct Member {
    nick: Rc<str>,
    room: Rc<str>,
    /// Where the member sits in its room's member list, so leaving is O(1).
    seat: u32,
}

struct Room {
    /// The name as first spelled by whoever created the room.
    display: String,
    members: Vec<ClientId>,
}

/// Default for [`Chat::with_announce_limit`].
pub const DEFAULT_ANNOUNCE_LIMIT: usize = 100;

/// The whole chat state.
pub struct Chat {
    /// Indexed by client id: ids are the event loop's slab keys, so they are dense.
    members: Vec<Option<Member>>,
    member_count: usize,
    /// The owner of each nick, keyed by a hash of its folded form ([`fold`]): no string is
    /// stored twice, so a member costs no allocation beyond its nick. Two folded forms with one
    /// hash (a 2^-64 chance, keyed per process) would make the second nick count as taken.
    nicks: HashMap<u64, ClientId>,
    nick_hasher: RandomState,
    /// Case-folded room name to room; a room exists while it has members (the lobby always).
    rooms: HashMap<Rc<str>, Room>,
    next_guest: u64,
    /// Rooms larger than this get no join/leave/nick announcements: in a room of N, N joins
    /// would cost N squared notices and drown the conversation.
    announce_limit: usize,
}

impl Default for Chat {
    fn default() -> Self {
        Self::with_announce_limit(DEFAULT_ANNOUNCE_LIMIT)
    }
}

/// The `/help` notice, one line per command.
const HELP: &str = "commands:
/nick NAME       change your nick (1-32 chars, no spaces)
/join ROOM       move to another room (created if new)
/rooms           list rooms and member counts
/who             list members of your room
/me ACTION       say an action: * NICK ACTION
/msg NICK TEXT   private message
/quit [REASON]   leave the chat
/help            this list
//TEXT           send a line starting with '/'";

fn line(line: ServerLine) -> Body {
    Body::Text(line.to_string())
}

fn notice(text: impl AsRef<str>) -> Body {
    line(ServerLine::Notice(text.as_ref()))
}

fn error(text: impl AsRef<str>) -> Body {
    line(ServerLine::Error(text.as_ref()))
}

impl Chat {
    pub fn new() -> Self {
        Self::default()
    }

    /// A chat that announces joins, leaves and nick changes only in rooms of at most `limit`
    /// members; in larger rooms only the client concerned is told.
    pub fn with_announce_limit(limit: usize) -> Self {
        Self {
            members: Vec::new(),
            member_count: 0,
            nicks: HashMap::new(),
            nick_hasher: RandomState::new(),
            rooms: HashMap::new(),
            next_guest: 0,
            announce_limit: limit,
        }
    }

    /// Tells a room about a member's join, leave or nick change. A room over the announcement
    /// limit is not told; `actor` (the member it is about, when still in the room) still is.
    fn announce(&self, room: &Rc<str>, actor: Option<ClientId>, text: String, out: &mut Vec<Effect>) {
        let to = if self.room_members(room).len() <= self.announce_limit {
            Audience::Room(room.clone())
        } else if let Some(actor) = actor {
            Audience::Client(actor)
        } else {
            return;
        };
        out.push(Effect::Send { to, body: notice(text) });
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
            room.members.shrink_to_fit();
        }
        self.rooms.shrink_to_fit();
    }

    /// Number of clients in the chat.
    pub fn len(&self) -> usize {
        self.member_count
    }

    pub fn is_empty(&self) -> bool {
        self.member_count == 0
    }

    /// Rooms that exist now (the lobby always).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
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

    /// The members of a room (by case-folded key); empty if there is no such room.
    pub fn room_members(&self, room: &str) -> &[ClientId] {
        self.rooms.get(room).map_or(&[], |r| r.members.as_slice())
    }

    /// A client joined: give it a nick (the one it asked for, if valid and free), put it in the
    /// lobby, welcome it and announce it.
    pub fn connect(&mut self, client: ClientId, wanted_nick: Option<&str>, out: &mut Vec<Effect>) {
        if self.member(client).is_some() {
            return;
        }
        let mut refusal = None;
        let nick: Rc<str> = match wanted_nick.map(|n| (n, self.check_nick_free(n, None))) {
            Some((nick, Ok(()))) => Rc::from(nick),
            Some((nick, Err(why))) => {
                refusal = Some(format!("nick {} refused: {why}", quoted(nick)));
                self.fresh_guest_nick()
            }
            None => self.fresh_guest_nick(),
        };
        self.index_nick(&nick, client);
        let lobby: Rc<str> = Rc::from(LOBBY);
        let seat = self.add_to_room(client, &lobby, LOBBY);
        self.insert_member(client, Member { nick: nick.clone(), room: lobby.clone(), seat });
        let to_client = Audience::Client(client);
        if let Some(refusal) = refusal {
            out.push(Effect::Send { to: to_client.clone(), body: notice(refusal) });
        }
        out.push(Effect::Send {
            to: to_client,
            body: notice(format!("welcome, you are {nick} in {LOBBY}; type /help for commands")),
        });
        self.announce(&lobby, Some(client), format!("{nick} joined {LOBBY}"), out);
    }

    /// A client left (connection closed for any reason): drop it and tell its room.
    pub fn disconnect(&mut self, client: ClientId, reason: &str, out: &mut Vec<Effect>) {
        let Some(member) = self.remove_member(client) else { return };
        self.nicks.remove(&self.nick_key(&member.nick));
        self.remove_from_room(&member.room, member.seat);
        if let Some(room) = self.rooms.get(&member.room) {
            let text = if reason.is_empty() {
                format!("{} left {}", member.nick, room.display)
            } else {
                format!("{} left {} ({reason})", member.nick, room.display)
            };
            self.announce(&member.room, None, text, out);
        }
    }

    /// A client sent a binary message: relay it verbatim to its room, sender included, just
    /// after a line saying who sent it (a binary frame has no room for a sender).
    pub fn binary(&mut self, client: ClientId, data: Bytes, out: &mut Vec<Effect>) {
        if let Some(member) = self.member(client) {
            let from = line(ServerLine::BinaryFrom { nick: &member.nick, len: data.len() });
            out.push(Effect::Send { to: Audience::Room(member.room.clone()), body: from });
            out.push(Effect::Send { to: Audience::Room(member.room.clone()), body: Body::Binary(data) });
        }
    }

    /// A client sent a text message: chat text or a command.
    pub fn text(&mut self, client: ClientId, text: &str, out: &mut Vec<Effect>) {
        let Some(member) = self.member(client) else { return };
        let reply = |body| Effect::Send { to: Audience::Client(client), body };
        match parse_line(text) {
            Line::Say(said) => out.push(Effect::Send {
                to: Audience::Room(member.room.clone()),
                body: line(ServerLine::Chat { nick: &member.nick, text: said }),
            }),
            Line::Invalid(why) => out.push(reply(error(why))),
            Line::Blank => {}
            Line::Command(Command::Me(action)) => out.push(Effect::Send {
                to: Audience::Room(member.room.clone()),
                body: line(ServerLine::Action { nick: &member.nick, text: action }),
            }),
            Line::Command(Command::Help) => out.push(reply(notice(HELP))),
            Line::Command(Command::Who) => {
                let mut nicks: Vec<&str> =
                    self.room_members(&member.room).iter().filter_map(|c| self.nick(*c)).collect();
                let count = nicks.len();
                let shown = first_sorted(&mut nicks, |n| n);
                let display = self.rooms.get(&member.room).map_or(LOBBY, |r| r.display.as_str());
                out.push(reply(notice(format!(
                    "in {display} ({count}): {}{}",
                    shown.join(", "),
                    more(count)
                ))));
            }
            Line::Command(Command::Rooms) => {
                let mut rooms: Vec<(&str, usize)> =
                    self.rooms.values().map(|r| (r.display.as_str(), r.members.len())).collect();
                let count = rooms.len();
                let shown = first_sorted(&mut rooms, |(name, _)| name);
                let list: Vec<String> = shown.iter().map(|(name, n)| format!("{name} ({n})")).collect();
                out.push(reply(notice(format!("rooms: {}{}", list.join(", "), more(count)))));
            }
            Line::Command(Command::Msg { to, text }) => match self.find_nick(to) {
                Some(target) => {
                    let target_nick = self.nick(target).unwrap_or(to);
                    out.push(Effect::Send {
                        to: Audience::Client(target),
                        body: line(ServerLine::PrivateFrom { nick: &member.nick, text }),
                    });
                    if target != client {
                        out.push(reply(line(ServerLine::PrivateTo { nick: target_nick, text })));
                    }
                }
                None => out.push(reply(error(format!("no such nick: {}", command::cut(to, MAX_NAME_CHARS))))),
            },
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

    fn change_nick(&mut self, client: ClientId, wanted: &str, out: &mut Vec<Effect>) {
        if let Err(why) = self.check_nick_free(wanted, Some(client)) {
            out.push(Effect::Send {
                to: Audience::Client(client),
                body: error(format!("nick {} refused: {why}", quoted(wanted))),
            });
            return;
        }
        let Some(member) = self.member_mut(client) else { return };
        let new: Rc<str> = Rc::from(wanted);
        let old = std::mem::replace(&mut member.nick, new.clone());
        let room = member.room.clone();
        self.nicks.remove(&self.nick_key(&old));
        self.index_nick(&new, client);
        self.announce(&room, Some(client), format!("{old} is now known as {wanted}"), out);
    }

    fn join(&mut self, client: ClientId, wanted: &str, out: &mut Vec<Effect>) {
        let reply = |body| Effect::Send { to: Audience::Client(client), body };
        if let Err(why) = validate_room(wanted) {
            out.push(reply(error(format!("room name {} refused: {}", quoted(wanted), why.0))));
            return;
        }
        let key = fold(wanted);
        let Some(member) = self.member(client) else { return };
        if *member.room == *key {
            let display = self.rooms.get(&member.room).map_or(wanted, |r| r.display.as_str());
            out.push(reply(notice(format!("you are already in {display}"))));
            return;
        }
        let (nick, old_room, old_seat) = (member.nick.clone(), member.room.clone(), member.seat);
        self.remove_from_room(&old_room, old_seat);
        let new_room: Rc<str> =
            self.rooms.get_key_value(key.as_str()).map_or_else(|| Rc::from(key), |(k, _)| k.clone());
        let seat = self.add_to_room(client, &new_room, wanted);
        if let Some(member) = self.member_mut(client) {
            member.room = new_room.clone();
            member.seat = seat;
        }
        let new_display = self.rooms.get(&new_room).map_or(wanted, |r| r.display.as_str()).to_string();
        if let Some(old) = self.rooms.get(&old_room) {
            let text = format!("{nick} left {} (joined {new_display})", old.display);
            self.announce(&old_room, None, text, out);
        }
        self.announce(&new_room, Some(client), format!("{nick} joined {new_display}"), out);
    }

    /// Panics if the state is inconsistent: every member has a unique nick that indexes back to
    /// it and sits exactly once in an existing room, and only the lobby may be empty. For
    /// property tests and fuzzing.
    pub fn check_invariants(&self) {
        let members: Vec<(ClientId, &Member)> =
            self.members.iter().enumerate().filter_map(|(id, m)| m.as_ref().map(|m| (id, m))).collect();
        assert_eq!(members.len(), self.member_count, "member count");
        assert_eq!(self.nicks.len(), self.member_count, "one nick index entry per member");
        for (id, member) in &members {
            assert!(validate_nick(&member.nick).is_ok() || member.nick.starts_with("guest-"), "valid nick");
            assert_eq!(self.nicks.get(&self.nick_key(&member.nick)), Some(id), "nick indexes its owner");
            let room = self.rooms.get(&member.room).expect("member's room exists");
            assert_eq!(room.members.iter().filter(|c| *c == id).count(), 1, "listed once in its room");
            assert_eq!(room.members.get(member.seat as usize), Some(id), "seated where it is listed");
        }
        let listed: usize = self.rooms.values().map(|r| r.members.len()).sum();
        assert_eq!(listed, self.member_count, "room lists hold exactly the members");
        for (key, room) in &self.rooms {
            assert!(!room.members.is_empty() || &**key == LOBBY, "empty room {key} kept");
        }
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

    /// Seats `client` in a room (created if new); returns its seat.
    fn add_to_room(&mut self, client: ClientId, key: &Rc<str>, display: &str) -> u32 {
        let members = &mut self
            .rooms
            .entry(key.clone())
            .or_insert_with(|| Room { display: display.to_string(), members: Vec::new() })
            .members;
        members.push(client);
        (members.len() - 1) as u32
    }

    /// Frees a seat: the room's last member moves into it, so leaving costs the same in a room
    /// of ten or of ten thousand.
    fn remove_from_room(&mut self, key: &str, seat: u32) {
        let Some(room) = self.rooms.get_mut(key) else { return };
        let seat = seat as usize;
        if seat < room.members.len() {
            room.members.swap_remove(seat);
            if let Some(&moved) = room.members.get(seat) {
                if let Some(Some(member)) = self.members.get_mut(moved) {
                    member.seat = seat as u32;
                }
            }
        }
        // Empty rooms vanish so /rooms stays meaningful; the lobby is kept even when empty.
        if room.members.is_empty() && key != LOBBY {
            self.rooms.remove(key);
        }
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

/// ", and N more" for a list of `count` cut to [`MAX_LISTED`].
fn more(count: usize) -> String {
    if count > MAX_LISTED {
        format!(", and {} more", count - MAX_LISTED)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests;
