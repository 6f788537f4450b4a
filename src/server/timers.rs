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
//!
//! A connection that goes leaves its entry behind until the entry's time comes (a minute for
//! an idle deadline). Under churn of thousands of connections a second that is hundreds of
//! thousands of dead entries, so once the heap holds more than twice as many entries as there
//! are connections (plus some slack), [`TimerQueue::retain`] rebuilds it from the live ones:
//! O(n) work after at least n/2 removals, O(1) per removal amortised, and the heap stays within
//! a constant factor of the connection count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Entries allowed beyond twice the connection count before a compaction: small servers never
/// compact.
const COMPACTION_SLACK: usize = 1024;

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

    /// Entries pending, live or dead.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether the heap holds so many more entries than `live` connections that rebuilding it
    /// from the live entries is due.
    pub fn needs_compaction(&self, live: usize) -> bool {
        self.heap.len() > 2 * live + COMPACTION_SLACK
    }

    /// Keeps only the entries `keep(key, serial, at)` accepts, and gives back the spare
    /// capacity.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, u64, Instant) -> bool) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|&Reverse((at, key, serial))| keep(key, serial, at));
        entries.shrink_to(entries.len() * 2);
        self.heap = BinaryHeap::from(entries);
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

    #[test]
    fn compaction_keeps_the_live_entries_in_order_and_bounds_the_heap() {
        let t0 = Instant::now();
        let mut timers = TimerQueue::new();
        for key in 0..4000usize {
            timers.schedule(key, key as u64, t0 + Duration::from_millis((key as u64 * 7919) % 4000));
        }
        assert!(!timers.needs_compaction(2000), "twice the connections plus slack is allowed");
        assert!(timers.needs_compaction(1000), "3,000 of 4,000 entries are dead");
        timers.retain(|key, serial, _| key % 4 == 0 && serial == key as u64);
        assert_eq!(timers.len(), 1000);
        let mut last = t0;
        let mut popped = 0;
        while let Some((key, _, at)) = timers.pop_due(t0 + Duration::from_secs(5)) {
            assert!(key % 4 == 0 && at >= last, "live entries only, earliest first");
            (last, popped) = (at, popped + 1);
        }
        assert_eq!(popped, 1000);
    }
}
