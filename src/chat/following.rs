//! Following rooms through the broker: a room with members here is *followed*: the broker
//! delivers its messages here, and answers with its history. It is [`Sync::Loading`] until that
//! answer comes (a joiner waits for its replay and its own join notice; messages that arrive
//! meanwhile are buffered), then [`Sync::Shared`]. The in-process broker answers at once,
//! saying the history here is the history; the Redis broker answers with Redis's, which the
//! copy here becomes (*borrowed*).
//!
//! A message that does not continue the copy (a gap after a lost link, a new epoch after a
//! Redis restart) reloads it; the room's members are then replayed what they missed, with
//! `recovered` saying whether that is all of it.

use std::collections::HashSet;
use std::rc::Rc;

use super::history::{History, MessageId, Stored};
use super::{Audience, Chat, ClientId, Effect, Event, Journal, Request, RoomMessage, LOBBY};

/// A room's standing with the broker.
#[derive(Debug, Default)]
pub(super) enum Sync {
    /// Not followed: the room has no members here.
    #[default]
    Alone,
    /// Followed; its history is being loaded.
    Loading {
        /// Members waiting for their replay.
        waiting: Vec<Waiter>,
        /// Messages that arrived before the history: (epoch, message).
        buffered: Vec<(Rc<str>, Stored)>,
    },
    /// Followed, with the history up to date.
    Shared,
}

/// A member waiting for a room's history.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) client: ClientId,
    /// The id it resumes from.
    pub(super) since: Option<MessageId>,
    /// It is joining: its join is announced after its replay, and its input waits until then.
    pub(super) joining: bool,
}

impl Chat {
    /// A room's history as this process holds it when following it: its own, for a broker
    /// that numbers on from there.
    fn follow_request(&self, key: &Rc<str>) -> Option<Request> {
        let room = self.rooms.get(key)?;
        Some(Request::Follow {
            room: key.clone(),
            display: room.display.clone(),
            epoch: room.history.epoch().clone(),
            next_seq: room.history.next_seq(),
        })
    }

    /// Follows room `key` (its first member arrived, or the link changed): its history is
    /// loaded, whoever waited for the last load keeps waiting.
    pub(super) fn follow(&mut self, key: &Rc<str>) {
        let Some(request) = self.follow_request(key) else { return };
        let Some(room) = self.rooms.get_mut(key) else { return };
        let waiting = match std::mem::take(&mut room.sync) {
            Sync::Loading { waiting, .. } => waiting,
            Sync::Alone | Sync::Shared => Vec::new(),
        };
        room.sync = Sync::Loading { waiting, buffered: Vec::new() };
        self.requests.push(request);
    }

    /// Follows room `key` again with all its members waiting for a replay (the link changed).
    pub(super) fn refollow(&mut self, key: &Rc<str>) {
        let members = self.all_members(key);
        self.follow(key);
        if let Some(Sync::Loading { waiting, .. }) = self.rooms.get_mut(key).map(|r| &mut r.sync) {
            // A set, not a scan of the list per member: a lobby of 20,000 relinking would be
            // 200 million comparisons, a quarter second of the loop.
            let already: HashSet<ClientId> = waiting.iter().map(|w| w.client).collect();
            let more = members.into_iter().filter(|client| !already.contains(client));
            waiting.extend(more.map(|client| Waiter { client, since: None, joining: false }));
        }
    }

    /// Room `key` lost its last member here: it is unfollowed, and a borrowed history
    /// forgotten (the broker has it). True if the room is gone.
    pub(super) fn unfollow(&mut self, key: &str) -> bool {
        let Some(room) = self.rooms.get_mut(key) else { return false };
        let waiting = match std::mem::take(&mut room.sync) {
            Sync::Loading { waiting, .. } => waiting,
            Sync::Alone | Sync::Shared => Vec::new(),
        };
        let borrowed = std::mem::take(&mut room.borrowed);
        for waiter in waiting.iter().filter(|w| w.joining) {
            self.release(waiter.client);
        }
        let key: Rc<str> = Rc::from(key);
        self.requests.push(Request::Unfollow { room: key.clone() });
        if !borrowed {
            return false;
        }
        if &*key == LOBBY {
            self.replace_history(&key, self.fresh_history());
            return false;
        }
        if let Some(room) = self.rooms.remove(&key) {
            self.history_cost -= room.history.cost();
        }
        true
    }

    /// `client` left room `key` (or the chat) while it was loading: it waits for it no more, and
    /// whoever takes its slot next is not replayed in its place.
    pub(super) fn forget_waiter(&mut self, client: ClientId, key: &str) {
        let Some(Sync::Loading { waiting, .. }) = self.rooms.get_mut(key).map(|r| &mut r.sync) else {
            return;
        };
        let joining = waiting.iter().any(|w| w.client == client && w.joining);
        waiting.retain(|w| w.client != client);
        if joining {
            self.release(client);
        }
    }

    /// The members joining room `key` while its history loads (none once it is here).
    pub(super) fn joining(&self, key: &str) -> Vec<ClientId> {
        match self.rooms.get(key).map(|r| &r.sync) {
            Some(Sync::Loading { waiting, .. }) => {
                waiting.iter().filter(|w| w.joining).map(|w| w.client).collect()
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn is_followed(&self, key: &str) -> bool {
        self.rooms.get(key).is_some_and(|r| !matches!(r.sync, Sync::Alone))
    }

    /// A followed room's history arrived (`messages` None: the copy here is the history): the
    /// copy becomes it, plus what was buffered since, and whoever waited is replayed.
    pub(super) fn loaded(
        &mut self,
        key: &str,
        display: Rc<str>,
        epoch: Rc<str>,
        top: u64,
        messages: Option<Vec<Stored>>,
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
        room.display = display;
        if let Some(messages) = messages {
            room.borrowed = true;
            let mut history = History::new(epoch.clone(), top.saturating_add(1), limit);
            for message in messages.into_iter().filter(|m| m.seq <= top) {
                history.restore(message);
            }
            for (message_epoch, message) in buffered {
                if message_epoch == epoch && message.seq == history.next_seq() {
                    history.restore(message);
                }
            }
            self.replace_history(key, history);
            self.fit_history_budget(key);
        }
        let key: Rc<str> = Rc::from(key);
        for waiter in waiting {
            if waiter.joining {
                self.release(waiter.client);
            }
            if self.member(waiter.client).is_some_and(|m| *m.room == *key) {
                if waiter.joining {
                    self.enter(waiter.client, &key, waiter.since, out);
                } else {
                    self.replay(waiter.client, &key, waiter.since.as_ref(), out);
                }
            }
        }
    }

    /// A numbered room message from the broker: kept and delivered, if it continues the copy
    /// here; otherwise the copy is reloaded.
    pub(super) fn room_message(
        &mut self,
        key: &Rc<str>,
        epoch: Rc<str>,
        message: Stored,
        origin: Option<ClientId>,
        out: &mut Vec<Effect>,
    ) {
        let limit = self.limits.history;
        let Some(room) = self.rooms.get_mut(key) else { return };
        let (same_epoch, next) = (*epoch == **room.history.epoch(), room.history.next_seq());
        match &mut room.sync {
            Sync::Alone => {}
            Sync::Loading { buffered, .. } => {
                // The history keeps at most `--history`: so does the buffer.
                if buffered.len() >= limit.max(1) {
                    buffered.remove(0);
                }
                buffered.push((epoch, message));
            }
            // Already here (the history was loaded after this was published).
            Sync::Shared if same_epoch && message.seq < next => {}
            Sync::Shared if same_epoch && message.seq == next => {
                // Said here: the members it names elsewhere are told (see `mentions.rs`).
                let mentions = (origin.is_some() && !message.mentions.is_empty()).then(|| message.clone());
                self.keep_and_send(key, Rc::new(message), out);
                if let Some(message) = mentions {
                    self.tell_mentioned(key, &epoch, &message, out);
                }
            }
            Sync::Shared => {
                // A gap, or a new epoch: reload, and replay every member what it missed.
                let since = room.history.resume_point();
                let display = room.display.clone();
                let waiting = self
                    .all_members(key)
                    .into_iter()
                    .map(|client| Waiter { client, since: Some(since.clone()), joining: false })
                    .collect();
                if let Some(room) = self.rooms.get_mut(key) {
                    room.sync = Sync::Loading { waiting, buffered: vec![(epoch, message)] };
                }
                self.requests.push(Request::Reload { room: key.clone(), display });
            }
        }
    }

    /// Keeps a numbered message in room `key`'s history (journaled for a store) and sends it to
    /// the room.
    fn keep_and_send(&mut self, key: &Rc<str>, message: Rc<Stored>, out: &mut Vec<Effect>) {
        let Some(room) = self.rooms.get_mut(key) else { return };
        let before = room.history.cost();
        room.history.keep(message.clone());
        self.history_cost = self.history_cost + room.history.cost() - before;
        self.fit_history_budget(key);
        let Some(room) = self.rooms.get(key) else { return };
        if let Some(journal) = &mut self.journal {
            journal.push(Journal::Message {
                room: key.clone(),
                display: room.display.clone(),
                epoch: room.history.epoch().clone(),
                message: message.clone(),
            });
        }
        let event = Event::Message(RoomMessage {
            room: room.display.clone(),
            epoch: room.history.epoch().clone(),
            message,
            replay: false,
            older: false,
        });
        out.push(Effect::Send { to: Audience::Room(key.clone()), body: event.into() });
    }
}
