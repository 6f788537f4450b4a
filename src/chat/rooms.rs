//! Rooms: who sits where, each room's history within the memory budget, joins and replays.
//!
//! A room with members here is followed through the broker (`following.rs`). An empty room
//! keeps its own history (up to `--history-rooms` of them, within `--history-memory`), but not
//! one borrowed from the broker: the broker has that.

use std::rc::Rc;

use super::following::{Sync, Waiter};
use super::history::{self, History, MessageId, Stored};
use super::names::{fold, validate_room};
use super::{
    error, is_private, may_enter, notice, reply, Access, Body, Chat, ClientId, Effect, Event, Journal, Mode,
    Request, RoomMessage, LOBBY, NO_SUCH_ROOM, REPLAY_FRAMING,
};
use crate::logline::quoted;

/// One room: its members here, its history, and its standing with the broker.
pub(super) struct Room {
    /// The name as first spelled by whoever created the room.
    pub(super) display: Rc<str>,
    /// Members by mode ([`Mode`] as index): a broadcast is rendered once per mode that has
    /// members, and each list is walked without looking at the members themselves. Client ids
    /// are slab keys, far below 2^32: 4 bytes a member.
    pub(super) members: [Vec<u32>; 2],
    pub(super) history: History,
    /// Whether the room is followed through the broker, and how far its history is loaded.
    pub(super) sync: Sync,
    /// The history came from the broker (another process numbers it too): it is not this
    /// process's to keep once the room is unfollowed, nor to number on after the link is lost.
    pub(super) borrowed: bool,
    /// Applications' messages on their way to the room (`POST /api/publish`): the room is
    /// followed until they are numbered, members or not.
    pub(super) publishing: u32,
    /// When the room last became idle (a stamp from [`Chat::next_stamp`]), while it is.
    pub(super) emptied: Option<u64>,
}

impl Room {
    pub(super) fn len(&self) -> usize {
        self.members[0].len() + self.members[1].len()
    }

    /// No members here and no application's message on its way: the room is unfollowed, and
    /// kept only for its history.
    pub(super) fn is_idle(&self) -> bool {
        self.len() == 0 && self.publishing == 0
    }
}

impl Chat {
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
            sync: Sync::Alone,
            borrowed: false,
            publishing: 0,
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

    /// The room a connecting client enters: the one it asked for if it may, else the lobby
    /// (and it is told why).
    pub(super) fn room_to_enter(
        &self,
        client: ClientId,
        asked: Option<&str>,
        access: Option<&Access>,
        out: &mut Vec<Effect>,
    ) -> String {
        match asked.map(|room| (room, validate_room(room))) {
            Some((room, Ok(()))) if !may_enter(access, &fold(room)) => {
                out.push(reply(client, error(NO_SUCH_ROOM)));
                LOBBY.to_string()
            }
            Some((room, Ok(()))) => room.to_string(),
            Some((room, Err(why))) => {
                out.push(reply(client, error(format!("room name {} refused: {}", quoted(room), why.0))));
                LOBBY.to_string()
            }
            None => LOBBY.to_string(),
        }
    }

    /// `/join ROOM`: leaves the current room (which hears it) for another.
    pub(super) fn join(&mut self, client: ClientId, wanted: &str, out: &mut Vec<Effect>) {
        if let Err(why) = validate_room(wanted) {
            return out
                .push(reply(client, error(format!("room name {} refused: {}", quoted(wanted), why.0))));
        }
        let Some(member) = self.member(client) else { return };
        if !may_enter(member.access.as_deref(), &fold(wanted)) {
            return out.push(reply(client, error(NO_SUCH_ROOM)));
        }
        if *member.room == *fold(wanted) {
            let text = format!("you are already in {}", self.display(&member.room));
            return out.push(reply(client, notice(text)));
        }
        let (nick, old_room, old_seat, mode) =
            (member.nick.clone(), member.room.clone(), member.seat, member.mode);
        let old_display = self.display(&old_room);
        self.forget_waiter(client, &old_room);
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
        // Where a member went is not said when it is a private room.
        let moved_to = (!is_private(&new_room)).then(|| self.display(&new_room));
        let event = Event::Left { room: old_display, nick, reason: None, moved_to };
        self.announce(&old_room, None, event, out);
        self.enter(client, &new_room, None, out);
    }

    /// Completes `client`'s entry into room `key`: its replay and its join announced, now if the
    /// room's history is here, else once it is loaded (its input waits meanwhile).
    pub(super) fn enter(
        &mut self,
        client: ClientId,
        key: &Rc<str>,
        since: Option<MessageId>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(Sync::Loading { waiting, .. }) = self.rooms.get_mut(key).map(|r| &mut r.sync) {
            // Left and came back while the room loads: one replay, from the latest ask.
            waiting.retain(|w| w.client != client);
            waiting.push(Waiter { client, since, joining: true });
            return self.hold(client);
        }
        self.replay(client, key, since.as_ref(), out);
        let Some(nick) = self.member(client).map(|m| m.nick.clone()) else { return };
        let event = Event::Joined { room: self.display(key), nick };
        self.announce(key, Some(client), event, out);
    }

    /// Sends `client` the history of room `key`: what came after `since` if that can be told
    /// exactly, else everything kept; then the `replayed` summary.
    pub(super) fn replay(
        &self,
        client: ClientId,
        key: &str,
        since: Option<&MessageId>,
        out: &mut Vec<Effect>,
    ) {
        let Some(room) = self.rooms.get(key) else { return };
        let mut replay = room.history.after(since);
        if !replay.recovered {
            // A joiner gets the room as it stands (edited messages with their new text, deleted
            // ones gone); one that resumes gets the edits and deletes since, to apply itself.
            replay.messages.retain(|m| !m.kind.is_change());
        }
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
        if !replay.messages.is_empty() {
            out.push(reply(client, Event::ReplayStart { room: room.display.clone() }.into()));
        }
        for message in &replay.messages {
            let message = RoomMessage {
                room: room.display.clone(),
                epoch: room.history.epoch().clone(),
                message: Rc::clone(message),
                replay: true,
                older: false,
            };
            out.push(reply(client, Event::Message(message).into()));
        }
        let replayed = Event::Replayed {
            room: room.display.clone(),
            recovered: replay.recovered,
            count: replay.messages.len(),
            last: Some(room.history.resume_point().to_string()),
            read: self.read_marker(client, key),
        };
        out.push(reply(client, replayed.into()));
    }

    /// Tells a room about a member's join, leave or nick change, through the broker (so every
    /// process's members hear it in the room's one order). A room over the announcement limit is
    /// not told; `actor` (the member it is about, when still in the room) still is.
    pub(super) fn announce(
        &mut self,
        room: &Rc<str>,
        actor: Option<ClientId>,
        event: Event,
        out: &mut Vec<Effect>,
    ) {
        if self.rooms.get(room).map_or(0, Room::len) <= self.limits.announce_limit {
            self.requests.push(Request::Announce { room: room.clone(), event, origin: actor });
        } else if let Some(actor) = actor {
            out.push(reply(actor, Body::Event(event)));
        }
    }

    /// Brings all histories back under `--history-memory` after room `key` grew: empty rooms
    /// go first (emptied longest ago first), then `key`'s own oldest messages (never its
    /// newest, which is being sent).
    pub(super) fn fit_history_budget(&mut self, key: &str) {
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

    /// A history of its own for a room: a new epoch, from sequence 1.
    pub(super) fn fresh_history(&self) -> History {
        History::new(history::new_epoch(), 1, self.limits.history)
    }

    /// Gives room `key` another history of its own, keeping what all histories cost up to date.
    pub(super) fn replace_history(&mut self, key: &str, history: History) {
        if let Some(room) = self.rooms.get_mut(key) {
            let old = std::mem::replace(&mut room.history, history);
            self.history_cost = self.history_cost + room.history.cost() - old.cost();
        }
    }

    /// Whether room `key`'s history is borrowed from the broker.
    pub(super) fn is_borrowed(&self, key: &str) -> bool {
        self.rooms.get(key).is_some_and(|r| r.borrowed)
    }

    /// Makes room `key`'s history this process's own again, under a new epoch (the link is
    /// lost: an id numbered here must never equal one numbered elsewhere).
    pub(super) fn disown_history(&mut self, key: &str) {
        self.replace_history(key, self.fresh_history());
        if let Some(room) = self.rooms.get_mut(key) {
            room.borrowed = false;
        }
    }

    /// Seats `client` in room `name` (created if new, with a fresh history); returns the
    /// room's key and the seat. A room's first member here follows it.
    pub(super) fn add_to_room(&mut self, client: ClientId, name: &str, mode: Mode) -> (Rc<str>, u32) {
        let key = self.occupy(name);
        let room = self.rooms.get_mut(&key).expect("room just occupied");
        let members = &mut room.members[mode as usize];
        members.push(client as u32);
        let seat = (members.len() - 1) as u32;
        self.count_changed(&key);
        (key, seat)
    }

    /// Room `name` (created if new, with a fresh history), about to get a member or an
    /// application's message: no longer counted as empty, and followed. Returns its key.
    pub(super) fn occupy(&mut self, name: &str) -> Rc<str> {
        let folded = fold(name);
        let key = match self.rooms.get_key_value(folded.as_str()) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Rc<str> = Rc::from(folded);
                let room = Room {
                    display: Rc::from(name),
                    members: Default::default(),
                    history: self.fresh_history(),
                    sync: Sync::Alone,
                    borrowed: false,
                    publishing: 0,
                    emptied: Some(self.next_stamp()),
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
        if !self.is_followed(&key) {
            self.follow(&key);
        }
        key
    }

    /// Frees a seat: the list's last member moves into it, so leaving costs the same in a room
    /// of ten or of ten thousand. A room left empty is unfollowed, and kept for its history.
    pub(super) fn remove_from_room(&mut self, key: &str, mode: Mode, seat: u32) {
        let Some(key) = self.rooms.get_key_value(key).map(|(key, _)| key.clone()) else { return };
        self.count_changed(&key);
        let Some(room) = self.rooms.get_mut(&key) else { return };
        let members = &mut room.members[mode as usize];
        let seat = seat as usize;
        if seat < members.len() {
            members.swap_remove(seat);
            if let Some(&moved) = members.get(seat) {
                if let Some(Some(member)) = self.members.get_mut(moved as ClientId) {
                    member.seat = seat as u32;
                }
            }
        }
        self.settle_if_idle(&key);
    }

    /// Room `key` became idle (its last member here left, or the last application's message
    /// on its way was numbered): it is unfollowed, and kept for its history.
    pub(super) fn settle_if_idle(&mut self, key: &Rc<str>) {
        if !self.rooms.get(key).is_some_and(|r| r.is_idle() && r.emptied.is_none()) {
            return;
        }
        let stamp = self.next_stamp();
        let Some(room) = self.rooms.get_mut(key) else { return };
        room.emptied = Some(stamp);
        let key = key.clone();
        if self.unfollow(&key) || &*key == LOBBY {
            return;
        }
        self.keep_empty_room(key, stamp);
    }

    /// An empty room is kept for its history (so its members can come back to it), unless it
    /// never had a message or no history is kept.
    fn keep_empty_room(&mut self, key: Rc<str>, stamp: u64) {
        let Some(room) = self.rooms.get(&key) else { return };
        if room.history.last_id().is_none() || self.limits.history == 0 {
            let had_messages = room.history.last_id().is_some();
            if let Some(room) = self.rooms.remove(&key) {
                self.history_cost -= room.history.cost();
            }
            if let (true, Some(journal)) = (had_messages, &mut self.journal) {
                journal.push(Journal::RoomDropped { room: key });
            }
            return;
        }
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
    pub(super) fn evict_oldest_empty_room(&mut self) -> bool {
        while let Some((stamp, key)) = self.emptied.pop_front() {
            if !self.rooms.get(&key).is_some_and(|r| r.emptied == Some(stamp) && r.is_idle()) {
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

    /// The connection sits in the room under this nick (for other processes' `/who`).
    pub(super) fn seat(&mut self, client: ClientId, room: &Rc<str>, nick: &Rc<str>) {
        self.requests.push(Request::Seat { client, room: room.clone(), nick: nick.clone() });
    }

    pub(super) fn unseat(&mut self, client: ClientId, room: &Rc<str>) {
        self.requests.push(Request::Unseat { client, room: room.clone() });
    }

    /// Room `key`'s member count here changed: the broker hears the count once per turn.
    pub(super) fn count_changed(&mut self, key: &Rc<str>) {
        if !self.waits.dirty_counts.contains(key) {
            self.waits.dirty_counts.push(key.clone());
        }
    }

    pub(super) fn has_dirty_counts(&self) -> bool {
        !self.waits.dirty_counts.is_empty()
    }

    /// The turn's count changes, as requests.
    pub(super) fn flush_counts(&mut self) {
        for room in std::mem::take(&mut self.waits.dirty_counts) {
            let (display, count) = match self.rooms.get(&room) {
                Some(r) => (r.display.clone(), r.len()),
                None => (room.clone(), 0),
            };
            self.requests.push(Request::Count { room, display, count });
        }
    }
}
