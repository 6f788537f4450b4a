//! The chat's side of the broker seam: what the chat asks of whatever carries rooms, nicks and
//! presence between processes ([`Request`]), and what it is told back ([`Notice`]).
//!
//! The chat asks the same way whether it runs in one process or in many: it never asks which
//! broker it has. The in-process broker (`crate::broker::LocalBroker`) answers within the call;
//! the Redis broker (`crate::cluster`) answers when Redis does, and runs as the in-process one
//! while Redis is away. Either way the contract is the same:
//!
//! - every request that asks for an answer gets exactly one ([`Request::Follow`] a
//!   [`Notice::Loaded`], [`Request::Claim`] a [`Notice::Claimed`], [`Request::Who`],
//!   [`Request::Rooms`], [`Request::Direct`] and [`Request::History`] theirs, an
//!   application's [`Request::Say`] a [`Notice::Published`]), even when the link to Redis
//!   fails;
//! - a room's messages and events come back ([`Notice::Message`], [`Notice::Event`],
//!   [`Notice::Binary`]) to every process following the room, the sender's own included, in
//!   one order for all;
//! - presence answers ([`Notice::Who`], [`Notice::Rooms`], [`Notice::Reached`]) speak of the
//!   *other* processes only: the chat adds its own members, which it knows best.
//!
//! These types are the chat's vocabulary: the brokers depend on them, never the reverse.

use std::rc::Rc;

use bytes::Bytes;

use super::{Ban, BanKey, ClientId, Event, Stored};

/// What the chat asks of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Room `room` (by key) has members here now: deliver its messages here, and answer with
    /// its history ([`Notice::Loaded`]). `epoch` and `next_seq` are what this process's copy
    /// of the history holds, for a broker that numbers messages itself.
    Follow {
        room: Rc<str>,
        display: Rc<str>,
        epoch: Rc<str>,
        next_seq: u64,
    },
    /// Load the history again (the copy here missed messages).
    Reload {
        room: Rc<str>,
        display: Rc<str>,
    },
    /// The room has no members here left.
    Unfollow {
        room: Rc<str>,
    },
    /// A room message from `origin`, to be numbered, kept and delivered to the room
    /// ([`Notice::Message`]); an application's is also answered with its id
    /// ([`Notice::Published`]). Its `seq` is 0 until the broker numbers it. The room is
    /// followed here (the chat follows a room an application publishes in until this is
    /// answered).
    Say {
        room: Rc<str>,
        display: Rc<str>,
        message: Stored,
        origin: Origin,
    },
    /// A room event that is not kept (a join, a leave, a nick change); `origin` is the member
    /// it is about, when it is in the room and must see it before anything it sends next.
    Announce {
        room: Rc<str>,
        event: Event,
        origin: Option<ClientId>,
    },
    /// A binary message from `origin` for the room, after the line naming its sender.
    Binary {
        room: Rc<str>,
        from: Event,
        data: Bytes,
        origin: ClientId,
    },
    /// Reserve a nick for a connection, everywhere ([`Notice::Claimed`]); `nick` None asks
    /// for a guest nick. `serial` tells this claim's answer from an older one for the slot.
    Claim {
        client: ClientId,
        nick: Option<Rc<str>>,
        signed: bool,
        serial: u64,
    },
    /// The connection no longer holds the nick.
    Release {
        client: ClientId,
        nick: Rc<str>,
    },
    /// The connection sits in the room under this nick (for other processes' `/who`).
    Seat {
        client: ClientId,
        room: Rc<str>,
        nick: Rc<str>,
    },
    /// The connection left the room.
    Unseat {
        client: ClientId,
        room: Rc<str>,
    },
    /// This process has this many members in the room (for other processes' `/rooms`).
    Count {
        room: Rc<str>,
        display: Rc<str>,
        count: usize,
    },
    /// Who sits in the room on other processes ([`Notice::Who`]).
    Who {
        asker: Asker,
        room: Rc<str>,
    },
    /// Which rooms have members on other processes ([`Notice::Rooms`]).
    Rooms {
        asker: Asker,
    },
    /// Something for every connection on another process holding `nick`
    /// ([`Notice::Reached`]).
    Direct {
        asker: Asker,
        nick: Rc<str>,
        direct: Direct,
    },
    /// Which of these nicks are held on other processes ([`Notice::Holders`]): the names a
    /// message mentions.
    Holders {
        asker: Asker,
        nicks: Vec<Rc<str>>,
    },
    /// A room's history as the cluster keeps it ([`Notice::History`]), for a room not
    /// followed here: its newest `wanted` messages at most.
    History {
        asker: Asker,
        room: Rc<str>,
        wanted: usize,
    },
    /// A signed-in user read `room` up to `id`: kept for the user wherever it connects next.
    MarkRead {
        user: Rc<str>,
        room: Rc<str>,
        id: String,
    },
    /// A ban (or its end), for every process.
    Ban {
        key: BanKey,
        ban: Ban,
    },
    Unban {
        key: BanKey,
    },
}

/// Who said a room message: a member, or an application (`POST /api/publish`), whose call
/// waits for the message's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Member(ClientId),
    Api(super::api::Ticket),
}

/// Who asked a question: a member (a command), or an HTTP API request (`crate::api`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asker {
    Member(MemberAsker),
    /// Answered with an [`Effect::Answer`](super::Effect::Answer) for this ticket.
    Api(super::api::Ticket),
    /// Nobody waits: the answer is dropped (a mention sent on, whoever it reached).
    Nobody,
}

/// A member who asked: its answer goes to that connection only while it still has that nick,
/// not to whoever has its slot by the time the answer comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAsker {
    pub client: ClientId,
    pub nick: Rc<str>,
}

/// What reaches a nick on whichever process holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    /// A private message; `api`: from an application, `from` being the name it gave.
    Private { from: Rc<str>, text: String, ts: u64, api: bool },
    /// A moderator's `/kick`: close with 4000 and this reason.
    Kick(String),
    /// A moderator's `/ban`: a guest's process bans its address, then the connection is
    /// closed like a kick with `closing`.
    Ban { closing: String, ban: Ban },
    /// The user marked room `room_key` (shown as `room`) read up to `id`: its other
    /// connections are told.
    Read { room_key: Rc<str>, room: Rc<str>, id: String },
    /// A message in room `room_key` (shown as `room`) named the nick: its holders in another
    /// room are told.
    Mention { room_key: Rc<str>, room: Rc<str>, id: String, from: Rc<str>, text: String },
}

/// What the broker tells the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Rooms are shared with other processes (Redis is reachable, again).
    Up,
    /// Rooms are this process's alone until [`Notice::Up`] (Redis is unreachable).
    Down,
    /// A followed room's history: `messages` None means the copy here is the history (the
    /// in-process broker), else the messages up to `top`, oldest first.
    Loaded {
        room: Rc<str>,
        display: Rc<str>,
        epoch: Rc<str>,
        top: u64,
        messages: Option<Vec<Stored>>,
    },
    /// A numbered room message; `origin` is the connection of this process that said it, if
    /// any.
    Message {
        room: Rc<str>,
        epoch: Rc<str>,
        message: Stored,
        origin: Option<ClientId>,
    },
    /// The answer to [`Request::Holders`]: the nicks held on other processes, as held there.
    Holders {
        asker: Asker,
        held: Vec<Rc<str>>,
    },
    /// The answer to an application's [`Request::Say`]: the id its message got.
    Published {
        ticket: super::api::Ticket,
        room: Rc<str>,
        epoch: Rc<str>,
        seq: u64,
    },
    /// The answer to [`Request::History`].
    History {
        asker: Asker,
        room: Rc<str>,
        kept: Kept,
    },
    /// A room event that is not kept; `origin` is the connection of this process that
    /// announced it (its own join, leave or nick change), if any.
    Event {
        room: Rc<str>,
        event: Event,
        origin: Option<ClientId>,
    },
    /// A binary message for the room.
    Binary {
        room: Rc<str>,
        data: Bytes,
    },
    /// The answer to [`Request::Claim`]: `held_by` None if the connection holds `nick` now,
    /// else whom it is held by.
    Claimed {
        client: ClientId,
        nick: Rc<str>,
        held_by: Option<String>,
        serial: u64,
        /// A signed-in user's read markers as the cluster keeps them: (room key, id).
        markers: Vec<(String, String)>,
    },
    /// The answer to [`Request::Who`]: the nicks sitting in the room on other processes.
    Who {
        asker: Asker,
        room: Rc<str>,
        nicks: Vec<Rc<str>>,
    },
    /// The answer to [`Request::Rooms`]: (key, display, members) on other processes.
    Rooms {
        asker: Asker,
        rooms: Vec<(Rc<str>, Rc<str>, usize)>,
    },
    /// The answer to [`Request::Direct`]: how many connections on other processes it reached,
    /// the nick as held there and whether its holder signed in.
    Reached {
        asker: Asker,
        nick: Rc<str>,
        reached: usize,
        held_as: Option<(Rc<str>, bool)>,
        direct: Direct,
    },
    /// Another process sent `client` something for `nick`: still meant for it only if it still
    /// holds that nick.
    Direct {
        client: ClientId,
        nick: Rc<str>,
        direct: Direct,
    },
    /// This process's presence had expired (a heartbeat came too late): every member's nick
    /// and seat must be written again.
    Reclaim,
    Banned {
        key: BanKey,
        ban: Ban,
    },
    Unbanned {
        key: BanKey,
    },
    /// A room message the broker never confirmed before the link failed (after
    /// [`Notice::Down`]): said again, on this process alone. Should Redis have published it
    /// before failing, the other processes have it too.
    Unsent {
        room: Rc<str>,
        message: Stored,
        origin: Origin,
    },
}

/// Where a room's history is, for [`Notice::History`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// This process's copy is the history (one process, or the link is down).
    Here,
    /// The cluster's: the room's name as shown, its epoch, the last sequence number given, and
    /// its newest messages, oldest first.
    There { display: Rc<str>, epoch: Rc<str>, top: u64, messages: Vec<Stored> },
    /// Nowhere: the room does not exist.
    Nowhere,
    /// Redis answered with something unreadable (a corrupt entry in the room's log).
    Unreadable,
}
