//! Read markers: `/read ID` marks the client's room read up to message ID, and the room's
//! `replayed` says where the marker stands (`"read"`), so a client can draw "new messages"
//! from there.
//!
//! A signed-in user's markers are the user's (by its nick, a token's `sub`): its other
//! connections are told (`read`), on this process at once and on others through the broker;
//! they outlive its connections (kept here for the users seen lately, in a store with
//! `--data-dir`, in Redis in a cluster) and are handed back when the user connects again
//! (read from the store by the event loop before the chat hears of the connection; in a
//! cluster with the nick's claim). A guest's last as long as its connection.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::history::MessageId;
use super::names::fold;
use super::{error, reply, Asker, Chat, ClientId, Direct, Effect, Event, Journal, Request};

/// Users whose markers are kept here after their last connection here left; past it, those
/// who left longest ago are forgotten (the store or Redis still has them).
const USERS_KEPT: usize = 4096;
/// Rooms one owner has markers in, at most; past it, one of the others is forgotten.
const ROOMS_PER_OWNER: usize = 256;

/// One owner's markers: room key to the id read up to.
type Marks = HashMap<Rc<str>, MessageId>;

/// Every marker held here.
#[derive(Default)]
pub(super) struct Markers {
    /// Signed-in users', by the folded nick.
    users: HashMap<Rc<str>, Marks>,
    /// Users with no connection here any more, oldest first (stale entries are skipped).
    left: VecDeque<Rc<str>>,
    /// Guests', by connection.
    guests: HashMap<ClientId, Marks>,
}

fn mark(marks: &mut Marks, room: Rc<str>, id: MessageId) {
    if marks.len() >= ROOMS_PER_OWNER && !marks.contains_key(&room) {
        if let Some(other) = marks.keys().next().cloned() {
            marks.remove(&other);
        }
    }
    marks.insert(room, id);
}

impl Chat {
    /// The user key of `client`'s markers, if it signed in.
    fn marker_user(&self, client: ClientId) -> Option<Rc<str>> {
        self.member(client).filter(|m| m.signed).map(|m| Rc::from(fold(&m.nick)))
    }

    /// `/read ID`: `client`'s room is read up to ID (a message the room gave out).
    pub(super) fn mark_read(&mut self, client: ClientId, id: &str, out: &mut Vec<Effect>) {
        let Some(member) = self.member(client) else { return };
        let Some(room) = self.rooms.get(&member.room) else { return };
        let id = MessageId::parse(id)
            .filter(|id| *id.epoch == **room.history.epoch() && id.seq < room.history.next_seq());
        let Some(id) = id else {
            return out
                .push(reply(client, error(format!("usage: /read ID (a message id of {})", room.display))));
        };
        let (key, display) = (member.room.clone(), room.display.clone());
        let Some(user) = self.marker_user(client) else {
            let marks = self.markers.guests.entry(client).or_default();
            return mark(marks, key, id);
        };
        mark(self.markers.users.entry(user.clone()).or_default(), key.clone(), id.clone());
        if let Some(journal) = &mut self.journal {
            journal.push(Journal::Read { user: user.clone(), room: key.clone(), id: id.to_string() });
        }
        self.requests.push(Request::MarkRead { user: user.clone(), room: key.clone(), id: id.to_string() });
        // The user's other connections, here and elsewhere.
        let direct = Direct::Read { room_key: key, room: display, id: id.to_string() };
        if let Some(owner) = self.find_nick(&user) {
            for holder in self.holders(owner).into_iter().filter(|&c| c != client) {
                self.read_arrived(holder, &direct, out);
            }
        }
        self.requests.push(Request::Direct { asker: Asker::Nobody, nick: user, direct });
    }

    /// Another connection of `client`'s user marked a room read (here or on another process).
    pub(super) fn read_arrived(&mut self, client: ClientId, direct: &Direct, out: &mut Vec<Effect>) {
        let Direct::Read { room_key, room, id } = direct else { return };
        let (Some(user), Some(parsed)) = (self.marker_user(client), MessageId::parse(id)) else { return };
        mark(self.markers.users.entry(user).or_default(), room_key.clone(), parsed);
        out.push(reply(client, Event::Read { room: room.clone(), id: id.clone() }.into()));
    }

    /// Where `client`'s marker in room `key` stands, if it has one.
    pub(super) fn read_marker(&self, client: ClientId, key: &str) -> Option<String> {
        let marks = match self.marker_user(client) {
            Some(user) => self.markers.users.get(&user),
            None => self.markers.guests.get(&client),
        };
        marks.and_then(|marks| marks.get(key)).map(MessageId::to_string)
    }

    /// Whether this process holds `user`'s markers (it connected here lately).
    pub fn knows_markers(&self, user: &str) -> bool {
        self.markers.users.contains_key(fold(user).as_str())
    }

    /// A user's markers from a store or Redis, as (room key, id): kept here (before its
    /// connection joins, so its first replay says where it read up to).
    pub fn restore_markers(&mut self, user: &str, markers: Vec<(String, String)>) {
        if markers.is_empty() {
            return;
        }
        let marks = self.markers.users.entry(Rc::from(fold(user))).or_default();
        for (room, id) in markers {
            if let Some(id) = MessageId::parse(&id) {
                mark(marks, Rc::from(room), id);
            }
        }
    }

    /// `client` left: a guest's markers go; a user's stay while the user is seen lately.
    pub(super) fn forget_markers(&mut self, client: ClientId) {
        self.markers.guests.remove(&client);
        let Some(user) = self.marker_user(client) else { return };
        self.markers.left.push_back(user);
        while self.markers.left.len() > USERS_KEPT {
            let Some(oldest) = self.markers.left.pop_front() else { break };
            if self.find_nick(&oldest).is_none() {
                self.markers.users.remove(&oldest);
            }
        }
    }
}
