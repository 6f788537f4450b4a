//! What members signal to one another besides messages: `/typing`. A signal is a room event
//! that is not kept: it goes through the broker like a join (so it reaches the room's members
//! on every process, in the room's order), is never replayed, and costs nothing to a member
//! who never sends one (what is remembered is only who signalled in the last seconds). The
//! same per-member rate holds `/delete` to one a second (see `edits.rs`).

use std::collections::HashMap;
use std::rc::Rc;

use super::{Audience, Body, Chat, ClientId, Effect, Event, Request};

/// Least time between two `/typing` of one member, in milliseconds; more are dropped silently.
pub const TYPING_EVERY_MS: u64 = 2000;
/// Least time between two `/delete` of one member, in milliseconds: with `--data-dir` each
/// compacts the store's file while the loop waits (see `store.rs`), so no member may ask it
/// more often.
pub const DELETE_EVERY_MS: u64 = 1000;

/// When each member last did something held to a rate (only those of the last seconds, once
/// pruned).
#[derive(Default)]
struct Rate {
    last: HashMap<ClientId, u64>,
}

impl Rate {
    /// Whether `client` may act at `now_ms`, at most once per `every_ms`; if so, it is
    /// remembered.
    fn allows(&mut self, client: ClientId, now_ms: u64, every_ms: u64) -> bool {
        if self.last.get(&client).is_some_and(|&last| now_ms.saturating_sub(last) < every_ms) {
            return false;
        }
        // Bounded by the members who acted in the last seconds: older entries are pruned
        // once there are many.
        if self.last.len() >= 1024 {
            self.last.retain(|_, last| now_ms.saturating_sub(*last) < every_ms);
            self.last.shrink_to(2048);
        }
        self.last.insert(client, now_ms);
        true
    }
}

/// Who signalled lately, to hold each to its rate.
#[derive(Default)]
pub(super) struct Signals {
    typing: Rate,
    deleting: Rate,
}

impl Signals {
    /// Whether `client` may delete a message at `now_ms` (see [`DELETE_EVERY_MS`]).
    pub(super) fn delete_allowed(&mut self, client: ClientId, now_ms: u64) -> bool {
        self.deleting.allows(client, now_ms, DELETE_EVERY_MS)
    }

    /// `client` is gone.
    pub(super) fn forget(&mut self, client: ClientId) {
        self.typing.last.remove(&client);
        self.deleting.last.remove(&client);
    }
}

impl Chat {
    /// `/typing`: the room's other members are told (JSON clients show it; text clients are
    /// told nothing), at most once per [`TYPING_EVERY_MS`]; a room over the announcement
    /// limit is not told, as it is not told of joins.
    pub(super) fn typing(&mut self, client: ClientId, now_ms: u64) {
        let Some(member) = self.member(client) else { return };
        let (room, nick) = (member.room.clone(), member.nick.clone());
        if self.rooms.get(&room).map_or(0, |r| r.len()) > self.limits.announce_limit {
            return;
        }
        if !self.signals.typing.allows(client, now_ms, TYPING_EVERY_MS) {
            return;
        }
        let event = Event::Typing { room: self.display(&room), nick };
        self.requests.push(Request::Announce { room, event, origin: Some(client) });
    }

    /// A signal back from the broker: to the room, but not to the member who sent it.
    pub(super) fn signal_arrived(
        &self,
        room: Rc<str>,
        event: Event,
        origin: Option<ClientId>,
        out: &mut Vec<Effect>,
    ) {
        let body = Body::Event(event);
        let to = match origin {
            Some(client) => Audience::RoomExcept(room, client),
            None => Audience::Room(room),
        };
        out.push(Effect::Send { to, body });
    }
}
