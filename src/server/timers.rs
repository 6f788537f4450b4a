//! The timer queue: when each connection next needs attention (handshake deadline, keep-alive
//! ping, idle timeout, close deadline).
//!
//! A min-heap of `(when, slab key)`, when in milliseconds since the server started (held as two
//! 32-bit halves, so that an entry is 12 bytes: every connection has one). Entries are never removed early: a connection whose
//! deadline moved later simply finds, when the old entry pops, that nothing is due yet, and an
//! entry whose connection is gone (or whose slab key now belongs to a later connection, told
//! apart by the serial) is skipped by the caller. That keeps scheduling O(log n) with no
//! bookkeeping on the hot path: a message arriving moves a connection's idle deadline without
//! touching the heap. An entry left by an earlier connection on the same slab key is told apart
//! by its time ([`Connection::take_timer`](crate::connection::Connection::take_timer)); should
//! one match by chance, the connection is only looked at early: every timer action checks the
//! time itself, and the connection's real entry is scheduled again. Each connection also remembers its earliest pending entry
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

/// Entries allowed beyond twice the connection count before a compaction: small servers never
/// compact.
const COMPACTION_SLACK: usize = 1024;

/// When (milliseconds since the server started, high half first) and which slab key.
type Entry = ([u32; 2], u32);

fn entry(at: u64, key: usize) -> Entry {
    // Slab keys stay far below 2^32: each is an open socket.
    ([(at >> 32) as u32, at as u32], key as u32)
}

fn when(halves: [u32; 2]) -> u64 {
    u64::from(halves[0]) << 32 | u64::from(halves[1])
}

/// Pending timers, earliest first.
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl TimerQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes connection `key` at `at`.
    pub fn schedule(&mut self, key: usize, at: u64) {
        self.heap.push(Reverse(entry(at, key)));
    }

    /// The earliest entry due at `now`, as `(key, at)`.
    pub fn pop_due(&mut self, now: u64) -> Option<(usize, u64)> {
        let &Reverse((halves, key)) = self.heap.peek()?;
        if when(halves) > now {
            return None;
        }
        self.heap.pop();
        Some((key as usize, when(halves)))
    }

    /// When the earliest entry is due.
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((halves, _))| when(*halves))
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

    /// Keeps only the entries `keep(key, at)` accepts, and gives back the spare capacity.
    pub fn retain(&mut self, mut keep: impl FnMut(usize, u64) -> bool) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|&Reverse((halves, key))| keep(key as usize, when(halves)));
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

    #[test]
    fn pops_due_entries_earliest_first() {
        let mut timers = TimerQueue::new();
        timers.schedule(2, 2_000);
        timers.schedule(1, 1_000);
        timers.schedule(3, 3_000);
        timers.schedule(4, 1 << 33);
        timers.schedule(5, (1 << 32) + 1);
        assert_eq!(timers.next_due(), Some(1_000));
        assert_eq!(timers.pop_due(0), None);
        assert_eq!(timers.pop_due(2_000), Some((1, 1_000)));
        assert_eq!(timers.pop_due(2_000), Some((2, 2_000)));
        assert_eq!(timers.pop_due(2_000), None);
        assert_eq!(timers.pop_due(u64::MAX), Some((3, 3_000)));
        assert_eq!(timers.pop_due(u64::MAX), Some((5, (1 << 32) + 1)), "past 2^32 ms, in order");
        assert_eq!(timers.pop_due(u64::MAX), Some((4, 1 << 33)));
        timers.clear();
        assert_eq!(timers.next_due(), None);
    }

    #[test]
    fn an_entry_is_12_bytes() {
        assert_eq!(std::mem::size_of::<Reverse<Entry>>(), 12);
    }

    #[test]
    fn compaction_keeps_the_live_entries_in_order_and_bounds_the_heap() {
        let mut timers = TimerQueue::new();
        for key in 0..4000u64 {
            timers.schedule(key as usize, (key * 7919) % 4000);
        }
        assert!(!timers.needs_compaction(2000), "twice the connections plus slack is allowed");
        assert!(timers.needs_compaction(1000), "3,000 of 4,000 entries are dead");
        timers.retain(|key, at| key % 4 == 0 && at == (key as u64 * 7919) % 4000);
        assert_eq!(timers.len(), 1000);
        let mut last = 0;
        let mut popped = 0;
        while let Some((key, at)) = timers.pop_due(5_000) {
            assert!(key % 4 == 0 && at >= last, "live entries only, earliest first");
            (last, popped) = (at, popped + 1);
        }
        assert_eq!(popped, 1000);
    }
}
