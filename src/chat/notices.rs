//! What the broker tells the chat ([`Notice`]s), and which clients wait on it.
//!
//! A client *waits* while its nick is being claimed, while it joins a room whose history is
//! being loaded, and while a question it asked (`/who`, `/rooms`, `/msg`, `/kick`, `/ban`) is
//! being answered: the event loop does not read its input meanwhile, so what it sends next is
//! handled after, and answered after, what it sent before. With one process the broker answers
//! within the call and nobody ever waits.
//!
//! When the link to the other processes is lost ([`Notice::Down`]), every followed room carries
//! on with this process's members alone, under a new epoch (an id numbered here can never equal
//! one numbered elsewhere), and its members are told; when the link is back ([`Notice::Up`]),
//! every room with members is followed again and its members replayed what they missed.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::broker::{Asker, Notice};
use super::nicks::Claim;
use super::{notice, reply, Audience, Body, Chat, ClientId, Effect, Mode, Stored};

/// What members are told when this process loses the other processes, and when it has them
/// back.
pub const CLUSTER_LOST: &str =
    "this server lost its link to the others: until it is back, messages reach only the members on this server";
pub const CLUSTER_BACK: &str = "this server is linked to the others again";

/// Who waits on the broker, for what.
#[derive(Default)]
pub(super) struct Waits {
    /// Nick claims awaiting their answers.
    pub(super) claims: HashMap<ClientId, Claim>,
    /// Members whose nicks and seats a relink is still to write again, in order, each with the
    /// nick it had then (see `Chat::reclaim_some`).
    pub(super) reclaims: VecDeque<(ClientId, Rc<str>)>,
    pub(super) next_serial: u64,
    /// Clients waiting for answers or loads, with how many they wait for.
    holds: HashMap<ClientId, u32>,
    /// What a `/msg`, `/kick` or `/ban` did here, kept until the other processes answer.
    pub(super) reached_here: HashMap<super::moderation::Reacher, super::moderation::ReachedHere>,
    /// Messages waiting for the broker to say which of their `@` names are held.
    pub(super) mentioning: HashMap<ClientId, super::mentions::Pending>,
    /// API `history` calls waiting for the broker: what they asked for (since, limit).
    pub(super) api_history: HashMap<super::api::Ticket, (Option<super::MessageId>, usize)>,
    /// Rooms whose member count here changed this turn.
    pub(super) dirty_counts: Vec<Rc<str>>,
    /// Guests to close once their address's ban is back from the broker: (ban, client, reason).
    pub(super) closing_after_ban: Vec<(super::BanKey, ClientId, String)>,
    /// Linked to other processes now.
    linked: bool,
    /// The link was lost once: members are told when it is back.
    lost: bool,
}

impl Waits {
    /// Drops the capacity a crowd left behind (see [`Chat::release_memory`]).
    pub(super) fn release_memory(&mut self) {
        self.claims.shrink_to_fit();
        self.reclaims.shrink_to_fit();
        self.holds.shrink_to_fit();
        self.reached_here.shrink_to_fit();
        self.api_history.shrink_to_fit();
        self.mentioning.shrink_to_fit();
        self.dirty_counts.shrink_to_fit();
        self.closing_after_ban.shrink_to_fit();
    }
}

impl Chat {
    /// `client` waits on the broker: its input must not be read until it no longer does.
    pub fn is_waiting(&self, client: ClientId) -> bool {
        // Asked for every message read: with nobody waiting, two branches.
        self.is_claiming(client) || (!self.waits.holds.is_empty() && self.waits.holds.contains_key(&client))
    }

    /// Whether this process is linked to others now (never, with one process).
    pub(super) fn is_linked(&self) -> bool {
        self.waits.linked
    }

    /// `client` waits for one more answer.
    pub(super) fn hold(&mut self, client: ClientId) {
        *self.waits.holds.entry(client).or_default() += 1;
    }

    /// One answer `client` waited for came.
    pub(super) fn release(&mut self, client: ClientId) {
        if let Some(count) = self.waits.holds.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                self.waits.holds.remove(&client);
            }
        }
    }

    /// `client` is gone: it waits for nothing.
    pub(super) fn forget_waits(&mut self, client: ClientId) {
        self.signals.forget(client);
        self.waits.mentioning.remove(&client);
        self.forget_claims(client);
        self.waits.holds.remove(&client);
        self.waits.reached_here.remove(&super::moderation::Reacher::Member(client));
    }

    /// Something the broker says.
    pub fn on_notice(&mut self, notice: Notice, out: &mut Vec<Effect>) {
        match notice {
            Notice::Up => self.linked_up(out),
            Notice::Down => self.linked_down(out),
            Notice::Loaded { room, display, epoch, top, messages } => {
                self.loaded(&room, display, epoch, top, messages, out)
            }
            Notice::Message { room, epoch, message, origin } => {
                self.room_message(&room, epoch, message, origin, out)
            }
            Notice::Holders { asker, held } => self.holders_answered(asker, held),
            // Nobody asked these (only mentions are sent on for nobody, and they ask nothing).
            Notice::Who { asker: Asker::Nobody, .. }
            | Notice::Rooms { asker: Asker::Nobody, .. }
            | Notice::History { asker: Asker::Nobody, .. } => {}
            Notice::Event { room, event: event @ super::Event::Typing { .. }, origin }
                if self.is_followed(&room) =>
            {
                self.signal_arrived(room, event, origin, out)
            }
            Notice::Event { room, event, .. } if self.is_followed(&room) => {
                self.to_room(room, Body::Event(event), out)
            }
            Notice::Binary { room, data } if self.is_followed(&room) => {
                self.to_room(room, Body::Binary(data), out)
            }
            // A room nobody here follows any more.
            Notice::Event { .. } | Notice::Binary { .. } => {}
            Notice::Claimed { client, nick, held_by, serial, markers } => {
                self.claimed(client, nick, held_by, serial, markers, out)
            }
            Notice::Who { asker: Asker::Member(asker), room, nicks } => {
                self.who_answered(asker, &room, nicks, out)
            }
            Notice::Who { asker: Asker::Api(ticket), room, nicks } => {
                self.api_presence(ticket, &room, nicks, out)
            }
            Notice::Rooms { asker: Asker::Member(asker), rooms } => self.rooms_answered(asker, rooms, out),
            Notice::Rooms { asker: Asker::Api(ticket), rooms } => self.api_rooms(ticket, rooms, out),
            Notice::Reached { asker, nick, reached, held_as, direct } => {
                self.reached(asker, &nick, reached, held_as, direct, out)
            }
            Notice::Published { ticket, room, epoch, seq } => self.published(ticket, &room, epoch, seq, out),
            Notice::History { asker: Asker::Api(ticket), room, kept } => {
                self.api_history(ticket, &room, kept, out)
            }
            // Members are replayed from the copy here: no member asks this.
            Notice::History { asker: Asker::Member(_), .. } => {}
            Notice::Direct { client, nick, direct } => self.direct_arrived(client, &nick, direct, out),
            Notice::Reclaim => self.reclaim_everything(),
            Notice::Banned { key, ban } => self.banned(key, ban, out),
            Notice::Unbanned { key } => self.bans.remove(&key),
            Notice::Unsent { room, message, origin } => self.unsent(room, message, origin),
        }
    }

    /// Linked to the other processes: every room with members is followed again (its history
    /// is theirs now), and its members replayed it once loaded; every nick is claimed again, a
    /// share a turn.
    fn linked_up(&mut self, out: &mut Vec<Effect>) {
        self.waits.linked = true;
        let after_outage = std::mem::take(&mut self.waits.lost);
        self.reclaim_everything();
        let keys: Vec<Rc<str>> =
            self.rooms.iter().filter(|(_, r)| !r.is_idle()).map(|(k, _)| k.clone()).collect();
        for key in keys {
            if after_outage {
                self.tell_room(&key, CLUSTER_BACK, out);
            }
            self.refollow(&key);
        }
    }

    /// The other processes are out of reach: every room with members goes on here alone, under
    /// a new epoch if its history was theirs, and its members are told.
    fn linked_down(&mut self, out: &mut Vec<Effect>) {
        let was_linked = std::mem::replace(&mut self.waits.linked, false);
        // Written again from the start once linked again: the new link knows none of it.
        self.waits.reclaims.clear();
        // Bans on their way will not come back: those waiting for theirs are closed now.
        self.close_banned(None, out);
        self.waits.lost |= was_linked;
        let keys: Vec<Rc<str>> = self.rooms.keys().cloned().collect();
        for key in keys {
            if self.is_borrowed(&key) || self.is_followed(&key) {
                if self.is_borrowed(&key) {
                    self.disown_history(&key);
                }
                if was_linked {
                    self.tell_room(&key, CLUSTER_LOST, out);
                }
            }
            if self.rooms.get(&key).is_some_and(|r| !r.is_idle()) {
                self.follow(&key);
            }
        }
    }

    /// Sends a room event to the room's members here, but not to those still joining it: they
    /// hear the room from their replay on.
    fn to_room(&self, room: Rc<str>, body: Body, out: &mut Vec<Effect>) {
        let joining = self.joining(&room);
        if joining.is_empty() {
            return out.push(Effect::Send { to: Audience::Room(room), body });
        }
        for client in self.all_members(&room).into_iter().filter(|c| !joining.contains(c)) {
            out.push(reply(client, body.clone()));
        }
    }

    /// Tells every member of room `key` here the same notice, each in its own mode.
    fn tell_room(&self, key: &str, text: &str, out: &mut Vec<Effect>) {
        for mode in Mode::ALL {
            for &client in self.room_members(key, mode) {
                out.push(reply(client as ClientId, notice(text)));
            }
        }
    }

    /// A room message the broker lost on its way: said again, here.
    fn unsent(&mut self, room: Rc<str>, message: Stored, origin: super::Origin) {
        let display = self.display(&room);
        self.requests.push(super::Request::Say { room, display, message, origin });
    }
}
