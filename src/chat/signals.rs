//! What members signal to one another besides messages: `/typing`. A signal is a room event
//! that is not kept: it goes through the broker like a join (so it reaches the room's members
//! on every process, in the room's order), is never replayed, and costs nothing to a member
//! who never sends one (what is remembered is only who signalled in the last seconds).

use std::collections::HashMap;
use std::rc::Rc;

use super::{Audience, Body, Chat, ClientId, Effect, Event, Request};

/// Least time between two `/typing` of one member, in milliseconds; more are dropped silently.
pub const TYPING_EVERY_MS: u64 = 2000;

/// Who signalled lately, to hold each to its rate.
#[derive(Default)]
pub(super) struct Signals {
    /// When each member last had a `/typing` passed on (only those of the last seconds, once
    /// pruned).
    typing: HashMap<ClientId, u64>,
}

impl Signals {
    /// Whether `client` may signal typing at `now_ms`; if so, it is remembered.
    fn typing_allowed(&mut self, client: ClientId, now_ms: u64) -> bool {
        if self.typing.get(&client).is_some_and(|&last| now_ms.saturating_sub(last) < TYPING_EVERY_MS) {
            return false;
        }
        // Bounded by the members who typed in the last two seconds: older entries are pruned
        // once there are many.
        if self.typing.len() >= 1024 {
            self.typing.retain(|_, last| now_ms.saturating_sub(*last) < TYPING_EVERY_MS);
            self.typing.shrink_to(2048);
        }
        self.typing.insert(client, now_ms);
        true
    }

    /// `client` is gone.
    pub(super) fn forget(&mut self, client: ClientId) {
        self.typing.remove(&client);
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
        if !self.signals.typing_allowed(client, now_ms) {
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
