//! Nicks: the index of who holds which nick here, and how a connection gets one.
//!
//! A nick is *claimed* through the broker before it is used, whether one process runs the chat
//! (the in-process broker grants it at once) or many (Redis grants it if no other process holds
//! it). A connecting client is welcomed once its claim is granted, and `/nick` takes effect
//! then; meanwhile the client's input waits unread (see [`Chat::is_waiting`]), so nothing is
//! sent under a name it does not hold. Guest nicks (`guest-N`) are numbered by the broker, so
//! they have one short shape however many processes hand them out.

use std::rc::Rc;

use super::names::{fold, validate_nick};
use super::{
    error, notice, reply, Access, Chat, ClientId, Effect, Event, Join, Member, Mode, NickKey, Request,
};
use crate::auth::Identity;
use crate::logline::quoted;

/// A nick claim waiting for the broker's answer.
pub(super) struct Claim {
    serial: u64,
    /// None: a guest nick, numbered by the broker.
    nick: Option<Rc<str>>,
    purpose: Purpose,
}

enum Purpose {
    /// A connection's first nick: it joins when the claim is granted.
    Join(PendingJoin),
    /// `/nick`.
    Rename,
    /// A member's nick, claimed again after the link came back (or a guest nick it was given).
    Keep,
}

/// What a client that presented a token to a server without sign-in keys is told.
pub const IGNORED_TOKEN: &str =
    "your token was not checked: this server has no sign-in keys, so you join as a guest";

/// What a waiting connection asked for, kept until its nick is settled.
struct PendingJoin {
    /// The nick is the one the client asked for (not a guest nick it was given).
    asked: bool,
    signed: bool,
    room: Option<String>,
    since: Option<String>,
    mode: Mode,
    identity: Option<Identity>,
    /// Its token expired while the claim was in flight: it joins with no rights, expired.
    expired: bool,
}

impl PendingJoin {
    fn join(&self) -> Join<'_> {
        Join {
            nick: None,
            room: self.room.as_deref(),
            since: self.since.as_deref(),
            mode: Some(self.mode),
            identity: self.identity.as_ref(),
            ignored_token: false,
        }
    }
}

impl Chat {
    /// The nick index's key for `nick`: equal for nicks that are the same name.
    pub(super) fn nick_key(&self, nick: &str) -> NickKey {
        self.nicks.key(nick)
    }

    /// Records `nick` as taken by `client`.
    fn index_nick(&mut self, nick: &str, client: ClientId) {
        let members = &self.members;
        self.nicks.insert(self.nicks.key(nick), client, |c| members.get(c)?.as_ref().map(|m| &*m.nick));
    }

    /// The client holding `nick` (or a nick that is the same name).
    pub(super) fn find_nick(&self, nick: &str) -> Option<ClientId> {
        self.nicks.get(nick, |c| self.nick(c))
    }

    /// Every connection here holding the nick `owner` holds (one, or a user's several devices).
    pub(super) fn holders(&self, owner: ClientId) -> Vec<ClientId> {
        let mut all = vec![owner];
        if let Some(nick) = self.nick(owner) {
            all.extend(self.shared_nicks.get(&self.nick_key(nick)).into_iter().flatten());
        }
        all
    }

    /// Drops `client`'s hold on `nick`; the nick stays taken while another connection of the
    /// same user holds it.
    pub(super) fn unindex_nick(&mut self, nick: &str, client: ClientId) {
        let key = self.nick_key(nick);
        match self.shared_nicks.get_mut(&key) {
            Some(others) => {
                if self.nicks.holds(key, client) {
                    if let Some(next) = others.pop() {
                        self.nicks.hand_over(key, client, next);
                    }
                } else {
                    others.retain(|c| *c != client);
                }
                if others.is_empty() {
                    self.shared_nicks.remove(&key);
                }
            }
            None => {
                self.nicks.remove(key, client);
            }
        }
    }

    /// Ok if `nick` is valid and not held here by anyone but `except`.
    pub(super) fn check_nick_free(&self, nick: &str, except: Option<ClientId>) -> Result<(), &'static str> {
        validate_nick(nick).map_err(|e| e.0)?;
        match self.find_nick(nick) {
            Some(owner) if Some(owner) != except => Err("already in use"),
            _ => Ok(()),
        }
    }

    /// Whether `sub`'s nick is held by connections signed in as that same user.
    fn held_by_same_user(&self, sub: &str) -> bool {
        self.find_nick(sub).and_then(|owner| self.member(owner)).is_some_and(|m| m.signed && *m.nick == *sub)
    }

    /// A client joined: it asks for a nick (the one it asked for, if valid and free here, else
    /// a guest nick), and enters the chat once the broker grants it (see [`Self::join_as`]).
    pub fn connect(&mut self, client: ClientId, join: Join, out: &mut Vec<Effect>) {
        if self.member(client).is_some() || self.is_waiting(client) {
            return;
        }
        let signed = join.identity.is_some();
        if join.ignored_token {
            out.push(reply(client, notice(IGNORED_TOKEN)));
        }
        let asked = match (join.identity, self.limits.token_nicks) {
            (Some(identity), _) => Some(identity.sub.as_str()),
            (None, true) => {
                if let Some(nick) = join.nick {
                    let why = "guests cannot choose a nick; sign in with a token";
                    out.push(reply(client, notice(format!("nick {} refused: {why}", quoted(nick)))));
                }
                None
            }
            (None, false) => join.nick,
        };
        let nick = match asked.map(|n| (n, self.check_nick_free(n, None))) {
            Some((nick, Ok(()))) => Some(nick),
            // The same user on another device: the nick is shared (see `claim_settled`).
            Some((sub, Err(_))) if signed && self.held_by_same_user(sub) => Some(sub),
            Some((sub, Err(why))) if signed => {
                let reason = format!("nick {} unavailable: {why}", quoted(sub));
                return out.push(Effect::Refuse { client, reason });
            }
            Some((nick, Err(why))) => {
                out.push(reply(client, notice(format!("nick {} refused: {why}", quoted(nick)))));
                None
            }
            None => None,
        };
        let pending = PendingJoin {
            asked: nick.is_some(),
            signed,
            room: join.room.map(str::to_string),
            since: join.since.map(str::to_string),
            mode: join.mode.unwrap_or(Mode::Text),
            identity: join.identity.cloned(),
            expired: false,
        };
        self.claim(client, nick.map(Rc::from), signed, Purpose::Join(pending));
    }

    /// Asks the broker for `nick` (None: a guest nick) on `client`'s behalf.
    fn claim(&mut self, client: ClientId, nick: Option<Rc<str>>, signed: bool, purpose: Purpose) {
        self.waits.next_serial += 1;
        let serial = self.waits.next_serial;
        self.requests.push(Request::Claim { client, nick: nick.clone(), signed, serial });
        self.waits.claims.insert(client, Claim { serial, nick, purpose });
    }

    /// `client` waits for a claim that holds its input back (a join or a rename).
    pub(super) fn is_claiming(&self, client: ClientId) -> bool {
        !self.waits.claims.is_empty()
            && self.waits.claims.get(&client).is_some_and(|c| !matches!(c.purpose, Purpose::Keep))
    }

    /// The mode of a connection waiting to join, so what it is told before its welcome arrives.
    pub(super) fn waiting_mode(&self, client: ClientId) -> Option<Mode> {
        match &self.waits.claims.get(&client)?.purpose {
            Purpose::Join(pending) => Some(pending.mode),
            _ => None,
        }
    }

    /// A connection left: its pending claim is dropped and whatever it got is released.
    pub(super) fn forget_claims(&mut self, client: ClientId) {
        if let Some(Claim { nick: Some(nick), .. }) = self.waits.claims.remove(&client) {
            // The claim may have been granted already; the release follows it.
            self.requests.push(Request::Release { client, nick });
        }
    }

    /// The broker answered the claim `serial` of `client`.
    pub(super) fn claimed(
        &mut self,
        client: ClientId,
        nick: Rc<str>,
        held_by: Option<String>,
        serial: u64,
        markers: Vec<(String, String)>,
        out: &mut Vec<Effect>,
    ) {
        match self.waits.claims.get(&client) {
            Some(claim) if claim.serial == serial && claim.nick.as_ref().is_none_or(|n| *n == nick) => {
                // A user's read markers come with its claim: kept before it joins a room.
                if held_by.is_none() {
                    self.restore_markers(&nick, markers);
                }
                let claim = self.waits.claims.remove(&client).expect("just seen");
                self.claim_settled(client, nick, claim.purpose, held_by, out);
            }
            // An answer for a connection that has gone (its release is on its way).
            _ => {}
        }
    }

    /// A claim is answered (`held_by` None: the connection holds `nick` now).
    fn claim_settled(
        &mut self,
        client: ClientId,
        nick: Rc<str>,
        purpose: Purpose,
        held_by: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        match purpose {
            Purpose::Join(pending) => self.join_claim_settled(client, nick, pending, held_by, out),
            Purpose::Rename => {
                let free = self.check_nick_free(&nick, Some(client)).is_ok();
                let refused = error(format!("nick {} refused: already in use", quoted(&nick)));
                match (held_by, free, self.member(client).is_some()) {
                    (_, _, false) => self.requests.push(Request::Release { client, nick }),
                    (None, true, true) => self.rename(client, nick, out),
                    // Granted, but taken here meanwhile (two asked at once while the link failed).
                    (None, false, true) => {
                        self.requests.push(Request::Release { client, nick });
                        out.push(reply(client, refused));
                    }
                    (Some(_), _, true) => out.push(reply(client, refused)),
                }
            }
            Purpose::Keep => self.keep_settled(client, nick, held_by, out),
        }
    }

    /// A member's nick claimed again (or a guest nick to replace it) is answered: taken
    /// elsewhere, the member asks for a guest nick, and again until one is granted.
    fn keep_settled(
        &mut self,
        client: ClientId,
        nick: Rc<str>,
        held_by: Option<String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(current) = self.nick(client).map(Rc::<str>::from) else { return };
        match held_by {
            Some(_) if *current == *nick => {
                let text =
                    format!("your nick {} is taken on another server: you are a guest now", quoted(&nick));
                out.push(reply(client, notice(text)));
                self.claim(client, None, false, Purpose::Keep);
            }
            // The guest nick meant to replace it is taken too.
            Some(_) => self.claim(client, None, false, Purpose::Keep),
            None if *current != *nick && self.check_nick_free(&nick, Some(client)).is_ok() => {
                self.rename(client, nick, out)
            }
            None if *current != *nick => {
                self.requests.push(Request::Release { client, nick });
                self.claim(client, None, false, Purpose::Keep);
            }
            None => {}
        }
    }

    /// A connection's first nick is answered: it enters the chat, or tries a guest nick.
    fn join_claim_settled(
        &mut self,
        client: ClientId,
        nick: Rc<str>,
        pending: PendingJoin,
        held_by: Option<String>,
        out: &mut Vec<Effect>,
    ) {
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
            if pending.expired {
                if let Some(member) = self.member_mut(client) {
                    member.expired = true;
                }
            }
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
            out.push(reply(client, notice(format!("nick {} refused: already in use", quoted(&nick)))));
        }
        self.claim(client, None, false, Purpose::Join(PendingJoin { asked: false, ..pending }));
    }

    /// Seats a client whose nick is settled (and indexed) in its room, then welcomes it; the
    /// join completes (replay, announcement) once the room is followed.
    fn join_as(&mut self, client: ClientId, nick: Rc<str>, signed: bool, join: Join, out: &mut Vec<Effect>) {
        let access = join.identity.map(|identity| Rc::new(Access::of(identity)));
        let wanted_room = self.room_to_enter(client, join.room, access.as_deref(), out);
        let mode = join.mode.unwrap_or(Mode::Text);
        let (key, seat) = self.add_to_room(client, &wanted_room, mode);
        let author = match signed {
            true => 0,
            false => {
                self.last_author = self.last_author.wrapping_add(1).max(1);
                self.last_author
            }
        };
        self.insert_member(
            client,
            Member {
                nick: nick.clone(),
                room: key.clone(),
                seat,
                mode,
                signed,
                access,
                expired: false,
                author,
            },
        );
        self.seat(client, &key, &nick);
        let display = self.display(&key);
        out.push(reply(client, Event::Welcome { nick, room: display }.into()));
        let since = join.since.and_then(super::MessageId::parse);
        self.enter(client, &key, since, out);
    }

    /// The token of a client still waiting to join expired: it joins without the token's
    /// rights, and expired (see [`Chat::expire`]). False if it is not waiting to join.
    pub(super) fn expire_pending_join(&mut self, client: ClientId) -> bool {
        let Some(Claim { purpose: Purpose::Join(pending), .. }) = self.waits.claims.get_mut(&client) else {
            return false;
        };
        pending.identity = None;
        pending.expired = true;
        true
    }

    /// `/nick NAME`: checked here, claimed through the broker, then announced.
    pub(super) fn change_nick(&mut self, client: ClientId, wanted: &str, out: &mut Vec<Effect>) {
        if self.limits.token_nicks {
            let why = "nicks come from sign-in tokens on this server";
            return out.push(reply(client, error(format!("/nick is not available: {why}"))));
        }
        if let Err(why) = self.check_nick_free(wanted, Some(client)) {
            return out.push(reply(client, error(format!("nick {} refused: {why}", quoted(wanted)))));
        }
        self.claim(client, Some(Rc::from(wanted)), false, Purpose::Rename);
    }

    /// Gives a member a nick already checked and claimed, and tells the room.
    fn rename(&mut self, client: ClientId, new: Rc<str>, out: &mut Vec<Effect>) {
        let Some(member) = self.member_mut(client) else { return };
        let old = std::mem::replace(&mut member.nick, new.clone());
        let room = member.room.clone();
        // Released as a leaving member's is: another device of the same user holding it too
        // keeps it (and takes the index entry if this one had it).
        self.unindex_nick(&old, client);
        self.index_nick(&new, client);
        // The same name in another case is the same claim: releasing the old would release
        // the new.
        if fold(&old) != fold(&new) {
            self.requests.push(Request::Release { client, nick: old.clone() });
        }
        self.seat(client, &room, &new);
        let event = Event::NickChanged { room: self.display(&room), old, new };
        self.announce(&room, Some(client), event, out);
    }

    /// The link came back (or this process's presence expired): every member's nick is to be
    /// claimed again and its seat written again. Nothing is asked yet: the members are queued,
    /// in order, and [`Self::reclaim_some`] asks for a share of them at a time, so a process
    /// with 50,000 members does not put 100,000 commands before the broker in one turn (past
    /// the Redis broker's hard bound, the link would drop again, and again on every relink). A
    /// relink while one is under way starts over: everything must be written under the new link.
    pub(super) fn reclaim_everything(&mut self) {
        let members = self.members.iter().enumerate();
        let queued = members.filter_map(|(id, m)| m.as_ref().map(|m| (id, m.nick.clone())));
        self.waits.reclaims.clear();
        self.waits.reclaims.extend(queued);
    }

    /// Whether members are queued to have their nicks and seats written again (see
    /// [`Self::reclaim_some`]).
    pub fn is_reclaiming(&self) -> bool {
        !self.waits.reclaims.is_empty()
    }

    /// Claims again the nicks of the next `share` members queued by a relink, writes their
    /// seats again and their rooms' counts: at most `share` claims, `share` seats and `share`
    /// counts. The event loop calls it once a turn while the broker has room to spare.
    ///
    /// A member who left since it was queued is skipped, and so is one who changed its nick:
    /// its rename claimed and seated the new nick through the new link. Queued entries hold the
    /// member's nick itself (the same `Rc`), so a client id taken by a new connection meanwhile
    /// (slab keys are reused) never matches: that connection claimed its own nick.
    pub fn reclaim_some(&mut self, share: usize) {
        let mut done = 0;
        while done < share {
            let Some((client, nick)) = self.waits.reclaims.pop_front() else { break };
            let Some(member) = self.member(client).filter(|m| Rc::ptr_eq(&m.nick, &nick)) else { continue };
            let (room, signed) = (member.room.clone(), member.signed);
            // A member with a claim of its own on its way (a /nick) keeps it: it is answered,
            // and settles the member's nick, like any claim.
            if !self.waits.claims.contains_key(&client) {
                self.claim(client, Some(nick.clone()), signed, Purpose::Keep);
            }
            self.seat(client, &room, &nick);
            self.count_changed(&room);
            done += 1;
        }
        if self.waits.reclaims.is_empty() {
            // A relink of a crowd leaves a large queue behind.
            self.waits.reclaims.shrink_to(0);
        }
    }
}
