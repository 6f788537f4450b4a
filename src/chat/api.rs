//! The chat's side of the HTTP API (`crate::api`): what an application may ask of the chat
//! ([`ApiCall`]) and what it is answered ([`ApiAnswer`]), in the chat's vocabulary, with no
//! HTTP in sight.
//!
//! An API call is asked like a member's `/rooms` or `/who`: through the broker, so that in a
//! cluster it answers for every process. Its asker is [`Asker::Api`] with the ticket the caller
//! chose, and its answer comes back as an [`Effect::Answer`] for that ticket (within the call
//! with one process, when Redis answers with several). Unlike a member, an application sees
//! every room, private ones included: holding an API key is the operator's trust.

use std::rc::Rc;

use super::names::fold;
use super::{first_sorted, Asker, Chat, Effect, Request, LOBBY};

/// Names one API call among those in flight (the caller's choice, unique while it waits).
pub type Ticket = u64;

/// What an application asks of the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCall {
    /// The rooms with members, anywhere, with their member counts.
    Rooms,
    /// Who sits in a room, anywhere.
    Presence { room: String },
}

/// What the chat answers an [`ApiCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAnswer {
    /// (display name, members), the first [`MAX_LISTED`](super::MAX_LISTED) by name; `total`
    /// counts every room, `members` every member of them all.
    Rooms { rooms: Vec<(Rc<str>, usize)>, total: usize, members: usize },
    /// The room's nicks, the first [`MAX_LISTED`](super::MAX_LISTED) by name; `total` counts
    /// every member.
    Presence { room: Rc<str>, members: Vec<Rc<str>>, total: usize },
    /// The room asked about does not exist (no members, no history, anywhere).
    NoSuchRoom,
}

impl Chat {
    /// An application's call, answered (now or once the broker has answered) with an
    /// [`Effect::Answer`] for `ticket`.
    pub fn api(&mut self, ticket: Ticket, call: ApiCall) {
        let asker = Asker::Api(ticket);
        let request = match call {
            ApiCall::Rooms => Request::Rooms { asker },
            ApiCall::Presence { room } => Request::Who { asker, room: Rc::from(fold(&room)) },
        };
        self.requests.push(request);
    }

    /// The broker's answer to [`ApiCall::Rooms`]: every room with members, here or elsewhere.
    pub(super) fn api_rooms(
        &self,
        ticket: Ticket,
        elsewhere: Vec<(Rc<str>, Rc<str>, usize)>,
        out: &mut Vec<Effect>,
    ) {
        let mut rooms: Vec<(Rc<str>, usize)> = self.rooms_everywhere(elsewhere).into_values().collect();
        let (total, members) = (rooms.len(), rooms.iter().map(|(_, count)| count).sum());
        let rooms = first_sorted(&mut rooms, |(name, _)| name).to_vec();
        out.push(Effect::Answer { ticket, answer: ApiAnswer::Rooms { rooms, total, members } });
    }

    /// The broker's answer to [`ApiCall::Presence`]: the room's members here and elsewhere; a
    /// room is there if it is known here (members or history) or has members elsewhere.
    pub(super) fn api_presence(
        &self,
        ticket: Ticket,
        room: &str,
        mut nicks: Vec<Rc<str>>,
        out: &mut Vec<Effect>,
    ) {
        let answer = if nicks.is_empty() && !self.rooms.contains_key(room) && room != LOBBY {
            ApiAnswer::NoSuchRoom
        } else {
            let here = self.all_members(room);
            nicks.extend(here.iter().filter_map(|&c| self.member(c).map(|m| m.nick.clone())));
            let total = nicks.len();
            let members = first_sorted(&mut nicks, |n| n).to_vec();
            ApiAnswer::Presence { room: self.display(room), members, total }
        };
        out.push(Effect::Answer { ticket, answer });
    }
}
