//! The chat's side of cluster mode (see `crate::cluster` for the why): what changes while
//! Redis is reachable, as plain logic driven by [`Notice`]s and answered with [`Request`]s.
//!
//! - A room with local members is *followed*: subscribed to, with its history mirrored from
//!   Redis. It is [`Sync::Loading`] until the mirror is loaded (joiners wait for their replay,
//!   messages that arrive meanwhile are buffered), then [`Sync::Shared`].
//! - Room messages, announcements and binary messages are published, not delivered: they
//!   reach this process's members when they come back from the subscription, in the order
//!   every other process sees.
//! - A message that does not continue the mirror (a gap after a lost link, a new epoch after a
//!   Redis restart) reloads it; the room's members are then replayed what they missed, with
//!   `recovered` saying whether that is all of it.
//! - Redis lost: every room goes back to being this process's alone, under a fresh local epoch
//!   (an id given out meanwhile cannot collide with one from Redis), and its members are told.

use std::rc::Rc;

use bytes::Bytes;

use super::{notice, Audience, Body, Chat, ClientId, Effect, Event, History, MessageId, RoomMessage, Stored};
use crate::cluster::{room, Notice, Request};

/// A room's standing in the cluster.
#[derive(Debug, Default)]
pub(super) enum Sync {
    /// Not shared: the cluster is down (or not configured), or the room has no local members.
    #[default]
    Alone,
    /// Followed; its history is being loaded.
    Loading {
        /// Members waiting for their replay, with the id each resumes from.
        waiting: Vec<(ClientId, Option<MessageId>)>,
        /// Messages that arrived before the history: (epoch, message).
        buffered: Vec<(Rc<str>, Stored)>,
    },
    /// Followed, with the mirror up to date.
    Shared,
}

/// What members are told when this process loses Redis, and when it has it back.
pub const CLUSTER_LOST: &str =
    "this server lost its link to the others: until it is back, messages reach only the members on this server";
pub const CLUSTER_BACK: &str = "this server is linked to the others again";

impl Chat {
    /// What the chat asks of the cluster since the last call, in order.
    pub fn take_requests(&mut self, into: &mut Vec<Request>) {
        self.flush_counts();
        into.append(&mut self.requests);
    }

    /// Whether the chat has asked the cluster for something not yet taken.
    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty() || self.has_dirty_counts()
    }

    /// Whether rooms are shared through Redis now.
    pub fn cluster_up(&self) -> bool {
        self.cluster_up
    }

    /// Something happened in the cluster.
    pub fn cluster(&mut self, notice: Notice, out: &mut Vec<Effect>) {
        let Some(notice) = self.presence_notice(notice, out) else { return };
        match notice {
            Notice::Up => self.cluster_back(out),
            Notice::Down => self.cluster_lost(out),
            Notice::Loaded { room, display, epoch, top, messages } => {
                self.loaded(&room, display, epoch, top, messages, out)
            }
            Notice::Message { room, display: _, epoch, message } => {
                self.shared_message(&room, epoch, message, out)
            }
            Notice::Unsent { room, body } => self.unsent(&room, &body, out),
            Notice::Event { room, event } if self.is_followed(&room) => {
                out.push(Effect::Send { to: Audience::Room(room), body: Body::Event(event) })
            }
            Notice::Binary { room, data } if self.is_followed(&room) => {
                out.push(Effect::Send { to: Audience::Room(room), body: Body::Binary(data) })
            }
            // Unfollowed rooms' events; presence, answered by `presence_notice`.
            _ => {}
        }
    }

    fn is_followed(&self, key: &str) -> bool {
        self.rooms.get(key).is_some_and(|r| !matches!(r.sync, Sync::Alone))
    }

    /// A room just got its first local member: follow it while the cluster is up.
    pub(super) fn follow(&mut self, key: &Rc<str>) {
        if !self.cluster_up {
            return;
        }
        let Some(room) = self.rooms.get_mut(key) else { return };
        room.sync = Sync::Loading { waiting: Vec::new(), buffered: Vec::new() };
        self.requests.push(Request::Follow { room: key.clone(), display: room.display.clone() });
    }

    /// A followed room lost its last local member: unfollow it, and forget its mirror (Redis
    /// has the history). True if the room was followed.
    pub(super) fn unfollow(&mut self, key: &str) -> bool {
        let Some(room) = self.rooms.get_mut(key) else { return false };
        if matches!(room.sync, Sync::Alone) {
            return false;
        }
        room.sync = Sync::Alone;
        let key: Rc<str> = Rc::from(key);
        self.requests.push(Request::Unfollow { room: key.clone() });
        if &*key == super::LOBBY {
            self.replace_history(&key, self.fresh_history());
        } else if let Some(room) = self.rooms.remove(&key) {
            self.history_cost -= room.history.cost();
        }
        true
    }

    /// Holds `client`'s replay of room `key` until its history is loaded; true if it must wait.
    pub(super) fn wait_for_history(
        &mut self,
        client: ClientId,
        key: &str,
        since: Option<&MessageId>,
    ) -> bool {
        match self.rooms.get_mut(key).map(|r| &mut r.sync) {
            Some(Sync::Loading { waiting, .. }) => {
                // Left and came back while the room loads: one replay, from the latest ask.
                waiting.retain(|(waiter, _)| *waiter != client);
                waiting.push((client, since.cloned()));
                true
            }
            _ => false,
        }
    }

    pub(super) fn publish_message(
        &mut self,
        key: &Rc<str>,
        nick: &str,
        text: &str,
        action: bool,
        now_ms: u64,
    ) {
        let display = self.display(key);
        let body = room::say_body(nick, text, now_ms, action);
        self.requests.push(Request::Say { room: key.clone(), display, body });
    }

    pub(super) fn publish_event(&mut self, key: &Rc<str>, event: &Event) {
        if let Some(event) = event.json() {
            self.requests.push(Request::Announce { room: key.clone(), event });
        }
    }

    pub(super) fn publish_binary(&mut self, key: &Rc<str>, from: &Event, data: Bytes) {
        self.publish_event(key, from);
        self.requests.push(Request::Binary { room: key.clone(), data });
    }

    /// Redis is reachable: every room with local members is followed, and its members are
    /// replayed its history once loaded (after an outage, what the others said meanwhile).
    fn cluster_back(&mut self, out: &mut Vec<Effect>) {
        self.cluster_up = true;
        let after_outage = std::mem::take(&mut self.cluster_lost);
        self.reclaim_everything(!after_outage);
        let keys: Vec<Rc<str>> =
            self.rooms.iter().filter(|(_, r)| r.len() > 0).map(|(k, _)| k.clone()).collect();
        for key in keys {
            let members = self.all_members(&key);
            if after_outage {
                for &client in &members {
                    out.push(Effect::Send { to: Audience::Client(client), body: notice(CLUSTER_BACK) });
                }
            }
            self.follow(&key);
            if let Some(Sync::Loading { waiting, .. }) = self.rooms.get_mut(&key).map(|r| &mut r.sync) {
                waiting.extend(members.into_iter().map(|client| (client, None)));
            }
        }
    }

    /// Redis is gone: every room is this process's alone, under a new local epoch.
    fn cluster_lost(&mut self, out: &mut Vec<Effect>) {
        self.cluster_up = false;
        self.cluster_lost = true;
        self.settle_claims_locally(out);
        let keys: Vec<Rc<str>> = self.rooms.keys().cloned().collect();
        for key in keys {
            let members = self.all_members(&key);
            let Some(room) = self.rooms.get_mut(&key) else { continue };
            let waiting = match std::mem::take(&mut room.sync) {
                // Never shared (an empty room kept from a time alone): its history is its own.
                Sync::Alone => continue,
                Sync::Loading { waiting, .. } => waiting,
                Sync::Shared => Vec::new(),
            };
            self.replace_history(&key, self.fresh_history());
            for client in members {
                out.push(Effect::Send { to: Audience::Client(client), body: notice(CLUSTER_LOST) });
            }
            // Whoever was waiting for a replay gets the (empty) local one now.
            for (client, since) in waiting {
                self.replay(client, &key, since.as_ref(), out);
            }
        }
    }

    /// A message the link lost on its way to Redis: said here, on this process alone.
    fn unsent(&mut self, key: &Rc<str>, body: &str, out: &mut Vec<Effect>) {
        let Some(message) = room::stored(0, body.as_bytes()) else { return };
        if self.cluster_up || !self.rooms.contains_key(key) {
            return;
        }
        self.keep_and_send(key, message.from, &message.text, message.action, message.ts, out);
    }

    /// A followed room's history arrived: the mirror becomes it (plus what was buffered
    /// since), and whoever waited is replayed.
    fn loaded(
        &mut self,
        key: &str,
        display: Rc<str>,
        epoch: Rc<str>,
        top: u64,
        messages: Vec<Stored>,
        out: &mut Vec<Effect>,
    ) {
        let limit = self.limits.history;
        let Some(room) = self.rooms.get_mut(key) else { return };
        let (waiting, buffered) = match std::mem::take(&mut room.sync) {
            Sync::Loading { waiting, buffered } => (waiting, buffered),
            // Not waiting for this load (unfollowed meanwhile, or a stale answer): as it was.
            other => {
                room.sync = other;
                return;
            }
        };
        room.sync = Sync::Shared;
        let mut history = History::new(epoch.clone(), top.saturating_add(1), limit);
        for message in messages.into_iter().filter(|m| m.seq <= top) {
            history.restore(message);
        }
        for (message_epoch, message) in buffered {
            if message_epoch == epoch && message.seq == history.next_seq() {
                history.restore(message);
            }
        }
        room.display = display;
        self.replace_history(key, history);
        self.fit_history_budget(key);
        for (client, since) in waiting {
            if self.member(client).is_some_and(|m| *m.room == *key) {
                self.replay(client, key, since.as_ref(), out);
            }
        }
    }

    /// A numbered room message from Redis: kept in the mirror and delivered, if it continues
    /// the mirror; otherwise the mirror is reloaded.
    fn shared_message(&mut self, key: &Rc<str>, epoch: Rc<str>, message: Stored, out: &mut Vec<Effect>) {
        let limit = self.limits.history;
        let Some(room) = self.rooms.get_mut(key) else { return };
        match &mut room.sync {
            Sync::Alone => {}
            Sync::Loading { buffered, .. } => {
                // The mirror keeps at most `--history`: so does the buffer.
                if buffered.len() >= limit.max(1) {
                    buffered.remove(0);
                }
                buffered.push((epoch, message));
            }
            Sync::Shared if *epoch == **room.history.epoch() && message.seq < room.history.next_seq() => {
                // Already in the mirror (it was loaded after this was published).
            }
            Sync::Shared if *epoch == **room.history.epoch() && message.seq == room.history.next_seq() => {
                let before = room.history.cost();
                let message = Rc::new(message);
                room.history.keep(message.clone());
                self.history_cost = self.history_cost + room.history.cost() - before;
                let room_display = room.display.clone();
                self.fit_history_budget(key);
                let event = Event::Message(RoomMessage { room: room_display, epoch, message, replay: false });
                out.push(Effect::Send { to: Audience::Room(key.clone()), body: event.into() });
            }
            Sync::Shared => {
                // A gap, or a new epoch: reload, and replay every member what it missed.
                let since = room.history.resume_point();
                let display = room.display.clone();
                let members = self.all_members(key);
                let waiting = members.into_iter().map(|client| (client, Some(since.clone()))).collect();
                if let Some(room) = self.rooms.get_mut(key) {
                    room.sync = Sync::Loading { waiting, buffered: vec![(epoch, message)] };
                }
                self.requests.push(Request::Reload { room: key.clone(), display });
            }
        }
    }
}
