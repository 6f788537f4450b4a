//! The in-process broker: one process is the whole chat, so every request is answered at
//! once, from what this process knows. It numbers each followed room's messages from where the
//! chat's own history stands (that history is the only copy), hands out guest numbers, and
//! answers every presence question with "nobody on another process".
//!
//! The Redis broker runs one of these while Redis is away, so the chat carries on alone
//! exactly as a single process does.

use std::collections::HashMap;
use std::rc::Rc;

use log::debug;

use super::{Broker, Kept, Notice, Origin, Request};

/// Where a followed room's numbering stands.
struct Numbering {
    epoch: Rc<str>,
    next_seq: u64,
}

/// Answers every request within the call.
#[derive(Default)]
pub struct LocalBroker {
    rooms: HashMap<Rc<str>, Numbering>,
    next_guest: u64,
    notices: Vec<Notice>,
}

impl LocalBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every room's numbering (the Redis broker's link came up: Redis numbers now).
    pub fn clear(&mut self) {
        self.rooms.clear();
    }

    /// Whether room `key` is followed here (its messages can be numbered).
    pub fn follows(&self, key: &str) -> bool {
        self.rooms.contains_key(key)
    }
}

impl Broker for LocalBroker {
    fn request(&mut self, request: Request) {
        let notice = match request {
            Request::Follow { room, display, epoch, next_seq } => {
                self.rooms.insert(room.clone(), Numbering { epoch: epoch.clone(), next_seq });
                let top = next_seq.saturating_sub(1);
                Notice::Loaded { room, display, epoch, top, messages: None }
            }
            Request::Unfollow { room } => {
                self.rooms.remove(&room);
                return;
            }
            Request::Say { room, mut message, origin, .. } => {
                let Some(numbering) = self.rooms.get_mut(&room) else {
                    return debug!("a message for room {room:?}, which nobody here follows, was dropped");
                };
                message.seq = numbering.next_seq;
                numbering.next_seq += 1;
                let (epoch, seq) = (numbering.epoch.clone(), message.seq);
                let said_by = match origin {
                    Origin::Member(client) => Some(client),
                    Origin::Api(_) => None,
                };
                let message =
                    Notice::Message { room: room.clone(), epoch: epoch.clone(), message, origin: said_by };
                self.notices.push(message);
                match origin {
                    Origin::Api(ticket) => Notice::Published { ticket, room, epoch, seq },
                    Origin::Member(_) => return,
                }
            }
            // The history copy here is the only one.
            Request::History { asker, room, .. } => Notice::History { asker, room, kept: Kept::Here },
            Request::Announce { room, event, origin } => Notice::Event { room, event, origin },
            Request::Binary { room, from, data, .. } => {
                self.notices.push(Notice::Event { room: room.clone(), event: from, origin: None });
                Notice::Binary { room, data }
            }
            Request::Claim { client, nick, serial, .. } => {
                let nick = nick.unwrap_or_else(|| {
                    self.next_guest += 1;
                    Rc::from(format!("guest-{}", self.next_guest))
                });
                // The markers of a user are this process's own already (and its store's).
                Notice::Claimed { client, nick, held_by: None, serial, markers: Vec::new() }
            }
            Request::Who { asker, room } => Notice::Who { asker, room, nicks: Vec::new() },
            Request::Holders { asker, .. } => Notice::Holders { asker, held: Vec::new() },
            Request::Rooms { asker } => Notice::Rooms { asker, rooms: Vec::new() },
            Request::Direct { asker, nick, direct } => {
                Notice::Reached { asker, nick, reached: 0, held_as: None, direct }
            }
            // In force everywhere: here.
            Request::Ban { key, ban } => Notice::Banned { key, ban },
            // The history copy here is the only one, and nobody else needs to know.
            Request::Reload { .. }
            | Request::Release { .. }
            | Request::Seat { .. }
            | Request::Unseat { .. }
            | Request::Count { .. }
            | Request::MarkRead { .. }
            | Request::Unban { .. } => return,
        };
        self.notices.push(notice);
    }

    fn take_notices(&mut self, into: &mut Vec<Notice>) {
        into.append(&mut self.notices);
    }

    fn release_memory(&mut self) {
        self.rooms.shrink_to_fit();
        self.notices = Vec::new();
    }
}
