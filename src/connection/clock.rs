//! Time as a connection keeps it: the loop turn's [`Clock`], and the [`Tick`] a connection
//! stores for each of its deadlines.
//!
//! Every idle connection keeps when it last heard from its client and when its timer is due,
//! and a closing one its close deadline: as `Instant`s (16 bytes each) those were a fifth of an
//! idle chat connection. A [`Tick`] is 4 bytes: milliseconds since the server started, in 32
//! bits, so it wraps every 49.7 days, and two ticks compare correctly while they are at most
//! [`MAX_SPAN`] (24.8 days) apart. That holds for every tick a connection keeps: each is a
//! deadline at most one timeout ahead of the loop's clock (timeouts are capped at `MAX_SPAN`,
//! see `settings.rs`), or the last time the client was heard, which the keep-alive checks at
//! least every idle timeout. A token's expiry, which may be months away, stays an `Instant`.

use std::time::{Duration, Instant};

/// The longest span two ticks can be apart and still compare correctly: 2^31 - 1 ms.
pub const MAX_SPAN: Duration = Duration::from_millis(i32::MAX as u64);

/// The time as the server sees it in this loop turn: the instant, and the milliseconds since
/// the server started (the rate limiter and the timer queue count in these).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    pub ms: u64,
}

/// A moment within [`MAX_SPAN`] of now, as milliseconds since the server started, wrapped to
/// 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tick(u32);

impl Tick {
    /// The tick of an absolute millisecond count (since the server started).
    pub fn from_ms(ms: u64) -> Self {
        Self(ms as u32)
    }

    /// `span` later (a span over [`MAX_SPAN`] counts as `MAX_SPAN`).
    pub fn after(self, span: Duration) -> Self {
        Self(self.0.wrapping_add(span.min(MAX_SPAN).as_millis() as u32))
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Tick) -> Duration {
        Duration::from_millis(self.signed_since(earlier).max(0) as u64)
    }

    /// At or past `deadline`.
    pub fn reached(self, deadline: Tick) -> bool {
        self.signed_since(deadline) >= 0
    }

    fn signed_since(self, earlier: Tick) -> i64 {
        i64::from(self.0.wrapping_sub(earlier.0) as i32)
    }
}

impl Clock {
    /// This turn's tick.
    pub fn tick(&self) -> Tick {
        Tick::from_ms(self.ms)
    }

    /// The millisecond count (since the server started) of a tick near now.
    pub fn ms_of(&self, tick: Tick) -> u64 {
        self.ms.saturating_add_signed(tick.signed_since(self.tick()))
    }

    /// The millisecond count of an instant (before the server started: 0; far ahead: saturated).
    pub fn ms_of_instant(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.now) {
            Some(ahead) => self.ms.saturating_add(ahead.as_millis().try_into().unwrap_or(u64::MAX)),
            None => {
                self.ms.saturating_sub(self.now.duration_since(at).as_millis().try_into().unwrap_or(u64::MAX))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(ms: u64) -> Clock {
        Clock { now: Instant::now(), ms }
    }

    #[test]
    fn ticks_compare_across_the_32_bit_wrap() {
        let before_wrap = Tick::from_ms(u64::from(u32::MAX) - 5);
        let after_wrap = before_wrap.after(Duration::from_millis(10));
        assert_eq!(after_wrap, Tick::from_ms(u64::from(u32::MAX) + 5));
        assert!(after_wrap.reached(before_wrap));
        assert!(!before_wrap.reached(after_wrap));
        assert_eq!(after_wrap.since(before_wrap), Duration::from_millis(10));
        assert_eq!(before_wrap.since(after_wrap), Duration::ZERO, "not after: zero");
        assert!(before_wrap.reached(before_wrap));
    }

    #[test]
    fn a_span_longer_than_the_comparable_one_is_capped() {
        let t = Tick::from_ms(1_000);
        let far = t.after(Duration::from_secs(365 * 86_400));
        assert_eq!(far.since(t), MAX_SPAN);
        assert!(far.reached(t) && !t.reached(far));
    }

    #[test]
    fn ticks_near_now_map_back_to_their_millisecond_count() {
        let base = u64::from(u32::MAX) * 3 + 100; // a server up for about 150 days
        let c = clock(base);
        assert_eq!(c.ms_of(c.tick()), base);
        assert_eq!(c.ms_of(c.tick().after(Duration::from_secs(60))), base + 60_000);
        assert_eq!(c.ms_of(Tick::from_ms(base - 200)), base - 200, "a tick just behind, across the wrap");
        assert_eq!(clock(5).ms_of(Tick::from_ms(u64::from(u32::MAX))), 0, "never before the start");
    }

    #[test]
    fn instants_map_to_millisecond_counts() {
        let c = clock(10_000);
        assert_eq!(c.ms_of_instant(c.now + Duration::from_millis(2_500)), 12_500);
        assert_eq!(c.ms_of_instant(c.now - Duration::from_millis(2_500)), 7_500);
        assert_eq!(c.ms_of_instant(c.now - Duration::from_secs(60)), 0);
    }
}
