//! The chat's side of the HTTP API (`crate::api`): what an application may ask of the chat
//! ([`ApiCall`]) and what it is answered ([`ApiAnswer`]), in the chat's vocabulary, with no
//! HTTP in sight. What a call carries is already checked against the chat's rules (a nick, a
//! room name, one line of text) by whoever built it.
//!
//! A call is carried out like the member's command it mirrors, through the broker, so that in
//! a cluster it acts and answers for every process: `publish` is a room message (numbered,
//! kept and delivered by the broker), `send`, `kick` and `ban` reach a nick wherever it is
//! held, `rooms`, `presence` and `history` ask what the other processes know. Its asker is
//! [`Asker::Api`] with the ticket the caller chose, and its answer comes back as an
//! [`Effect::Answer`] for that ticket (within the call with one process, when Redis answers
//! with several). Unlike a member, an application sees every room, private ones included, and
//! moderates without a token: holding an API key is the operator's trust.

use std::rc::Rc;
use std::time::Duration;

use super::following::Sync;
use super::history::{History, Kind, MessageId, Stored};
use super::names::fold;
use super::{first_sorted, Asker, Ban, Chat, Effect, Kept, Origin, Request, LOBBY};

/// Names one API call among those in flight (the caller's choice, unique while it waits).
pub type Ticket = u64;

/// Who an application's moderation is said to come from (`kicked by server: spam`).
pub const API_MODERATOR: &str = "server";

/// Most messages one `history` call returns.
pub const MAX_HISTORY: usize = 1000;

/// What an application asks of the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCall {
    /// The rooms with members, anywhere, with their member counts.
    Rooms,
    /// Who sits in a room, anywhere.
    Presence { room: String },
    /// A message in a room, from `from` (a name, not a member's nick).
    Publish { room: String, text: String, from: String },
    /// A private message to every connection holding `nick`, anywhere.
    Send { nick: String, text: String, from: String },
    /// Closes every connection holding `nick`, anywhere (`/kick`).
    Kick { nick: String, reason: Option<String> },
    /// Kicks `nick` and refuses it for `duration` (`/ban`).
    Ban { nick: String, duration: Duration, reason: Option<String> },
    /// Lifts `nick`'s bans (`/unban`).
    Unban { nick: String },
    /// The bans in force (`/bans`).
    Bans,
    /// A room's messages after `since` (or all it keeps), the newest `limit` of them.
    History { room: String, since: Option<MessageId>, limit: usize },
}

impl ApiCall {
    /// Whether the call changes the chat (rather than asking about it): refused while this
    /// process is cut off from the others, since what it did would reach this process alone
    /// and be undone once the link is back.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Self::Publish { .. }
                | Self::Send { .. }
                | Self::Kick { .. }
                | Self::Ban { .. }
                | Self::Unban { .. }
        )
    }
}

/// What an application is told when it would change the chat while this process is cut off
/// from the other processes.
pub const CLUSTER_DOWN: &str =
    "this server has lost its link to the other processes: retry later, or through another process's API";

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
    /// The published message's id.
    Published { id: MessageId },
    /// A `send` or a `kick` reached this many connections (at least one).
    Reached { reached: usize },
    /// A ban is in force everywhere; `kicked` connections were closed by it.
    Banned { nick: String, until_ms: u64, kicked: usize },
    /// `unban` lifted this many bans (at least one).
    Unbanned { count: usize },
    /// The bans in force, soonest to end first.
    Bans(Vec<Ban>),
    /// A room's messages, oldest first; `recovered` if they are everything after `since`.
    History { room: Rc<str>, epoch: Rc<str>, recovered: bool, messages: Vec<Rc<Stored>> },
    /// What the call names is not there (no such nick, no ban for it): the reason, one line.
    NotFound(String),
    /// Not answered now (the cluster is out of reach): the reason, one line.
    Unavailable(String),
    /// The cluster answered with something unreadable (a corrupt entry): the reason.
    Unreadable(String),
}

impl Chat {
    /// An application's call, answered (now or once the broker has answered) with an
    /// [`Effect::Answer`] for `ticket`.
    pub fn api(&mut self, ticket: Ticket, call: ApiCall, now_ms: u64, out: &mut Vec<Effect>) {
        let asker = Asker::Api(ticket);
        let answer = |answer| Effect::Answer { ticket, answer };
        match call {
            ApiCall::Rooms => self.requests.push(Request::Rooms { asker }),
            ApiCall::Presence { room } => {
                self.requests.push(Request::Who { asker, room: Rc::from(fold(&room)) })
            }
            ApiCall::Publish { room, text, from } => self.publish(ticket, &room, &text, &from, now_ms),
            ApiCall::Send { nick, text, from } => {
                self.private_message(asker, Rc::from(from), &nick, text, now_ms, true, out)
            }
            ApiCall::Kick { nick, reason } => {
                self.sanction(asker, API_MODERATOR, &nick, None, reason.as_deref(), now_ms, out)
            }
            ApiCall::Ban { nick, duration, reason } => {
                self.sanction(asker, API_MODERATOR, &nick, Some(duration), reason.as_deref(), now_ms, out)
            }
            ApiCall::Unban { nick } => match self.lift_bans(&nick) {
                0 => out.push(answer(ApiAnswer::NotFound(format!("no ban for {nick}")))),
                count => out.push(answer(ApiAnswer::Unbanned { count })),
            },
            ApiCall::Bans => {
                let mut bans: Vec<Ban> = self.bans_in_force(now_ms).into_iter().map(|(_, ban)| ban).collect();
                bans.sort_by_key(|ban| ban.until_ms);
                out.push(answer(ApiAnswer::Bans(bans)));
            }
            ApiCall::History { room, since, limit } => {
                let key: Rc<str> = Rc::from(fold(&room));
                let here = self.rooms.get(&key).is_some_and(|r| matches!(r.sync, Sync::Shared));
                if here || !self.is_linked() {
                    out.push(answer(self.history_here(&key, since.as_ref(), limit)));
                } else {
                    // Without `since`, the newest `limit` are all it can want; with it, what
                    // follows `since`, which may be anything the room keeps.
                    let wanted = if since.is_some() { usize::MAX } else { limit };
                    self.waits.api_history.insert(ticket, (since, limit));
                    self.requests.push(Request::History { asker, room: key, wanted });
                }
            }
        }
    }

    /// `publish`: a room message from an application, said like a member's. The room is
    /// created if new and followed until the message is numbered, so that it is kept and
    /// delivered like any other, members here or not.
    fn publish(&mut self, ticket: Ticket, room: &str, text: &str, from: &str, now_ms: u64) {
        let key = self.occupy(room);
        if let Some(room) = self.rooms.get_mut(&key) {
            room.publishing += 1;
        }
        let message = Stored {
            author: 0,
            edited: false,
            seq: 0,
            ts: now_ms,
            from: Rc::from(from),
            text: text.into(),
            kind: Kind::Api,
            mentions: Box::new([]),
        };
        let display = self.display(&key);
        self.requests.push(Request::Say { room: key, display, message, origin: Origin::Api(ticket) });
    }

    /// The broker numbered an application's message: its id is the answer, and the room,
    /// if nobody else keeps it followed, is left as any room its last member left.
    pub(super) fn published(
        &mut self,
        ticket: Ticket,
        key: &Rc<str>,
        epoch: Rc<str>,
        seq: u64,
        out: &mut Vec<Effect>,
    ) {
        if let Some(room) = self.rooms.get_mut(key) {
            room.publishing = room.publishing.saturating_sub(1);
        }
        self.settle_if_idle(key);
        let id = MessageId { epoch: epoch.to_string(), seq };
        out.push(Effect::Answer { ticket, answer: ApiAnswer::Published { id } });
    }

    /// A room's history as this process keeps it (the whole history with one process, or a
    /// followed room's mirror).
    fn history_here(&self, key: &str, since: Option<&MessageId>, limit: usize) -> ApiAnswer {
        let Some(room) = self.rooms.get(key) else { return ApiAnswer::NoSuchRoom };
        history_answer(room.display.clone(), &room.history, since, limit)
    }

    /// The broker's answer to a `history` call for a room not followed here.
    pub(super) fn api_history(&mut self, ticket: Ticket, key: &str, kept: Kept, out: &mut Vec<Effect>) {
        let (since, limit) = self.waits.api_history.remove(&ticket).unwrap_or((None, MAX_HISTORY));
        let answer = match kept {
            Kept::Here => self.history_here(key, since.as_ref(), limit),
            Kept::Nowhere => ApiAnswer::NoSuchRoom,
            Kept::Unreadable => {
                ApiAnswer::Unreadable("the cluster's history of this room could not be read".into())
            }
            Kept::There { display, epoch, top, messages } => {
                let mut history = History::new(epoch, top.saturating_add(1), messages.len());
                messages.into_iter().for_each(|m| history.restore(m));
                history_answer(display, &history, since.as_ref(), limit)
            }
        };
        out.push(Effect::Answer { ticket, answer });
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

/// The messages of `history` after `since` (the resume rules of a reconnecting client), the
/// newest `limit` of them; fewer than all of them is not a recovery.
fn history_answer(room: Rc<str>, history: &History, since: Option<&MessageId>, limit: usize) -> ApiAnswer {
    let mut replay = history.after(since);
    if !replay.recovered {
        // The state of the room, as a joiner's replay: edits and deletes are in it already.
        replay.messages.retain(|m| !m.kind.is_change());
    }
    let cut = replay.messages.len().saturating_sub(limit);
    let messages: Vec<Rc<Stored>> = replay.messages[cut..].iter().map(|m| Rc::clone(m)).collect();
    ApiAnswer::History {
        room,
        epoch: history.epoch().clone(),
        recovered: replay.recovered && cut == 0,
        messages,
    }
}
