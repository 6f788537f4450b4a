//! The chat's presence in cluster mode (see `crate::cluster::presence` for how Redis keeps
//! it): nicks unique across every process, `/who` and `/rooms` for the whole cluster, `/msg`,
//! `/kick` and `/ban` reaching a nick on any process, bans held everywhere.
//!
//! A nick is *claimed* in Redis before it is used: a connection waits for its claim before it
//! is welcomed (the server does not read its input meanwhile, so nothing it sends is lost or
//! sent under a name it does not hold), and `/nick` takes effect when its claim succeeds.
//! While Redis is away, the chat runs alone and claims are settled locally; when it is back,
//! every member's nick is claimed again, and a member whose nick another process gave out
//! meanwhile becomes a guest, and is told.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

use super::command::cut;
use super::names::{fold, MAX_NAME_CHARS};
use super::{
    error, guest_not_connected, is_guest_nick, may_enter, notice, rooms_answer, sanctioned, Audience, Chat,
    ClientId, Effect, Event, Join, Mode,
};
use crate::auth::Identity;
use crate::cluster::{presence, Asker, Direct, Notice, Request};
use crate::logline::quoted;

/// A nick claim waiting for Redis's answer.
pub(super) struct Claim {
    serial: u64,
    nick: Rc<str>,
    purpose: Purpose,
}

enum Purpose {
    /// A connection's first nick: it joins when the claim is settled.
    Join(PendingJoin),
    /// `/nick`.
    Rename,
    /// A member's nick, claimed again after an outage (or a guest nick it was given).
    Keep,
}

/// What a waiting connection asked for, kept until its nick is settled.
struct PendingJoin {
    /// The nick is the one the client asked for (not a guest nick it was given).
    asked: bool,
    signed: bool,
    room: Option<String>,
    since: Option<String>,
    mode: Mode,
    identity: Option<Identity>,
}

impl PendingJoin {
    fn join(&self) -> Join<'_> {
        Join {
            nick: None,
            room: self.room.as_deref(),
            since: self.since.as_deref(),
            mode: Some(self.mode),
            identity: self.identity.as_ref(),
        }
    }
}

/// Pending claims, and the rooms whose local member count changed this turn.
#[derive(Default)]
pub(super) struct Presence {
    claims: HashMap<ClientId, Claim>,
    next_serial: u64,
    dirty_counts: Vec<Rc<str>>,
}

impl Chat {
    /// `client` waits for its nick claim (it must not be read from until [`Effect::Resume`]).
    pub fn is_waiting(&self, client: ClientId) -> bool {
        // Asked for every message read: without a claim in flight, one branch.
        !self.presence.claims.is_empty() && self.waiting_mode(client).is_some()
    }

    /// The mode of a connection waiting to join, so what it is told before its welcome arrives.
    pub(super) fn waiting_mode(&self, client: ClientId) -> Option<Mode> {
        match &self.presence.claims.get(&client)?.purpose {
            Purpose::Join(pending) => Some(pending.mode),
            _ => None,
        }
    }

    fn claim(&mut self, client: ClientId, nick: Rc<str>, signed: bool, purpose: Purpose) {
        self.presence.next_serial += 1;
        let serial = self.presence.next_serial;
        self.requests.push(Request::Claim { client, nick: nick.clone(), signed, serial });
        self.presence.claims.insert(client, Claim { serial, nick, purpose });
    }

    /// Cluster mode: the connection joins once `nick` is claimed.
    pub(super) fn claim_for_join(&mut self, client: ClientId, nick: Rc<str>, asked: bool, join: Join) {
        let signed = join.identity.is_some();
        let pending = PendingJoin {
            asked,
            signed,
            room: join.room.map(str::to_string),
            since: join.since.map(str::to_string),
            mode: join.mode.unwrap_or(Mode::Text),
            identity: join.identity.cloned(),
        };
        self.claim(client, nick, signed, Purpose::Join(pending));
    }

    /// Cluster mode: `/nick` takes effect when the new nick is claimed.
    pub(super) fn claim_for_rename(&mut self, client: ClientId, wanted: &str) {
        self.claim(client, Rc::from(wanted), false, Purpose::Rename);
    }

    /// A connection left: its pending claim is dropped and whatever it held is released.
    pub(super) fn forget_claims(&mut self, client: ClientId) {
        if let Some(claim) = self.presence.claims.remove(&client) {
            // The claim may have succeeded already; the release follows it on the same link.
            self.requests.push(Request::Release { client, nick: claim.nick });
        }
    }

    pub(super) fn release_nick(&mut self, client: ClientId, nick: &Rc<str>) {
        if self.cluster_up {
            self.requests.push(Request::Release { client, nick: nick.clone() });
        }
    }

    pub(super) fn seat(&mut self, client: ClientId, room: &Rc<str>, nick: &Rc<str>) {
        if self.cluster_up {
            self.requests.push(Request::Seat { client, room: room.clone(), nick: nick.clone() });
        }
    }

    pub(super) fn unseat(&mut self, client: ClientId, room: &Rc<str>) {
        if self.cluster_up {
            self.requests.push(Request::Unseat { client, room: room.clone() });
        }
    }

    /// Room `key`'s local member count changed: the cluster's count is updated once per turn.
    pub(super) fn count_changed(&mut self, key: &Rc<str>) {
        if self.cluster_up && !self.presence.dirty_counts.contains(key) {
            self.presence.dirty_counts.push(key.clone());
        }
    }

    pub(super) fn has_dirty_counts(&self) -> bool {
        !self.presence.dirty_counts.is_empty()
    }

    /// The turn's count updates, as requests.
    pub(super) fn flush_counts(&mut self) {
        for room in std::mem::take(&mut self.presence.dirty_counts) {
            let (display, count) = match self.rooms.get(&room) {
                Some(r) => (r.display.clone(), r.len()),
                None => (room.clone(), 0),
            };
            self.requests.push(Request::Count { room, display, count });
        }
    }

    /// Redis is back: every member's presence is written again and its nick claimed again.
    pub(super) fn reclaim_everything(&mut self, first_time: bool) {
        if first_time {
            // Guest numbers from a random start per process, so that processes rarely offer
            // the same one (a clash is settled by the claim like any other).
            self.next_guest = RandomState::new().hash_one(std::process::id()) % 900_000 + 100_000;
        }
        let members: Vec<(ClientId, Rc<str>, Rc<str>, bool)> = self
            .members
            .iter()
            .enumerate()
            .filter_map(|(id, m)| m.as_ref().map(|m| (id, m.nick.clone(), m.room.clone(), m.signed)))
            .collect();
        for (client, nick, room, signed) in members {
            self.claim(client, nick.clone(), signed, Purpose::Keep);
            self.seat(client, &room, &nick);
        }
        let rooms: Vec<Rc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.count_changed(&room);
        }
    }

    /// Redis is gone: waiting connections join on this process's word alone.
    pub(super) fn settle_claims_locally(&mut self, out: &mut Vec<Effect>) {
        let claims: Vec<(ClientId, Claim)> = self.presence.claims.drain().collect();
        for (client, claim) in claims {
            self.claim_settled(client, claim, None, out);
        }
        self.presence.dirty_counts.clear();
    }

    /// Answers the notices about presence; gives back any other notice.
    pub(super) fn presence_notice(&mut self, notice: Notice, out: &mut Vec<Effect>) -> Option<Notice> {
        match notice {
            Notice::Claimed { client, nick, held_by, serial } => {
                match self.presence.claims.get(&client) {
                    Some(claim) if claim.serial == serial && claim.nick == nick => {
                        let claim = self.presence.claims.remove(&client).expect("just seen");
                        self.claim_settled(client, claim, held_by, out);
                    }
                    // An answer for a connection that has gone (its release is on its way).
                    _ => {}
                }
            }
            Notice::Who { asker, room, nicks } => {
                let client = asker.client;
                if self.member(client).is_some_and(|m| m.room == room && m.nick == asker.nick) {
                    out.push(Effect::Send {
                        to: Audience::Client(client),
                        body: self.who_answer(&room, nicks),
                    });
                }
            }
            Notice::Rooms { asker, rooms } => {
                let client = asker.client;
                // Answered only while the asker is still here.
                if let Some(member) = self.member(client).filter(|m| m.nick == asker.nick) {
                    let access = member.access.as_deref();
                    let rooms = rooms
                        .into_iter()
                        .filter(|(key, _, count)| *count > 0 && may_enter(access, key))
                        .map(|(_, display, count)| (display, count));
                    let body = rooms_answer(rooms.collect());
                    out.push(Effect::Send { to: Audience::Client(client), body });
                }
            }
            Notice::Reached { asker, nick, reached, held_as, direct } => {
                if self.nick(asker.client) == Some(&*asker.nick) {
                    self.reached(asker.client, &nick, reached, held_as, direct, out)
                }
            }
            Notice::Direct { client, nick, direct } => {
                // For whoever holds `nick`: not for a connection that took the slot since.
                if self.nick(client).is_some_and(|held| fold(held) == fold(&nick)) {
                    self.direct_arrived(client, direct, out)
                }
            }
            Notice::Reclaim => self.reclaim_everything(false),
            Notice::Banned { key, ban } => self.bans.insert(key, ban),
            Notice::Unbanned { key } => self.bans.remove(&key),
            other => return Some(other),
        }
        None
    }

    /// A claim is answered (`held_by` None: the connection holds the nick now).
    fn claim_settled(
        &mut self,
        client: ClientId,
        claim: Claim,
        held_by: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        let Claim { nick, purpose, .. } = claim;
        match purpose {
            Purpose::Join(pending) => {
                let local = self.check_nick_free(&nick, None);
                let shared = local.is_err() && pending.signed && self.held_by_same_user(&nick);
                if held_by.is_none() && (local.is_ok() || shared) {
                    if shared {
                        let key = self.nick_key(&nick);
                        self.shared_nicks.entry(key).or_default().push(client);
                    } else {
                        self.index_nick(&nick, client);
                    }
                    self.join_as(client, nick, pending.signed, pending.join(), out);
                    out.push(Effect::Resume { client });
                    return;
                }
                if held_by.is_none() {
                    self.requests.push(Request::Release { client, nick: nick.clone() });
                }
                if pending.signed {
                    let reason = format!("nick {} unavailable: already in use", quoted(&nick));
                    return out.push(Effect::Refuse { client, reason });
                }
                if pending.asked {
                    let text = format!("nick {} refused: already in use", quoted(&nick));
                    out.push(Effect::Send { to: Audience::Client(client), body: notice(text) });
                }
                let guest = self.fresh_guest_nick();
                let purpose = Purpose::Join(PendingJoin { asked: false, ..pending });
                if self.cluster_up {
                    self.claim(client, guest, false, purpose);
                } else {
                    // Redis is away: this process's word is the only one (a fresh guest nick is
                    // free here), and nobody would ever answer a claim.
                    self.claim_settled(client, Claim { serial: 0, nick: guest, purpose }, None, out);
                }
            }
            Purpose::Rename => {
                let free = self.check_nick_free(&nick, Some(client)).is_ok() && self.member(client).is_some();
                match (held_by, free) {
                    (None, true) => self.rename(client, nick, out),
                    (None, false) => self.release_nick(client, &nick),
                    (Some(_), _) => out.push(Effect::Send {
                        to: Audience::Client(client),
                        body: error(format!("nick {} refused: already in use", quoted(&nick))),
                    }),
                }
            }
            Purpose::Keep => {
                if held_by.is_some() && self.nick(client) == Some(&*nick) {
                    let guest = self.fresh_guest_nick();
                    let text = format!(
                        "your nick {} is taken on another server: you are {guest} now",
                        quoted(&nick)
                    );
                    out.push(Effect::Send { to: Audience::Client(client), body: notice(text) });
                    self.rename(client, guest.clone(), out);
                    self.claim(client, guest, false, Purpose::Keep);
                }
            }
        }
    }

    fn asker(&self, client: ClientId) -> Option<Asker> {
        Some(Asker { client, nick: Rc::from(self.nick(client)?) })
    }

    /// `/who` for the whole cluster.
    pub(super) fn ask_who(&mut self, client: ClientId, room: Rc<str>) {
        if let Some(asker) = self.asker(client) {
            self.requests.push(Request::Who { asker, room });
        }
    }

    /// `/rooms` for the whole cluster.
    pub(super) fn ask_rooms(&mut self, client: ClientId) {
        if let Some(asker) = self.asker(client) {
            self.requests.push(Request::Rooms { asker });
        }
    }

    /// `/msg` to a nick wherever it is held (this process's holders included, through Redis,
    /// so every holder gets it the same way).
    pub(super) fn send_private(&mut self, client: ClientId, to: &str, text: &str, now_ms: u64) {
        let Some(from) = self.nick(client).map(Rc::from) else { return };
        let event =
            Event::Private { from, to: Rc::from(to), text: text.to_string(), ts: now_ms, outgoing: false };
        if let Some(json) = event.json() {
            if let Some(asker) = self.asker(client) {
                self.requests.push(Request::Direct {
                    asker,
                    nick: Rc::from(to),
                    direct: Direct::Private(json),
                });
            }
        }
    }

    /// `/kick` or `/ban` of a nick wherever it is held.
    pub(super) fn send_moderation(&mut self, client: ClientId, nick: &str, direct: Direct) {
        if let Some(asker) = self.asker(client) {
            self.requests.push(Request::Direct { asker, nick: Rc::from(nick), direct });
        }
    }

    /// A private message, a kick or a ban reached its holders (or nobody): tell the sender.
    fn reached(
        &mut self,
        client: ClientId,
        nick: &str,
        reached: usize,
        held_as: Option<(Rc<str>, bool)>,
        direct: Direct,
        out: &mut Vec<Effect>,
    ) {
        let Some(sender) = self.nick(client).map(Rc::<str>::from) else { return };
        let reply = |body| Effect::Send { to: Audience::Client(client), body };
        let name =
            held_as.as_ref().map_or_else(|| cut(nick, MAX_NAME_CHARS).to_string(), |(n, _)| n.to_string());
        match direct {
            _ if reached == 0 && !matches!(direct, Direct::Ban { .. }) => {
                out.push(reply(error(format!("no such nick: {name}"))))
            }
            Direct::Private(json) => {
                // The sender's own copy, unless it holds the nick itself (then it got one).
                if fold(&name) != fold(&sender) {
                    if let Some(Event::Private { from, text, ts, .. }) = Event::from_json(&json) {
                        let to = Rc::from(name.as_str());
                        out.push(reply(Event::Private { from, to, text, ts, outgoing: true }.into()));
                    }
                }
            }
            Direct::Kick(_) => out.push(reply(notice(sanctioned(&name, false, false)))),
            Direct::Ban { ban, .. } => {
                let signed = held_as.as_ref().is_none_or(|(_, signed)| *signed);
                if reached == 0 && is_guest_nick(&name) {
                    return out.push(reply(error(guest_not_connected(&name))));
                }
                if signed {
                    if let Some((_, ban)) = presence::parse_ban(ban.as_bytes()) {
                        self.record_ban(super::BanKey::User(fold(&name)), ban);
                    }
                }
                out.push(reply(notice(sanctioned(&name, true, signed))));
            }
        }
    }

    /// Another process sent one of our connections a private message, a kick or a ban.
    fn direct_arrived(&mut self, client: ClientId, direct: Direct, out: &mut Vec<Effect>) {
        let Some(member) = self.member(client) else { return };
        let (nick, signed) = (member.nick.clone(), member.signed);
        match direct {
            Direct::Private(json) => {
                if let Some(Event::Private { from, text, ts, .. }) = Event::from_json(&json) {
                    let event = Event::Private { from, to: nick, text, ts, outgoing: false };
                    out.push(Effect::Send { to: Audience::Client(client), body: event.into() });
                }
            }
            Direct::Kick(reason) => out.push(Effect::Kick { client, reason }),
            Direct::Ban { closing, ban } => {
                if !signed {
                    if let Some((_, ban)) = presence::parse_ban(ban.as_bytes()) {
                        out.push(Effect::BanAddress { client, ban });
                    }
                }
                out.push(Effect::Kick { client, reason: closing });
            }
        }
    }
}
