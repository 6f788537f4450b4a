//! The timer queue: when each connection next needs attention (handshake deadline, keep-alive
//! ping, idle timeout, close deadline).
//!
//! A min-heap of `(when, slab key, serial)`. Entries are never removed early: a connection whose
//! deadline moved later simply finds, when the old entry pops, that nothing is due yet, and an
//! entry whose connection is gone (or whose slab key now belongs to a later connection, told
//! apart by the serial) is skipped by the caller. That keeps scheduling O(log n) with no
//! bookkeeping on the hot path: a message arriving moves a connection's idle deadline without
//! touching the heap. Each connection also remembers its earliest pending entry
//! ([`Connection::arm_timer`](crate::connection::Connection::arm_timer)), so re-arming with a
//! later deadline adds nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Pending timers, earliest first.
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
}

impl TimerQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes connection `key` (of this `serial`) at `at`.
    pub fn schedule(&mut self, key: usize, serial: u64, at: Instant) {
        self.heap.push(Reverse((at, key, serial)));
    }

    /// The earliest entry due at `now`, as `(key, serial, at)`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, u64, Instant)> {
        let &Reverse((at, key, serial)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((key, serial, at))
    }

    /// When the earliest entry is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Drops every entry and the heap's capacity (all connections are gone).
    pub fn clear(&mut self) {
        self.heap = BinaryHeap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_due_entries_earliest_first() {
        let t0 = Instant::now();
        let mut timers = TimerQueue::new();
        timers.schedule(2, 20, t0 + Duration::from_secs(2));
        timers.schedule(1, 10, t0 + Duration::from_secs(1));
        timers.schedule(3, 30, t0 + Duration::from_secs(3));
        assert_eq!(timers.next_due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_due(now), Some((1, 10, t0 + Duration::from_secs(1))));
        assert_eq!(timers.pop_due(now), Some((2, 20, now)));
        assert_eq!(timers.pop_due(now), None);
        timers.clear();
        assert_eq!(timers.next_due(), None);
    }
}
