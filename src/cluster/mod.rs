//! Cluster mode (`--redis`): several wschat processes, each with its own single-threaded loop
//! and its own connections, made one chat by Redis, the way Centrifugo's Redis broker does it.
//!
//! It is the Redis engine behind the broker seam (`crate::broker`): the chat asks it what it
//! asks the in-process broker, in the same words (`Request`, `Notice`), and while Redis is
//! away it *is* an in-process broker, so each process carries on alone.
//!
//! The parts, each with one job:
//! - [`url`]: where Redis is (`--redis`);
//! - [`resp`]: the Redis wire format, through a sans-IO codec;
//! - [`link`]: one non-blocking Redis connection in the server's poll, over any [`Dialer`]'s
//!   sockets; [`tcp`]: the real ones (the simulation has its own, `crate::sim::wire`);
//! - [`broker`]: the two links (commands, subscriptions) and their life: connecting,
//!   reconnecting with back-off, heartbeats, failing, and the flow bounds;
//! - [`commands`]: the chat's requests as Redis commands; [`batch`]: a turn's messages in a
//!   room, gathered into one call of the say script;
//! - [`expect`]: the answer each command awaits, and the scripts they run;
//! - [`replies`]: what Redis sends back (replies, published messages) as the chat's notices;
//! - [`bans`]: the bans in force, read a page at a time when a link (re)connects;
//! - [`room`]: key names, the Lua scripts and the payloads published on a room's channel;
//! - [`presence`]: processes' liveness, nicks, rooms' members and counts, bans.
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
//! **Ids.** A room message is numbered, kept and published by one Lua script (one call for
//! what a loop turn says in a room), atomically: its
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

pub mod bans;
pub mod batch;
pub mod broker;
mod commands;
mod expect;
mod flight;
mod followed;
pub mod link;
pub mod presence;
mod refresh;
pub(crate) mod replies;
pub mod resp;
pub mod room;
pub mod tcp;
pub mod url;

pub use broker::RedisBroker;
pub use link::{Dialer, Socket};
pub use url::RedisUrl;
