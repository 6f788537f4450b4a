//! The simulated broker's two translations, as `crate::cluster`'s `commands.rs` and
//! `replies.rs` make them: the chat's requests into commands for Redis (each with what its
//! reply will answer), and what comes back (replies in order, pushes on the subscription) into
//! the chat's notices. Presence answers leave out this process's own entries: the chat adds
//! its own members.
//!
//! Payloads are built and read with the real helpers (`room::event_payload`,
//! `room::parse_payload`, `presence::ban_json`, ...); the direct-message form (`KIND CLIENT
//! NICK\nBODY`) is private to `crate::cluster`, so it is written and read here to the same
//! shape.

use std::rc::Rc;

use bytes::Bytes;

use super::broker::{Expect, Followed, SimBroker, Subscription};
use super::net::Arrival;
use super::redis::{Op, Reply};
use crate::broker::{Asker, Direct, Notice, Request};
use crate::chat::history::new_epoch;
use crate::chat::names::fold;
use crate::chat::{BanKey, ClientId, Stored};
use crate::cluster::{presence, room};

/// An arrival the real broker would have failed the link over (a reply nobody asked for, one
/// of the wrong shape).
#[derive(Debug)]
pub(super) struct Garbled;

impl SimBroker {
    /// The commands for one request, queued for the end of the turn.
    pub(super) fn send(&mut self, request: Request) {
        match request {
            Request::Follow { room, display, .. } => {
                let entry = self
                    .followed
                    .entry(room)
                    .or_insert(Followed { display: display.clone(), subscription: Subscription::Wanted });
                entry.display = display;
            }
            Request::Reload { room, display } => {
                if self.followed.get(&room).is_some_and(|f| f.subscription == Subscription::Live) {
                    self.queue_load(room, display);
                }
            }
            Request::Unfollow { room } => {
                self.followed.remove(&room);
                self.unfollowed.push(room);
            }
            Request::Say { room, display, message, origin } => {
                let (body, tag) = (room::say_body(&message), self.origin(Some(origin)));
                let (epoch, history) = (new_epoch(), self.history);
                let op = Op::Say { room: room.clone(), epoch, display, history, body, origin: tag };
                if self.followed.contains_key(&room) {
                    self.sent_by(origin);
                }
                self.command(Expect::Said { room, message, origin }, op);
            }
            Request::Announce { room, event, origin } => {
                let Some(json) = event.json() else { return };
                if let Some(client) = origin.filter(|_| self.followed.contains_key(&room)) {
                    self.unechoed.insert(client, (room.clone(), event));
                }
                self.publish(&room, room::event_payload(&self.origin(origin), &json), origin);
            }
            Request::Binary { room, from, data, origin } => {
                if let Some(json) = from.json() {
                    self.publish(&room, room::event_payload(&self.origin(None), &json), None);
                }
                self.publish(&room, room::binary_payload(&self.origin(Some(origin)), &data), Some(origin));
            }
            Request::Claim { client, nick: None, serial, .. } => {
                self.command(Expect::GuestNumber { client, serial }, Op::Incr)
            }
            Request::Claim { client, nick: Some(nick), signed, serial } => {
                self.claim(client, nick, signed, serial)
            }
            Request::Release { client, nick } => {
                let (key, field) = (presence::nick_key(&fold(&nick)), self.holder(client));
                self.command(Expect::Nothing, Op::Hdel { key, field });
            }
            Request::Seat { client, room, nick } => {
                let (key, field) = (presence::who_key(&room), self.holder(client));
                self.command(Expect::Nothing, Op::Hset { key, field, value: nick.to_string() });
            }
            Request::Unseat { client, room } => {
                let (key, field) = (presence::who_key(&room), self.holder(client));
                self.command(Expect::Nothing, Op::Hdel { key, field });
            }
            Request::Count { room, display, count } => {
                let (key, field) = (presence::COUNTS.to_string(), format!("{} {room}", self.pid));
                let op = match count {
                    0 => Op::Hdel { key, field },
                    _ => Op::Hset { key, field, value: format!("{count} {display}") },
                };
                self.command(Expect::Nothing, op);
            }
            Request::Who { asker, room } => {
                let key = presence::who_key(&room);
                self.command(Expect::Who { asker, room }, Op::Live { key });
            }
            Request::Rooms { asker } => {
                self.command(Expect::Rooms { asker }, Op::Live { key: presence::COUNTS.to_string() })
            }
            Request::Direct { asker, nick, direct } => self.direct(asker, nick, direct),
            Request::Ban { key, ban } => {
                let json = presence::ban_json(&key, &ban);
                let set =
                    Op::Hset { key: presence::BANS.to_string(), field: key.to_store(), value: json.clone() };
                self.command(Expect::Nothing, set);
                self.publish_plain(presence::bans_channel(0), format!("ban {json}"));
            }
            Request::Unban { key } => {
                let del = Op::Hdel { key: presence::BANS.to_string(), field: key.to_store() };
                self.command(Expect::Nothing, del);
                self.publish_plain(presence::bans_channel(0), presence::unban_payload(&key));
            }
        }
    }

    /// Claims `nick` for `client`, unless a live holder on another process has it.
    fn claim(&mut self, client: ClientId, nick: Rc<str>, signed: bool, serial: u64) {
        let (key, holder, value) =
            (presence::nick_key(&fold(&nick)), self.holder(client), presence::nick_value(&nick, signed));
        self.command(Expect::Claimed { client, nick, serial }, Op::Claim { key, holder, value });
    }

    /// Something for `nick`'s holders on the other processes, through their own channels.
    fn direct(&mut self, asker: Asker, nick: Rc<str>, direct: Direct) {
        let key = presence::nick_key(&fold(&nick));
        let (kind, body) = match &direct {
            Direct::Private { from, text, ts } => ("p", format!("{from}\n{ts}\n{text}")),
            Direct::Kick(reason) => ("k", reason.clone()),
            Direct::Ban { closing, ban } => {
                ("b", format!("{}\n{closing}", presence::ban_json(&BanKey::User(fold(&nick)), ban)))
            }
        };
        let (body, pid) = (format!("{nick}\n{body}"), self.pid.clone());
        self.command(Expect::Reached { asker, nick, direct }, Op::Direct { key, kind, body, pid });
    }

    pub(super) fn queue_load(&mut self, room: Rc<str>, display: Rc<str>) {
        let (epoch, history) = (new_epoch(), self.history);
        let op = Op::Load { room: room.clone(), epoch, display: display.clone(), history };
        self.command(Expect::Loaded { room, display }, op);
    }

    /// Publishes a payload that is not kept on a room's channel; `origin`'s input waits until
    /// it is back.
    fn publish(&mut self, room: &str, payload: Vec<u8>, origin: Option<ClientId>) {
        self.publish_plain(room::channel(0, room), payload);
        if let Some(origin) = origin.filter(|_| self.followed.contains_key(room)) {
            self.sent_by(origin);
        }
    }

    fn publish_plain(&mut self, channel: String, payload: impl Into<Bytes>) {
        self.command(Expect::Nothing, Op::Publish { channel, payload: payload.into() });
    }

    fn origin(&self, client: Option<ClientId>) -> String {
        room::origin(&self.pid, client)
    }

    fn holder(&self, client: ClientId) -> String {
        presence::holder(&self.pid, client)
    }

    /// Something that arrived on the link.
    pub(super) fn on_arrival(&mut self, arrival: Arrival) -> Result<(), Garbled> {
        match arrival {
            Arrival::Reply(reply) => self.on_reply(reply),
            Arrival::Subscribed(channel) => {
                let Some(room) = room::room_of_channel(0, channel.as_bytes()) else { return Ok(()) };
                let room: Rc<str> = Rc::from(room);
                let Some(followed) = self.followed.get_mut(&room) else { return Ok(()) };
                if followed.subscription == Subscription::Sent {
                    followed.subscription = Subscription::Live;
                    let display = followed.display.clone();
                    self.queue_load(room, display);
                }
                Ok(())
            }
            Arrival::Unsubscribed(_) => Ok(()),
            Arrival::Message(channel, payload) => {
                self.on_message(&channel, &payload);
                Ok(())
            }
        }
    }

    fn on_reply(&mut self, reply: Reply) -> Result<(), Garbled> {
        let expected = self.pending.pop_front().ok_or(Garbled)?;
        let notice = match (expected, reply) {
            (Expect::Nothing | Expect::Said { .. }, _) => return Ok(()),
            (Expect::Heartbeat, Reply::Integer(alive)) => match alive {
                0 => Notice::Reclaim,
                _ => return Ok(()),
            },
            (Expect::Capability, _) => {
                self.capability_known = true;
                return Ok(());
            }
            (Expect::Loaded { room, .. }, _) if !self.followed.contains_key(&room) => return Ok(()),
            (Expect::Loaded { room, display: asked }, Reply::Loaded { epoch, top, display, entries }) => {
                let display = if display.is_empty() { asked } else { display };
                let mut messages: Vec<Stored> = Vec::with_capacity(entries.len());
                for (seq, body) in entries.into_iter().rev() {
                    messages.push(room::stored(seq, body.as_bytes()).ok_or(Garbled)?);
                }
                Notice::Loaded { room, display, epoch, top, messages: Some(messages) }
            }
            (Expect::GuestNumber { client, serial }, Reply::Integer(number)) => {
                self.claim(client, Rc::from(format!("guest-{number}")), false, serial);
                return Ok(());
            }
            (Expect::Claimed { client, nick, serial }, reply) => {
                let held_by = match reply {
                    Reply::Integer(1) => None,
                    Reply::Text(value) => Some(value),
                    _ => Some("G ?".to_string()),
                };
                Notice::Claimed { client, nick, held_by, serial }
            }
            (Expect::Who { asker, room }, Reply::Pairs(pairs)) => {
                let nicks = self.elsewhere(pairs, ':').map(|(_, nick)| Rc::from(nick)).collect();
                Notice::Who { asker, room, nicks }
            }
            (Expect::Rooms { asker }, Reply::Pairs(pairs)) => Notice::Rooms {
                asker,
                rooms: crate::cluster::replies::rooms_elsewhere(self.elsewhere(pairs, ' ')),
            },
            (Expect::Reached { asker, nick, direct }, Reply::Reached(reached, value)) => {
                let held_as =
                    value.get(2..).filter(|n| !n.is_empty()).map(|n| (Rc::from(n), value.starts_with('S')));
                Notice::Reached { asker, nick, reached: reached.max(0) as usize, held_as, direct }
            }
            (Expect::Bans, Reply::Pairs(pairs)) => {
                for (_, json) in pairs {
                    if let Some((key, ban)) = presence::parse_ban(json.as_bytes()) {
                        self.notices.push(Notice::Banned { key, ban });
                    }
                }
                return Ok(());
            }
            _ => return Err(Garbled),
        };
        self.notices.push(notice);
        Ok(())
    }

    /// The entries of a presence hash whose field names another process (`PID` then
    /// `separator`).
    fn elsewhere(
        &self,
        pairs: Vec<(String, String)>,
        separator: char,
    ) -> impl Iterator<Item = (String, String)> {
        let pid = self.pid.clone();
        pairs.into_iter().filter(move |(field, _)| field.split_once(separator).is_some_and(|(p, _)| p != pid))
    }

    /// A published message: the bans channel, this process's own channel, or a room's.
    fn on_message(&mut self, channel: &str, payload: &Bytes) {
        if channel == presence::bans_channel(0) {
            if let Some(json) = payload.strip_prefix(b"ban ") {
                if let Some((key, ban)) = presence::parse_ban(json) {
                    self.notices.push(Notice::Banned { key, ban });
                }
            } else if let Some(key) = presence::parse_unban(payload) {
                self.notices.push(Notice::Unbanned { key });
            }
            return;
        }
        if channel == presence::process_channel(0, &self.pid) {
            self.notices.extend(crate::cluster::replies::parse_direct(payload));
            return;
        }
        let Some(room) = room::room_of_channel(0, channel.as_bytes()) else { return };
        if self.followed.get(room).is_none_or(|f| f.subscription != Subscription::Live) {
            return;
        }
        if let Some((notice, origin)) = room::parse_payload(room, payload) {
            if let (Some(client), Notice::Event { event, .. }) = (self.came_back(&origin), &notice) {
                self.echo(client, event);
            }
            self.notices.push(notice);
        }
    }
}
