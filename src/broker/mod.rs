//! The broker seam: one interface through which the chat reaches everything that crosses
//! processes (room messages, nicks, presence, direct messages, bans), and the in-process
//! broker behind it by default.
//!
//! The chat speaks to it in its own vocabulary ([`Request`] and [`Notice`], in
//! `crate::chat::broker`) and never asks which broker it has, so its rules exist once. The hub
//! hands the chat's requests to the broker and the broker's notices to the chat:
//! - [`LocalBroker`] (one process) answers within the call, so one process behaves as if there
//!   were no broker at all;
//! - the Redis broker (`crate::cluster::RedisBroker`, `--redis`) answers when Redis does, and
//!   is a [`LocalBroker`] while Redis is away.
//!
//! The model is centrifuge's `Broker` and `PresenceManager` interfaces, with a memory and a
//! Redis engine behind each. A broker with sockets in the loop also gets its readiness events
//! and timers through this trait; the in-process one ignores them.
//!
//! **Flow.** What waits on a broker is bounded like an outbound queue: a client with a room
//! message or event on its way ([`Broker::in_flight`]) is not read until it has come back (so
//! its own line arrives before the answer to anything it sends next, and a fast client is
//! slowed to what the broker carries), and a broker past its bound on work in flight
//! ([`Broker::is_saturated`]) stops the hub reading clients at all until it has caught up. Work
//! no client waits on (a relink's claims) goes to the broker a share a turn, and only while it
//! has room to spare ([`Broker::has_spare_room`]).

mod local;

use std::time::Instant;

use mio::Token;

pub use crate::chat::broker::{Asker, Direct, Kept, Notice, Origin, Request};
use crate::chat::ClientId;
pub use local::LocalBroker;

/// Members whose nicks and seats a relink writes again per turn (see `Chat::reclaim_some`): at
/// most 3,000 commands (a claim, a seat, a room count each), a few milliseconds of the loop's
/// time. Sent only while the broker has room to spare, so with the Redis broker at most about
/// 8,000 commands await replies during a relink, under its saturation bound (10,000: clients
/// are still read) and far from its hard bound (100,000: the link would drop).
pub const RECLAIMS_PER_TURN: usize = 1_000;

/// What carries the chat between processes (or, in one process, answers for the others).
pub trait Broker {
    /// Takes one request; its answer, if it has one, comes as notices.
    fn request(&mut self, request: Request);

    /// What happened since the last call, oldest first.
    fn take_notices(&mut self, into: &mut Vec<Notice>);

    /// Whether a room message or event from `client` is on its way and not back yet.
    fn in_flight(&self, _client: ClientId) -> bool {
        false
    }

    /// Whether more waits on the broker than it allows: no client is read until it is not.
    fn is_saturated(&self) -> bool {
        false
    }

    /// Whether the broker can take work no client waits on (a relink's nicks and seats written
    /// again) and stay well clear of saturation: that work waits while it cannot, so a relink
    /// never holds clients back nor nears the broker's bounds.
    fn has_spare_room(&self) -> bool {
        true
    }

    /// The connection `client` is gone: nothing of its in flight holds anyone else back.
    fn forget(&mut self, _client: ClientId) {}

    /// Whether the broker is linked to the other processes (None: there are none to link to).
    fn linked(&self) -> Option<bool> {
        None
    }

    /// How many times the broker became saturated (None: it never can be).
    fn saturations(&self) -> Option<u64> {
        None
    }

    /// Whether `token` is one of the broker's sockets.
    fn owns(&self, _token: Token) -> bool {
        false
    }

    /// A readiness event on one of the broker's sockets.
    fn on_event(&mut self, _token: Token, _readable: bool, _writable: bool, _now: Instant) {}

    /// Once a turn, before the chat's requests: reads left over, timers due.
    fn on_turn(&mut self, _now: Instant) {}

    /// Once a turn, after the chat's requests: what was asked leaves, in one write.
    fn end_turn(&mut self, _now: Instant) {}

    /// Whether the broker holds requests it has not sent on yet (a busy room's lone message,
    /// lingering for company): they go by [`Broker::wake_at`] at the latest.
    fn holds_unsent(&self) -> bool {
        false
    }

    /// When the broker next needs the loop without an event.
    fn wake_at(&self, _now: Instant) -> Option<Instant> {
        None
    }

    /// The server is shutting down: this process stops counting as present.
    fn leave(&mut self, _now: Instant) {}

    /// The last connection of a crowd is gone: drop the capacity it left behind.
    fn release_memory(&mut self) {}
}
