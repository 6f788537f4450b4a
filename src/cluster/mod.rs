//! Cluster mode (`--redis`): several wschat processes, each with its own single-threaded loop
//! and its own connections, made one chat by Redis, the way Centrifugo's Redis broker does it.
//!
//! The parts, each with one job:
//! - [`resp`]: the Redis wire format, through a sans-IO codec;
//! - [`link`]: one non-blocking Redis connection in the server's poll;
//! - [`broker`]: the two links (commands, subscriptions), reconnection with back-off, and the
//!   translation between the chat's [`Request`]s and what Redis sends back ([`Notice`]s);
//! - [`room`]: key names, the Lua scripts and the payloads published on a room's channel;
//! - [`presence`]: processes' liveness, nicks, rooms' members and counts, bans.
//!
//! The chat itself stays plain Rust (see `crate::chat`): it asks for things with [`Request`]s
//! and is told what happened with [`Notice`]s, so it is tested in memory without Redis.
//!
//! **Order.** Every room event (messages, joins, leaves, nick changes, binary frames) is
//! published to the room's channel and delivered, on every process the sender's own included,
//! from the subscription. Redis sends a channel's messages to each subscriber in the order it
//! ran the publishes, so every member of a room, on any process, sees the same order. The
//! shortcut of delivering on the sender's process before the round trip was not taken: a
//! message from another process still in flight would then reach this process's members after
//! the local one, and other members before it. The price is one Redis round trip of latency.
//!
//! A process hears a room from the moment its subscription is live: for a joiner, from its
//! replay on (the replay comes from a history loaded after the subscription was confirmed, so
//! no message falls between them; a join or leave announced in that instant may).
//!
//! **Ids.** A room message is numbered, kept and published by one Lua script, atomically: its
//! sequence is the room's counter in Redis, its epoch the room's epoch there, and publishing
//! in the script keeps channel order equal to sequence order. Each process keeps a mirror of
//! the history of the rooms it has members in (loaded when the room gets its first local
//! member, after the subscription is confirmed, so nothing falls between the two), which
//! answers joins and resumes. A Redis that lost its data starts new epochs: clients holding an
//! old id get `recovered:false`, never a reused id.
//!
//! **Failure.** While Redis is unreachable, each process carries on alone: rooms get a fresh
//! local epoch (so no id can collide with one given out elsewhere), members are told, and the
//! broker reconnects with back-off. When it is back, every room with members reloads from Redis
//! and its members get the room's history again, with `recovered:false`.

pub mod broker;
pub mod link;
pub mod presence;
pub mod resp;
pub mod room;

use std::rc::Rc;

use bytes::Bytes;

use crate::chat::{Ban, BanKey, ClientId, Event, Stored};

/// What the chat asks of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The room (by key) has local members now: subscribe to it, then load its history
    /// ([`Notice::Loaded`]).
    Follow {
        room: Rc<str>,
        display: Rc<str>,
    },
    /// Load the history again (the mirror missed messages).
    Reload {
        room: Rc<str>,
        display: Rc<str>,
    },
    /// The room has no local members left: unsubscribe.
    Unfollow {
        room: Rc<str>,
    },
    /// A room message: numbered, kept and published by Redis ([`room::say_body`]).
    Say {
        room: Rc<str>,
        display: Rc<str>,
        body: String,
    },
    /// A room event that is not kept (joins, leaves, nick changes), as its JSON form.
    Announce {
        room: Rc<str>,
        event: String,
    },
    /// A binary message for the room, relayed verbatim.
    Binary {
        room: Rc<str>,
        data: Bytes,
    },
    /// Reserve a nick for a connection, cluster-wide ([`Notice::Claimed`]).
    /// `serial` tells this claim's answer from an older one for the same connection slot.
    Claim {
        client: ClientId,
        nick: Rc<str>,
        signed: bool,
        serial: u64,
    },
    /// The connection no longer holds the nick.
    Release {
        client: ClientId,
        nick: Rc<str>,
    },
    /// The connection sits in the room under this nick (for `/who`).
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
    /// This process has this many members in the room (for `/rooms`).
    Count {
        room: Rc<str>,
        display: Rc<str>,
        count: usize,
    },
    /// `/who` for the whole cluster ([`Notice::Who`]).
    Who {
        asker: Asker,
        room: Rc<str>,
    },
    /// `/rooms` for the whole cluster ([`Notice::Rooms`]).
    Rooms {
        asker: Asker,
    },
    /// Something for every connection holding `nick`, wherever it is ([`Notice::Reached`]).
    Direct {
        asker: Asker,
        nick: Rc<str>,
        direct: Direct,
    },
    /// A ban (or its end) for every process.
    Ban {
        key: BanKey,
        ban: Ban,
    },
    Unban {
        key: BanKey,
    },
}

/// Who asked (a `/who`, `/rooms` or `/msg`): its answer goes to that connection only while it
/// still has that nick, not to whoever has its slot by the time Redis answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    pub client: ClientId,
    pub nick: Rc<str>,
}

/// What reaches a nick on whichever process holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    /// A private message, as the receiver's event in JSON form.
    Private(String),
    /// A moderator's `/kick`: close with 4000 and this reason.
    Kick(String),
    /// A moderator's `/ban`: a guest's process bans its address (the ban, as JSON), then the
    /// connection is closed like a kick with `closing`.
    Ban { closing: String, ban: String },
}

/// What the cluster tells the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Redis is reachable (again): shared rooms work.
    Up,
    /// Redis is unreachable: each process carries on alone.
    Down,
    /// A followed room's history, as Redis holds it now.
    Loaded {
        room: Rc<str>,
        display: Rc<str>,
        epoch: Rc<str>,
        top: u64,
        messages: Vec<Stored>,
    },
    /// A room message, numbered by Redis.
    Message {
        room: Rc<str>,
        display: Rc<str>,
        epoch: Rc<str>,
        message: Stored,
    },
    /// A room event that is not kept.
    Event {
        room: Rc<str>,
        event: Event,
    },
    /// A binary message for the room.
    Binary {
        room: Rc<str>,
        data: Bytes,
    },
    /// The answer to [`Request::Claim`]: `held_by` is None if the connection holds the nick now,
    /// else the holder's entry (`S NICK` or `G NICK`).
    Claimed {
        client: ClientId,
        nick: Rc<str>,
        held_by: Option<String>,
        serial: u64,
    },
    /// The answer to [`Request::Who`]: every live member's nick.
    Who {
        asker: Asker,
        room: Rc<str>,
        nicks: Vec<Rc<str>>,
    },
    /// The answer to [`Request::Rooms`]: (key, display, members) of every room with members.
    Rooms {
        asker: Asker,
        rooms: Vec<(Rc<str>, Rc<str>, usize)>,
    },
    /// The answer to [`Request::Direct`]: how many connections it reached, the nick as held
    /// and whether its holder signed in.
    Reached {
        asker: Asker,
        nick: Rc<str>,
        reached: usize,
        held_as: Option<(Rc<str>, bool)>,
        direct: Direct,
    },
    /// Another process sent one of this process's connections something, for `nick`: the
    /// connection is still the one meant only if it still holds that nick.
    Direct {
        client: ClientId,
        nick: Rc<str>,
        direct: Direct,
    },
    /// This process's presence had expired in Redis (a heartbeat came too late): its members'
    /// nicks and seats must be written again.
    Reclaim,
    Banned {
        key: BanKey,
        ban: Ban,
    },
    Unbanned {
        key: BanKey,
    },
    /// A room message Redis never confirmed before the link failed (after [`Notice::Down`]):
    /// delivered on this process alone. Should Redis have published it before failing, the
    /// other processes have it too, and this process's members may see it twice.
    Unsent {
        room: Rc<str>,
        body: String,
    },
}
