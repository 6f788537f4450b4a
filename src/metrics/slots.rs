//! Which scrape connections the metrics listener keeps, and until when: the policy, apart from
//! the sockets (`endpoint.rs` does the IO), so that it is tested without them. The HTTP API's
//! listener (`crate::api`) keeps its connections by the same rules, with its own [`Limits`].
//!
//! A scrape connection is *waiting* until its request head is complete, then *answering* until
//! its reply is written. A waiting connection costs the loop nothing but holds one of
//! [`MAX_SCRAPES`] slots, so a few sockets opened and left silent could lock Prometheus out.
//! Two rules keep a slot for a real scrape:
//! - a waiting connection has [`HEAD_TIMEOUT`] to send its whole head, then it is closed;
//! - a newcomer to a full listener takes the slot of the oldest waiting connection. An
//!   answering one is never evicted (its scrape is under way, and it leaves as soon as its
//!   reply is written); only when every slot is answering is the newcomer turned away.

use std::time::{Duration, Instant};

use slab::Slab;

/// Scrape connections held at once; a newcomer past them takes the oldest waiting one's slot.
pub const MAX_SCRAPES: usize = 16;

/// Time a scrape connection has to send its whole request head. Prometheus (like curl) sends
/// its request as soon as it is connected, so on the internal network a metrics port belongs on
/// a real scraper's head arrives within milliseconds: a second is generous for it, yet short
/// enough that sockets opened and left silent (a port scan, a TCP probe, someone holding slots)
/// give their slot back long before Prometheus's next scrape, whose default interval is 15 s.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// Time an answering connection has, from its complete head, to take its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many connections a listener holds, and how long they have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub capacity: usize,
    /// Time a waiting connection has to send its whole request.
    pub head_timeout: Duration,
    /// Time an answering connection has to take its reply.
    pub reply_timeout: Duration,
}

/// The metrics listener's limits.
pub const SCRAPES: Limits =
    Limits { capacity: MAX_SCRAPES, head_timeout: HEAD_TIMEOUT, reply_timeout: REPLY_TIMEOUT };

/// The open scrape connections (`T`: the endpoint's socket and buffers), by slot key.
#[derive(Debug)]
pub struct Slots<T> {
    limits: Limits,
    slab: Slab<Slot<T>>,
    /// Connections admitted so far: each one's number orders them by age (several may be
    /// admitted in one loop turn, at the same `Instant`).
    admitted: u64,
}

#[derive(Debug)]
struct Slot<T> {
    conn: T,
    number: u64,
    answering: bool,
    deadline: Instant,
}

/// What [`Slots::make_room`] did for a newcomer.
#[derive(Debug, PartialEq, Eq)]
pub enum Room<T> {
    /// A slot was free.
    Free,
    /// The oldest waiting connection was taken out to free its slot: close it.
    Evicted(T),
    /// Every slot is answering: turn the newcomer away.
    Full,
}

impl<T> Slots<T> {
    pub fn new(limits: Limits) -> Self {
        Self { limits, slab: Slab::with_capacity(limits.capacity), admitted: 0 }
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Frees a slot for a newcomer if none is free, by evicting the oldest waiting connection.
    pub fn make_room(&mut self) -> Room<T> {
        if self.slab.len() < self.limits.capacity {
            return Room::Free;
        }
        let oldest_waiting =
            self.slab.iter().filter(|(_, slot)| !slot.answering).min_by_key(|(_, slot)| slot.number);
        match oldest_waiting.map(|(key, _)| key) {
            Some(key) => Room::Evicted(self.slab.remove(key).conn),
            None => Room::Full,
        }
    }

    /// The key the next [`admit`](Self::admit) will use (to register the socket first).
    pub fn vacant_key(&self) -> usize {
        self.slab.vacant_key()
    }

    /// Holds a connection accepted at `now`, waiting for its head; returns its key. The caller
    /// has made room first.
    pub fn admit(&mut self, conn: T, now: Instant) -> usize {
        debug_assert!(self.slab.len() < self.limits.capacity, "make_room first");
        self.admitted += 1;
        let deadline = now + self.limits.head_timeout;
        self.slab.insert(Slot { conn, number: self.admitted, answering: false, deadline })
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.slab.get_mut(key).map(|slot| &mut slot.conn)
    }

    /// Connection `key`'s head is complete at `now`: it is answering, no longer evictable, and
    /// has the reply timeout to take its reply.
    pub fn answering(&mut self, key: usize, now: Instant) {
        if let Some(slot) = self.slab.get_mut(key) {
            slot.answering = true;
            slot.deadline = now + self.limits.reply_timeout;
        }
    }

    /// Connection `key` took its reply at `now` and is kept open for another request: it waits
    /// again, evictable, with the head timeout to send it.
    pub fn waiting(&mut self, key: usize, now: Instant) {
        if let Some(slot) = self.slab.get_mut(key) {
            slot.answering = false;
            slot.deadline = now + self.limits.head_timeout;
        }
    }

    /// The key of the first connection `pick` chooses.
    pub fn find(&self, pick: impl Fn(&T) -> bool) -> Option<usize> {
        self.slab.iter().find(|(_, slot)| pick(&slot.conn)).map(|(key, _)| key)
    }

    pub fn remove(&mut self, key: usize) -> Option<T> {
        self.slab.try_remove(key).map(|slot| slot.conn)
    }

    /// When the next connection runs out of time.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slab.iter().map(|(_, slot)| slot.deadline).min()
    }

    /// Takes out a connection whose time is up at `now`, with whether it was answering.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(T, bool)> {
        let key = self.slab.iter().find(|(_, slot)| slot.deadline <= now).map(|(key, _)| key)?;
        let slot = self.slab.remove(key);
        Some((slot.conn, slot.answering))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots full of connections named 0 to 15, admitted in that order at `t0`.
    fn full(t0: Instant) -> Slots<usize> {
        let mut slots = Slots::new(SCRAPES);
        for name in 0..MAX_SCRAPES {
            assert_eq!(slots.make_room(), Room::Free);
            slots.admit(name, t0);
        }
        slots
    }

    #[test]
    fn a_newcomer_to_a_full_listener_evicts_the_oldest_waiting_connection() {
        let t0 = Instant::now();
        let mut slots = full(t0);
        // 0 and 1 are being answered: 2 is the oldest waiting, even though all came at t0.
        slots.answering(0, t0);
        slots.answering(1, t0);
        assert_eq!(slots.make_room(), Room::Evicted(2));
        slots.admit(100, t0);
        assert_eq!(slots.make_room(), Room::Evicted(3));
        slots.admit(101, t0);
        // The newcomers are the youngest: the old waiting ones go first.
        for name in 4..MAX_SCRAPES {
            assert_eq!(slots.make_room(), Room::Evicted(name));
            slots.admit(200 + name, t0);
        }
        assert_eq!(slots.make_room(), Room::Evicted(100));
    }

    #[test]
    fn a_listener_whose_every_slot_is_answering_turns_newcomers_away() {
        let t0 = Instant::now();
        let mut slots = full(t0);
        for key in 0..MAX_SCRAPES {
            slots.answering(key, t0);
        }
        assert_eq!(slots.make_room(), Room::Full);
        assert_eq!(slots.len(), MAX_SCRAPES, "no answering connection was evicted");
        slots.remove(5);
        assert_eq!(slots.make_room(), Room::Free);
    }

    #[test]
    fn a_waiting_connection_has_the_head_timeout_and_an_answering_one_the_reply_timeout() {
        let t0 = Instant::now();
        let mut slots = Slots::new(SCRAPES);
        let silent = slots.admit("silent", t0);
        let asking = slots.admit("asking", t0);
        assert_eq!(slots.next_deadline(), Some(t0 + HEAD_TIMEOUT));
        let asked_at = t0 + Duration::from_millis(300);
        slots.answering(asking, asked_at);
        assert_eq!(slots.pop_expired(t0 + HEAD_TIMEOUT - Duration::from_millis(1)), None);
        assert_eq!(slots.pop_expired(t0 + HEAD_TIMEOUT), Some(("silent", false)));
        assert!(slots.get_mut(silent).is_none());
        assert_eq!(slots.next_deadline(), Some(asked_at + REPLY_TIMEOUT));
        assert_eq!(slots.pop_expired(asked_at + REPLY_TIMEOUT), Some(("asking", true)));
        assert!(slots.is_empty() && slots.next_deadline().is_none());
    }
}
